"""l3c: compile multi-chip orchestration code from Python into a static native schedule.

Pipeline (folders in processing order): `l3c.trace` records kernel calls into the IR (`l3c.ir`),
`l3c.passes` infer dependencies, lifetimes, groups, placement and a memory plan, `l3c.codegen` lowers
the placed IR to a plain-data plan (one per host) and an llvmlite dispatcher, `l3c.execute` runs a
call (arguments, staging, results; one host, several, or eager), and `l3c.runtime` runs plans on
forked chip and sub-worker processes (and, over several hosts, exchanges transfers over MPI).
See docs/layout.md.
"""
from .errors import (ConfigError, KernelError, L3CError, ScheduleError, ScheduleWarning,  # noqa: F401
                     Timeout, TraceError, WorkerCrashed)
from .trace.kernel import In, InOut, Kernel, Out, kernel  # noqa: F401
from .trace.arrayspec import ArraySpec  # noqa: F401
from .trace.context import empty, empty_like, group, scope, zeros  # noqa: F401
from .trace.loops import cond, range, while_loop  # noqa: F401  (l3c.range: a loop of the schedule)
from .runtime.context import chip_id, group_rank, group_size, host_id  # noqa: F401
from .jit import Jitted, jit  # noqa: F401
from .compiled import Compiled, load  # noqa: F401
from .inflight import Run  # noqa: F401
from .shared import shared  # noqa: F401
from .runtime.pool import shutdown  # noqa: F401
from . import dist  # noqa: F401  (l3c.dist.HostFailed, l3c.dist.HostLost)

__version__ = "0.1.0"
