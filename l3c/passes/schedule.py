"""schedule: place every task on a worker and order each worker's queue.

Chip kernels go to chips `0..chips-1`, sub kernels to sub workers `0..sub_workers-1` (`Task.chip`
holds the index within its kind). Pins (`kernel.on(i)`) are obeyed; the members of a group go to
distinct chips. Unpinned tasks are placed by list scheduling in program order (a topological order):
each goes to the worker where it would finish earliest under a cost model, and among equally early
workers to the one that ran its latest-finishing predecessor, then to any predecessor's worker, so
dependency chains stay on one worker and most edges need no cross-process hand-off.

Cost model: `program.costs` (`l3c.ir.CostModel`): a call costs its kernel's entry in
`kernel_costs` (full "module:qualname" or short name: `@l3c.kernel(cost=...)` hints, measured
times from `l3c profile --save-costs`) or `default_cost`; `handoff_cost` is added to an edge
between two workers.

Several hosts (`config.hosts > 1`): chips are numbered globally `0..hosts*chips-1` (host = chip //
chips), sub workers likewise. An edge between two hosts costs `host_latency` plus `host_byte_cost`
per byte it moves (the RAW regions the consumer reads), both from `program.costs`, on top of
`handoff_cost`. The same list scheduling then keeps a
dependency chain on its host unless another host finishes it earlier (that is, unless staying would
lose parallelism). Only the hosts of a task's predecessors and the host with the earliest free
worker are candidates, so placement costs O(predecessors + workers) per task, not O(hosts * chips).
Group members may take chips on any host.

Each worker's queue is in program order (`Task.queue_pos`): a worker then only ever waits for tasks
earlier in program order, so the static schedule cannot deadlock.

Loops: a body is placed once (its tasks are the queue entries every iteration runs), over the
iteration graph (`graphs.iteration_graph`: carried edges left out, so the graph stays a DAG in
program order); a carried edge orders an instance after an earlier iteration's, which the in-order
queues of every worker can always wait for.

Writes `Task.chip`, `Task.queue_pos`, node attributes, and `program.reports["critical_path"]`,
`["makespan"]` (estimates in cost units), `["makespan_lower_bound"]` (the larger of the critical
path and each worker kind's work / its workers: no placement finishes sooner) and
`["cross_worker_edges"]`. No switch: placement is
required.

The list scheduling itself is `placer.Placer` (the fuse pass runs it too); when the fuse pass ran
it over the whole program on one host, its placement is this pass's own and is taken as is
(`run(program, placed=...)`). The placer records each task's estimated start and finish exactly
as `estimate_times` computes them, and `run_with_times` returns them for the memory pass, which
would otherwise replay the schedule to get them.
"""
from __future__ import annotations

from functools import reduce
from operator import add

from ..errors import L3CError
from ..ir import CostModel, Program, Task
from .graphs import task_list
from .placer import Placer

Worker = tuple[str, int]       # ("chip", i) or ("sub", i)


def worker_of(task: Task) -> Worker:
    return (task.worker, task.chip)


def task_cost(task: Task, costs: CostModel) -> float:
    return costs.cost(task.kernel)


def _check_placeable(program: Program, task: Task) -> None:
    cfg = program.config
    count = cfg.units(task.worker)
    if task.worker == "sub" and cfg.sub_workers < 1:
        raise L3CError(f"{task.loc}: {task.short_kernel} is a sub-worker kernel but the pool has no "
                       f"sub workers; pass sub_workers=1 (or more) to l3c.jit")
    if task.pin is not None and not 0 <= task.pin < count:
        raise L3CError(f"{task.loc}: {task.short_kernel}.on({task.pin}) pins to {task.worker} "
                       f"{task.pin}, but there are only {count} {task.worker} workers "
                       f"(valid: 0..{count - 1})")


def _check_group(program: Program, members: list[Task]) -> None:
    chips = program.config.units("chip")
    if len(members) > chips:
        raise L3CError(f"{members[0].loc}: group of {len(members)} {members[0].short_kernel} calls "
                       f"needs {len(members)} distinct chips, but the pool has {chips}")
    pins = [m.pin for m in members if m.pin is not None]
    if len(set(pins)) != len(pins):
        m = next(m for m in members if m.pin is not None and pins.count(m.pin) > 1)
        raise L3CError(f"{m.loc}: two members of one group are pinned to chip {m.pin}; "
                       f"group members run on distinct chips")


