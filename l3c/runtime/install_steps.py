"""A worker's install of one plan queue: plan steps -> the entries `steploop.StepTable` takes.

Tasks get their numpy views (built once here) and their waits as counter addresses; in plans with
loops, control steps get their bounds and flags as element addresses, and arguments that move with
loop variables (`plan.MovingView`, `plan.LoopValue`) become patches the step loop applies before
each call (docs/runtime.md, "Loops in the step loop").
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from . import layout
from .arena import array_in
from .plan import ControlStep, LoopValue, MovingView, Plan, Step, View
from .steploop_tables import VALUE_CONST, VALUE_KINDS, Control


def signalled(plan: Plan) -> tuple[tuple[Step | ControlStep, ...], ...]:
    """`plan.queues` with every step another slot waits for marked `signal`: in a loop-free plan a
    worker stores its count of completed steps only after those (and at its queue's end), so a
    wait on any other step would not see it. Plans are made so (`codegen.lower`); this holds for
    any plan, such as what is left of a failed batch, whose waits were renumbered."""
    if plan.loops:
        return plan.queues
    waited: dict[int, set[int]] = {}
    for queue in plan.queues:
        for step in queue:
            for wait in step.waits:
                waited.setdefault(wait[0], set()).add(wait[1] - 1)
    queues = list(plan.queues)
    for s, positions in waited.items():
        if s >= len(queues):
            continue                              # the landing slot: its parent publishes it
        missing = [p for p in positions if 0 <= p < len(queues[s]) and not queues[s][p].signal]
        if missing:
            queue = list(queues[s])
            for p in missing:
                queue[p] = replace(queue[p], signal=True)
            queues[s] = tuple(queue)
    return tuple(queues)


class Resolver:
    """Turns plan steps into step-table entries for one worker (`ctl`: the control block's address,
    `arena`: the arena as bytes, `pool_slots[s]`: the pool slot running plan slot s)."""

    def __init__(self, ctl: int, arena: np.ndarray, pool_slots: Sequence[int], doorbell: int,
                 kernel: Callable[[str], Any]) -> None:
        self.ctl, self.arena, self.pool_slots = ctl, arena, pool_slots
        self.arena_address = arena.__array_interface__["data"][0]
        self.doorbell, self.kernel = doorbell, kernel

    def waits(self, waits: Sequence[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
        out = []
        for wait in waits:
            slot, count = wait[0], wait[1]
            base = self.ctl + layout.slot_offset(self.pool_slots[slot])
            words = (base + layout.S_DONE, base + layout.S_DONE_WAITERS, count)
            # anchor rows are indexed by plan slot: every worker of the plan counts the same slots
            out.append(words if len(wait) == 2 else words + (slot, wait[2], wait[3]))
        return tuple(out)

    def args(self, args: Sequence[Any]) -> tuple[tuple, tuple]:
        """(call arguments, moving) for a task: views built once; a moving view is built where it
        fits the arena (the step loop moves its data pointer before each call)."""
        built, moving = [], []
        for i, a in enumerate(args):
            if isinstance(a, View):
                built.append(array_in(self.arena, a))
            elif isinstance(a, MovingView):
                v = a.view
                low = sum((d - 1) * s for d, s in zip(v.shape, v.strides) if s < 0 and d > 0)
                built.append(array_in(self.arena, View(-low, v.shape, v.strides, v.dtype)))
                moving.append((i, self.arena_address + v.offset, a.shifts))
            elif isinstance(a, LoopValue):
                built.append(int(a.const))
                moving.append((i, a.const, a.terms))
            else:
                built.append(a)
        return tuple(built), tuple(moving)

    def bound(self, value: Any) -> tuple[int, int]:
        if isinstance(value, MovingView):           # its address is patched before each read
            kind, _ = self.bound(View(0, (), (), value.view.dtype))
            return kind, self.arena_address
        if isinstance(value, View):
            kind = VALUE_KINDS.get(np.dtype(value.dtype).name)
            if kind is None:
                raise TypeError(f"a loop bound or flag of type {value.dtype}: integer or bool only")
            array_in(self.arena, value)              # bounds-checked like every view
            return kind, self.arena_address + value.offset
        return VALUE_CONST, int(value)

    def entry(self, step: Step | ControlStep) -> Any:
        if isinstance(step, ControlStep):
            moving = tuple((name, self.arena_address + getattr(step, name).view.offset,
                            getattr(step, name).shifts)
                           for name in ("start", "stop", "step", "flag")
                           if isinstance(getattr(step, name), MovingView))
            return Control(step.kind, step.loop, step.jump, step.delta, step.counted,
                           self.waits(step.waits), self.bound(step.start), self.bound(step.stop),
                           self.bound(step.step),
                           self.bound(step.flag) if step.flag is not None else (VALUE_CONST, 0),
                           step.max_iterations, step.invert,
                           tuple((c.const, c.coef, c.terms, c.high) for c in step.checks), moving)
        fn = self.kernel(step.kernel)
        args, moving = self.args(step.args)
        return (fn, args, self.waits(step.waits), step.signal, step.group_rank, step.group_size,
                self.doorbell if step.ring else 0, moving)


def control_error(step: ControlStep, status: int, table: Any, k: int, loops: Sequence[Any]
                  ) -> tuple[int, str]:
    """(task id, error text) for a control step that stopped the run (`steploop.STEPS_CHECK` or
    `STEPS_ZERO_STEP`)."""
    from .steploop import STEP_WORDS, STEPS_CHECK, STEPS_COUNT_LIMIT, W_TARGET
    loop = loops[step.loop] if step.loop < len(loops) else None
    where = f"{loop.kind} loop at {loop.loc}" if loop is not None else "a loop"
    var, iteration, trips, stride = table.tables.frame(step.loop)
    if status == STEPS_CHECK:
        check = step.checks[table.tables.failed_check(table.steps[STEP_WORDS * k + W_TARGET])]
        rest = check.const + sum(c * table.tables.frame(l)[0] for l, c in check.terms)
        values = [var] if step.kind != "range" else [var, var + (trips - 1) * stride]
        bad = next((x for x in values if not 0 <= rest + check.coef * x <= check.high), values[-1])
        name = f"L{loop.id}" if loop is not None else "the loop variable"
        others = "".join(f", L{loops[l].id}={table.tables.frame(l)[0]}" for l, _ in check.terms)
        when = "the loop did not start" if step.kind == "range" else "that iteration did not start"
        return check.task, (f"IndexError: an index of {check.what} leaves the tensor at "
                            f"{name}={bad}{others} ({where}; {when})")
    if status == STEPS_COUNT_LIMIT:
        return step.task, (f"OverflowError: this worker completed 2**32 steps in one run (in the "
                           f"{where}); a run's counts are 32-bit: split the work over calls")
    return step.task, f"ValueError: the step of the {where} is 0"
