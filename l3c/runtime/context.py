"""Where the current kernel runs: read by kernels (`l3c.chip_id()` ...), set by the worker loop.

Module globals, because each worker is its own process and runs one kernel at a time; in the parent
(a kernel called directly) the defaults apply: chip 0, rank 0 of a group of 1, host 0.
"""
from __future__ import annotations

_chip = 0
_rank = 0
_size = 1
_host = 0


def chip_id() -> int:
    """The chip (or sub worker) index the current kernel runs on."""
    return _chip


def group_rank() -> int:
    """The kernel's rank inside its group task (0 outside groups)."""
    return _rank


def group_size() -> int:
    """The number of members of the kernel's group task (1 outside groups)."""
    return _size


def host_id() -> int:
    """The host (MPI rank) the kernel runs on."""
    return _host


def set_task(chip: int, rank: int, size: int) -> None:
    """Called by the worker before each kernel call."""
    global _chip, _rank, _size
    _chip, _rank, _size = chip, rank, size


def set_host(host: int) -> None:
    global _host
    _host = host
