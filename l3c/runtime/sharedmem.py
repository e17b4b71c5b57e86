"""Memory that runs use in place (the memory of `l3c.shared` arrays): anonymous memory files.

A `SharedMemory` is one memfd (`memfd_create`, close-on-exec, no name in /dev/shm) mapped in this
process; numpy keeps it alive as the base of the arrays over it. The mapping holds the one
descriptor of the file (Python's mmap keeps a duplicate of the one it was made from, which is
closed at once), and a worker maps the same memory through it: it opens
`/proc/<this pid>/fd/<fd>` (workers are this process's children), maps it and closes what it
opened, once per worker (`map_in_worker`).

Lifetime: when the last array over a `SharedMemory` is gone, its mapping and descriptor here are
freed, and the key is put on `released` if some worker was handed it (`handed_out`): the pool tells
those workers to unmap it (`runtime.bindings`). Whatever way this process ends, the workers die
with it and nothing has a name, so nothing outlives it. A process forked from this one (the pool's
fork server) inherits the descriptors and mappings: `drop_inherited` gives them up there first.
"""
from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import queue
import resource
import weakref
from typing import Any

import numpy as np

NAME = "l3c-shared"
PROT_NONE = 0                    # Linux values the mmap module does not export
MAP_FIXED = 0x10
MAP_NORESERVE = 0x4000

_keys = itertools.count(1)
released: "queue.SimpleQueue[int]" = queue.SimpleQueue()   # keys freed here that workers mapped
handed_out: set[int] = set()                               # keys some worker may have mapped


class SharedMemory(mmap.mmap):
    """One memfd mapped in this process. `key` is unique in the process; `fd` the descriptor
    workers open; `address` where the mapping starts here."""

    key: int
    fd: int
    nbytes: int
    address: int


def allocate(nbytes: int) -> SharedMemory:
    """A zeroed memory file of `nbytes` (at least 1) mapped here."""
    size = max(int(nbytes), 1)
    fd = os.memfd_create(NAME, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        mem = SharedMemory(fd, size)
        mem.fd = _duplicate_of(fd)
    finally:
        os.close(fd)
    mem.key, mem.nbytes = next(_keys), size
    anchor = ctypes.c_char.from_buffer(mem)
    mem.address = ctypes.addressof(anchor)
    del anchor                                  # no export left: the mapping can go when unused
    weakref.finalize(mem, _freed, mem.key, os.getpid())
    return mem


def _duplicate_of(fd: int) -> int:
    """The descriptor Python's mmap duplicated from `fd` (it keeps it until the mapping is
    closed): the other descriptor of the same new file, found in ascending order as the
    duplicate was numbered (the lowest free number then)."""
    st = os.fstat(fd)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for other in range(limit if limit > 0 else 1 << 20):
        if other == fd:
            continue
        try:
            o = os.fstat(other)
        except OSError:
            continue
        if (o.st_ino, o.st_dev) == (st.st_ino, st.st_dev):
            return other
    raise OSError("the mapping of a memory file holds no descriptor of it")


def _freed(key: int, pid: int) -> None:
    """The last array over the memory is gone (the mapping closed its descriptor with it): if
    workers were handed the key, queue it for them to unmap."""
    if os.getpid() == pid and key in handed_out:
        handed_out.discard(key)
        released.put(key)


def owner(array: np.ndarray) -> SharedMemory | None:
    """The `SharedMemory` that `array` (or the array it is a view of) lives in, else None."""
    base: Any = array.base
    while base is not None:
        if type(base) is SharedMemory:
            return base
        if isinstance(base, memoryview):
            base = base.obj
        else:
            base = getattr(base, "base", None)
    return None


def offset_in(array: np.ndarray, mem: SharedMemory) -> int:
    """Byte offset of `array`'s first element from the start of `mem`."""
    return array.__array_interface__["data"][0] - mem.address


def map_in_worker(parent: int, fd: int, nbytes: int) -> tuple[mmap.mmap, np.ndarray]:
    """In a worker: map the parent's memory file `fd` (read and write); (mapping, its bytes)."""
    opened = os.open(f"/proc/{parent}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    try:
        mm = mmap.mmap(opened, nbytes)
    finally:
        os.close(opened)
    return mm, np.frombuffer(mm, dtype=np.uint8)


def drop_inherited() -> None:
    """In a process forked from the user's (the fork server, before it forks workers): close the
    inherited descriptors of shared memory and replace its inherited mappings by reserved,
    inaccessible address space, so that only the user's process and the workers that map it on
    purpose keep it alive. (Reserved, not unmapped: the inherited Python objects still think they
    own those addresses, and nothing new may be mapped under them.)"""
    marker = "/memfd:" + NAME
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        fds = []
    for name in fds:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith(marker):
                os.close(int(name))
        except (OSError, ValueError):
            pass
    try:
        with open("/proc/self/maps") as f:
            ranges = [line.split()[0] for line in f if marker in line]
    except OSError:
        ranges = []
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    for r in ranges:
        start, end = (int(x, 16) for x in r.split("-"))
        libc.mmap(start, end - start, PROT_NONE,
                  mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
