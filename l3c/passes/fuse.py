"""fuse: turn runs of independent calls of one chip kernel into group tasks.

A run is a stretch of tasks adjacent in program order, in the same loops and conds (a run never
crosses the start or end of a loop body or cond block), that call the same chip kernel with the
same signature: equal scalar arguments, and per tensor parameter the same mode, view shape and dtype (the
regions may differ: that is the point, e.g. row blocks of one matrix). Members must be unpinned, not
already in an explicit `l3c.group`, and independent: no path between any two (within one
iteration: a carried edge orders different iterations, which a group does not change). Because the run is
contiguous in program order, any path between two members would pass only through members, so it
suffices that no edge joins two members. Runs longer than `config.chips` are cut into groups of at
most `chips` members; a run of one stays a plain task. Zero-fill tasks between calls end a run
(fusing across them would be safe only if they touch nothing the run touches; we keep it simple).

With kernel costs (`program.costs`), a group also stops growing where the distinct-chip rule would
make the next member finish later than it could alone (after a heavy call, say): the pass runs
the schedule pass's list scheduling ahead to see that (`_Estimate`), and discards its placements.

Writes `Task.group`, `Task.group_rank` and appends to `program.groups`; node ids are unchanged.
The graph keeps each member's own edges; code generation makes a consumer wait on the group once
(see docs/passes.md). Switch: `PassOptions.fuse_groups` / `Config.fuse_groups`.
"""
from __future__ import annotations

from ..ir import Access, Program, Task
from .graphs import task_list
from .loopnest import iteration_preds


def signature(program: Program, task: Task, dtypes: list[str] | None = None) -> tuple:
    """What two calls must share to be fused: kernel, scalars, and per tensor param mode/shape/dtype
    (`dtypes`: the tensors' dtypes by id, when the caller has them at hand)."""
    if dtypes is None:
        dtypes = [t.dtype for t in program.tensors]
    parts = [(arg.param, arg.mode, arg.region.shape, dtypes[arg.tensor]) if isinstance(arg, Access)
             else (arg.param, "scalar", type(arg.value).__name__, repr(arg.value))
             for arg in task.args]
    return (task.kernel, task.loops, tuple(parts))


def _fusable(task: Task) -> bool:
    return task.worker == "chip" and task.pin is None and task.group is None


def run(program: Program) -> Program:
    """The fuse pass (see module docstring)."""
    chips = program.config.chips
    if chips < 2:
        return program
    graph = program.graph
    estimate = _Estimate(program) if program.costs.kernel_costs else None
    run_members: list[Task] = []
    run_ids: set[int] = set()
    run_sig = None

    def close_run() -> None:
        start = 0
        while start < len(run_members):
            members = run_members[start:start + chips]
            if estimate is not None:
                members = members[:estimate.group_size(members)]
            start += len(members)
            if len(members) < 2:
                continue
            gid = len(program.groups)
            program.groups.append([t.id for t in members])
            for rank, member in enumerate(members):
                member.group, member.group_rank = gid, rank
                program.sync_node_attrs(member.id)
        run_members.clear()
        run_ids.clear()

    boundaries = {b for loop in program.loops.values() for b in (loop.first_task, loop.end_task)}
    preds = iteration_preds(program, graph.number_of_nodes()) if program.has_carried else graph._pred
    dtypes = [t.dtype for t in program.tensors]
    for task in task_list(program):
        sig = signature(program, task, dtypes) if _fusable(task) else None
        if task.id in boundaries:
            run_sig = None                      # a loop/cond starts or ends before this task
        if sig is not None and sig == run_sig:
            # Independent of every member so far? (Edges only go from earlier to later tasks.)
            if run_ids.isdisjoint(preds[task.id]):
                run_members.append(task)
                run_ids.add(task.id)
                continue
        close_run()
        run_sig = sig
        if sig is not None:
            run_members.append(task)
            run_ids.add(task.id)
        elif estimate is not None:
            estimate.place(task)
    close_run()
    if estimate is not None:
        estimate.forget()
    return program


class _Estimate:
    """The schedule pass's list scheduling, run ahead in program order, to see what grouping a
    run of calls costs: group members must take distinct chips, so a member whose chip is busy
    (a heavy call placed just before) waits although another chip could run it at once. A group
    stops growing where the next member would finish later under the constraint than without it
    (more than `costs.placement_slack` later). Only used when the program has kernel costs (hints
    or measured): without them every call is assumed equal and runs are grouped as they come,
    which costs nothing to decide."""

    def __init__(self, program: Program) -> None:
        from .schedule import _Placer, _candidates, _group_taken
        self.program = program
        self.tasks = task_list(program)
        self.placer = _Placer(program, self.tasks)
        self.candidates, self.group_taken = _candidates, _group_taken
        self.saved = [(t.chip, t.queue_pos) for t in self.tasks]

    def _placeable(self, task: Task) -> bool:
        cfg = self.program.config
        count = cfg.units(task.worker)
        return count > 0 and (task.pin is None or 0 <= task.pin < count)

    def place(self, task: Task, taken: set[int] = frozenset()) -> None:
        """Place `task` as the schedule pass would (avoiding chips in `taken`)."""
        if not self._placeable(task):
            return
        if task.pin is not None:
            self.placer.place(task, [(task.worker, task.pin)])
        elif task.group is not None:
            self.placer.place(task, self.candidates(self.placer, task,
                                                    self.group_taken(self.program, task)))
        else:
            self.placer.place(task, self.candidates(self.placer, task, set(taken)))

    def _earliest_finish(self, task: Task, taken: set[int]) -> float:
        workers = self.candidates(self.placer, task, taken)
        return min((self.placer._estimate(task, w)[1] for w in workers), default=float("inf"))

    def group_size(self, members: list[Task]) -> int:
        """How many of `members` (at most one per chip) to group; places those, and the first
        left out is placed by the caller's next round."""
        taken: set[int] = set()
        slack = self.program.costs.placement_slack + 1e-9
        for k, task in enumerate(members):
            if k and self._earliest_finish(task, taken) > self._earliest_finish(task, set()) + slack:
                return k
            self.place(task, taken)
            taken.add(task.chip)
        return len(members)

    def forget(self) -> None:
        """Leave placement to the schedule pass."""
        for task, (chip, pos) in zip(self.tasks, self.saved):
            if (task.chip, task.queue_pos) != (chip, pos):
                task.chip, task.queue_pos = chip, pos
                if task.group is not None:      # only grouping copied the estimate to the node
                    self.program.sync_node_attrs(task.id)
