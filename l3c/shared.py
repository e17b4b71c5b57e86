"""`l3c.shared`: arrays in memory that is not the caller's heap, used in place by submitted runs.

A shared array is a plain `numpy.ndarray` over an anonymous memory file (`memfd_create`, see
`l3c.runtime.sharedmem`), mapped in this process and, on first use, in each worker that runs a
kernel on it: kernels get views of that memory, so no data moves in or out. The file has no name
(nothing in /dev/shm); its memory and descriptors go back to the system when the last array (or
view) over it is gone and the workers were told to unmap it, whatever way the process ends.

Runs tell shared arrays from ordinary ones by the object that owns their memory (`is_shared`):
ordinary arrays are captured (copied) when a run is submitted, so the caller may change them at
once, while shared arrays are used where they are, so consecutive runs see each other's writes in
submission order (see `l3c.inflight`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError
from .runtime.sharedmem import allocate, owner
from .trace.source import user_location


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
    array = np.ndarray(shape, dt, buffer=allocate(nbytes))
    if source is not None:
        array[...] = source
    return array


def is_shared(array: np.ndarray) -> bool:
    """Does `array` (or the array it is a view of) live in an `l3c.shared` mapping?"""
    return owner(array) is not None
