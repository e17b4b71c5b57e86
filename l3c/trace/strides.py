"""Strides of views in elements of their C-contiguous base tensor, and what whole tensors share.

`c_strides` is a whole tensor's, `reshape_strides` numpy's rule for a reshape that stays a view,
and `whole_geometry` the strides, axes, lines and `Region` record of a whole tensor of one shape
(every tensor of that shape shares them: `proxy.Tensor`).
"""
from __future__ import annotations

from ..ir import Region
from .boxes import Line
from .records import make_region


def c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def reshape_strides(shape: tuple[int, ...], strides: tuple[int, ...],
                    new_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The strides of `new_shape` over the same elements when they exist (numpy's rule for a
    reshape without copying, C order), else None. Runs of old axes that merge into new ones must
    be contiguous relative to each other; size-1 axes take any stride."""
    old = [(n, s) for n, s in zip(shape, strides) if n != 1]
    new_strides = [0] * len(new_shape)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(new_shape) and oi < len(old):
        np_, op = new_shape[ni], old[oi][0]
        while np_ != op:
            if np_ < op:
                np_ *= new_shape[nj]
                nj += 1
            else:
                op *= old[oj][0]
                oj += 1
        for k in range(oi, oj - 1):
            if old[k][1] != old[k + 1][0] * old[k + 1][1]:
                return None
        new_strides[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            new_strides[k - 1] = new_strides[k] * new_shape[k]
        ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
    last = new_strides[ni - 1] if ni >= 1 else 1
    for k in range(ni, len(new_shape)):
        new_strides[k] = last
    return tuple(new_strides)


# Per base shape: the strides, axes, lines and region of the whole tensor (many tensors share a
# shape, and their whole views share one `Region` record).
_WHOLE: dict[tuple[int, ...],
             tuple[tuple[int, ...], tuple[int, ...], tuple[Line, ...], Region]] = {}


def whole_geometry(shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...],
                                                    tuple[Line, ...], Region]:
    """The strides, axes, lines and region of a whole tensor of `shape` (ints >= 0)."""
    whole = _WHOLE.get(shape)
    if whole is None:
        if len(_WHOLE) >= 4096:
            _WHOLE.clear()
        strides, lines = c_strides(shape), tuple((0, d, 1) for d in shape)
        whole = _WHOLE[shape] = (strides, tuple(range(len(shape))), lines,
                                 make_region(0, shape, strides, lines))
    return whole
