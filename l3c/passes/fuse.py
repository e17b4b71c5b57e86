"""fuse: turn runs of independent calls of one chip kernel into group tasks.

A run is a stretch of tasks adjacent in program order that call the same chip kernel with the same
signature: equal scalar arguments, and per tensor parameter the same mode, view shape and dtype (the
regions may differ: that is the point, e.g. row blocks of one matrix). Members must be unpinned, not
already in an explicit `l3c.group`, and independent: no path between any two. Because the run is
contiguous in program order, any path between two members would pass only through members, so it
suffices that no edge joins two members. Runs longer than `config.chips` are cut into groups of at
most `chips` members; a run of one stays a plain task. Zero-fill tasks between calls end a run
(fusing across them would be safe only if they touch nothing the run touches; we keep it simple).

Writes `Task.group`, `Task.group_rank` and appends to `program.groups`; node ids are unchanged.
The graph keeps each member's own edges; code generation makes a consumer wait on the group once
(see docs/passes.md). Switch: `PassOptions.fuse_groups` / `Config.fuse_groups`.
"""
from __future__ import annotations

from ..ir import Access, Program, Task
from .graphs import task_list


def signature(program: Program, task: Task) -> tuple:
    """What two calls must share to be fused: kernel, scalars, and per tensor param mode/shape/dtype."""
    parts = []
    for arg in task.args:
        if isinstance(arg, Access):
            parts.append((arg.param, arg.mode, arg.region.shape,
                          program.tensors[arg.tensor].dtype))
        else:
            parts.append((arg.param, "scalar", type(arg.value).__name__, repr(arg.value)))
    return (task.kernel, tuple(parts))


def _fusable(task: Task) -> bool:
    return task.worker == "chip" and task.pin is None and task.group is None


def run(program: Program) -> Program:
    """The fuse pass (see module docstring)."""
    chips = program.config.chips
    if chips < 2:
        return program
    graph = program.graph
    run_members: list[Task] = []
    run_ids: set[int] = set()
    run_sig = None

    def close_run() -> None:
        for start in range(0, len(run_members), chips):
            members = run_members[start:start + chips]
            if len(members) < 2:
                continue
            gid = len(program.groups)
            program.groups.append([t.id for t in members])
            for rank, member in enumerate(members):
                member.group, member.group_rank = gid, rank
                program.sync_node_attrs(member.id)
        run_members.clear()
        run_ids.clear()

    for task in task_list(program):
        sig = signature(program, task) if _fusable(task) else None
        if sig is not None and sig == run_sig:
            # Independent of every member so far? (Edges only go from earlier to later tasks.)
            if not any(u in run_ids for u in graph.pred[task.id]):
                run_members.append(task)
                run_ids.add(task.id)
                continue
        close_run()
        run_sig = sig
        if sig is not None:
            run_members.append(task)
            run_ids.add(task.id)
    close_run()
    return program
