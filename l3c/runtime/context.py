"""Where the current kernel runs: read by kernels (`l3c.chip_id()` ...), set by the worker loop.

Module globals, because each worker is its own process and runs one kernel at a time; in the parent
(a kernel called directly) the defaults apply: chip 0, rank 0 of a group of 1, host 0. The group
rank and size live in a two-word native array (`TASK`) because the native step loop
(`steploop.py`) stores them there before every kernel call.
"""
from __future__ import annotations

import contextlib
import ctypes
from typing import Iterator

TASK = (ctypes.c_int64 * 2)(0, 1)      # [group rank, group size] of the running kernel
TASK_ADDRESS = ctypes.addressof(TASK)

_chip = 0
_host = 0
_chip_base = 0      # global index of this host's chip 0 (host * chips per host)
_sub_base = 0       # likewise for sub workers


def global_worker(slot: int, host: int, chips: int, sub_workers: int) -> tuple[str, int]:
    """A host's pool slot by its global id: ("chip", host * chips + slot) for a chip slot,
    ("sub", host * sub_workers + slot - chips) for a sub worker (the numbering the IR places by,
    `Program.host_of`)."""
    if slot < chips:
        return "chip", host * chips + slot
    return "sub", host * sub_workers + slot - chips


def chip_id() -> int:
    """The chip (or sub worker) index the current kernel runs on."""
    return _chip


def group_rank() -> int:
    """The kernel's rank inside its group task (0 outside groups)."""
    return TASK[0]


def group_size() -> int:
    """The number of members of the kernel's group task (1 outside groups)."""
    return TASK[1]


def host_id() -> int:
    """The host (MPI rank) the kernel runs on."""
    return _host


def set_task(chip: int, rank: int, size: int) -> None:
    """Called by the worker before each kernel call."""
    global _chip
    _chip = chip
    TASK[0], TASK[1] = rank, size


def set_host(host: int, chips_per_host: int = 0, subs_per_host: int = 0) -> None:
    """Called in a host's parent process before it forks its workers (several hosts over MPI)."""
    global _host, _chip_base, _sub_base
    _host, _chip_base, _sub_base = host, host * chips_per_host, host * subs_per_host


@contextlib.contextmanager
def as_host(host: int, chips_per_host: int = 0, subs_per_host: int = 0) -> Iterator[None]:
    """`set_host` for the duration of a block, then the previous numbering again (the eager
    reference of a several-host program forks its workers as one host's)."""
    global _host, _chip_base, _sub_base
    saved = (_host, _chip_base, _sub_base)
    set_host(host, chips_per_host, subs_per_host)
    try:
        yield
    finally:
        _host, _chip_base, _sub_base = saved


def global_index(local: int, sub: bool) -> int:
    """The global number of this host's chip (or sub worker) `local`: chips are numbered
    0..hosts*chips-1 across hosts, host by host."""
    return local + (_sub_base if sub else _chip_base)
