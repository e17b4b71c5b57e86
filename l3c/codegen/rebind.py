"""Arguments used in place: each kernel's view of an `l3c.shared` argument, in that argument's memory.

A lowered plan gives every tensor argument a staging block in the arena (`lower.py`), and kernels'
views of it are views of that block, laid out C-contiguously. An argument that lives in shared
memory the workers can map is used where it is instead: every view of its tensor is moved into
that memory, following the argument's own layout (`view_in`). The result, per worker slot, is a
list of patches `(step index, argument index, memory key, View in that memory)` that a worker
applies to its installed queue (`runtime.bindings`), plus the same translation for results that
are views of such an argument.

An argument whose layout a view cannot follow (a non-contiguous argument seen through a reshaped
view, or a view that moves with a loop variable) stays staged: copied in and out as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir import Access, Program, Region, TensorInfo
from ..passes.results import result_refs
from ..runtime.plan import Plan, View


@dataclass(frozen=True)
class Placement:
    """Where one array argument lies in shared memory: the memory's key, the argument's byte
    offset from the memory's start, its byte strides, and whether it is C-contiguous."""

    key: int
    offset: int
    strides: tuple[int, ...]
    contiguous: bool


@dataclass(frozen=True)
class Rebinding:
    """The plan's views moved into shared memory for one layout of the call's shared arguments."""

    tensors: frozenset[int]                                  # tensors used in place
    patches: tuple[tuple[tuple[int, int, int, View], ...], ...]   # per slot
    keys: frozenset[int]                                     # memories the patches point into


def view_in(info: TensorInfo, region: Region, where: Placement) -> View | None:
    """The view `region` of a tensor shaped like `info`, inside the argument at `where` (offset
    from the memory's start); None if the argument's layout cannot be followed."""
    item = info.itemsize
    if region.shifts:
        return None
    if where.contiguous:                    # the staging block's layout: only the base moves
        return View(where.offset + region.offset * item, tuple(region.shape),
                    tuple(s * item for s in region.strides), info.dtype)
    if region.size == 0:
        return View(where.offset, tuple(region.shape), tuple(0 for _ in region.shape), info.dtype)
    box = region.box
    if box is None:
        return None
    whole = Region.whole(tuple(info.shape)).strides
    index, rest = [], region.offset
    for c in whole:                         # the first element's index along each base axis
        index.append(rest // c)
        rest %= c
    offset = where.offset + sum(i * s for i, s in zip(index, where.strides))
    strides, used = [], set()
    for n, s in zip(region.shape, region.strides):
        if n <= 1:
            strides.append(0)
            continue
        # the base axis this view axis walks: distinct axes never have the same element step
        # (an inner axis's whole extent is less than one step of any outer one)
        axis = next((d for d, (_, count, step) in enumerate(box)
                     if d not in used and count == n and step * whole[d] == abs(s)), None)
        if axis is None:
            return None
        used.add(axis)
        strides.append((1 if s > 0 else -1) * box[axis][2] * where.strides[axis])
    return View(offset, tuple(region.shape), tuple(strides), info.dtype)


def rebind(program: Program, plan: Plan, placed: dict[int, Placement]) -> Rebinding:
    """Patches moving every view of the tensors in `placed` into their memories. A tensor with a
    view that cannot be moved is left out (it stays staged)."""
    placed = dict(placed)
    while True:
        patches, failed = _patches(program, plan, placed)
        if failed is None:
            keys = frozenset(p.key for p in placed.values())
            return Rebinding(frozenset(placed), patches, keys)
        del placed[failed]


def _patches(program: Program, plan: Plan, placed: dict[int, Placement]
             ) -> tuple[tuple, int | None]:
    per_slot = []
    for queue in plan.queues:
        mine = []
        for k, step in enumerate(queue):
            task = program.task(step.task)
            accesses = [(j, a) for j, a in enumerate(task.args)
                        if isinstance(a, Access) and a.tensor in placed]
            if accesses and len(task.args) != len(step.args):
                return (), accesses[0][1].tensor
            for j, a in accesses:
                where = placed[a.tensor]
                view = view_in(program.tensors[a.tensor], a.region, where)
                if view is None:
                    return (), a.tensor
                mine.append((k, j, where.key, view))
        per_slot.append(tuple(mine))
    for ref in result_refs(program.results):
        if ref.tensor in placed and (ref.dtype != program.tensors[ref.tensor].dtype
                                     or view_in(program.tensors[ref.tensor], ref.region,
                                                placed[ref.tensor]) is None):
            return (), ref.tensor
    return tuple(per_slot), None


def result_view(program: Program, ref: Any, where: Placement) -> View:
    """The view a result that is a view of an argument used in place has in its memory (`rebind`
    made sure there is one)."""
    view = view_in(program.tensors[ref.tensor], ref.region, where)
    assert view is not None
    return view

