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

Several hosts (`config.hosts > 1`): chips are numbered globally `0..hosts*chips-1` (host = chip //
chips), sub workers likewise. An edge between two hosts costs `host_latency` plus `host_byte_cost`
per byte it moves (the RAW regions the consumer reads), both from `program.reports` (defaults
`HOST_LATENCY`, `HOST_BYTE_COST`), on top of `handoff_cost`. The same list scheduling then keeps a
dependency chain on its host unless another host finishes it earlier (that is, unless staying would
lose parallelism). Only the hosts of a task's predecessors and the host with the earliest free
worker are candidates, so placement costs O(predecessors + workers) per task, not O(hosts * chips).
Group members may take chips on any host.

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

HOST_LATENCY = 2.0             # cost units of one message between hosts (a task costs 1.0)
HOST_BYTE_COST = 1.0 / (1 << 20)   # cost units per byte moved between hosts (1 MiB ~ one task)


def worker_of(task: Task) -> Worker:
    return (task.worker, task.chip)


def task_cost(task: Task, costs: dict) -> float:
    return float(costs.get(task.kernel, costs.get(task.short_kernel, 1.0)))


def _check_placeable(program: Program, task: Task) -> None:
    cfg = program.config
    count = (cfg.chips if task.worker == "chip" else cfg.sub_workers) * cfg.hosts
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
        self.hosts = cfg.hosts
        self.per_host = {"chip": max(1, cfg.chips), "sub": max(1, cfg.sub_workers)}
        self.free_at: dict[Worker, float] = {("chip", i): 0.0 for i in range(cfg.chips * cfg.hosts)}
        self.free_at.update({("sub", i): 0.0 for i in range(cfg.sub_workers * cfg.hosts)})
        self.finish: dict[int, float] = {}
        self.where: dict[int, Worker] = {}
        self.latency = float(program.reports.get("host_latency", HOST_LATENCY))
        self.byte_cost = float(program.reports.get("host_byte_cost", HOST_BYTE_COST))
        self._edge_cost: dict[tuple[int, int], float] = {}

    def host(self, worker: Worker) -> int:
        return worker[1] // self.per_host[worker[0]] if self.hosts > 1 else 0

    def edge_cost(self, u: int, v: int) -> float:
        """What moving u's results to v's host costs: a latency plus the bytes v reads from them."""
        cost = self._edge_cost.get((u, v))
        if cost is None:
            data = self.graph.edges[u, v]
            nbytes = 0
            if "RAW" in data.get("kinds", ()):
                tensors = self.program.tensors
                for a in self.program.task(v).accesses:
                    if a.reads and a.tensor in data.get("tensors", ()):
                        nbytes += a.region.size * tensors[a.tensor].itemsize
            cost = self._edge_cost[u, v] = self.latency + self.byte_cost * nbytes
        return cost

    def _estimate(self, task: Task, worker: Worker) -> tuple[float, float]:
        ready = 0.0
        host = self.host(worker) if self.hosts > 1 else 0
        for p in self.graph.pred[task.id]:
            where = self.where[p]
            arrive = self.finish[p] + (self.handoff if where != worker else 0.0)
            if self.hosts > 1 and self.host(where) != host:
                arrive += self.edge_cost(p, task.id)
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
    chips = program.config.chips * program.config.hosts
    if len(members) > chips:
        raise L3CError(f"{members[0].loc}: group of {len(members)} {members[0].short_kernel} calls "
                       f"needs {len(members)} distinct chips, but the pool has {chips}")
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
    return [("chip", i) for i in range(program.config.chips * program.config.hosts)
            if i not in taken]


def _host_candidates(placer: _Placer, task: Task, workers: list[Worker]) -> list[Worker]:
    """With several hosts: only the workers on the hosts of the task's predecessors (and of other
    group members), plus those on the host of the earliest free worker, can finish it earliest, so
    list scheduling needs to look at no other host."""
    if placer.hosts == 1:
        return workers
    hosts = {placer.host(placer.where[p]) for p in placer.graph.pred[task.id]}
    if task.group is not None:
        hosts.update(placer.host(placer.where[m]) for m in placer.program.groups[task.group]
                     if m in placer.where)
    free_at = placer.free_at
    hosts.add(placer.host(min(workers, key=lambda w: (free_at[w], w[1]))))
    return [w for w in workers if placer.host(w) in hosts]


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
    all_workers = {kind: [(kind, i) for i in range(count * cfg.hosts)]
                   for kind, count in (("chip", cfg.chips), ("sub", cfg.sub_workers))}
    for task in tasks:
        if task.pin is not None:
            placer.place(task, [(task.worker, task.pin)])
        elif task.group is not None:
            placer.place(task, _host_candidates(placer, task, _group_candidates(program, task)))
        else:
            placer.place(task, _host_candidates(placer, task, all_workers[task.worker]))
    queues: dict[Worker, int] = {}
    for task in tasks:
        worker = worker_of(task)
        task.queue_pos = queues.get(worker, 0)
        queues[worker] = task.queue_pos + 1
    program.sync_node_attrs()

    costs = placer.costs
    longest: dict[int, float] = {}
    cross = cross_host = 0
    for task in tasks:
        preds = program.graph.pred[task.id]
        longest[task.id] = task_cost(task, costs) + max((longest[p] for p in preds), default=0.0)
        cross += sum(1 for p in preds if placer.where[p] != placer.where[task.id])
        if cfg.hosts > 1:
            cross_host += sum(1 for p in preds
                              if placer.host(placer.where[p]) != placer.host(placer.where[task.id]))
    # Placing in program order with in-order queues computed exactly `estimate_times`'s model.
    program.reports["critical_path"] = max(longest.values(), default=0.0)
    program.reports["makespan"] = max(placer.finish.values(), default=0.0)
    program.reports["cross_worker_edges"] = cross
    if cfg.hosts > 1:
        program.reports["cross_host_edges"] = cross_host
    return program
