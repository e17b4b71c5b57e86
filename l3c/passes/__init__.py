"""The pass manager: run deps, scopes, fuse, schedule, memory over a traced Program, in order.

Each pass is a function `Program -> Program` in its own module that writes named IR fields (see
docs/passes.md). `run_passes` records each pass it ran in `program.passes_run`, can stop after any
pass (`until`, for `l3c dump-ir --after PASS`), can verify the IR's invariants after every pass, and
every optimisation has a switch in `PassOptions` so a wrong result can be bisected to one of them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from ..errors import L3CError
from ..ir import PASS_ORDER, Program, Task
from . import deps, fuse, memory, schedule, scopes
from .copying import copy_program
from .graphs import gc_paused
from .verify import verify


@dataclass
class PassOptions:
    """Switches for bisecting: turn one optimisation off and compare results."""

    fuse_groups: bool = True       # fuse independent calls of one kernel into group tasks
    reduce_edges: bool = True      # transitive reduction of the dependency graph
    reuse_memory: bool = True      # let intermediates share arena space
    verify: bool = False           # check the IR invariants after every pass
    # Cost-model inputs (see `l3c.ir.CostModel`); the manager writes them into `program.costs`,
    # where the schedule, fuse and memory passes and the dumps read them. None: leave as traced.
    kernel_costs: dict[str, float] | None = None   # override the kernels' `cost=` hints
    default_cost: float | None = None
    handoff_cost: float | None = None
    placement_slack: float | None = None
    host_latency: float | None = None
    host_byte_cost: float | None = None


def apply_costs(program: Program, options: PassOptions) -> None:
    """Write the options' cost-model inputs into `program.costs` (measured costs win over hints)."""
    costs = program.costs
    if options.kernel_costs:
        costs.kernel_costs.update({k: float(v) for k, v in options.kernel_costs.items()})
    for name in ("default_cost", "handoff_cost", "placement_slack", "host_latency",
                 "host_byte_cost"):
        value = getattr(options, name)
        if value is not None:
            setattr(costs, name, float(value))


def _deps(program: Program, options: PassOptions, handover: dict) -> Program:
    program, handover["uses"] = deps.run_recording(program, reduce_edges=options.reduce_edges)
    return program


def _scopes(program: Program, options: PassOptions, handover: dict) -> Program:
    return scopes.run(program, handover.pop("uses", None))


def _fuse(program: Program, options: PassOptions, handover: dict) -> Program:
    if not (options.fuse_groups and program.config.fuse_groups):
        return program
    program, handover["placed"] = fuse.run_and_place(program)
    return program


def _schedule(program: Program, options: PassOptions, handover: dict) -> Program:
    program, handover["times"] = schedule.run_with_times(program,
                                                         placed=handover.pop("placed", None))
    return program


def _memory(program: Program, options: PassOptions, handover: dict) -> Program:
    # several hosts with loops: a host may receive any tensor its loops read, beyond its own
    # tasks' (`looptransfers`), so no two tensors share bytes
    several_loops = bool(program.loops) and program.config.hosts > 1
    return memory.run(program, reuse_memory=options.reuse_memory and not several_loops,
                      times=handover.pop("times", None))


# Pass name -> function(program, options, handover), in pipeline order. `handover`: what a pass
# leaves for a later one of the same run (the tensors' uses deps recorded on its walk, the fuse
# pass's placement when it ran the schedule's, the schedule pass's start and finish estimates,
# which the memory pass would compute again).
PASSES: dict[str, Callable[[Program, PassOptions, dict], Program]] = {
    "deps": _deps,
    "scopes": _scopes,
    "fuse": _fuse,
    "schedule": _schedule,
    "memory": _memory,
}


def _task_in_flight(tb) -> Task | None:
    """The innermost `task` local variable in the failing pass's frames (the task it was on)."""
    found = None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("task")
        if isinstance(candidate, Task):
            found = candidate
        tb = tb.tb_next
    return found


def run_passes(program: Program, *, until: str | None = None,
               options: PassOptions | None = None) -> Program:
    """Run the passes in order on `program` (annotated in place and returned).

    `until` names the last pass to run ("trace": none; None: all). A pass that fails on purpose
    raises its own `L3CError` (naming the user's line); any other failure is re-raised as
    `L3CError` naming the pass and the task it was processing.
    """
    options = options or PassOptions()
    if until is not None and until not in PASS_ORDER:
        raise L3CError(f"unknown pass {until!r}; choose one of {', '.join(PASS_ORDER)}")
    if until == "trace":
        return program
    apply_costs(program, options)
    handover: dict = {}
    with gc_paused():
        for name, function in PASSES.items():
            try:
                program = function(program, options, handover)
            except L3CError:
                raise
            except Exception as exc:
                task = _task_in_flight(sys.exc_info()[2])
                where = (f" at task {task.id} {task.kernel} ({task.loc})" if task is not None
                         else "")
                raise L3CError(f"internal error in pass {name!r}{where}: "
                               f"{type(exc).__name__}: {exc}") from exc
            program.passes_run.append(name)
            if options.verify:
                verify(program)
            if name == until:
                break
    return program


__all__ = ["PASSES", "PassOptions", "copy_program", "run_passes", "verify"]
