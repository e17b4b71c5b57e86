"""The per-step timestamps a profiled run's workers write into the control block (see
`layout.RUN_PROFILE`): cleared before the run, read after it.

A loop-free plan runs each step once: the area holds a (start, end) pair per step. In a plan with
loops a step runs once per iteration, so the area is an event buffer instead
(`steploop_tables.EV_*`): a header [count, capacity], then one (step, start, end) triple per
executed step instance, control steps included, in the order the worker ran them. The first
`capacity` instances are kept; `count` goes on, so count - capacity were dropped.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ScheduleError
from . import layout
from .steploop_tables import EV_CAP, EV_COUNT, EV_HEADER, EV_WORDS

EVENTS_MAX = (layout.PROFILE_SLOT_BYTES // 8 - EV_HEADER) // EV_WORDS   # per slot and run


@dataclass
class Events:
    """One slot's recorded instances: `events[i] = (step, start ns, end ns)` in execution order,
    `count`, every instance the slot ran (recorded or dropped), and the `capacity` it kept."""

    events: np.ndarray
    count: int
    capacity: int = 0

    @property
    def dropped(self) -> int:
        return self.count - len(self.events)


def _words(pool: Any, plan: Any, s: int, n: int) -> np.ndarray:
    """The first n u64 words of the profile area of the plan's slot `s` in the control block."""
    address = pool.control_address + layout.profile_offset(pool.slots, pool.pool_slot(plan, s))
    return np.ctypeslib.as_array((ctypes.c_uint64 * n).from_address(address))


def clear(pool: Any, plan: Any, capacity: int = EVENTS_MAX) -> None:
    """Make the areas ready for a profiled run (`capacity`: instances kept per slot, loops only)."""
    if plan.loops and not 0 <= capacity <= EVENTS_MAX:
        raise ScheduleError(f"cannot profile: {capacity} instances per worker asked for, "
                            f"a profile records 0 to {EVENTS_MAX}")
    for s, queue in enumerate(plan.queues):
        if len(queue) > layout.PROFILE_STEPS:
            raise ScheduleError(f"cannot profile: worker slot {s} runs {len(queue)} steps, more than "
                                f"the {layout.PROFILE_STEPS} a profile records per worker")
        if queue and plan.loops:
            _words(pool, plan, s, EV_HEADER)[[EV_COUNT, EV_CAP]] = (0, capacity)
        elif queue:
            _words(pool, plan, s, 2 * len(queue))[...] = 0


def read(pool: Any, plan: Any) -> list[np.ndarray] | list[Events]:
    """Loop-free plans: per slot, an (n, 2) array of (start, end) ns for its n steps. Plans with
    loops: per slot, its `Events`."""
    if not plan.loops:
        return [np.array(_words(pool, plan, s, 2 * len(q)), copy=True).reshape(len(q), 2)
                if q else np.zeros((0, 2), np.uint64) for s, q in enumerate(plan.queues)]
    out = []
    for s, queue in enumerate(plan.queues):
        if not queue:
            out.append(Events(np.zeros((0, 3), np.uint64), 0))
            continue
        count, capacity = (int(v) for v in _words(pool, plan, s, EV_HEADER)[[EV_COUNT, EV_CAP]])
        kept = min(count, capacity)
        words = _words(pool, plan, s, EV_HEADER + EV_WORDS * kept)[EV_HEADER:]
        out.append(Events(np.array(words, copy=True).reshape(kept, EV_WORDS), count, capacity))
    return out
