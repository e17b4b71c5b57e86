"""Views indexed by loop variables: `x[i]`, `x[:, i + 1]`, `x[4 * i : 4 * i + 4]` inside a loop body.

Such a view moves with the loop variables. Its `Region` is the view at every variable's value 0
(possibly outside the base tensor), and its `shifts` (`l3c.ir.Shift`, one per loop variable, by
loop id) say how far `offset` and each base axis's box start move per unit of the variable. Shape
and strides never depend on a variable, so a slice's length must not (`x[i:i + 4]` is fine,
`x[:i]` is a TraceError). Unlike constant indices, an affine one is never wrapped (a negative value
does not count from the end) nor clipped: every value it takes must lie inside the axis. That is
checked here when every loop it uses is an `l3c.range` with static bounds, else when the schedule
runs.
"""
from __future__ import annotations

from typing import Any, TYPE_CHECKING

from ..ir import Affine, Shift
from .loops import LoopIndex, affine_of, value_range
from .source import trace_error

if TYPE_CHECKING:
    from .proxy import Tensor


def has_loop_index(key: tuple) -> bool:
    """Whether a normalised index key uses a loop variable (as an index or a slice part)."""
    for k in key:
        if type(k) is LoopIndex:
            return True
        if type(k) is slice and LoopIndex in (type(k.start), type(k.stop), type(k.step)):
            return True
    return False


def _slice_parts(view: "Tensor", k: slice, n: int, axis: int) -> tuple[Affine, int, int]:
    """(first index as an Affine, element count, step) of a slice with loop-variable bounds."""
    if type(k.step) is LoopIndex:
        raise trace_error(f"slice step {k.step} is a loop variable",
                          "slice steps are ints; move the loop variable into the start and stop")
    step = 1 if k.step is None else k.step
    if not isinstance(step, int) or isinstance(step, bool) or step == 0:
        raise trace_error(f"slice step {k.step!r} into axis {axis} of a {view._desc()}",
                          "use a nonzero int step")
    start, stop = affine_of(k.start), affine_of(k.stop)
    if start is None or stop is None or start.terms != stop.terms:
        raise trace_error(f"the slice {_slice_text(k)} into axis {axis} of a {view._desc()} has a "
                          "length that depends on a loop variable",
                          "give start and stop the same loop-variable part, so the length is "
                          "constant (x[4 * i : 4 * i + 4]); shapes cannot change between iterations")
    return start, len(range(0, stop.const - start.const, step)), step


def _slice_text(k: slice) -> str:
    parts = ["" if p is None else str(p) for p in (k.start, k.stop)]
    return ":".join(parts) + (f":{k.step}" if k.step is not None else "")


def _check_inside(view: "Tensor", first: Affine, count: int, step: int, n: int, axis: int,
                  what: str) -> None:
    """TraceError if, for a static-range loop, some iteration's index falls outside the axis."""
    if count == 0:
        return
    span = value_range(view._tracer, first)
    if span is None:
        return                           # decided when the schedule runs
    last = (count - 1) * step
    low, high = span[0] + min(0, last), span[1] + max(0, last)
    if low < 0 or high >= n:
        raise trace_error(f"{what} reaches index {low if low < 0 else high}, outside axis {axis} "
                          f"of size {n} of a {view._desc()}, in some iteration",
                          f"keep every iteration's index in [0, {n}) (loop-variable indices do "
                          "not wrap around or clip)")


def affine_index(view: "Tensor", key: tuple) -> "Tensor":
    """The view for a normalised key (one int, LoopIndex, slice or None per axis) that uses loop
    variables; every `LoopIndex` must belong to an open loop."""
    offset, shape, strides, axes = view._offset, [], [], []
    lines = list(view._lines) if view._lines is not None else None
    nbase = len(view._base_shape)
    moves: dict[int, list[Any]] = {s.loop: [s.offset, list(s.box)] for s in view._shifts}
    axis = 0
    for k in key:
        if k is None:
            shape.append(1)
            strides.append(0)
            axes.append(-1)
            continue
        n, stride, base_axis = view.shape[axis], view._strides[axis], view._axes_at(axis)
        if type(k) is slice and not has_loop_index((k,)):
            start, stop, step = k.indices(n)
            first, count = Affine(start), len(range(start, stop, step))
        elif type(k) is slice:
            for part in (k.start, k.stop):
                if type(part) is LoopIndex:
                    part.check_live()
            first, count, step = _slice_parts(view, k, n, axis)
            _check_inside(view, first, count, step, n, axis, f"the slice {_slice_text(k)}")
        elif type(k) is LoopIndex:
            k.check_live()
            first, count, step = k.affine, 1, 1
            _check_inside(view, first, 1, 1, n, axis, f"the index {k}")
        else:
            i = int(k)
            if not -n <= i < n:
                raise trace_error(
                    f"index {i} is out of bounds for axis {axis} of size {n} of a {view._desc()}",
                    f"use an index in [{-n}, {n})")
            first, count, step = Affine(i % n), 1, 1
        known = lines is not None and base_axis is not None and base_axis >= 0
        if count:
            offset += first.const * stride
            for loop, c in first.terms:
                move = moves.setdefault(loop, [0, [0] * nbase])
                move[0] += c * stride
                if known:
                    move[1][base_axis] += c * lines[base_axis][2]
        if type(k) is slice:
            shape.append(count)
            strides.append(stride * step)
            axes.append(base_axis)
        if known:
            s0, _, st0 = lines[base_axis]
            lines[base_axis] = (s0 + first.const * st0, count,
                                st0 * step if type(k) is slice else st0)
        axis += 1
    shifts = tuple(Shift(loop, m[0], tuple(m[1])) for loop, m in sorted(moves.items())
                   if m[0] or any(m[1]))
    keep = lines is not None and all(a is not None for a in axes)
    return view._view(offset, tuple(shape), tuple(strides), tuple(axes) if keep else None,
                      tuple(lines) if keep else None, shifts=shifts)


def check_group_members(program: Any, members: list[int]) -> None:
    """Members of a group run at the same time in every iteration. Two members that touch one
    tensor (one writing it) through views that move differently with the loop variables may meet
    in some iteration even when their views at 0 are apart (`x[i]` and `x[2 * i - 1]` at i = 1),
    which the group check of views at 0 cannot see: that is a TraceError at the group's line."""
    accesses = [(program.task(m), a) for m in members for a in program.task(m).accesses]
    for i, (t, a) in enumerate(accesses):
        for u, b in accesses[:i]:
            if (u.id != t.id and a.tensor == b.tensor and (a.writes or b.writes)
                    and (a.region.shifts or b.region.shifts)
                    and a.region.shifts != b.region.shifts):
                name = program.tensors[a.tensor].name
                raise trace_error(
                    f"l3c.group() of {t.short_kernel}: members {u.group_rank} and {t.group_rank} "
                    f"access {name} through views that move differently with the loop variables "
                    "(one writes it), so they may meet in some iteration while running at the "
                    "same time", "move every member's view by the same loop-variable expression "
                    "(x[2 * i + r] for member r), or make separate calls")
