"""Which elements of a base tensor a `Region` touches, and whether two regions share one.

Two views of one tensor conflict only if they may touch a common element. Views made by basic
slicing and transposition carry a `box` (one arithmetic progression per base axis), and two boxes
intersect exactly when every axis's progressions intersect, which gcd/CRT decides in O(ndim):
`x[0::2]` and `x[1::2]` are disjoint, `x[:, 0:4]` and `x[:, 2:6]` are not. Views without a box (a
reshape of a strided view) fall back to exact enumeration when they are small, and to their flat
bounding intervals (conservative: "may overlap") when they are large.
"""
from __future__ import annotations

from math import gcd

import numpy as np

from ..ir import Region, flat_indices

# Regions up to this many elements each are compared element by element when they have no box.
EXACT_ENUMERATION_LIMIT = 1 << 16


def bounds(region: Region) -> tuple[int, int]:
    """Inclusive flat index interval `(lo, hi)` spanned by the region; `(0, -1)` when empty."""
    if region.size == 0:
        return (0, -1)
    lo = hi = region.offset
    for n, s in zip(region.shape, region.strides):
        span = (n - 1) * s
        if span < 0:
            lo += span
        else:
            hi += span
    return (lo, hi)


def elements(region: Region) -> np.ndarray:
    """Sorted distinct flat base indices the region touches (cached per region: the same regions
    recur across tasks; the array is read-only)."""
    found = _ELEMENTS.get(region)
    if found is None:
        idx = flat_indices(region.offset, region.shape, region.strides)
        idx.flags.writeable = False
        if len(_ELEMENTS) > 100_000 or _CACHED[0] + idx.size > CACHE_ELEMENTS:
            _ELEMENTS.clear()
            _CACHED[0] = 0
        found = _ELEMENTS[region] = idx
        _CACHED[0] += idx.size
    return found


CACHE_ELEMENTS = 1 << 24                  # cached indices at most (8 bytes each)
_ELEMENTS: dict[Region, np.ndarray] = {}
_CACHED = [0]


def byte_span(base: int, itemsize: int, region: Region) -> tuple[int, int]:
    """[first byte, end byte) of the hull of a region of a tensor starting at byte `base`
    (conservative for strided views; `(base, base)` when empty)."""
    lo, hi = bounds(region)
    if hi < lo:
        return base, base
    return base + lo * itemsize, base + (hi + 1) * itemsize


def inside(region: Region, shape: tuple[int, ...]) -> bool:
    """Does the region stay within a base tensor of this shape (so no view reaches outside it)?"""
    lo, hi = bounds(region)
    return hi < lo or (lo >= 0 and hi < int(np.prod(shape, dtype=np.int64)))


