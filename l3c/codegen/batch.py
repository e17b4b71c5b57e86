"""K runs of one plan as one plan: the queues repeated K times, each repetition in its own part
of the arena, so consecutive runs overlap on the workers.

Runs in flight of one schedule are independent unless they share `l3c.shared` arrays: each has its
own inputs, intermediates and results. So K of them are one plan whose instance i is the plan with
every view moved by `i * stride` bytes (its own copy of the arena part: inputs, intermediates,
results) and every wait `(slot t, count c)` raised by `i * len(queue t)`: the completion counters
count across instances, and instance i's steps on slot t follow instance i-1's there. Nothing else
orders instances, so a worker goes on with instance i+1 while another still runs instance i: a
two-stage pipeline over two chips keeps both busy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir import map_results
from ..passes.arena_layout import aligned
from ..runtime.plan import Plan, Step, View
from .lower import LoweredProgram


@dataclass(frozen=True)
class Batch:
    """The repeated plan, and per instance its input staging views and result views."""

    plan: Plan
    stride: int
    input_views: tuple[tuple[View | None, ...], ...]
    results: tuple[Any, ...]


def moved(view: View, by: int) -> View:
    return View(view.offset + by, view.shape, view.strides, view.dtype)


def batchable(plan: Plan) -> bool:
    """Plans whose instances may run side by side: no group steps (their members meet each
    other), nothing another host waits on."""
    return all(step.group_size == 1 and not step.ring for queue in plan.queues for step in queue)


def repeat(lowered: LoweredProgram, k: int) -> Batch:
    """`lowered`'s plan repeated `k` times (see the module docstring)."""
    plan = lowered.plan
    stride = aligned(max(plan.arena_bytes, 1))
    lengths = [len(q) for q in plan.queues]
    queues = []
    for queue in plan.queues:
        steps = []
        for i in range(k):
            by = i * stride
            for step in queue:
                args = tuple(moved(a, by) if isinstance(a, View) else a for a in step.args)
                waits = tuple((t, c + i * lengths[t]) for t, c in step.waits)
                steps.append(Step(task=step.task, kernel=step.kernel, args=args, waits=waits,
                                  group_rank=step.group_rank, group_size=step.group_size,
                                  signal=step.signal, ring=step.ring, loc=step.loc))
        queues.append(tuple(steps))
    repeated = Plan(chips=plan.chips, sub_workers=plan.sub_workers, queues=tuple(queues),
                    arena_bytes=k * stride)
    inputs = tuple(tuple(None if v is None else moved(v, i * stride) for v in lowered.input_views)
                   for i in range(k))
    results = tuple(map_results(lowered.results, lambda v, by=i * stride: moved(v, by))
                    for i in range(k))
    return Batch(repeated, stride, inputs, results)
