"""Shared memory the pool creates before it forks: the tensor arena and the control block.

Both are anonymous MAP_SHARED mappings. Why not a named segment or a memfd: an anonymous shared
mapping is inherited by every forked worker at the same address, is sparse (a page costs memory only
once touched), has no name in /dev/shm and holds no file descriptor, so nothing can outlive the
processes that map it, even after SIGKILL. The price is that only forked descendants can map it,
which is exactly our process model. Owner: the `Pool` (one mapping of each per pool start); `close`
unmaps it, or leaves it to the garbage collector if a caller still holds a numpy view into it.
"""
from __future__ import annotations

import ctypes
import mmap

import numpy as np

from .plan import View

PAGE = mmap.PAGESIZE


class SharedMapping:
    """One anonymous shared mapping of `nbytes` (rounded up to whole pages)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(PAGE, (nbytes + PAGE - 1) // PAGE * PAGE)
        self._mm: mmap.mmap | None = mmap.mmap(-1, self.nbytes, flags=mmap.MAP_SHARED,
                                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
        anchor = ctypes.c_char.from_buffer(self._mm)
        self.address = ctypes.addressof(anchor)
        del anchor                                    # release the export so close() can unmap
        self.u8: np.ndarray | None = np.frombuffer(self._mm, dtype=np.uint8)

    def array(self, view: View) -> np.ndarray:
        """A numpy view of `view` inside this mapping (no copy)."""
        return array_in(self.u8, view)

    def words(self) -> memoryview:
        """The mapping as u32 words, for cheap plain loads and stores from Python."""
        return memoryview(self._mm).cast("I")

    def close(self) -> None:
        """Unmap; if a view is still alive somewhere, the mapping goes away with it (no fd is held)."""
        self.u8 = None
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass


def array_in(u8: np.ndarray, view: View) -> np.ndarray:
    """Build the numpy view `view` on top of the byte array `u8` (bounds-checked by numpy)."""
    dtype = np.dtype(view.dtype)
    if not view.shape or all(d > 0 for d in view.shape):
        span = dtype.itemsize + sum((d - 1) * s for d, s in zip(view.shape, view.strides) if s > 0)
        low = sum((d - 1) * s for d, s in zip(view.shape, view.strides) if s < 0)
    else:
        span, low = 0, 0
    if view.offset + low < 0 or view.offset + span > u8.shape[0]:
        raise ValueError(f"view {view} lies outside the arena of {u8.shape[0]} bytes")
    return np.ndarray(view.shape, dtype=dtype, buffer=u8, offset=view.offset, strides=view.strides)