def _progressions_intersect(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    """Whether {s1 + i*d1 : 0 <= i < c1} and {s2 + j*d2 : 0 <= j < c2} share a value."""
    (s1, c1, d1), (s2, c2, d2) = a, b
    if c1 <= 0 or c2 <= 0:
        return False
    if c1 == 1:
        d1 = 1  # a single value: any step describes it
    if c2 == 1:
        d2 = 1
    lo = max(s1, s2)
    hi = min(s1 + (c1 - 1) * d1, s2 + (c2 - 1) * d2)
    if lo > hi:
        return False
    if c1 == 1:
        return (s1 - s2) % d2 == 0 and s2 <= s1 <= hi
    if c2 == 1:
        return (s2 - s1) % d1 == 0 and s1 <= s2 <= hi
    g = gcd(d1, d2)
    if (s2 - s1) % g:
        return False
    # x = s1 + d1*k with d1*k = s2 - s1 (mod d2): solve k mod (d2/g) by the modular inverse.
    m = d2 // g
    k = ((s2 - s1) // g) * pow(d1 // g, -1, m) % m if m > 1 else 0
    x0 = s1 + d1 * k
    lcm = d1 // g * d2
    # The smallest common value >= lo.
    x = x0 + ((lo - x0 + lcm - 1) // lcm) * lcm if x0 < lo else x0 - ((x0 - lo) // lcm) * lcm
    return x <= hi


def _common_count(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    """How many values two progressions `(start, count, step)` share."""
    (s1, c1, d1), (s2, c2, d2) = a, b
    if c1 <= 0 or c2 <= 0:
        return 0
    if c1 == 1:
        d1 = 1
    if c2 == 1:
        d2 = 1
    lo = max(s1, s2)
    hi = min(s1 + (c1 - 1) * d1, s2 + (c2 - 1) * d2)
    if lo > hi:
        return 0
    if d1 == 1 and d2 == 1:
        return hi - lo + 1
    if d1 == 1 or d2 == 1:              # a range and a progression: its values in [lo, hi]
        s, d = (s2, d2) if d1 == 1 else (s1, d1)
        first = s + -(-(lo - s) // d) * d
        return (hi - first) // d + 1 if first <= hi else 0
    g = gcd(d1, d2)
    if (s2 - s1) % g:
        return 0
    m = d2 // g
    k = ((s2 - s1) // g) * pow(d1 // g, -1, m) % m if m > 1 else 0
    x0 = s1 + d1 * k
    lcm = d1 // g * d2
    x = x0 + ((lo - x0 + lcm - 1) // lcm) * lcm if x0 < lo else x0 - ((x0 - lo) // lcm) * lcm
    return (hi - x) // lcm + 1 if x <= hi else 0


def intersection_size(a: Region, b: Region) -> int:
    """How many elements two regions of one base tensor share: exact with boxes or when both are
    small, else the smaller size (an estimate; the placer uses it to weigh data movement)."""
    if a.size == 0 or b.size == 0:
        return 0
    if a.box is not None and b.box is not None and len(a.box) == len(b.box):
        n = 1
        for pa, pb in zip(a.box, b.box):
            n *= _common_count(pa, pb)
            if not n:
                return 0
        return n
    if a.size <= EXACT_ENUMERATION_LIMIT and b.size <= EXACT_ENUMERATION_LIMIT:
        return int(np.intersect1d(elements(a), elements(b), assume_unique=True).size)
    return min(a.size, b.size)


def _progression_covers(outer: tuple[int, int, int], inner: tuple[int, int, int]) -> bool:
    """Whether every value of the `inner` progression is a value of `outer`."""
    (so, co, do), (si, ci, di) = outer, inner
    if ci <= 0:
        return True
    if co <= 0:
        return False
    last_o, last_i = so + (co - 1) * do, si + (ci - 1) * di
    if si < so or last_i > last_o:
        return False
    if co == 1:
        return True  # inner lies within [so, so]
    if (si - so) % do:
        return False
    return ci == 1 or di % do == 0


def overlap(a: Region, b: Region) -> bool:
    """Whether two regions of one base tensor may touch a common element.

    Exact when both have a box or both are small; otherwise conservative (True unless their flat
    bounding intervals are disjoint).
    """
    if a.size == 0 or b.size == 0:
        return False
    alo, ahi = bounds(a)
    blo, bhi = bounds(b)
    if ahi < blo or bhi < alo:
        return False
    if a.box is not None and b.box is not None and len(a.box) == len(b.box):
        return all(_progressions_intersect(pa, pb) for pa, pb in zip(a.box, b.box))
    if a.size <= EXACT_ENUMERATION_LIMIT and b.size <= EXACT_ENUMERATION_LIMIT:
        return bool(np.intersect1d(elements(a), elements(b), assume_unique=True).size)
    return True


def covers(outer: Region, inner: Region) -> bool:
    """Whether `outer` certainly touches every element `inner` touches (False when unsure)."""
    if inner.size == 0:
        return True
    if outer.box is not None and inner.box is not None and len(outer.box) == len(inner.box):
        return all(_progression_covers(po, pi) for po, pi in zip(outer.box, inner.box))
    olo, ohi = bounds(outer)
    ilo, ihi = bounds(inner)
    if ilo < olo or ihi > ohi:
        return False
    if _is_dense(outer):
        return True
    if outer.size <= EXACT_ENUMERATION_LIMIT and inner.size <= EXACT_ENUMERATION_LIMIT:
        return bool(np.isin(elements(inner), elements(outer), assume_unique=True).all())
    return False


def _is_dense(region: Region) -> bool:
    """Whether the region touches every element of its bounding interval (a contiguous block)."""
    expected = 1
    for n, s in sorted(((n, abs(s)) for n, s in zip(region.shape, region.strides) if n > 1),
                       key=lambda t: t[1]):
        if s != expected:
            return False
        expected *= n
    return True
