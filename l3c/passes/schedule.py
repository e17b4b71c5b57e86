"""schedule: place every task on a worker and order each worker's queue.

Chip kernels go to chips `0..chips-1`, sub kernels to sub workers `0..sub_workers-1` (`Task.chip`
holds the index within its kind). Pins (`kernel.on(i)`) are obeyed; the members of a group go to
distinct chips. Unpinned tasks are placed by list scheduling in program order (a topological order):
each goes to the worker where it would finish earliest under a cost model, and among equally early
workers to the one that ran its latest-finishing predecessor, then to any predecessor's worker, so
dependency chains stay on one worker and most edges need no cross-process hand-off.

Cost model: every task costs 1.0 unless `program.reports["kernel_costs"]` maps its kernel (full
"module:qualname" or short name) to a measured cost; `program.reports["handoff_cost"]` (default 0)
is added to an edge between two workers.

Each worker's queue is in program order (`Task.queue_pos`): a worker then only ever waits for tasks
earlier in program order, so the static schedule cannot deadlock.

Writes `Task.chip`, `Task.queue_pos`, node attributes, and `program.reports["critical_path"]`,
`["makespan"]` (estimates in cost units) and `["cross_worker_edges"]`. No switch: placement is
required.
"""
from __future__ import annotations

from ..errors import L3CError
from ..ir import Program, Task

Worker = tuple[str, int]       # ("chip", i) or ("sub", i)


def worker_of(task: Task) -> Worker:
    return (task.worker, task.chip)


def task_cost(task: Task, costs: dict) -> float:
    return float(costs.get(task.kernel, costs.get(task.short_kernel, 1.0)))


def _check_placeable(program: Program, task: Task) -> None:
    cfg = program.config
    count = cfg.chips if task.worker == "chip" else cfg.sub_workers
    if task.worker == "sub" and cfg.sub_workers < 1:
        raise L3CError(f"{task.loc}: {task.short_kernel} is a sub-worker kernel but the pool has no "
                       f"sub workers; pass sub_workers=1 (or more) to l3c.jit")
    if task.pin is not None and not 0 <= task.pin < count:
        raise L3CError(f"{task.loc}: {task.short_kernel}.on({task.pin}) pins to {task.worker} "
                       f"{task.pin}, but there are only {count} {task.worker} workers "
                       f"(valid: 0..{count - 1})")


class _Placer:
    """List-scheduling state: when each worker frees up, where and when each task ran."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.graph = program.graph
        self.costs = program.reports.get("kernel_costs") or {}
        self.handoff = float(program.reports.get("handoff_cost", 0.0))
        cfg = program.config
        self.free_at: dict[Worker, float] = {("chip", i): 0.0 for i in range(cfg.chips)}
        self.free_at.update({("sub", i): 0.0 for i in range(cfg.sub_workers)})
        self.finish: dict[int, float] = {}
        self.where: dict[int, Worker] = {}

    def _estimate(self, task: Task, worker: Worker) -> tuple[float, float]:
        ready = 0.0
        for p in self.graph.pred[task.id]:
            arrive = self.finish[p] + (self.handoff if self.where[p] != worker else 0.0)
            ready = max(ready, arrive)
        start = max(ready, self.free_at[worker])
        return start, start + task_cost(task, self.costs)

    def place(self, task: Task, candidates: list[Worker]) -> None:
        preds = list(self.graph.pred[task.id])
        latest = max(preds, key=lambda p: (self.finish[p], p)) if preds else None
        pred_workers = {self.where[p] for p in preds}
        best = None
        for worker in candidates:
            start, finish = self._estimate(task, worker)
            prefer = (0 if latest is not None and self.where[latest] == worker
                      else 1 if worker in pred_workers else 2)
            key = (finish, prefer, self.free_at[worker], worker[1])
            if best is None or key < best[0]:
                best = (key, worker, finish)
        _, worker, finish = best
        self.commit(task, worker, finish)

    def commit(self, task: Task, worker: Worker, finish: float) -> None:
        task.chip = worker[1]
        self.where[task.id] = worker
        self.finish[task.id] = finish
        self.free_at[worker] = finish


def _check_group(program: Program, members: list[Task]) -> None:
    if len(members) > program.config.chips:
        raise L3CError(f"{members[0].loc}: group of {len(members)} {members[0].short_kernel} calls "
                       f"needs {len(members)} distinct chips, but the pool has "
                       f"{program.config.chips}")
    pins = [m.pin for m in members if m.pin is not None]
    if len(set(pins)) != len(pins):
        m = next(m for m in members if m.pin is not None and pins.count(m.pin) > 1)
        raise L3CError(f"{m.loc}: two members of one group are pinned to chip {m.pin}; "
                       f"group members run on distinct chips")


def _group_candidates(program: Program, task: Task) -> list[Worker]:
    """Chips a group member may take: not used or reserved (pinned) by another member."""
    taken = set()
    for other_id in program.groups[task.group]:
        other = program.task(other_id)
        if other_id != task.id:
            if other.chip is not None and other_id < task.id:
                taken.add(other.chip)
            elif other.pin is not None:
                taken.add(other.pin)
    return [("chip", i) for i in range(program.config.chips) if i not in taken]


def estimate_times(program: Program) -> tuple[dict[int, float], dict[int, float]]:
    """Start and finish estimates of every placed task under the schedule's cost model.

    Workers run their queues in order, so a task starts when its worker is free and its
    predecessors' results have arrived. The memory pass uses this to add only ordering edges that
    delay nothing.
    """
    placer = _Placer(program)
    start: dict[int, float] = {}
    for task in program.tasks:
        worker = worker_of(task)
        s, f = placer._estimate(task, worker)
        start[task.id] = s
        placer.commit(task, worker, f)
    return start, placer.finish


def run(program: Program) -> Program:
    """The schedule pass (see module docstring)."""
    cfg = program.config
    tasks = program.tasks
    for task in tasks:
        _check_placeable(program, task)
    for members in program.groups:
        _check_group(program, [program.task(i) for i in members])
    for task in tasks:
        task.chip = task.queue_pos = None
    placer = _Placer(program)
    for task in tasks:
        if task.pin is not None:
            placer.place(task, [(task.worker, task.pin)])
        elif task.group is not None:
            placer.place(task, _group_candidates(program, task))
        else:
            count = cfg.chips if task.worker == "chip" else cfg.sub_workers
            placer.place(task, [(task.worker, i) for i in range(count)])
    queues: dict[Worker, int] = {}
    for task in tasks:
        worker = worker_of(task)
        task.queue_pos = queues.get(worker, 0)
        queues[worker] = task.queue_pos + 1
    program.sync_node_attrs()

    costs = placer.costs
    longest: dict[int, float] = {}
    cross = 0
    for task in tasks:
        preds = program.graph.pred[task.id]
        longest[task.id] = task_cost(task, costs) + max((longest[p] for p in preds), default=0.0)
        cross += sum(1 for p in preds if placer.where[p] != placer.where[task.id])
    # Placing in program order with in-order queues computed exactly `estimate_times`'s model.
    program.reports["critical_path"] = max(longest.values(), default=0.0)
    program.reports["makespan"] = max(placer.finish.values(), default=0.0)
    program.reports["cross_worker_edges"] = cross
    return program
