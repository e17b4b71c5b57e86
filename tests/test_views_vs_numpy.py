"""The region a proxy view names is exactly what numpy's view touches, element for element.

Random chains of basic slicing (ints, slices with negative indices and steps, `...`, None), `.T`,
`.transpose` and `.reshape` (where numpy's is a view; refused where numpy copies) run on a proxy and on `np.arange(size).reshape(shape)`;
the region's offset/shape/strides must map every view index to the same base element numpy's view
holds there, and the region's box (when present) must name exactly the set of those elements.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

import l3c
from l3c.passes.regions import elements as region_elements  # independent enumeration (passes)


@l3c.kernel
def probe(x: l3c.In):
    pass


def region_indices(region) -> np.ndarray:
    """Base flat index of every view element, in view order."""
    flat = np.full(region.shape, region.offset, dtype=np.int64)
    for axis, (n, s) in enumerate(zip(region.shape, region.strides)):
        shape = [1] * len(region.shape)
        shape[axis] = n
        flat = flat + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    return flat


def box_elements(box, base_shape) -> set[int]:
    axes = [range(start, start + count * step, step) if count else range(0) for start, count, step in box]
    grids = np.meshgrid(*[np.array(list(a), dtype=np.int64) for a in axes], indexing="ij")
    if not grids:
        return {0}
    return set(np.ravel_multi_index([g.ravel() for g in grids], base_shape).tolist()) \
        if all(len(a) for a in axes) else set()


def random_axis_index(rng: random.Random, n: int):
    if n > 0 and rng.random() < 0.3:
        return rng.randint(-n, n - 1)
    step = rng.choice([1, 1, 2, 3, -1, -2, None])
    # slice bounds may overrun the axis (numpy clips them, and so does l3c); integer indices may not
    return slice(rng.choice([None, rng.randint(-n - 3, n + 3)]),
                 rng.choice([None, rng.randint(-n - 3, n + 3)]), step)


def random_index(rng: random.Random, shape: tuple[int, ...]):
    """A random basic index for `shape`: indices for a prefix of the axes, optionally `...` and
    indices for a suffix, with new axes (None) sprinkled in."""
    ndim = len(shape)
    prefix = rng.randint(0, ndim)
    parts = [random_axis_index(rng, shape[a]) for a in range(prefix)]
    if rng.random() < 0.3:
        suffix = rng.randint(0, ndim - prefix)
        parts += [Ellipsis] + [random_axis_index(rng, shape[a]) for a in range(ndim - suffix, ndim)]
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        parts.insert(rng.randint(0, len(parts)), None)
    return tuple(parts) if len(parts) != 1 or rng.random() < 0.5 else parts[0]


def contiguous_reshape(rng: random.Random, size: int) -> tuple[int, ...]:
    dims = []
    rest = size
    for d in (2, 3, 4, 5):
        if rest % d == 0 and rng.random() < 0.5:
            dims.append(d)
            rest //= d
    dims.append(rest)
    rng.shuffle(dims)
    return tuple(dims)


def apply_chain(rng: random.Random, view, proxy, max_ops: int):
    """Apply the same random operations to a numpy view and a proxy; yield both after each op."""
    sliced_only = True
    for _ in range(rng.randint(1, max_ops)):
        r = rng.random()
        if r < 0.15:
            view, proxy = view.T, proxy.T
        elif r < 0.22 and view.ndim > 1:
            perm = list(range(view.ndim))
            rng.shuffle(perm)
            view, proxy = view.transpose(perm), proxy.transpose(*perm)
        elif r < 0.35 and view.size > 0:
            shape = contiguous_reshape(rng, view.size)
            reshaped = view.reshape(shape)
            # numpy had to copy: l3c refuses (a numpy scalar from all-int indexing always copies;
            # the 0-d view it stands for would not)
            if isinstance(view, np.ndarray) and not np.shares_memory(reshaped, view):
                with pytest.raises(l3c.TraceError, match="numpy would copy it"):
                    proxy.reshape(shape)
                continue
            sliced_only = sliced_only and shape == view.shape
            view, proxy = reshaped, proxy.reshape(shape)
        else:
            key = random_index(rng, view.shape)
            view, proxy = view[key], proxy[key]
        yield view, proxy, sliced_only


def check(view, proxy, base_shape, sliced_only):
    region = proxy.region
    assert tuple(proxy.shape) == view.shape
    assert region.shape == view.shape
    assert [st for n, st in zip(view.shape, proxy.strides) if n > 1] == \
        [st // view.itemsize * proxy.itemsize for n, st in zip(view.shape, view.strides) if n > 1]
    np.testing.assert_array_equal(region_indices(region), view)
    if region.box is not None:
        assert all(count >= 0 and step >= 1 for _, count, step in region.box)
        assert box_elements(region.box, base_shape) == set(np.asarray(view).ravel().tolist())
    elif sliced_only:
        raise AssertionError(f"slicing/transposing lost the box: {region}")
    assert set(region_elements(region).tolist()) == set(np.asarray(view).ravel().tolist())


@pytest.mark.parametrize("seed", range(8))
def test_random_view_chains_match_numpy(seed):
    rng = random.Random(seed)
    shapes = [(7,), (6, 5), (4, 3, 5), (2, 3, 4, 3), (1, 6, 1), (8, 8)]
    cases = []

    @l3c.jit(chips=1)
    def f(x):
        base = np.arange(x.size).reshape(x.shape)
        for _ in range(60):
            for view, proxy, sliced_only in apply_chain(rng, base, x, 5):
                cases.append((view, proxy.region, proxy, sliced_only))
            probe(proxy)
        return None

    shape = shapes[seed % len(shapes)]
    f.trace(np.zeros(shape, np.float32))
    assert len(cases) >= 60
    for view, region, proxy, sliced_only in cases:
        assert proxy.region == region
        check(view, proxy, shape, sliced_only)


def test_interleaved_rows_have_disjoint_boxes():
    seen = {}

    @l3c.jit(chips=2)
    def f(x):
        seen["even"], seen["odd"] = x[0::2].region, x[1::2].region
        seen["rev"] = x[::-1, 1].region

    f.trace(np.zeros((6, 4)))
    assert seen["even"].box == ((0, 3, 2), (0, 4, 1))
    assert seen["odd"].box == ((1, 3, 2), (0, 4, 1))
    assert seen["rev"].box == ((0, 6, 1), (1, 1, 1))
    assert seen["rev"].strides == (-4,) and seen["rev"].offset == 21


def test_reshape_of_strided_view_is_rejected_and_contiguous_keeps_box(line_of):
    seen = {}

    @l3c.jit(chips=1)
    def f(x):
        r = x[2:4].reshape(-1)
        seen["r"] = r.region
        seen["rr"] = r[1::3].region
        seen["r5"] = r[1::5].region
        x[:, :4:2].reshape(-1)  # ERR

    with pytest.raises(l3c.TraceError) as info:
        f.trace(np.zeros((4, 6)))
    assert f"test_views_vs_numpy.py:{line_of(f)}:" in str(info.value)
    assert "not a view (numpy would copy it)" in str(info.value)
    assert seen["r"].box == ((2, 2, 1), (0, 6, 1))
    assert seen["rr"].box == ((2, 2, 1), (1, 2, 3))        # {13,16,19,22}: rows 2:4, cols 1,4
    assert seen["r5"].shape == (3,) and seen["r5"].box is None   # {13,18,23}: not a box


@l3c.kernel
def double_into(x: l3c.In, y: l3c.Out):
    y[...] = 2 * x


def test_overrunning_slices_clip_like_numpy_end_to_end():
    """Tiles of 3 over 8 rows: the last one overruns (clipped to 2 rows) and the one after is
    empty, as numpy would have it; results equal numpy's, compiled and eager."""
    @l3c.jit(chips=2)
    def tiles(x, tile=3):
        y = l3c.zeros(x.shape, x.dtype)
        for i in range(0, x.shape[0] + tile, tile):
            double_into(x[i:i + tile], y[i:i + tile])
        return y, x[-100:2, :], x[:, 1:9], x[9:]

    x = np.arange(24.0).reshape(8, 3)
    want = (2 * x, x[-100:2, :], x[:, 1:9], x[9:])
    for got in (tiles(x), tiles.eager(x)):
        assert [g.shape for g in got] == [w.shape for w in want] == [(8, 3), (2, 3), (8, 2), (0, 3)]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
