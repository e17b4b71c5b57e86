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
"""
from __future__ import annotations

import heapq

from ..errors import L3CError
from ..ir import Access, CostModel, Program, Region, Task
from . import regions
from .graphs import task_list
from .loopnest import iteration_preds

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


class _Placer:
    """List-scheduling state: when each worker frees up, where and when each task ran.

    Plain lists indexed by task id (ids are 0..n-1 in program order) and per-kind worker indexes,
    so placing a task costs O(predecessors x candidates) without networkx lookups."""

    def __init__(self, program: Program, tasks: list[Task]) -> None:
        self.program = program
        self.graph = program.graph
        self.costs = program.costs
        self.handoff = float(self.costs.handoff_cost)
        self.slack = float(self.costs.placement_slack)
        self.tasks = tasks
        self._writes_of: dict[int, list] = {}
        self._reads_of: dict[int, list] = {}
        self._shared: dict[tuple[Region, Region], int] = {}
        self._itemsizes: dict[int, int] = {}
        self.config = cfg = program.config
        self.count = {"chip": cfg.units("chip"), "sub": cfg.units("sub")}
        self.free_at: dict[Worker, float] = {("chip", i): 0.0 for i in range(self.count["chip"])}
        self.free_at.update({("sub", i): 0.0 for i in range(self.count["sub"])})
        self.all_workers = {kind: [(kind, i) for i in range(n)] for kind, n in self.count.items()}
        # Earliest-free worker of each kind: a heap of (free_at, index) with stale entries.
        self.free_heap = {kind: [(0.0, i) for i in range(n)] for kind, n in self.count.items()}
        # Predecessors within one iteration by task id (without loops: the graph's own dicts).
        self.preds = iteration_preds(program, len(tasks)) if program.loops else self.graph._pred
        by_kernel: dict[str, float] = {}
        self.cost: list[float] = []
        for t in tasks:
            c = by_kernel.get(t.kernel)
            if c is None:
                c = by_kernel[t.kernel] = task_cost(t, self.costs)
            self.cost.append(c)
        n = len(tasks)
        self.finish: list[float] = [0.0] * n
        self.where: list[Worker | None] = [None] * n
        self.latency = float(self.costs.host_latency)
        self.byte_cost = float(self.costs.host_byte_cost)
        self._edge_cost: dict[tuple[int, int], float] = {}

    def host(self, worker: Worker) -> int:
        return self.config.host_of_unit(*worker)

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

    def ready(self, v: int, worker: Worker) -> float:
        """When all of v's inputs can be on `worker` (hand-off and host transfer costs included)."""
        finish, where = self.finish, self.where
        ready = 0.0
        if self.config.hosts == 1:
            handoff = self.handoff
            for p in self.preds[v]:
                arrive = finish[p] if where[p] == worker else finish[p] + handoff
                if arrive > ready:
                    ready = arrive
            return ready
        host = self.host(worker)
        for p in self.preds[v]:
            wp = where[p]
            arrive = finish[p]
            if wp != worker:
                arrive += self.handoff
                if self.host(wp) != host:
                    arrive += self.edge_cost(p, v)
            if arrive > ready:
                ready = arrive
        return ready

    def _estimate(self, task: Task, worker: Worker) -> tuple[float, float]:
        start = max(self.ready(task.id, worker), self.free_at[worker])
        return start, start + self.cost[task.id]

    def earliest_free(self, kind: str, allowed=None) -> Worker:
        """The worker of `kind` (among `allowed`, if given) that frees up first (lowest index on
        ties)."""
        heap, free_at = self.free_heap[kind], self.free_at
        while heap and free_at[(kind, heap[0][1])] != heap[0][0]:
            heapq.heappop(heap)                              # stale entry
        if allowed is None or (kind, heap[0][1]) in allowed:
            return (kind, heap[0][1])
        return min(allowed, key=lambda w: (free_at[w], w[1]))

    def place(self, task: Task, candidates: list[Worker]) -> None:
        v = task.id
        preds = self.preds[v]
        finish, where, free_at = self.finish, self.where, self.free_at
        cost = self.cost[v]
        latest_worker = None
        # One walk over the predecessors: the latest finish on each worker holding one, and the
        # worker of the latest (finish, id). On one host a candidate's ready time follows from
        # these (`ready`'s maximum, the hand-off added to the other workers' latest).
        pred_workers: dict[Worker, float] = {}
        if preds:
            latest_finish, latest_id = -1.0, -1
            for p in preds:
                fp, wp = finish[p], where[p]
                if fp > pred_workers.get(wp, -1.0):
                    pred_workers[wp] = fp
                if fp > latest_finish or (fp == latest_finish and p > latest_id):
                    latest_finish, latest_id = fp, p
            latest_worker = where[latest_id]
        one_host = self.config.hosts == 1
        common = None
        if one_host and (self.handoff == 0.0 or not preds):
            common = 0.0
            for fp in pred_workers.values():
                if fp > common:
                    common = fp
        handoff = self.handoff
        ends = []
        earliest = None
        for worker in candidates:
            free = free_at[worker]
            if common is not None:
                ready = common
            elif one_host:
                ready = pred_workers.get(worker, 0.0)
                for w, fp in pred_workers.items():
                    if w != worker and fp + handoff > ready:
                        ready = fp + handoff
            else:
                ready = self.ready(v, worker)
            end = (ready if ready > free else free) + cost
            ends.append((end, worker, free))
            if earliest is None or end < earliest:
                earliest = end
        if len(ends) == 1:
            self.commit(task, ends[0][1], ends[0][0])
            return
        limit = earliest + self.slack + 1e-9 * max(1.0, abs(earliest))
        close = [e for e in ends if e[0] <= limit]
        holders = [w for _, w, _ in close if w in pred_workers]
        affinity = self.affinity(v, holders) if len(holders) > 1 else {}
        best = None
        for end, worker, free in close:
            prefer = 0 if worker == latest_worker else 1 if worker in pred_workers else 2
            key = (-affinity.get(worker, 0), prefer, end, free, worker[1])
            if best is None or key < best[0]:
                best = (key, worker, end)
        _, worker, end = best
        self.commit(task, worker, end)

    def affinity(self, v: int, holders: list[Worker]) -> dict[Worker, int]:
        """Per worker in `holders`, how much of v's input it already holds: the bytes v reads that
        its predecessors there wrote (exact region intersections), plus 1 per predecessor (an
        edge within a worker needs no cross-process hand-off even without data)."""
        found = dict.fromkeys(holders, 0)
        where = self.where
        for p in self.preds[v]:
            w = where[p]
            if w in found:
                found[w] += 1 + self.data_bytes(p, v)
        return found

    def data_bytes(self, u: int, v: int) -> int:
        """Bytes v reads that u wrote, over the tensors of the edge's RAW dependency."""
        data = self.graph._succ[u][v]
        if "RAW" not in data["kinds"]:
            return 0
        edge_tensors = data["tensors"]
        itemsize = self._itemsize
        shared = self._shared
        nbytes = 0
        reads = None
        for wt, wr in self._accesses(u)[0]:
            if wt in edge_tensors:
                if reads is None:
                    reads = self._accesses(v)[1]
                for rt, rr in reads:
                    if rt == wt:
                        n = shared.get((wr, rr))
                        if n is None:
                            n = shared[wr, rr] = regions.intersection_size(wr, rr)
                        nbytes += n * itemsize(wt)
        return nbytes

    def _accesses(self, t: int) -> tuple[list[tuple[int, object]], list[tuple[int, object]]]:
        """(tensor, region) of each tensor argument of task t that it writes, and that it reads
        (programs repeat views, so their intersections are kept by identity)."""
        writes = self._writes_of.get(t)
        if writes is None:
            args = [a for a in self.tasks[t].args if isinstance(a, Access)]
            writes = self._writes_of[t] = [(a.tensor, a.region) for a in args if a.mode != "In"]
            self._reads_of[t] = [(a.tensor, a.region) for a in args if a.mode != "Out"]
        return writes, self._reads_of[t]

    def _itemsize(self, tensor: int) -> int:
        size = self._itemsizes.get(tensor)
        if size is None:
            size = self._itemsizes[tensor] = self.program.tensors[tensor].itemsize
        return size

    def commit(self, task: Task, worker: Worker, finish: float) -> None:
        task.chip = worker[1]
        self.where[task.id] = worker
        self.finish[task.id] = finish
        self.free_at[worker] = finish
        if self.config.hosts > 1:           # only several hosts look for the earliest free worker
            heapq.heappush(self.free_heap[worker[0]], (finish, worker[1]))


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


