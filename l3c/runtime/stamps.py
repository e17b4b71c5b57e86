"""The per-step timestamps a profiled run's workers write into the control block (see
`layout.RUN_PROFILE`): cleared before the run, read after it."""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ..errors import ScheduleError
from . import layout


def _area(pool: Any, plan: Any, s: int) -> np.ndarray:
    """The profile area of the plan's slot `s` in the control block, as u64 (start, end) pairs."""
    n = len(plan.queues[s])
    address = pool.control_address + layout.profile_offset(pool.slots, pool.pool_slot(plan, s))
    return np.ctypeslib.as_array((ctypes.c_uint64 * (2 * n)).from_address(address)).reshape(n, 2)


def clear(pool: Any, plan: Any) -> None:
    for s, queue in enumerate(plan.queues):
        if len(queue) > layout.PROFILE_STEPS:
            raise ScheduleError(f"cannot profile: worker slot {s} runs {len(queue)} steps, more than "
                                f"the {layout.PROFILE_STEPS} a profile records per worker")
        if queue:
            _area(pool, plan, s)[...] = 0


def read(pool: Any, plan: Any) -> list[np.ndarray]:
    return [np.array(_area(pool, plan, s), copy=True) if q else np.zeros((0, 2), np.uint64)
            for s, q in enumerate(plan.queues)]
