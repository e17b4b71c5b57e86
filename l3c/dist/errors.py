"""Errors of multi-host runs. All subclass `l3c.L3CError`; each names the host and the task involved."""
from __future__ import annotations

from ..errors import L3CError


class HostFailed(L3CError):
    """Another host's run failed (a kernel raised there, a worker crashed, it timed out), so this
    host stopped its own run. `host`: the failing host; `task`/`kernel`/`loc`: what failed there
    (-1 / "" when unknown); `kind`: the failing host's error class name."""

    def __init__(self, message: str, *, host: int = -1, task: int = -1, kernel: str = "",
                 loc: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.host, self.task, self.kernel, self.loc, self.kind = host, task, kernel, loc, kind


class HostLost(HostFailed):
    """A host stopped answering during a run (its process died or stalled): nothing came from it
    within the silence limit or the run's timeout. `task` is what this host was waiting for from it."""
