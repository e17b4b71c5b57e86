"""The exceptions l3c raises. Every one subclasses `L3CError`, so callers can catch them all at once."""
from __future__ import annotations


class L3CError(Exception):
    """Base class of every error l3c raises on purpose."""


class ConfigError(L3CError, ValueError):
    """An invalid setting of `l3c.jit` or `@l3c.kernel` (`chips=0`, `worker="gpu"`, `timeout=-1`);
    the message names the user's file:line. Also a ValueError, Python's error for a bad argument."""


class TraceError(L3CError):
    """The orchestration function cannot be traced; the message names the user's file:line."""


class KernelError(L3CError):
    """A kernel raised inside a worker. The run stopped; the pool stays usable."""

    def __init__(self, message: str, *, kernel: str = "", task: int = -1, loc: str = "",
                 remote_traceback: str = "") -> None:
        super().__init__(message)
        self.kernel = kernel
        self.task = task
        self.loc = loc
        self.remote_traceback = remote_traceback


class WorkerCrashed(L3CError):
    """A worker process died during a run. The pool replaces it; the next call works."""

    def __init__(self, message: str, *, worker: int = -1, signal: int | None = None,
                 exitcode: int | None = None) -> None:
        super().__init__(message)
        self.worker = worker
        self.signal = signal
        self.exitcode = exitcode


class Timeout(L3CError):
    """A run exceeded its `timeout`; hung workers were replaced."""


class ScheduleError(L3CError):
    """A schedule file is corrupt, truncated, foreign or of another version, names a kernel whose
    parameters or access modes changed, does not order a conflict of its accesses, or is called
    with inputs that do not match its signature."""


class ScheduleWarning(UserWarning):
    """A schedule file that works but may surprise: saved with a kernel defined in `__main__`
    (other programs cannot import it), or loaded with a kernel whose body changed since."""