def estimate_times(program: Program) -> tuple[list[float], list[float]]:
    """Start and finish estimates of every placed task (lists indexed by task id) under the
    schedule's cost model.

    Workers run their queues in order, so a task starts when its worker is free and its
    predecessors' results have arrived. The memory pass uses this to add only ordering edges that
    delay nothing.
    """
    tasks = task_list(program)
    placer = Placer(program, tasks)
    start: list[float] = [0.0] * len(tasks)
    finish, where, free_at, cost, base = (placer.finish, placer.where, placer.free_at, placer.cost,
                                          placer.base)
    for task in tasks:
        v, slot = task.id, base[task.worker] + task.chip
        ready, free = placer.ready(v, slot), free_at[slot]
        start[v] = s = ready if ready > free else free
        finish[v] = free_at[slot] = s + cost[v]
        where[v] = slot
    return start, finish


def _check(program: Program, tasks: list[Task]) -> None:
    """Refuse what no placement can obey: a sub kernel without sub workers, a pin out of range,
    a group larger than the chips or with two members pinned to one chip."""
    if program.config.sub_workers < 1:
        suspects = [task for task in tasks if task.pin is not None or task.worker == "sub"]
    else:
        suspects = [task for task in tasks if task.pin is not None]
    pinned = set()
    for task in suspects:
        _check_placeable(program, task)
        if task.pin is not None:
            pinned.add(task.id)
    chips = program.config.units("chip")
    for members in program.groups:
        if len(members) > chips or (pinned and not pinned.isdisjoint(members)):
            _check_group(program, [tasks[i] for i in members])


def _place_all(program: Program, tasks: list[Task]) -> Placer:
    """List scheduling in program order (see the module docstring)."""
    placer = Placer(program, tasks)
    place, everything = placer.place, placer.all_slots
    if program.config.hosts > 1:
        for task in tasks:
            placer.place_task(task)
        return placer
    for task in tasks:
        if task.pin is None and task.group is None:
            place(task.id, everything[task.worker])
        else:
            placer.place_task(task)
    return placer


def run(program: Program, placed: Placer | None = None) -> Program:
    """The schedule pass (see module docstring). `placed`: the fuse pass's list scheduling run
    ahead over this program, when it is this pass's own (see `fuse.run_and_place`)."""
    return run_with_times(program, placed)[0]


def run_with_times(program: Program, placed: Placer | None = None
                   ) -> tuple[Program, tuple[list[float], list[float]]]:
    """The schedule pass, and the estimated start and finish of every task: what
    `estimate_times` computes for the placed program, bit for bit (the placer records them as it
    places, in the same program order and with the same arithmetic), so the memory pass need not
    compute them again."""
    cfg = program.config
    if placed is not None and placed.program is program and len(placed.where) == len(program.graph) \
            and None not in placed.where:
        placer = placed
        tasks = placer.tasks                # the fuse pass's task list: this program's, in order
        _check(program, tasks)
    else:
        tasks = task_list(program)
        _check(program, tasks)
        placer = _place_all(program, tasks)
    n = len(tasks)
    where, cost, preds = placer.where, placer.cost, placer.preds
    next_pos = [0] * len(placer.free_at)
    nodes = program.graph._node
    host_of = placer.host_of_slot
    longest: list[float] = [0.0] * n
    cross = cross_host = 0
    several_hosts = cfg.hosts > 1
    index_of_slot = [i for kind in ("chip", "sub") for i in range(placer.count[kind])]
    for task in tasks:
        v = task.id
        here = where[v]
        task.chip = chip = index_of_slot[here]
        task.queue_pos = next_pos[here]
        next_pos[here] += 1
        attrs = nodes[v]                  # what `program.sync_node_attrs()` would change
        attrs["chip"], attrs["group"], attrs["host"] = chip, task.group, host_of[here]
        before = None
        for p in preds[v]:
            if before is None or longest[p] > before:
                before = longest[p]
            if where[p] != here:
                cross += 1
                if several_hosts and host_of[where[p]] != host_of[here]:
                    cross_host += 1
        longest[v] = cost[v] + (0.0 if before is None else before)
    # each kind's total cost, added one by one in program order: the bound then does not depend
    # on the Python version (`sum` of floats compensates rounding from 3.12 on)
    chip_slots = placer.base["sub"]
    work = {"chip": reduce(add, [cost[v] for v in range(n) if where[v] < chip_slots], 0.0),
            "sub": reduce(add, [cost[v] for v in range(n) if where[v] >= chip_slots], 0.0)}
    # Placing in program order with in-order queues computed exactly `estimate_times`'s model.
    program.reports["critical_path"] = critical = max(longest, default=0.0)
    program.reports["makespan"] = max(placer.finish, default=0.0)
    program.reports["makespan_lower_bound"] = max(
        [critical] + [work[kind] / placer.count[kind] for kind in work if placer.count[kind]])
    program.reports["cross_worker_edges"] = cross
    if several_hosts:
        program.reports["cross_host_edges"] = cross_host
    return program, (placer.start, placer.finish)
