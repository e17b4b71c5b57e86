"""What a test process sees of itself in /proc: its child processes and its open fds (the tests
that nothing outlives `l3c.shutdown()` or the interpreter import these, often in a subprocess)."""
from __future__ import annotations

import os


def children() -> list[int]:
    """Pids of this process's children, started by any of its threads, sorted."""
    out = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out += f.read().split()
    return sorted(int(p) for p in out)


def fds() -> list[str]:
    """This process's open file descriptors, sorted."""
    return sorted(os.listdir("/proc/self/fd"))
