"""List scheduling state for the schedule pass (and the fuse pass, which runs it ahead).

`Placer` places tasks one at a time in program order (ids `0..n-1`): each goes to the candidate
worker where it would finish earliest under the cost model, ties broken by the input data the
worker already holds (`affinity`). The schedule module docstring describes the policy; this module
is its data structures, kept to plain lists indexed by task id and integer worker *slots* (chips
`0..C-1`, then sub workers `C..C+S-1`, over all hosts), so placing a task costs
O(predecessors x candidates) list and dict operations without networkx views or tuple keys.
"""
from __future__ import annotations

import heapq
from operator import attrgetter

from ..ir import Access, Program, Task
from . import regions
from .loopnest import iteration_preds

INF = float("inf")


class Placer:
    """Where and when each task runs, and when each worker frees up."""

    def __init__(self, program: Program, tasks: list[Task]) -> None:
        self.program = program
        self.graph = program.graph
        self.tasks = tasks
        costs = program.costs
        self.handoff = float(costs.handoff_cost)
        self.slack = float(costs.placement_slack)
        self.latency = float(costs.host_latency)
        self.byte_cost = float(costs.host_byte_cost)
        self.config = cfg = program.config
        self.hosts = cfg.hosts
        chips, subs = cfg.units("chip"), cfg.units("sub")
        self.count = {"chip": chips, "sub": subs}
        self.base = {"chip": 0, "sub": chips}        # slot of worker index i of a kind: base + i
        self.free_at: list[float] = [0.0] * (chips + subs)
        self.all_slots = {"chip": list(range(chips)), "sub": list(range(chips, chips + subs))}
        self.host_of_slot = ([cfg.host_of_unit("chip", i) for i in range(chips)]
                             + [cfg.host_of_unit("sub", i) for i in range(subs)])
        # Earliest-free worker of each kind (several hosts): a heap of (free_at, index), with
        # stale entries skipped when read.
        self.free_heap = {"chip": [(0.0, i) for i in range(chips)],
                          "sub": [(0.0, i) for i in range(subs)]}
        # Predecessors within one iteration by task id (without loops: the graph's own dicts).
        self.preds = iteration_preds(program, len(tasks)) if program.loops else self.graph._pred
        kernels = list(map(attrgetter("kernel"), tasks))
        by_kernel = {k: costs.cost(k) for k in set(kernels)}
        self.cost: list[float] = list(map(by_kernel.__getitem__, kernels))
        n = len(tasks)
        # Estimated start and finish of each placed task: `start` is max(ready, worker free), as
        # `schedule.estimate_times` computes it (finish - cost may differ from it in the last bit)
        self.start: list[float] = [0.0] * n
        self.finish: list[float] = [0.0] * n
        self.where: list[int | None] = [None] * n      # slot
        self._writes_of: list[list | None] = [None] * n
        self._shared: dict[tuple[int, int], int] = {}
        self._itemsize: list[int] = [0] * len(program.tensors)     # by tensor id, 0: not looked up
        self._dtype_size: dict[str, int] = {}
        self._edge_cost: dict[tuple[int, int], float] = {}

    # ---- the cost model ---------------------------------------------------------------------
    def edge_cost(self, u: int, v: int) -> float:
        """What moving u's results to v's host costs: a latency plus the bytes v reads from them."""
        cost = self._edge_cost.get((u, v))
        if cost is None:
            data = self.graph._succ[u][v]
            nbytes = 0
            if "RAW" in data.get("kinds", ()):
                tensors = self.program.tensors
                for a in self.tasks[v].accesses:
                    if a.reads and a.tensor in data.get("tensors", ()):
                        nbytes += a.region.size * tensors[a.tensor].itemsize
            cost = self._edge_cost[u, v] = self.latency + self.byte_cost * nbytes
        return cost

    def ready(self, v: int, slot: int) -> float:
        """When all of v's inputs can be on worker `slot` (hand-off and host transfer costs
        included)."""
        finish, where = self.finish, self.where
        ready = 0.0
        if self.hosts == 1:
            handoff = self.handoff
            for p in self.preds[v]:
                arrive = finish[p] if where[p] == slot else finish[p] + handoff
                if arrive > ready:
                    ready = arrive
            return ready
        host_of = self.host_of_slot
        host = host_of[slot]
        for p in self.preds[v]:
            wp = where[p]
            arrive = finish[p]
            if wp != slot:
                arrive += self.handoff
                if host_of[wp] != host:
                    arrive += self.edge_cost(p, v)
            if arrive > ready:
                ready = arrive
        return ready

    def earliest_finish(self, v: int, slots: list[int]) -> float:
        """The earliest estimated finish of task v over the workers `slots` (inf when none)."""
        free_at, cost = self.free_at, self.cost[v]
        best = INF
        for slot in slots:
            ready, free = self.ready(v, slot), free_at[slot]
            end = (ready if ready > free else free) + cost
            if end < best:
                best = end
        return best

    # ---- candidates -------------------------------------------------------------------------
    def earliest_free(self, kind: str, allowed: set[int] | None = None) -> int:
        """The worker index of `kind` (among `allowed` indexes, if given) that frees up first
        (lowest index on ties)."""
        heap, free_at, base = self.free_heap[kind], self.free_at, self.base[kind]
        while heap and free_at[base + heap[0][1]] != heap[0][0]:
            heapq.heappop(heap)                              # stale entry
        if allowed is None or heap[0][1] in allowed:
            return heap[0][1]
        return min(allowed, key=lambda i: (free_at[base + i], i))

    def candidates(self, task: Task, taken: set[int], group_slots=()) -> list[int]:
        """Slots of the task's kind (worker indexes not in `taken`) that can finish it earliest.

        One host: all of them. Several hosts: only the workers on the hosts of the task's
        predecessors (and of the slots `group_slots` of its group's placed members), plus those on
        the host of the earliest free worker, can finish it earliest, so list scheduling needs to
        look at no other host."""
        kind = task.worker
        base = self.base[kind]
        if self.hosts == 1:
            if not taken:
                return self.all_slots[kind]
            return [base + i for i in range(self.count[kind]) if i not in taken]
        where, host_of = self.where, self.host_of_slot
        hosts = {host_of[where[p]] for p in self.preds[task.id]}
        hosts.update(host_of[s] for s in group_slots)
        if taken:
            allowed = {i for i in range(self.count[kind]) if i not in taken}
            hosts.add(self.config.host_of_unit(kind, self.earliest_free(kind, allowed)))
        else:
            hosts.add(self.config.host_of_unit(kind, self.earliest_free(kind)))
        return [base + i for h in sorted(hosts) for i in self.config.units_of_host(kind, h)
                if i not in taken]

    # ---- placing ----------------------------------------------------------------------------
    def place(self, v: int, candidates: list[int]) -> None:
        """Put task v on the candidate that finishes it earliest (see the module docstring);
        none (a group larger than the chips, which the schedule pass reports): leave v unplaced."""
        if self.hosts != 1 or self.handoff != 0.0:
            if candidates:
                self._place_general(v, candidates)
            return
        # One host, no hand-off cost: v is ready on every worker when its latest predecessor
        # finishes.
        finish, free_at = self.finish, self.free_at
        preds = self.preds[v]
        cost = self.cost[v]
        latest_finish, latest_id = -1.0, -1
        for p in preds:
            fp = finish[p]
            if fp > latest_finish or (fp == latest_finish and p > latest_id):
                latest_finish, latest_id = fp, p
        ready = latest_finish if latest_finish > 0.0 else 0.0
        if len(candidates) == 1:
            slot = candidates[0]
        elif not candidates:
            return
        else:
            earliest = INF
            for slot in candidates:
                free = free_at[slot]
                end = (ready if ready > free else free) + cost
                if end < earliest:
                    earliest, first = end, slot
            # `limit` as `_place_general` computes it (max(1.0, abs(earliest)), without the calls)
            limit = earliest + self.slack + 1e-9 * (
                earliest if earliest > 1.0 else 1.0 if earliest >= -1.0 else -earliest)
            # the workers free by `limit - cost` (ready or not) finish v within the limit too;
            # the earliest always does
            slot = first
            for other in candidates:
                if other != first and free_at[other] + cost <= limit:
                    break
            else:
                other = None
            if other is not None:           # two or more close: weigh the input they hold
                where = self.where
                close = [w for w in candidates if free_at[w] + cost <= limit]
                pred_slots = set(map(where.__getitem__, preds))
                holders = list(filter(pred_slots.__contains__, close))
                if len(holders) == 1:       # `_choose`'s pick: the only worker holding input
                    slot = holders[0]
                else:
                    ends = []
                    for w in close:
                        free = free_at[w]
                        start = ready if ready > free else free
                        ends.append((start + cost, free, w, start))
                    self._choose(v, ends, pred_slots, where[latest_id] if preds else None)
                    return
        free = free_at[slot]
        start = ready if ready > free else free
        self.where[v] = slot
        self.start[v] = start
        finish[v] = free_at[slot] = start + cost

    def _place_general(self, v: int, candidates: list[int]) -> None:
        """`place` with hand-off costs or several hosts: a candidate's ready time depends on where
        v's predecessors ran."""
        preds = self.preds[v]
        finish, where, free_at = self.finish, self.where, self.free_at
        cost = self.cost[v]
        latest_slot = None
        # One walk over the predecessors: the latest finish on each worker holding one, and the
        # worker of the latest (finish, id). On one host a candidate's ready time follows from
        # these (`ready`'s maximum, the hand-off added to the other workers' latest).
        pred_slots: dict[int, float] = {}
        latest_finish = 0.0
        if preds:
            latest_finish, latest_id = -1.0, -1
            for p in preds:
                fp, wp = finish[p], where[p]
                if fp > pred_slots.get(wp, -1.0):
                    pred_slots[wp] = fp
                if fp > latest_finish or (fp == latest_finish and p > latest_id):
                    latest_finish, latest_id = fp, p
            latest_slot = where[latest_id]
        one_host = self.hosts == 1
        common = None
        top = second = -INF
        top_slot = None
        if one_host and not preds:
            common = 0.0
        elif one_host:
            # ready on slot w: max(its own latest, others' latest + handoff); the others' latest
            # is the overall latest unless w holds it, then the runner-up.
            for w, fp in pred_slots.items():
                if fp > top:
                    top, second, top_slot = fp, top, w
                elif fp > second:
                    second = fp
        ends = []
        earliest = INF
        for slot in candidates:
            free = free_at[slot]
            if common is not None:
                ready = common
            else:
                ready = self._ready_at(v, slot, one_host, pred_slots, top, second, top_slot)
            start = ready if ready > free else free
            end = start + cost
            ends.append((end, free, slot, start))
            if end < earliest:
                earliest = end
        if len(ends) > 1:
            limit = earliest + self.slack + 1e-9 * max(1.0, abs(earliest))
            ends = [e for e in ends if e[0] <= limit]
        if len(ends) == 1:
            end, _, slot, start = ends[0]
            self.commit(v, slot, start, end)
            return
        self._choose(v, ends, pred_slots, latest_slot)

    def _choose(self, v: int, close: list[tuple[float, float, int, float]], pred_slots,
                latest_slot: int | None) -> None:
        """Commit v to the best of the candidates `close` ((finish, free at, slot, start), all
        within the slack of the earliest finish): the one holding most of its input, then the one
        that ran its latest predecessor, then any predecessor's, then the earliest finish."""
        holders = [e for e in close if e[2] in pred_slots]
        if len(holders) == 1:       # no affinity to weigh; the only one preferred
            best = holders[0]
        elif not holders:
            best = min(close)       # (finish, free at, slot): slots differ
        else:
            affinity = self.affinity(v, [e[2] for e in holders])
            best = min(close, key=lambda e: (-affinity.get(e[2], 0), 0 if e[2] == latest_slot
                                             else 1 if e[2] in pred_slots else 2, e))
        end, _, slot, start = best
        self.commit(v, slot, start, end)

    def _ready_at(self, v: int, slot: int, one_host: bool, pred_slots: dict[int, float],
                  top: float, second: float, top_slot: int | None) -> float:
        """`ready(v, slot)` from `place`'s walk over the predecessors (one host, with hand-off)."""
        if not one_host:
            return self.ready(v, slot)
        ready = pred_slots.get(slot, 0.0)
        other = second if slot == top_slot else top
        if other + self.handoff > ready:
            ready = other + self.handoff
        return ready

    def affinity(self, v: int, holders: list[int]) -> dict[int, int]:
        """Per slot in `holders`, how much of v's input it already holds: the bytes v reads that
        its predecessors there wrote (over the tensors of each edge's RAW dependency, exact region
        intersections), plus 1 per predecessor (an edge within a worker needs no cross-process
        hand-off even without data)."""
        found = dict.fromkeys(holders, 0)
        where, edges = self.where, self.graph._pred[v]
        writes_of, shared = self._writes_of, self._shared
        reads = None
        for p in self.preds[v]:
            w = where[p]
            if w not in found:
                continue
            data = edges[p]
            if "RAW" not in data["kinds"]:
                found[w] += 1
                continue
            if reads is None:
                reads = self._reads(v)
            writes = writes_of[p]
            if writes is None:
                writes = writes_of[p] = self._writes(p)
            # the bytes of `reads` that p wrote, over the edge's tensors
            edge_tensors = data["tensors"]
            nbytes = 0
            for wt, wr, itemsize in writes:
                if wt in edge_tensors:
                    for rt, rr in reads:
                        if rt == wt:
                            # keyed by identity: tasks share their Region objects, which outlive
                            # this
                            key = (id(wr), id(rr))
                            n = shared.get(key)
                            if n is None:
                                n = shared[key] = regions.intersection_size(wr, rr)
                            nbytes += n * itemsize
            found[w] += 1 + nbytes
        return found

    def _reads(self, t: int) -> list[tuple]:
        """(tensor, region) of each tensor argument task t reads (mode "In" or "InOut")."""
        return [(a.tensor, a.region) for a in self.tasks[t].args
                if isinstance(a, Access) and a.mode != "Out"]

    def _writes(self, t: int) -> list[tuple]:
        """(tensor, region, item size) of each tensor argument task t writes ("Out", "InOut")."""
        itemsize, tensors, by_dtype = self._itemsize, self.program.tensors, self._dtype_size
        found = []
        for a in self.tasks[t].args:
            if isinstance(a, Access) and a.mode != "In":
                tensor = a.tensor
                size = itemsize[tensor]
                if not size:
                    dtype = tensors[tensor].dtype
                    size = by_dtype.get(dtype)
                    if size is None:
                        size = by_dtype[dtype] = tensors[tensor].itemsize
                    itemsize[tensor] = size
                found.append((tensor, a.region, size))
        return found

    def commit(self, v: int, slot: int, start: float, finish: float) -> None:
        self.where[v] = slot
        self.start[v] = start
        self.finish[v] = finish
        self.free_at[slot] = finish
        if self.hosts > 1:            # only several hosts look for the earliest free worker
            kind = "chip" if slot < self.base["sub"] else "sub"
            heapq.heappush(self.free_heap[kind], (finish, slot - self.base[kind]))

    # ---- groups -----------------------------------------------------------------------------
    def group_taken(self, task: Task) -> set[int]:
        """Worker indexes a group member may not take: those of the members placed before it,
        and the pins of the others."""
        taken = set()
        where, tasks, base = self.where, self.tasks, self.base
        for other_id in self.program.groups[task.group]:
            if other_id != task.id:
                if other_id < task.id and where[other_id] is not None:
                    taken.add(where[other_id] - base[tasks[other_id].worker])
                elif tasks[other_id].pin is not None:
                    taken.add(tasks[other_id].pin)
        return taken

    def group_slots(self, task: Task) -> list[int]:
        """The slots of the task's group's members placed so far."""
        where = self.where
        return [where[m] for m in self.program.groups[task.group]
                if m < len(where) and where[m] is not None]

    def place_task(self, task: Task, taken: set[int] = frozenset(), group_slots=()) -> None:
        """Place `task` as the schedule pass does: on its pin, on a chip its group does not hold
        yet, or (avoiding worker indexes in `taken`) where it finishes earliest."""
        if task.pin is not None:
            self.place(task.id, [self.base[task.worker] + task.pin])
        elif task.group is not None:
            self.place(task.id, self.candidates(task, self.group_taken(task),
                                                self.group_slots(task) if self.hosts > 1 else ()))
        else:
            self.place(task.id, self.candidates(task, taken, group_slots))
