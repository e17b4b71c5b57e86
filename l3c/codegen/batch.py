"""K runs of one plan as one plan: the queues repeated K times, each repetition in its own part
of the arena, so consecutive runs overlap on the workers.

Runs in flight of one schedule are independent unless they share `l3c.shared` arrays: each has its
own inputs, intermediates and results. So K of them are one plan whose instance i is the plan with
every view moved by `i * stride` bytes (its own copy of the arena part: inputs, intermediates,
results) and every wait `(slot t, count c)` raised by `i * len(queue t)`: the completion counters
count across instances, and instance i's steps on slot t follow instance i-1's there. Nothing else
orders instances, so a worker goes on with instance i+1 while another still runs instance i: a
two-stage pipeline over two chips keeps both busy.

Shared arrays are what order instances: consecutive runs that share one are iterations of an
implicit loop, and its carried dependencies are computed like a loop's, from the regions. Each
instance's views of shared arrays are moved into their memory (`rebind`, one `Rebinding` per
instance, its layout of its own arguments); a step of instance i whose shared view overlaps a view
of an earlier instance j on another slot, one of the two writing, waits for the last such step of
j on that slot (steps on one slot run in queue order already). Views that do not overlap add no
wait, so runs touching disjoint parts of a shared array, or only reading it, still overlap.

A batch that failed part way goes on with what is left of it (`select`): the steps not yet run,
minus those of the failed runs, as a plan of their own whose waits count only the steps it keeps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..ir import Access, Program
from ..passes.arena_layout import aligned
from ..passes.results import map_results
from ..runtime.plan import Plan, Step, View
from .lower import LoweredProgram
from .rebind import Rebinding

EXACT_ELEMENTS = 1 << 16         # views this small are compared element by element; larger ones
                                 # whose byte hulls overlap are taken to overlap


@dataclass(frozen=True)
class Batch:
    """The repeated plan, per instance its input staging views and result views, and the
    instances' views of shared arrays (None when no instance has any)."""

    plan: Plan
    stride: int
    input_views: tuple[tuple[View | None, ...], ...]
    results: tuple[Any, ...]
    rebinding: Rebinding | None


def moved(view: View, by: int) -> View:
    return View(view.offset + by, view.shape, view.strides, view.dtype)


def batchable(plan: Plan) -> bool:
    """Plans whose instances may run side by side: no loops (their waits are relative to anchors),
    no group steps (their members meet each other), nothing another host waits on."""
    return not plan.loops and all(step.group_size == 1 and not step.ring
                                  for queue in plan.queues for step in queue)


def repeat(program: Program, lowered: LoweredProgram, rebindings: Sequence[Rebinding | None]
           ) -> Batch:
    """`lowered`'s plan repeated once per entry of `rebindings` (that instance's views of shared
    arrays, or None), ordered on shared arrays (see the module docstring)."""
    plan = lowered.plan
    k = len(rebindings)
    stride = aligned(max(plan.arena_bytes, 1))
    lengths = [len(q) for q in plan.queues]
    order = _order(program, plan, rebindings)
    waited = {(t, c) for waits in order.values() for t, c in waits}
    queues = []
    for s, queue in enumerate(plan.queues):
        steps = []
        for i in range(k):
            by = i * stride
            for p, step in enumerate(queue):
                args = tuple(moved(a, by) if isinstance(a, View) else a for a in step.args)
                waits = tuple((t, c + i * lengths[t]) for t, c in step.waits)
                waits += order.get((i, s, p), ())
                count = i * lengths[s] + p + 1
                steps.append(Step(task=step.task, kernel=step.kernel, args=args, waits=waits,
                                  group_rank=step.group_rank, group_size=step.group_size,
                                  signal=step.signal or (s, count) in waited, ring=step.ring,
                                  loc=step.loc))
        queues.append(tuple(steps))
    repeated = Plan(chips=plan.chips, sub_workers=plan.sub_workers, queues=tuple(queues),
                    arena_bytes=k * stride)
    inputs = tuple(tuple(None if v is None else moved(v, i * stride) for v in lowered.input_views)
                   for i in range(k))
    results = tuple(map_results(lowered.results, lambda v, by=i * stride: moved(v, by))
                    for i in range(k))
    return Batch(repeated, stride, inputs, results, _combined(rebindings, lengths))


def _combined(rebindings: Sequence[Rebinding | None], lengths: list[int]) -> Rebinding | None:
    """The instances' patches in the repeated plan's step numbering."""
    if all(r is None for r in rebindings):
        return None
    per_slot: list[list] = [[] for _ in lengths]
    tensors: set[int] = set()
    keys: set[int] = set()
    for i, r in enumerate(rebindings):
        if r is None:
            continue
        tensors |= r.tensors
        keys |= r.keys
        for s, patches in enumerate(r.patches):
            per_slot[s].extend((i * lengths[s] + p, j, key, view) for p, j, key, view in patches)
    return Rebinding(frozenset(tensors), tuple(tuple(p) for p in per_slot), frozenset(keys))


