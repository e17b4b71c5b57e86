"""What every compiled run shares around the arena: the staging and result arrays (built once per
installed plan), fresh copies of the results, and the pool's turn (one run at a time per pool)."""
from __future__ import annotations

import contextlib
import ctypes
import os
import time
from typing import Any, Iterator

import numpy as np

from ..codegen.lower import LoweredProgram
from ..errors import Timeout
from ..passes.results import build_results, map_results


def result_arrays(tree: Any, pool: Any) -> Any:
    """The results tree with each View replaced by its arena array (built once per installation)."""
    return map_results(tree, pool.array)


def _fresh(array: np.ndarray) -> np.ndarray:
    return np.array(array, copy=True, order="C")


def copy_arrays(tree: Any) -> Any:
    """Fresh arrays (and the tuple/list/dict around them) from a `result_arrays` tree."""
    return build_results(tree, _fresh)


SMALL_STAGE = 1 << 16      # inputs up to this many bytes are copied without checking is_view_of


def is_view_of(array: np.ndarray, staged: np.ndarray) -> bool:
    """Is `array` exactly the staging view (an input that already lives in the arena)? Then
    staging it is a copy onto itself, skipped (for small inputs the check costs more than the
    copy, which is harmless onto itself)."""
    return (array.__array_interface__["data"][0] == staged.__array_interface__["data"][0]
            and array.strides == staged.strides and array.dtype == staged.dtype)


def arena_arrays(lowered: LoweredProgram, pool: Any, plan: Any) -> tuple[list, Any]:
    """(input staging arrays, results tree of arrays) in the arena, cached with the installation."""
    cache = pool.plan_cache(plan)
    arrays = cache.get("io")
    if arrays is None:
        inputs = [None if v is None else pool.array(v) for v in lowered.input_views]
        arrays = cache["io"] = (inputs, result_arrays(lowered.results, pool))
    return arrays


def take_turn(pool: Any, name: str, timeout: float | None, deadline: int) -> None:
    """Take the pool's lock (one run at a time), waiting until `deadline` (time.monotonic_ns; 0:
    none), the deadline of the whole call: a run never starts with its `timeout` already spent.
    The caller releases it."""
    if not deadline:
        pool.lock.acquire()
        return
    if not pool.lock.acquire(timeout=max(0.0, (deadline - time.monotonic_ns()) / 1e9)):
        raise _busy(name, timeout)
    if time.monotonic_ns() >= deadline:
        pool.lock.release()
        raise _busy(name, timeout)


@contextlib.contextmanager
def turn(pool: Any, name: str, timeout: float | None, deadline: int) -> Iterator[None]:
    """`take_turn` as a context manager."""
    take_turn(pool, name, timeout, deadline)
    try:
        yield
    finally:
        pool.lock.release()


class Ready:
    """What every run of one installed plan (or bound variant) needs, gathered once: its plan id,
    slot map, the inputs to stage and the written inputs to copy back (parameter index, arena
    array), the results tree. Valid while the pool's workers stay the same (`valid`)."""

    __slots__ = ("pool", "epoch", "plan_id", "slot_map", "slot_map_address", "stage",
                 "write_back", "results", "out_slot", "out_slot_ref")

    def __init__(self, pool: Any, plan_id: int, slot_map: Any, staging: list, results: Any,
                 skip: Any, written: tuple[int, ...]) -> None:
        self.pool, self.epoch, self.plan_id = pool, pool.epoch, plan_id
        self.slot_map, self.slot_map_address = slot_map, ctypes.addressof(slot_map)
        self.stage = [(i, a, a.nbytes <= SMALL_STAGE) for i, a in enumerate(staging)
                      if a is not None and i not in skip]
        self.write_back = [(i, staging[i]) for i in written if i not in skip]
        self.results = results
        self.out_slot = ctypes.c_int32(-1)
        self.out_slot_ref = ctypes.byref(self.out_slot)

    def valid(self) -> bool:
        """The same workers as when gathered (none replaced, the pool not restarted), and none has
        died since: one waitid for every child of this process, which does not reap (a child of
        the user's that exited and was not reaped yet sends the call the long way, still right)."""
        if self.pool.epoch != self.epoch:
            return False
        _SIGINFO_PID.value = 0
        if _waitid(P_ALL, 0, _SIGINFO, os.WEXITED | os.WNOHANG | os.WNOWAIT) != 0:
            return False                       # no child at all: not our pool's workers
        return _SIGINFO_PID.value == 0


# waitid through a PyDLL: the call keeps the GIL (os.waitid lets it go, and another thread that
# wants it, such as the runs thread, would then make this call wait for it to come back)
P_ALL = 0
_SIGINFO = ctypes.create_string_buffer(128)
_SIGINFO_PID = ctypes.c_int32.from_buffer(_SIGINFO, 16)    # siginfo_t.si_pid on Linux x86-64
_waitid = ctypes.PyDLL(None, use_errno=True).waitid
_waitid.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_waitid.restype = ctypes.c_int


def _busy(name: str, timeout: float | None) -> Timeout:
    return Timeout(f"{name}: the workers were busy with another thread's run for the whole "
                   f"timeout ({timeout} s); this run did not start")
