"""shifts: may two views that move with loop variables touch a common element?

Inside `l3c.range`/`while_loop` bodies a `Region` may carry `shifts`: per loop variable, how far
its offset and box starts move per unit of the variable (`ir.Shift`); the region itself is the view
at variable 0. Whether two such views meet depends on how their loop variables relate, which the
caller states per loop id:

* tied: both accesses see the same value (loops enclosing both, at the same iteration); a tied
  loop whose shifts agree moves both views alike and drops out; one whose shifts differ is
  enumerated when its values are static and few (`LoopFacts.values`), else the axes it moves are
  swept (conservative);
* distance: the second access is `d >= 1` iterations of one loop after the first (a carried
  dependency): with equal shifts and a static step the second view is displaced by
  `d * step * shift`, and per axis the distances where the progressions can meet form an interval;
  their intersection is checked value by value when it holds at most `MAX_DISTANCES` values,
  otherwise answered "may meet";
* free: any other loop (inner loops of one side, sibling loops): each side independently takes
  any value. With static values (`range` with int bounds) the axis's progression is widened to
  every start those values give (`x[4 * i + j]` for j in range(4) covers x[4 * i : 4 * i + 4]);
  otherwise it is swept over the whole base axis. A view is inside its tensor at run time (an
  index outside is an error of the run), so the whole axis bounds every value.

Views without a box are compared by their flat offsets the same way (sweeping means "may meet").
Everything stays exact for loop-invariant views and for views with equal shifts, the common case
(`x[i]` written and read in one iteration, `x[i]` and `x[i - 1]` across iterations).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import gcd

from ..ir import Program, Region, Shift
from . import regions

MAX_DISTANCES = 64        # iteration distances checked one by one (more: conservative)
MAX_ENUMERATION = 256     # combinations of tied loop values tried one by one (more: sweep)


@dataclass(frozen=True)
class LoopFacts:
    """What the passes know statically about one loop's variable."""

    kind: str                      # "range" | "while" | "cond"
    step: int | None               # change of the variable per iteration (None: a tensor step)
    values: range | None           # every value the variable takes, when static
    max_distance: int | None       # largest distance between two iterations, when known


def loop_facts(program: Program) -> dict[int, LoopFacts]:
    """Static facts of every loop of the program (conds have no variable and never repeat)."""
    facts: dict[int, LoopFacts] = {}
    for lid, loop in program.loops.items():
        if loop.kind == "range":
            step = loop.step if isinstance(loop.step, int) else None
            values = None
            if step and isinstance(loop.start, int) and isinstance(loop.stop, int):
                values = range(loop.start, loop.stop, step)
            facts[lid] = LoopFacts("range", step, values,
                                   None if values is None else len(values) - 1)
        elif loop.kind == "while":
            cap = loop.max_iterations
            facts[lid] = LoopFacts("while", 1, None if cap is None else range(cap),
                                   None if cap is None else cap - 1)
        else:
            facts[lid] = LoopFacts("cond", None, range(0), 0)
    return facts


def _shift_map(region: Region) -> dict[int, Shift]:
    return {s.loop: s for s in region.shifts}


def _full_axis(n: int) -> tuple[int, int, int]:
    return (0, n, 1)


def hull(region: Region, shape: tuple[int, ...]) -> Region:
    """A region (without shifts) holding every element the view touches for any loop values:
    each axis a shift moves spans its whole base axis (the whole tensor without a box)."""
    if not region.shifts:
        return region
    if region.box is None or len(region.box) != len(shape):
        return Region.whole(shape)
    moved = {x for s in region.shifts for x, c in enumerate(s.box) if c}
    box = tuple(_full_axis(n) if x in moved else p for x, (p, n) in enumerate(zip(region.box, shape)))
    return box_region(box, shape)


