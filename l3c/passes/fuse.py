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
the schedule pass's list scheduling ahead to see that (`_Estimate`); on one host that placement
is the schedule pass's own, and `run_and_place` returns it for the pass manager to hand over.

Writes `Task.group`, `Task.group_rank` and appends to `program.groups`; node ids are unchanged.
The graph keeps each member's own edges; code generation makes a consumer wait on the group once
(see docs/passes.md). Switch: `PassOptions.fuse_groups` / `Config.fuse_groups`.
"""
from __future__ import annotations

from ..ir import Access, Program, Task
from .graphs import task_list
from .loopnest import iteration_preds
from .placer import Placer


def signature(program: Program, task: Task, dtypes: list[str] | None = None) -> tuple:
    """What two calls must share to be fused: kernel, scalars, and per tensor param mode/shape/dtype
    (`dtypes`: the tensors' dtypes by id, when the caller has them at hand)."""
    if dtypes is None:
        dtypes = [t.dtype for t in program.tensors]
    parts = [(arg.param, arg.mode, arg.region.shape, dtypes[arg.tensor]) if isinstance(arg, Access)
             else (arg.param, "scalar", type(arg.value).__name__, repr(arg.value))
             for arg in task.args]
    return (task.kernel, task.loops, tuple(parts))


def _same_signature(a: Task, b: Task, dtypes: list[str]) -> bool:
    """`signature(a) == signature(b)`, compared argument by argument without building either."""
    if a.kernel != b.kernel or a.loops != b.loops or len(a.args) != len(b.args):
        return False
    for x, y in zip(a.args, b.args):
        if x is y:
            continue
        if x.param != y.param:
            return False
        if isinstance(x, Access):
            if not (isinstance(y, Access) and x.mode == y.mode and x.region.shape == y.region.shape
                    and dtypes[x.tensor] == dtypes[y.tensor]):
                return False
        elif isinstance(y, Access) or not (
                type(x.value).__name__ == type(y.value).__name__
                and repr(x.value) == repr(y.value)):
            return False
    return True


def run(program: Program) -> Program:
    """The fuse pass (see module docstring)."""
    return run_and_place(program)[0]


def run_and_place(program: Program) -> tuple[Program, Placer | None]:
    """The fuse pass, and the schedule pass's placement of the fused program when the pass ran
    it ahead (with kernel costs, see `_Estimate`) and it is exactly what the schedule pass would
    compute (one host: the candidates do not depend on where the group's members went), else
    None."""
    chips = program.config.chips
    if chips < 2:
        return program, None
    graph = program.graph
    tasks = task_list(program)
    estimate = _Estimate(program, tasks) if program.costs.kernel_costs else None
    nodes = graph._node
    run_members: list[Task] = []

    def close_run() -> None:
        if len(run_members) == 1:
            if estimate is not None:                # a group of one: placed as a plain task
                estimate.place(run_members[0])
            run_members.clear()
            return
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
                nodes[member.id]["group"] = gid     # the one node attribute fusing changes
        run_members.clear()

    boundaries = {b for loop in program.loops.values() for b in (loop.first_task, loop.end_task)}
    preds = iteration_preds(program, len(tasks)) if program.has_carried else graph._pred
    dtypes = [t.dtype for t in program.tensors]
    # One host: an unpinned task goes straight to the placer with every worker of its kind (a
    # member of an explicit group: those its group does not hold), as `_Estimate.place` would
    # send it
    placer = estimate.placer if estimate is not None else None
    direct = placer is not None and placer.hosts == 1
    if direct:
        place, all_slots, count = placer.place, placer.all_slots, placer.count
        chip_slots = all_slots["chip"]
    previous = None                  # the task before, when fusable and not across a boundary
    for task in tasks:
        # a run's members: chip calls, unpinned, not in an explicit group
        fusable = task.worker == "chip" and task.pin is None and task.group is None
        if (fusable and previous is not None and previous.kernel == task.kernel
                and task.id not in boundaries and _same_signature(previous, task, dtypes)):
            # Independent of every member so far? (Members are the tasks run_members[0].id ..
            # task.id - 1, and edges only go from earlier to later tasks.)
            if max(preds[task.id], default=-1) < run_members[0].id:
                run_members.append(task)
                previous = task
                continue
        if run_members:
            if direct and len(run_members) == 1:       # a run of one: a plain task
                place(run_members[0].id, chip_slots)
                run_members.clear()
            else:
                close_run()
        if fusable:
            run_members.append(task)
            previous = task
        else:
            previous = None
            if direct and task.pin is None and count[task.worker] > 0:
                place(task.id, all_slots[task.worker] if task.group is None
                      else placer.candidates(task, placer.group_taken(task)))
            elif estimate is not None:
                estimate.place(task)
    close_run()
    if estimate is not None and program.config.hosts == 1:
        return program, estimate.placer
    return program, None


class _Estimate:
    """The schedule pass's list scheduling, run ahead in program order, to see what grouping a
    run of calls costs: group members must take distinct chips, so a member whose chip is busy
    (a heavy call placed just before) waits although another chip could run it at once. A group
    stops growing where the next member would finish later under the constraint than without it
    (more than `costs.placement_slack` later). Only used when the program has kernel costs (hints
    or measured): without them every call is assumed equal and runs are grouped as they come,
    which costs nothing to decide. Placements stay in the `Placer` (no Task field is written)."""

    def __init__(self, program: Program, tasks: list[Task]) -> None:
        self.program = program
        self.placer = Placer(program, tasks)

    def place(self, task: Task, taken: set[int] = frozenset()) -> None:
        """Place `task` as the schedule pass would (avoiding chips in `taken`), unless no worker
        can run it (the schedule pass reports that)."""
        placer = self.placer
        count, pin = placer.count[task.worker], task.pin
        if count <= 0 or (pin is not None and not 0 <= pin < count):
            return
        if pin is None and task.group is None and not taken and placer.hosts == 1:
            placer.place(task.id, placer.all_slots[task.worker])
        else:
            placer.place_task(task, taken)

    def group_size(self, members: list[Task]) -> int:
        """How many of `members` (at most one per chip) to group; places those, and the first
        left out is placed by the caller's next round."""
        placer = self.placer
        taken: set[int] = set()
        slack = self.program.costs.placement_slack + 1e-9
        for k, task in enumerate(members):
            if k and (placer.earliest_finish(task.id, placer.candidates(task, taken))
                      > placer.earliest_finish(task.id, placer.candidates(task, set())) + slack):
                return k
            self.place(task, taken)
            taken.add(placer.where[task.id] - placer.base["chip"])
        return len(members)
