"""The tracer's direct paths give what its general paths give.

`x[i]` and `x[a:b:c]` build a view straight from the parent's axes and box; the same key written
as a full tuple (`x[i, :, :]`) goes through the general indexing path: both must name the same
region, over views of views (transposed, new axes, negative steps, single rows). A view passed
twice shares one `Access` only under the same parameter; a call's location is its own line even
when one line of code runs many times.
"""
from __future__ import annotations

import numpy as np
import pytest

import l3c


@l3c.kernel
def copy(a: l3c.In, b: l3c.Out):
    pass


@l3c.kernel
def twice(a: l3c.In, b: l3c.InOut):
    pass


def views(x):
    """Parents of every kind the direct path meets: whole, strided, reversed, transposed, with a
    new axis, a single row kept as an axis, a reshape (no axes: the general path)."""
    return [x, x[1::2], x[::-1], x[::-2, 1:], x.T, x[None], x[:, None], x[2:3], x.T[::-1],
            x.reshape(8, 6)[1:]]


def keys(n):
    ints = [0, n - 1, -1, -n] if n else []
    return ints + [slice(None), slice(1, None), slice(None, None, -1), slice(-2, None, -2),
                   slice(0, 1), slice(n + 3, -n - 3, -1), slice(2, 1), slice(-n - 5, n + 5, 3)]


def test_direct_indexing_matches_the_general_path():
    seen = []

    @l3c.jit(chips=1)
    def f(x):
        for parent in views(x):
            for key in keys(parent.shape[0]):
                fast = parent[key]
                full = parent[(key,) + (slice(None),) * (parent.ndim - 1)]
                seen.append((fast.region, full.region, fast.shape, full.shape, key))
                if fast.size:
                    copy(fast, full)
        return None

    f.trace(np.zeros((6, 8), np.float32))
    assert len(seen) > 100
    for fast, full, fast_shape, full_shape, key in seen:
        assert fast_shape == full_shape, key
        assert fast == full, key


def test_int_index_out_of_bounds_still_raises_at_the_line():
    @l3c.jit(chips=1)
    def f(x):
        return x[::2][3]

    with pytest.raises(l3c.TraceError, match=r"test_trace_fastpaths\.py:\d+: index 3 is out of bounds"):
        f.trace(np.zeros((6, 8), np.float32))


def test_a_view_shares_its_access_only_under_the_same_parameter():
    @l3c.jit(chips=1)
    def f(x):
        row = x[1]
        copy(row, x[2])
        copy(row, x[3])
        twice(x[4], row)
        copy(row, row[::2])
        return None

    prog = f.trace(np.zeros((6, 8), np.float32))
    a0, a1, a2, a3 = (prog.graph.nodes[t]["task"].args for t in range(4))
    assert a0[0] is a1[0]                                   # same view, same parameter
    assert (a2[1].param, a2[1].mode) == ("b", "InOut")      # same view under another parameter
    assert a2[1].region == a0[0].region
    assert (a3[0].param, a3[0].mode) == ("a", "In")
    assert a3[1].region.box == ((1, 1, 1), (0, 4, 2))


def test_each_call_is_located_at_its_own_line():
    @l3c.jit(chips=1)
    def f(x):
        for i in range(3):
            copy(x[i], x[i + 1])
        copy(x, x)
        return None

    prog = f.trace(np.zeros((6, 8), np.float32))
    locs = [prog.graph.nodes[t]["task"].loc for t in range(4)]
    assert locs[0] == locs[1] == locs[2]
    file, line = locs[0].split(":")
    assert file == "test_trace_fastpaths.py"
    assert locs[3] == f"{file}:{int(line) + 1}"
    assert int(line) == f.fn.__code__.co_firstlineno + 3