# ---- order on shared arrays ---------------------------------------------------------------------
class _Use:
    """One step's view of a shared array: which memory, its byte hull, whether it writes."""

    __slots__ = ("key", "view", "lo", "hi", "writes", "_starts")

    def __init__(self, key: int, view: View, writes: bool) -> None:
        self.key, self.view, self.writes = key, view, writes
        lo = hi = view.offset
        for n, s in zip(view.shape, view.strides):
            if n == 0:
                lo, hi = 0, -1            # no element: overlaps nothing
                break
            lo += min(0, (n - 1) * s)
            hi += max(0, (n - 1) * s)
        self.lo, self.hi = lo, hi + np.dtype(view.dtype).itemsize
        self._starts: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.view.shape, dtype=np.int64))

    def starts(self) -> np.ndarray:
        """The sorted byte offsets of its elements."""
        if self._starts is None:
            starts = np.array([self.view.offset], dtype=np.int64)
            for n, s in zip(self.view.shape, self.view.strides):
                starts = (starts[:, None] + np.arange(n, dtype=np.int64) * s).ravel()
            self._starts = np.sort(starts)
        return self._starts

    def conflicts(self, other: "_Use") -> bool:
        if self.key != other.key or not (self.writes or other.writes):
            return False
        if self.hi <= other.lo or other.hi <= self.lo:
            return False
        if self.view == other.view or max(self.size, other.size) > EXACT_ELEMENTS:
            return True
        a, b = self.starts(), other.starts()
        a_item = np.dtype(self.view.dtype).itemsize
        b_item = np.dtype(other.view.dtype).itemsize
        # for each element of b, the last element of a starting before b's element ends
        below = np.searchsorted(a, b + b_item) - 1
        ok = below >= 0
        return bool(np.any(a[below[ok]] + a_item > b[ok]))


def _uses(program: Program, plan: Plan, rebinding: Rebinding | None) -> list[dict[int, list]]:
    """Per slot: step index -> its `_Use`s of shared arrays."""
    found: list[dict[int, list]] = [{} for _ in plan.queues]
    if rebinding is None:
        return found
    for s, patches in enumerate(rebinding.patches):
        for p, j, key, view in patches:
            arg = program.task(plan.queues[s][p].task).args[j]
            writes = isinstance(arg, Access) and arg.writes
            found[s].setdefault(p, []).append(_Use(key, view, writes))
    return found


def _order(program: Program, plan: Plan, rebindings: Sequence[Rebinding | None]
           ) -> dict[tuple[int, int, int], tuple[tuple[int, int], ...]]:
    """The waits ordering instances on shared arrays: (instance, slot, step) -> extra waits."""
    lengths = [len(q) for q in plan.queues]
    uses = [_uses(program, plan, r) for r in rebindings]
    order = {}
    for i in range(1, len(rebindings)):
        for s, steps in enumerate(uses[i]):
            for p, mine in steps.items():
                latest: dict[int, int] = {}
                for j in range(i - 1, -1, -1):
                    for t, theirs in enumerate(uses[j]):
                        if t == s:            # one slot runs its steps in queue order
                            continue
                        for q in sorted(theirs, reverse=True):
                            count = j * lengths[t] + q + 1
                            if count <= latest.get(t, 0):
                                break
                            if any(a.conflicts(b) for a in theirs[q] for b in mine):
                                latest[t] = count
                                break
                if latest:
                    order[(i, s, p)] = tuple(sorted(latest.items()))
    return order


# ---- what is left of a failed batch -------------------------------------------------------------
def select(plan: Plan, keep: Sequence[Sequence[int]], rebinding: Rebinding | None
           ) -> tuple[Plan, Rebinding | None]:
    """The steps `keep[slot]` (increasing indices) of `plan` as a plan of their own: a wait for
    `count` steps of slot t becomes a wait for the kept steps among t's first `count`; the steps
    left out either ran already or never will. And `rebinding`'s patches of the kept steps."""
    position = [np.searchsorted(np.asarray(k, dtype=np.int64), np.arange(len(q) + 1))
                for k, q in zip(keep, plan.queues)]
    queues = []
    for s, kept in enumerate(keep):
        steps = []
        for p in kept:
            step = plan.queues[s][p]
            waits = tuple((t, int(position[t][c])) for t, c in step.waits
                          if position[t][c] > 0)
            steps.append(Step(task=step.task, kernel=step.kernel, args=step.args, waits=waits,
                              group_rank=step.group_rank, group_size=step.group_size,
                              signal=step.signal, ring=step.ring, loc=step.loc))
        queues.append(tuple(steps))
    rest = Plan(chips=plan.chips, sub_workers=plan.sub_workers, queues=tuple(queues),
                arena_bytes=plan.arena_bytes)
    if rebinding is None:
        return rest, None
    index = [{p: n for n, p in enumerate(kept)} for kept in keep]
    patches = tuple(tuple((index[s][p], j, key, view) for p, j, key, view in slot_patches
                          if p in index[s])
                    for s, slot_patches in enumerate(rebinding.patches))
    return rest, Rebinding(rebinding.tensors, patches, rebinding.keys)
