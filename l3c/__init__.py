"""l3c: compile multi-chip orchestration code from Python into a static native schedule.

Pipeline (folders in processing order): `l3c.trace` records kernel calls into the IR (`l3c.ir`),
`l3c.passes` infer dependencies, lifetimes, groups, placement and a memory plan, `l3c.codegen` lowers
the placed IR to a plain-data plan and an llvmlite dispatcher, and `l3c.runtime` runs it on forked
chip and sub-worker processes. See docs/layout.md.
"""
from .errors import (ConfigError, KernelError, L3CError, ScheduleError, ScheduleWarning,  # noqa: F401
                     Timeout, TraceError, WorkerCrashed)
from .trace.kernel import In, InOut, Kernel, Out, kernel  # noqa: F401
from .trace.arrayspec import ArraySpec  # noqa: F401
from .trace.context import empty, empty_like, group, scope, zeros  # noqa: F401
from .runtime.context import chip_id, group_rank, group_size, host_id  # noqa: F401
from .jit import Jitted, jit  # noqa: F401
from .compiled import Compiled, load  # noqa: F401
from .inflight import Run  # noqa: F401
from .shared import shared  # noqa: F401
from .runtime.pool import shutdown  # noqa: F401

__version__ = "0.1.0"
