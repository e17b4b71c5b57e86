"""Lower a traced Program to the eager runtime's calls: the reference semantics of `Jitted.eager`
(run by `l3c.execute.eager`).

Every tensor (inputs and intermediates) gets its own place in the arena (no reuse: this path must not
depend on the memory plan it is the reference for), inputs are staged, each task becomes a plain-data
`runtime.eager.Call`, and the dynamic runtime runs them. Afterwards input arrays that kernels wrote are
updated and results are copied out into fresh arrays.

A program with loops or conds becomes a tree instead (`to_loop_items`): a `LoopNode` per loop whose
body holds its tasks' `LoopCall`s and its nested loops, which `runtime.eager_loops` iterates.

"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Access, Affine, Loop, Program, Region, Task
from ..passes.arena_layout import ALIGNMENT, aligned
from ..passes.regions import bounds, byte_span
from ..passes.results import build_results
from ..runtime.eager import Call
from ..runtime.eager_loops import Item, LoopCall, LoopNode, Moving
from ..runtime.plan import View


def layout_tensors(program: Program) -> tuple[dict[int, int], int]:
    """Arena offset of every tensor (in id order, 64-byte aligned, no reuse) and the bytes spanned."""
    offsets, end = {}, 0
    for t in program.tensors:
        end = aligned(end)
        offsets[t.id] = end
        end += t.nbytes
    return offsets, max(aligned(end), ALIGNMENT)


def region_view(base: int, region: Region, dtype: str) -> View:
    """The view of `region` (at every loop variable 0, if it moves) of a tensor at byte `base`."""
    size = np.dtype(dtype).itemsize
    return View(base + region.offset * size, tuple(region.shape),
                tuple(s * size for s in region.strides), dtype)


def _call(program: Program, task: Task, offsets: dict[int, int]) -> Call:
    args, accesses = [], []
    for arg in task.args:
        if isinstance(arg, Access):
            info = program.tensors[arg.tensor]
            args.append(region_view(offsets[arg.tensor], arg.region, info.dtype))
            lo, hi = byte_span(offsets[arg.tensor], info.itemsize, arg.region)
            accesses.append((arg.tensor, lo, hi, arg.writes))
        else:
            args.append(arg.value.const if isinstance(arg.value, Affine) else arg.value)
    size = len(program.groups[task.group]) if task.group is not None else 1
    return Call(task.id, task.kernel, tuple(args), task.worker, tuple(accesses), task.pin,
                task.group, task.group_rank, size, task.loc)


def to_calls(program: Program, offsets: dict[int, int]) -> list[Call]:
    """The calls of a program without loops, in program order."""
    return [_call(program, task, offsets) for task in program.tasks]


# ---- programs with loops ------------------------------------------------------------------------
def _moving(program: Program, tensor: int, region: Region, offsets: dict[int, int]) -> Moving:
    info = program.tensors[tensor]
    size = info.itemsize
    return Moving(region_view(offsets[tensor], region, info.dtype),
                  tuple((s.loop, s.offset * size) for s in region.shifts), info.name, info.shape,
                  bounds(region), tuple((s.loop, s.offset) for s in region.shifts), region.box,
                  tuple((s.loop, s.box) for s in region.shifts))


def _loop_call(program: Program, task: Task, offsets: dict[int, int]) -> LoopCall:
    views, scalars, k = [], [], 0
    for i, arg in enumerate(task.args):
        if isinstance(arg, Access):
            if arg.region.shifts:
                views.append((i, k, _moving(program, arg.tensor, arg.region, offsets)))
            k += 1
        elif isinstance(arg.value, Affine):
            scalars.append((i, arg.value.const, arg.value.terms))
    return LoopCall(_call(program, task, offsets), tuple(views), tuple(scalars), task.group)


def _bound(program: Program, value: "int | Access | None", offsets: dict[int, int]) -> Any:
    if isinstance(value, Access):
        return _moving(program, value.tensor, value.region, offsets)
    return value


def to_loop_items(program: Program, offsets: dict[int, int]) -> tuple[Item, ...]:
    """The program as a tree of `LoopCall`s and `LoopNode`s (`runtime.eager_loops`), in program
    order: each level holds the tasks directly in it and its child loops, a loop before the task at
    its first position (an empty loop was opened before that task was recorded)."""
    children: dict[int | None, list[Loop]] = {}
    for loop in sorted(program.loops.values(), key=lambda lp: lp.id):
        children.setdefault(loop.parent, []).append(loop)
    direct: dict[int | None, list[Task]] = {}
    for task in program.tasks:
        direct.setdefault(task.loops[-1] if task.loops else None, []).append(task)

    def level(parent: int | None) -> tuple[Item, ...]:
        entries: list[tuple[tuple[int, int, int], Item]] = [
            ((t.id, 1, t.id), _loop_call(program, t, offsets)) for t in direct.get(parent, ())]
        for loop in children.get(parent, ()):
            node = LoopNode(loop.id, loop.kind, loop.loc, _bound(program, loop.start, offsets),
                            _bound(program, loop.stop, offsets), _bound(program, loop.step, offsets),
                            _bound(program, loop.flag, offsets), loop.max_iterations, loop.invert,
                            level(loop.id))
            entries.append(((loop.first_task, 0, loop.id), node))
        return tuple(item for _, item in sorted(entries, key=lambda e: e[0]))

    return level(None)


def results(tree: Any, read) -> Any:
    """The results as Python values, each `ResultRef` read by `read`."""
    return build_results(tree, read)