def _group_taken(program: Program, task: Task, tasks: list[Task] | None = None) -> set[int]:
    """Chips a group member may not take: used or reserved (pinned) by another member (`tasks`:
    the program's tasks by id, to look them up without the graph)."""
    taken = set()
    for other_id in program.groups[task.group]:
        other = program.task(other_id) if tasks is None else tasks[other_id]
        if other_id != task.id:
            if other.chip is not None and other_id < task.id:
                taken.add(other.chip)
            elif other.pin is not None:
                taken.add(other.pin)
    return taken


def _candidates(placer: _Placer, task: Task, taken: set[int]) -> list[Worker]:
    """Workers of the task's kind (not in `taken`) that can finish it earliest.

    One host: all of them. Several hosts: only the workers on the hosts of the task's predecessors
    (and of other group members), plus those on the host of the earliest free worker, can finish
    it earliest, so list scheduling needs to look at no other host."""
    kind = task.worker
    if placer.config.hosts == 1:
        if not taken:
            return placer.all_workers[kind]
        return [(kind, i) for i in range(placer.count[kind]) if i not in taken]
    where = placer.where
    hosts = {placer.host(where[p]) for p in placer.preds[task.id]}
    if task.group is not None:
        hosts.update(placer.host(where[m]) for m in placer.program.groups[task.group]
                     if m < len(where) and where[m] is not None)
    if taken:
        allowed = [(kind, i) for i in range(placer.count[kind]) if i not in taken]
        hosts.add(placer.host(placer.earliest_free(kind, set(allowed))))
    else:
        hosts.add(placer.host(placer.earliest_free(kind)))
    return [(kind, i) for h in sorted(hosts) for i in placer.config.units_of_host(kind, h)
            if i not in taken]