def box_region(box: tuple[tuple[int, int, int], ...], shape: tuple[int, ...]) -> Region:
    """The region of a C-contiguous base of `shape` touching exactly the box's elements."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    strides.reverse()
    offset = sum(start * st for (start, _, _), st in zip(box, strides))
    return Region(offset, tuple(c for _, c, _ in box), tuple(step * st for (_, _, step), st
                                                            in zip(box, strides)), box)


def may_meet(a: Region, b: Region, shape: tuple[int, ...], tied: frozenset[int] | set[int],
             facts: dict[int, LoopFacts], distance: int | None = None) -> bool:
    """Whether view `a` and view `b` of one base tensor of `shape` may share an element when the
    loops in `tied` have equal values for both, and (with `distance`, a loop id) `b` sees that
    loop `d >= 1` iterations after `a`; every other loop is free. Never False when they can meet."""
    if a.size == 0 or b.size == 0:
        return False
    dist_facts = None
    if distance is not None:
        dist_facts = facts.get(distance)
        if dist_facts is None or dist_facts.kind == "cond" or (
                dist_facts.max_distance is not None and dist_facts.max_distance < 1):
            return False                                  # no second iteration to meet in
    if not a.shifts and not b.shifts:
        return regions.overlap(a, b)
    if not regions.overlap(hull(a, shape), hull(b, shape)):
        return False                      # apart whatever the loop values
    if a.box is not None and b.box is not None and len(a.box) == len(b.box) == len(shape):
        return _boxes_meet(a, b, shape, tied, facts, distance, dist_facts)
    return _flat_meet(a, b, tied, facts, distance, dist_facts)


def _enumerable(lid: int, facts: dict[int, LoopFacts]) -> range | None:
    f = facts.get(lid)
    return f.values if f is not None and f.values is not None and len(f.values) else None


def _choices(lid: int, tied, distance, facts) -> list[tuple[int, int]] | None:
    """The (value for a, value for b) pairs a loop whose shifts differ can take, when few enough
    to try one by one: equal values for a tied loop, b's later than a's for the distance loop."""
    values = _enumerable(lid, facts)
    if values is None:
        return None
    if lid in tied:
        return [(v, v) for v in values]
    if lid == distance and len(values) * (len(values) - 1) // 2 <= MAX_ENUMERATION:
        return [(values[p], values[q]) for q in range(len(values)) for p in range(q)]
    return None


def _boxes_meet(a: Region, b: Region, shape, tied, facts, distance, dist_facts) -> bool:
    ndim = len(shape)
    sa, sb = _shift_map(a), _shift_map(b)
    zero = (0,) * ndim
    swept_a, swept_b = [False] * ndim, [False] * ndim
    widen_a: list[list[tuple[int, range]]] = [[] for _ in range(ndim)]
    widen_b: list[list[tuple[int, range]]] = [[] for _ in range(ndim)]
    enumerated: list[tuple[int, tuple[int, ...], tuple[int, ...], list]] = []
    move = [0] * ndim                      # displacement of b per unit of iteration distance
    for lid in sorted(set(sa) | set(sb)):
        va = sa[lid].box if lid in sa else zero
        vb = sb[lid].box if lid in sb else zero
        if lid in tied and va == vb:
            continue
        if lid == distance and va == vb and dist_facts.step is not None:
            for x in range(ndim):
                move[x] += va[x] * dist_facts.step
            continue
        if lid in tied or lid == distance:
            choices = _choices(lid, tied, distance, facts)
            if choices is not None:
                enumerated.append((lid, va, vb, choices))
                continue
            for x in range(ndim):
                if va[x] != vb[x] or lid == distance and va[x]:
                    swept_a[x] = swept_b[x] = True
        else:
            values = _enumerable(lid, facts)
            for x in range(ndim):
                for v, swept, widen in ((va, swept_a, widen_a), (vb, swept_b, widen_b)):
                    if v[x] and values is None:
                        swept[x] = True
                    elif v[x]:
                        widen[x].append((v[x], values))
    combos = 1
    for *_, values in enumerated:
        combos *= len(values)
    if combos > MAX_ENUMERATION:           # too many to try: sweep what they move
        for _, va, vb, _ in enumerated:
            for x in range(ndim):
                if va[x] != vb[x]:
                    swept_a[x] = swept_b[x] = True
        enumerated = []
    max_d = dist_facts.max_distance if dist_facts is not None else None
    choices = [values for *_, values in enumerated]
    for assignment in itertools.product(*choices):
        box_a, box_b = list(a.box), list(b.box)
        for (_, va, vb, _), (value_a, value_b) in zip(enumerated, assignment):
            for x in range(ndim):
                if va[x]:
                    s, c, st = box_a[x]
                    box_a[x] = (s + value_a * va[x], c, st)
                if vb[x]:
                    s, c, st = box_b[x]
                    box_b[x] = (s + value_b * vb[x], c, st)
        for x in range(ndim):
            if swept_a[x] or swept_b[x]:
                # The sweep is absolute while the boxes sit where tied loops at 0 put them (their
                # common move dropped out): the other side, in the tensor at run time, meets it.
                box_a[x] = box_b[x] = _full_axis(shape[x])
            else:
                box_a[x], box_b[x] = _widened(box_a[x], widen_a[x]), _widened(box_b[x], widen_b[x])
        if _meet_at_some_distance(box_a, box_b, [0 if swept_a[x] or swept_b[x] else move[x]
                                                 for x in range(ndim)], distance, max_d):
            return True
    return False


def _widened(p: tuple[int, int, int], moves: list[tuple[int, range]]) -> tuple[int, int, int]:
    """A progression holding every value of `p` moved by `coef * value` for each (coef, values)
    of `moves` (free loops with static values): from the lowest to the highest such value, in
    steps of the gcd of every step involved."""
    if not moves:
        return p
    start, count, step = p
    if count <= 0:
        return p
    low = high = 0
    g = step if count > 1 else 0
    for coef, values in moves:
        ends = (coef * values[0], coef * values[-1])
        low, high = low + min(ends), high + max(ends)
        if len(values) > 1:
            g = gcd(g, abs(coef * values.step))
    span = (count - 1) * (step if count > 1 else 1) + high - low
    if not g:
        return (start + low, 1, 1)
    return (start + low, span // g + 1, g)


def _last(p: tuple[int, int, int]) -> int:
    start, count, step = p
    return start + (count - 1) * (step if count > 1 else 1)


def _meet_at_some_distance(box_a, box_b, move, distance, max_d) -> bool:
    """Do the boxes meet with b displaced by `d * move` for some distance `d` (1..max_d when
    `distance` is a loop id, else only d = 0)?"""
    intersect = regions._progressions_intersect
    if distance is None or not any(move):
        return all(intersect(pa, pb) for pa, pb in zip(box_a, box_b))
    lo_d, hi_d = 1, max_d
    for pa, pb, m in zip(box_a, box_b, move):
        if pa[1] <= 0 or pb[1] <= 0:
            return False
        if not m:
            if not intersect(pa, pb):
                return False
            continue
        # b's hull [sb + d*m, lb + d*m] must meet a's [sa, la]: d*m in [sa - lb, la - sb]
        low, high = pa[0] - _last(pb), _last(pa) - pb[0]
        if m > 0:
            first, last = -(-low // m), high // m
        else:
            first, last = -(-high // m), low // m
        lo_d = max(lo_d, first)
        hi_d = last if hi_d is None else min(hi_d, last)
        if hi_d < lo_d:
            return False
    if hi_d - lo_d + 1 > MAX_DISTANCES:
        return True
    for d in range(lo_d, hi_d + 1):
        if all(intersect(pa, (pb[0] + d * m, pb[1], pb[2]))
               for pa, pb, m in zip(box_a, box_b, move)):
            return True
    return False


def _flat_meet(a: Region, b: Region, tied, facts, distance, dist_facts) -> bool:
    """Views without a box: offsets move; anything but equal tied/distance shifts may meet."""
    sa, sb = _shift_map(a), _shift_map(b)
    enumerated: list[tuple[int, int, list]] = []
    move = 0
    for lid in sorted(set(sa) | set(sb)):
        oa = sa[lid].offset if lid in sa else 0
        ob = sb[lid].offset if lid in sb else 0
        if lid in tied and oa == ob:
            continue
        if lid == distance and oa == ob and dist_facts.step is not None:
            move += oa * dist_facts.step
            continue
        choices = _choices(lid, tied, distance, facts) if lid in tied or lid == distance else None
        if choices is None:
            return True
        enumerated.append((oa, ob, choices))
    combos = 1
    for *_, values in enumerated:
        combos *= len(values)
    if combos > MAX_ENUMERATION:
        return True
    plain_a = Region(a.offset, a.shape, a.strides, None)
    plain_b = Region(b.offset, b.shape, b.strides, None)
    max_d = dist_facts.max_distance if dist_facts is not None else None
    for assignment in itertools.product(*(values for *_, values in enumerated)):
        da = sum(v * oa for (oa, _, _), (v, _) in zip(enumerated, assignment))
        db = sum(v * ob for (_, ob, _), (_, v) in zip(enumerated, assignment))
        ra = _moved(plain_a, da)
        rb = _moved(plain_b, db)
        if distance is None or not move:
            if regions.overlap(ra, rb):
                return True
            continue
        alo, ahi = regions.bounds(ra)
        blo, bhi = regions.bounds(rb)
        low, high = alo - bhi, ahi - blo
        first, last = ((-(-low // move), high // move) if move > 0
                       else (-(-high // move), low // move))
        first = max(first, 1)
        if max_d is not None:
            last = min(last, max_d)
        if last < first:
            continue
        if last - first + 1 > MAX_DISTANCES:
            return True
        if any(regions.overlap(ra, _moved(rb, d * move)) for d in range(first, last + 1)):
            return True
    return False


def _moved(region: Region, delta: int) -> Region:
    if not delta:
        return region
    return Region(region.offset + delta, region.shape, region.strides, None)


def covers_always(outer: Region, inner: Region, tied: frozenset[int] | set[int]) -> bool:
    """Whether `outer` certainly touches every element of `inner` when the loops in `tied` have
    equal values for both (every other loop free): only views that move alike can be sure."""
    so, si = _shift_map(outer), _shift_map(inner)
    if set(so) - set(tied) or set(si) - set(tied):
        return False
    if any(so.get(lid) != si.get(lid) for lid in set(so) | set(si)):
        return False
    return regions.covers(outer, inner)
