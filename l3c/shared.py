"""`l3c.shared`: arrays in memory that is not the caller's heap, used in place by submitted runs.

A shared array is a plain `numpy.ndarray` over an anonymous memory file (`memfd_create`), mapped
once in this process. The file has no name (nothing in /dev/shm), and the mapping owns the only
descriptor of it (close-on-exec; Python's mmap keeps one), so the memory and the descriptor go back
to the system when the last array (or view) over the mapping is gone, whatever way the process
ends.

Runs tell shared arrays from ordinary ones by the object that owns their memory (`is_shared`):
ordinary arrays are captured (copied) when a run is submitted, so the caller may change them at
once, while shared arrays are taken as they are when the run starts, so consecutive runs see each
other's writes in submission order (see `l3c.inflight`).
"""
from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np

from .errors import ConfigError
from .trace.source import user_location


class SharedMemory(mmap.mmap):
    """The mapping a shared array lives in; numpy keeps it alive as the array's base."""


def _map(nbytes: int) -> SharedMemory:
    fd = os.memfd_create("l3c-shared", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, max(nbytes, 1))
        return SharedMemory(fd, max(nbytes, 1))
    finally:
        os.close(fd)                 # the mapping keeps its own duplicate, closed with it


def shared(array_or_shape: Any, dtype: Any = None) -> np.ndarray:
    """A copy of `array` (`l3c.shared(a)`), or a zeroed array (`l3c.shared(shape, dtype)`), in
    memory that runs use in place. The result is an ordinary C-contiguous `numpy.ndarray`."""
    if isinstance(array_or_shape, np.ndarray):
        if dtype is not None:
            source = np.asarray(array_or_shape, dtype=dtype)
        else:
            source = array_or_shape
        shape, dt = source.shape, source.dtype
    else:
        source = None
        try:
            dims = (array_or_shape,) if np.ndim(array_or_shape) == 0 else array_or_shape
            shape = tuple(int(n) for n in dims)
            dt = np.dtype(dtype if dtype is not None else np.float64)
        except (TypeError, ValueError) as exc:
            file, line = user_location()
            raise ConfigError(f"{file}:{line}: l3c.shared({array_or_shape!r}, {dtype!r}): give an "
                              f"array, or a shape and a dtype ({exc})") from None
        if any(n < 0 for n in shape):
            file, line = user_location()
            raise ConfigError(f"{file}:{line}: l3c.shared: negative dimension in shape {shape}")
    if dt.hasobject:
        file, line = user_location()
        raise ConfigError(f"{file}:{line}: l3c.shared: dtype {dt} holds Python objects, which "
                          "cannot live in shared memory")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    array = np.ndarray(shape, dt, buffer=_map(nbytes))
    if source is not None:
        array[...] = source
    return array


def is_shared(array: np.ndarray) -> bool:
    """Does `array` (or the array it is a view of) live in an `l3c.shared` mapping?"""
    base: Any = array
    while base is not None:
        if isinstance(base, SharedMemory):
            return True
        if isinstance(base, memoryview):
            base = base.obj
        else:
            base = getattr(base, "base", None)
    return False
