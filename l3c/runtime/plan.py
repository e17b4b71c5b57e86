"""The schedule as plain data: what the runtime executes, knowing nothing of tracing or passes.

Code generation (`l3c.codegen.lower`) turns a placed, memory-planned `l3c.ir.Program` into a `Plan`;
the worker pool installs the plan in every worker once (views built once, kernels resolved once) and
then runs it any number of times. Everything here is picklable plain data (tuples, ints, strings,
scalars) so that it crosses the process boundary and can be written to an AOT file as JSON.

Worker slots: a pool with C chips and S sub workers numbers its workers 0..C-1 (chips) and
C..C+S-1 (sub workers). `Step.waits` refer to slots.

Plans with loops (`Plan.loops`, docs/runtime.md "Loops in the step loop"): every active slot's queue
holds the same `ControlStep`s in the same order (loop enter, while test, loop next, cond enter/exit)
between its steps; loop variables are numbered by their index in `Plan.loops`. A wait is then
relative to a snapshot of the per-slot completion counts the worker keeps (an *anchor*), and
arguments that move with loop variables are `MovingView`s and `LoopValue`s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class View:
    """A numpy view into the shared arena, built once per worker when the plan is installed."""

    offset: int                    # bytes from the start of the arena
    shape: tuple[int, ...]
    strides: tuple[int, ...]       # bytes
    dtype: str                     # numpy dtype name


@dataclass(frozen=True)
class LoopValue:
    """An int that depends on loop variables: `const + sum(coef * var(loop))` (a kernel's scalar
    argument inside a loop); `loop` indexes `Plan.loops`."""

    const: int
    terms: tuple[tuple[int, int], ...]     # (loop index, coefficient)


@dataclass(frozen=True)
class MovingView:
    """A view that moves with loop variables: `view` when every variable is 0 (its offset may lie
    outside the tensor), moved by `shifts` bytes per unit of each variable. The control steps check
    before the step runs that it stays inside its tensor (`ControlStep.checks`)."""

    view: View
    shifts: tuple[tuple[int, int], ...]    # (loop index, bytes per unit of its variable)


StepArg = Union[View, MovingView, LoopValue, int, float, bool, str, None]

# Anchors: rows of per-slot completion counts a worker keeps during a run. ZERO is all zeros (waits
# of loop-free code are absolute); CUR is the counts at the worker's last control step; loop or
# cond i has four rows: its ENTER (just after its enter step), HEAD (start of the current
# iteration or block), PREV (start of the previous iteration) and EXIT (just after it).
ANCHOR_ZERO = 0
ANCHOR_CUR = 1
ENTER, HEAD, PREV, EXIT = range(4)
NO_CAP = -1


def anchor(loop: int, which: int) -> int:
    """The anchor id of row `which` (ENTER, HEAD, PREV, EXIT) of plan loop `loop`."""
    return 2 + 4 * loop + which


def anchor_count(loops: int) -> int:
    return 2 + 4 * loops


# A wait: (slot, count) - until done[slot] >= count - or, in plans with loops, (slot, count, base,
# cap): until done[slot] >= min(anchors[base][slot] + count, anchors[cap][slot]) (no min when cap is
# NO_CAP).
Wait = tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """One task in one worker's queue."""

    task: int                      # task id in the program (for errors and profiles)
    kernel: str                    # import path "module:qualname" of an @l3c.kernel
    args: tuple[StepArg, ...]      # positional arguments: View for tensors, scalars by value
    waits: tuple[Wait, ...] = ()   # (slot, count): wait until done[slot] >= count (see `Wait`)
    group_rank: int = 0
    group_size: int = 1
    signal: bool = False           # a step on another worker waits on this one: publish with a wake
    ring: bool = False             # the host's parent waits on it (a send becomes due, a gated
                                   # receive may be posted): also ring the doorbell, ending its nap
    loc: str = ""                  # user's call site, for KernelError


# A bound or flag a control step reads: an int, or the one element of a tensor at `View`.
Bound = Union[int, View]


@dataclass(frozen=True)
class Check:
    """An index check of one moving view: `0 <= const + coef * x + sum(c * var(l)) <= high` must
    hold for x the control step's loop variable at its first and last value (a range loop's enter)
    or its current value (a while loop's test), the other loops' variables as they are."""

    task: int                      # the call the view belongs to (its error names its line)
    const: int
    coef: int
    terms: tuple[tuple[int, int], ...]
    high: int
    what: str                      # e.g. "axis 0 of t3[8, 4]" for the error message


@dataclass(frozen=True)
class ControlStep:
    """A loop or cond's control point, in every active slot's queue at the same place.

    kind: "range" (enter a range loop: read its bounds, jump past its "next" if it runs 0 times),
    "next" (a range loop's end of iteration: loop back to `jump` or fall out), "while" (enter a while
    loop), "test" (read the flag before an iteration; leave to `jump` on zero or at
    max_iterations), "again" (a while loop's end of iteration: back to its test at `jump`), "cond"
    (read the flag; skip to `jump` when the block does not run), "endcond". `delta[t]`: slot t's
    counted steps since the previous control step in queue order. `counted`: the step reads a
    tensor, and completes like a task (later writers of the element wait for every slot's read)."""

    kind: str
    loop: int                      # index in Plan.loops
    jump: int                      # queue index
    delta: tuple[int, ...]
    counted: bool = False
    waits: tuple[Wait, ...] = ()
    start: Bound = 0
    stop: Bound = 0
    step: Bound = 1
    flag: View | None = None
    max_iterations: int = -1       # -1: no cap
    invert: bool = False
    checks: tuple[Check, ...] = ()
    loc: str = ""                  # the loop's `for` / `with` line
    task: int = -1                 # not a task (errors name the loop)
    signal: bool = True


@dataclass(frozen=True)
class PlanLoop:
    """A loop or cond of the plan, for messages."""

    kind: str                      # "range" | "while" | "cond"
    loc: str
    id: int = 0                    # the program's loop id (its variable is L<id> in messages)


@dataclass(frozen=True)
class Plan:
    """A whole static schedule: one ordered queue of steps per worker slot."""

    chips: int
    sub_workers: int
    queues: tuple[tuple[Step | ControlStep, ...], ...]   # len == chips + sub_workers
    arena_bytes: int                       # bytes of the shared arena the plan touches
    loops: tuple[PlanLoop, ...] = ()

    @property
    def slots(self) -> int:
        return self.chips + self.sub_workers

    @property
    def expected(self) -> tuple[int, ...]:
        """How many steps each slot completes in one run (0 for every slot of a plan with loops:
        the count depends on the trip counts)."""
        if self.loops:
            return tuple(0 for _ in self.queues)
        return tuple(len(q) for q in self.queues)

    @property
    def active(self) -> tuple[int, ...]:
        """The slots that run something."""
        return tuple(s for s, q in enumerate(self.queues) if q)

    def tasks(self, slot: int) -> tuple[Step, ...]:
        """The task steps of a slot's queue (without control steps)."""
        return tuple(st for st in self.queues[slot] if isinstance(st, Step))
