"""The eager reference for loops and conditionals: iterate in Python, exactly sequentially.

Code generation (`l3c.codegen.eager.to_loop_items`) turns a traced program with loops into a tree of
plain data: a `LoopCall` per task (its `Call` at every loop variable 0, plus how its views and
scalars depend on the variables) and a `LoopNode` per `l3c.range` / `while_loop` / `cond`. This
module walks the tree: each iteration instantiates the body's calls with the variables' values
(views moved by their shifts, affine scalars evaluated) and queues them; queued calls run through
the dynamic runtime (`eager.run_calls`) in batches, and the queue is drained before a bound or flag
is read from the arena, so every read sees every earlier writer and no later one. A view that an
iteration moves outside its tensor is an error of the run naming the call's line, raised before
that call runs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Union

import numpy as np

from ..errors import L3CError, Timeout
from .eager import Call, run_calls
from .plan import View
from .pool import Pool

BATCH = 4096         # queued calls run at the latest when this many wait (bounds the queue)

Terms = tuple[tuple[int, int], ...]     # (loop id, coefficient)


@dataclass(frozen=True)
class Moving:
    """A view that moves with loop variables: the view at every variable 0, the bytes it moves per
    unit of each variable, and what keeps it inside its tensor (in elements)."""

    view: View
    byte_shifts: Terms
    what: str                                          # the tensor's name, for errors
    dims: tuple[int, ...]                              # the tensor's shape
    span: tuple[int, int]                              # first and last element at variables 0
    element_shifts: Terms                              # elements moved per unit of each variable
    box: tuple[tuple[int, int, int], ...] | None       # per tensor axis (start, count, step) at 0
    box_shifts: tuple[tuple[int, tuple[int, ...]], ...]   # per variable, each axis's start move

    def at(self, values: dict[int, int]) -> tuple[View, int] | str:
        """The view and its byte move at these variable values, or why it leaves its tensor."""
        lo, hi = self.span
        if hi >= lo:
            move = sum(values[loop] * d for loop, d in self.element_shifts)
            if lo + move < 0 or hi + move >= int(np.prod(self.dims, dtype=np.int64)):
                return f"elements {lo + move}..{hi + move} of {self.what} ({self.dims})"
            for axis, (start, count, step) in enumerate(self.box or ()):
                first = start + sum(values[loop] * d[axis] for loop, d in self.box_shifts)
                if count and (first < 0 or first + (count - 1) * step >= self.dims[axis]):
                    return (f"index {first if first < 0 else first + (count - 1) * step} on axis "
                            f"{axis} of {self.what} (size {self.dims[axis]})")
        delta = sum(values[loop] * d for loop, d in self.byte_shifts)
        return replace(self.view, offset=self.view.offset + delta), delta


@dataclass(frozen=True)
class LoopCall:
    """One task of a loop body: `call` at every variable 0 and what changes per iteration."""

    call: Call
    views: tuple[tuple[int, int, Moving], ...]        # (arg index, access index, moving view)
    scalars: tuple[tuple[int, int, Terms], ...]       # (arg index, const, terms): an int per iteration
    program_group: int | None = None                  # the traced group (instances get new ids)


@dataclass(frozen=True)
class LoopNode:
    """A loop or cond: bounds and flags as ints or one-element views read from the arena."""

    id: int
    kind: str                                         # "range" | "while" | "cond"
    loc: str
    start: Union[int, Moving] = 0
    stop: Union[int, Moving] = 0
    step: Union[int, Moving] = 1
    flag: Moving | None = None
    max_iterations: int | None = None
    invert: bool = False
    body: tuple[Union[LoopCall, "LoopNode"], ...] = ()


Item = Union[LoopCall, LoopNode]


class _Interpreter:
    """One eager run of a loop tree on `pool` (the caller holds its lock and staged the inputs)."""

    def __init__(self, pool: Pool, chips: int, subs: int, timeout: float | None) -> None:
        self.pool, self.chips, self.subs = pool, chips, subs
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.values: dict[int, int] = {}
        self.queue: list[Call] = []
        self.groups: dict[int, int] = {}            # traced group -> the current instance's id
        self.next_group = 0

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"the eager run exceeded its timeout of {self.timeout} s")
        return left

    def flush(self) -> None:
        if self.queue:
            calls, self.queue = self.queue, []
            run_calls(self.pool, calls, self.chips, self.subs, self.remaining())

    def read(self, node: LoopNode, moving: Moving, what: str) -> int:
        self.flush()
        placed = moving.at(self.values)
        if isinstance(placed, str):
            raise L3CError(f"{node.loc}: the {what} of this l3c.{_api(node.kind)} reads {placed}, "
                           f"outside the tensor, {self.where()}")
        return int(self.pool.array(placed[0]).reshape(-1)[0])

    def bound(self, node: LoopNode, value: Union[int, Moving], what: str) -> int:
        return value if isinstance(value, int) else self.read(node, value, what)

    def where(self) -> str:
        if not self.values:
            return "outside loops"
        return "at " + ", ".join(f"L{loop}={v}" for loop, v in sorted(self.values.items()))

    def instantiate(self, item: LoopCall) -> Call:
        call = item.call
        args, accesses = list(call.args), list(call.accesses)
        for arg, access, moving in item.views:
            placed = moving.at(self.values)
            if isinstance(placed, str):
                raise L3CError(f"{call.loc}: {call.kernel.rsplit(':', 1)[-1]} (task {call.task}) "
                               f"reaches {placed}, outside the tensor, {self.where()}; loop-"
                               "variable indices do not wrap around or clip")
            args[arg] = placed[0]
            key, lo, hi, writes = accesses[access]
            accesses[access] = (key, lo + placed[1], hi + placed[1], writes)
        for arg, const, terms in item.scalars:
            args[arg] = const + sum(self.values[loop] * c for loop, c in terms)
        group = call.group
        if item.program_group is not None:
            if call.group_rank == 0:
                self.groups[item.program_group] = self.next_group
                self.next_group += 1
            group = self.groups[item.program_group]
        return replace(call, args=tuple(args), accesses=tuple(accesses), group=group)

    def run(self, items: tuple[Item, ...]) -> None:
        for item in items:
            if isinstance(item, LoopCall):
                self.queue.append(self.instantiate(item))
                if len(self.queue) >= BATCH:
                    self.flush()
            elif item.kind == "range":
                self.range(item)
            elif item.kind == "while":
                k = 0
                while item.max_iterations is None or k < item.max_iterations:
                    if self.read(item, item.flag, "flag") == 0:
                        break
                    self.iteration(item, k)
                    k += 1
            elif (self.read(item, item.flag, "flag") != 0) != item.invert:
                self.run(item.body)

    def range(self, node: LoopNode) -> None:
        start, stop, step = (self.bound(node, getattr(node, name), name)
                             for name in ("start", "stop", "step"))
        if step == 0:
            raise L3CError(f"{node.loc}: the step of this l3c.range is 0 when the loop starts, "
                           f"{self.where()}")
        for value in range(start, stop, step):
            self.iteration(node, value)

    def iteration(self, node: LoopNode, value: int) -> None:
        self.remaining()                 # a long loop of cheap iterations still honours timeout
        self.values[node.id] = value
        try:
            self.run(node.body)
        finally:
            del self.values[node.id]


def _api(kind: str) -> str:
    return "while_loop" if kind == "while" else kind


def run_loop_items(pool: Pool, items: tuple[Item, ...], chips: int, subs: int,
                   timeout: float | None = None) -> None:
    """Run a loop tree sequentially on `pool` (held and staged by the caller); raises like
    `run_calls`, plus L3CError for a view an iteration moves outside its tensor."""
    interpreter = _Interpreter(pool, chips, subs, timeout)
    interpreter.run(items)
    interpreter.flush()
