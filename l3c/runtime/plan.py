"""The schedule as plain data: what the runtime executes, knowing nothing of tracing or passes.

Code generation (`l3c.codegen.lower`) turns a placed, memory-planned `l3c.ir.Program` into a `Plan`;
the worker pool installs the plan in every worker once (views built once, kernels resolved once) and
then runs it any number of times. Everything here is picklable plain data (tuples, ints, strings,
scalars) so that it crosses the process boundary and can be written to an AOT file as JSON.

Worker slots: a pool with C chips and S sub workers numbers its workers 0..C-1 (chips) and
C..C+S-1 (sub workers). `Step.waits` refer to slots.
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


StepArg = Union[View, int, float, bool, str, None]


@dataclass(frozen=True)
class Step:
    """One task in one worker's queue."""

    task: int                      # task id in the program (for errors and profiles)
    kernel: str                    # import path "module:qualname" of an @l3c.kernel
    args: tuple[StepArg, ...]      # positional arguments: View for tensors, scalars by value
    waits: tuple[tuple[int, int], ...] = ()   # (slot, count): wait until done[slot] >= count
    group_rank: int = 0
    group_size: int = 1
    signal: bool = False           # a step on another worker waits on this one: publish with a wake
    ring: bool = False             # the host's parent waits on it (a send becomes due, a gated
                                   # receive may be posted): also ring the doorbell, ending its nap
    loc: str = ""                  # user's call site, for KernelError


@dataclass(frozen=True)
class Plan:
    """A whole static schedule: one ordered queue of steps per worker slot."""

    chips: int
    sub_workers: int
    queues: tuple[tuple[Step, ...], ...]   # len == chips + sub_workers
    arena_bytes: int                       # bytes of the shared arena the plan touches

    @property
    def slots(self) -> int:
        return self.chips + self.sub_workers

    @property
    def expected(self) -> tuple[int, ...]:
        """How many steps each slot completes in one run."""
        return tuple(len(q) for q in self.queues)