def estimate_times(program: Program) -> tuple[list[float], list[float]]:
    """Start and finish estimates of every placed task (lists indexed by task id) under the
    schedule's cost model.

    Workers run their queues in order, so a task starts when its worker is free and its
    predecessors' results have arrived. The memory pass uses this to add only ordering edges that
    delay nothing.
    """
    tasks = task_list(program)
    placer = _Placer(program, tasks)
    start: list[float] = [0.0] * len(tasks)
    finish, where, free_at, cost = placer.finish, placer.where, placer.free_at, placer.cost
    for task in tasks:
        v, worker = task.id, (task.worker, task.chip)
        ready, free = placer.ready(v, worker), free_at[worker]
        start[v] = s = ready if ready > free else free
        finish[v] = free_at[worker] = s + cost[v]
        where[v] = worker
    return start, finish


def run(program: Program) -> Program:
    """The schedule pass (see module docstring)."""
    cfg = program.config
    tasks = task_list(program)
    for task in tasks:
        _check_placeable(program, task)
    for members in program.groups:
        _check_group(program, [tasks[i] for i in members])
    for task in tasks:
        task.chip = task.queue_pos = None
    placer = _Placer(program, tasks)
    everything: set[int] = set()
    for task in tasks:
        if task.pin is not None:
            placer.place(task, [(task.worker, task.pin)])
        elif task.group is not None:
            placer.place(task, _candidates(placer, task, _group_taken(program, task, tasks)))
        else:
            placer.place(task, _candidates(placer, task, everything))
    queues: dict[Worker, int] = {}
    for task in tasks:
        worker = worker_of(task)
        task.queue_pos = queues.get(worker, 0)
        queues[worker] = task.queue_pos + 1
    nodes = program.graph.nodes
    for task in tasks:                    # what `program.sync_node_attrs()` would change
        attrs = nodes[task.id]
        attrs["chip"], attrs["group"], attrs["host"] = task.chip, task.group, program.host_of(task)

    longest: list[float] = [0.0] * len(tasks)
    where, cost = placer.where, placer.cost
    cross = cross_host = 0
    for v in range(len(tasks)):
        preds = placer.preds[v]
        here = where[v]
        before = None
        for p in preds:
            if before is None or longest[p] > before:
                before = longest[p]
            if where[p] != here:
                cross += 1
                if cfg.hosts > 1 and placer.host(where[p]) != placer.host(here):
                    cross_host += 1
        longest[v] = cost[v] + (0.0 if before is None else before)
    # Placing in program order with in-order queues computed exactly `estimate_times`'s model.
    program.reports["critical_path"] = critical = max(longest, default=0.0)
    program.reports["makespan"] = max(placer.finish, default=0.0)
    work = {"chip": 0.0, "sub": 0.0}
    for task in tasks:
        work[task.worker] += placer.cost[task.id]
    program.reports["makespan_lower_bound"] = max(
        [critical] + [work[kind] / placer.count[kind] for kind in work if placer.count[kind]])
    program.reports["cross_worker_edges"] = cross
    if cfg.hosts > 1:
        program.reports["cross_host_edges"] = cross_host
    return program
