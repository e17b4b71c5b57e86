"""Boxes: a view's element set as one arithmetic progression per base axis (`Region.box`).

The proxy keeps, while every view axis walks one base axis, a directed progression per base
axis (`Line`); `normalise_box` turns those into the IR's box form. After a reshape the axes no
longer line up, and `box_from_elements` recovers the box from the elements themselves when they
form one (up to `BOX_ENUMERATION_LIMIT` of them).
"""
from __future__ import annotations

import numpy as np

from ..ir import flat_indices

# Views without axis correspondence recover their box by enumeration up to this many elements.
BOX_ENUMERATION_LIMIT = 1 << 18

Line = tuple[int, int, int]   # (start, count, step) along one base axis; step may be negative


def normalise_box(lines: tuple[Line, ...]) -> tuple[Line, ...]:
    """Directed progressions -> the `Region.box` form (lowest start, count, step >= 1)."""
    box = []
    for start, count, step in lines:
        if count == 0:
            box.append((0, 0, 1))
        elif count == 1:
            box.append((start, 1, 1))
        elif step < 0:
            box.append((start + (count - 1) * step, count, -step))
        else:
            box.append((start, count, step))
    return tuple(box)


def box_from_elements(offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
                      base_shape: tuple[int, ...]) -> tuple[Line, ...] | None:
    """The box of the elements a strided view touches, if they form one (None if not, or if the
    view is too large to enumerate)."""
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if size == 0:
        return tuple((0, 0, 1) for _ in base_shape)
    if size > BOX_ENUMERATION_LIMIT:
        return None
    flat = flat_indices(offset, shape, strides)
    if not base_shape:
        return ()
    coords = np.unravel_index(flat, base_shape)
    box, total = [], 1
    for values in coords:
        values = np.unique(values)
        if len(values) == 1:
            box.append((int(values[0]), 1, 1))
        else:
            steps = np.diff(values)
            if not np.all(steps == steps[0]):
                return None
            box.append((int(values[0]), len(values), int(steps[0])))
        total *= len(values)
    return tuple(box) if total == len(flat) else None
