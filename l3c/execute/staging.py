"""What every compiled run shares around the arena: the staging and result arrays (built once per
installed plan), fresh copies of the results, and the pool's turn (one run at a time per pool)."""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np

from ..codegen.lower import LoweredProgram
from ..errors import Timeout
from ..ir import build_results, map_results


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


@contextlib.contextmanager
def turn(pool: Any, name: str, timeout: float | None, deadline: int) -> Iterator[None]:
    """The pool's lock (one run at a time), waited for until `deadline` (time.monotonic_ns; 0:
    none), the deadline of the whole call: a run never starts with its `timeout` already spent."""
    wait = -1 if not deadline else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
    if not pool.lock.acquire(timeout=wait):
        raise _busy(name, timeout)
    try:
        if deadline and time.monotonic_ns() >= deadline:
            raise _busy(name, timeout)
        yield
    finally:
        pool.lock.release()


def _busy(name: str, timeout: float | None) -> Timeout:
    return Timeout(f"{name}: the workers were busy with another thread's run for the whole "
                   f"timeout ({timeout} s); this run did not start")
