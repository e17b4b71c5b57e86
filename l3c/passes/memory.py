"""memory: give every intermediate an offset in one shared arena, reusing dead tensors' space.

Tensor B may take space that tensor A used only if every access of A *happens before* every access
of B in every run: A's task reaches B's task in the graph, or runs before it on the same worker
queue, or a chain of both. Happens-before is tracked exactly with vector clocks over the placed
schedule (one counter per worker; a task's clock is the element-wise max of its predecessors' and its
queue predecessor's, plus its own queue position), so each "A before B" test costs O(workers A
touches): A's last queue position on each of its workers must be covered by the smallest clock
among B's first tasks.

Tensors are placed in order of first use, best fit into the gaps left by tensors that still
conflict. When the only way to avoid growing the arena is to reuse a tensor on another worker with
no path to B, the pass adds ordering edges (`added_by="memory"`, earlier -> later task) from A's last
task on each worker to B's first task on each worker, but only when the schedule's estimate already
has the first finished (plus hand-off) before the second starts (the edge then delays nothing),
both tasks are on one host (an edge between hosts is a network message the estimate does not
price, and each host has its own arena), and the reuse needs at most `MAX_EDGES_PER_REUSE` edges.
Loops (docs/passes.md): a tensor used in a loop lives for the whole outermost loop
(`loopnest.lifetime`); clocks run over the iteration graph, merged by `loopnest.merged_clock`.
Inputs are not placed (they live in a staging area; `arena_offset` stays None). Returned tensors are
live until the caller has copied them, so nothing reuses their space. Placement rounds sizes up to
64 bytes (a cache line: two workers writing neighbouring tensors never share one); the figures are
exact bytes. When rounding costs more than reuse saves (a few tiny tensors), the pass packs every
intermediate back to back instead, largest item size first (each at a multiple of its own item
size), so `lower_bound <= arena <= naive` always holds.

Several hosts: each host has its own arena, so two tensors no host shares (the hosts of their
accessing tasks; a returned tensor is on every host) never conflict; `reports["host_arena_bytes"]`
gives each host's size, `arena_bytes` the largest, `lower_bound_bytes` the largest host's bound.

Writes `TensorInfo.arena_offset`, `program.memory` (docs/passes.md) and
`program.reports["memory_edges"]`. `reuse_memory=False` gives every intermediate its own space.
"""
from __future__ import annotations

import bisect
import heapq

import numpy as np

from ..errors import L3CError
from ..ir import Program
from .arena_space import OpenSpace
from .arena_layout import ALIGNMENT, aligned, tensor_bases
from .graphs import task_list
from .loopnest import (iteration_preds, lifetime, merged_clock, queue_starts, structure_bounds,
                       unvouched)
from .schedule import estimate_times
from .scopes import result_tensors

NEVER = 1 << 30                # a queue position no task reaches
MAX_EDGES_PER_REUSE = 16       # ordering edges one reuse may add (more: grow the arena instead)
RETIRE_CHECK = 8               # look for retirable tensors at this many active (then 2x the rest)


def lower_bound(intervals: dict[int, tuple[int, int]], size: dict[int, int]) -> int:
    """Largest total size of tensors whose [first, last] intervals contain one program point."""
    events = []
    for tid, (first, last) in intervals.items():
        events.append((first, 0, size[tid]))
        events.append((last, 1, -size[tid]))      # closes after everything opening at `last`
    live = best = 0
    for _, _, delta in sorted(events):
        live += delta
        best = max(best, live)
    return best


def best_fit_scan(busy: list[tuple[int, int]], size: int) -> int:
    """Lowest-waste offset for `size` bytes outside the busy [start, end) ranges (lowest offset on
    ties), by a scan of every range: what several-host plans use, and the reference the gap index
    of `arena_space.OpenSpace` must match."""
    best = None
    cursor = 0
    for start, end in sorted(busy):
        if start - cursor >= size and (best is None or start - cursor < best[0]):
            best = (start - cursor, cursor)
        cursor = max(cursor, end)
    return best[1] if best is not None else cursor


def run(program: Program, *, reuse_memory: bool = True) -> Program:
    """The memory pass (see module docstring)."""
    tasks = task_list(program)
    end = len(tasks)
    returned = result_tensors(program)
    accesses: dict[int, list[int]] = {}
    for task in tasks:
        for access in task.accesses:
            ids = accesses.setdefault(access.tensor, [])
            if not ids or ids[-1] != task.id:
                ids.append(task.id)
    intermediates = [t for t in program.tensors if t.kind == "intermediate"]
    size = {t.id: aligned(t.nbytes) for t in intermediates}
    exact = {t.id: t.nbytes for t in intermediates}
    intervals: dict[int, tuple[int, int]] = {}
    for t in intermediates:
        used = accesses.get(t.id, [])
        if program.loops and used:
            used = list(lifetime(program, tasks, used, t.loops, t.id))
        if t.id in returned:
            intervals[t.id] = (used[0] if used else end, end)
        elif used:
            intervals[t.id] = (used[0], used[-1])
    report = program.memory
    report.alignment = ALIGNMENT
    report.naive_bytes = sum(exact.values())
    report.lower_bound_bytes = lower_bound(intervals, exact)
    report.added_edges = 0
    program.reports["memory_edges"] = []
    for t in intermediates:
        t.arena_offset = 0                       # unused tensors: nothing touches them
    order = sorted((tid for tid in intervals if size[tid] > 0),
                   key=lambda tid: (intervals[tid][0], -size[tid], tid))

    if reuse_memory:
        _Planner(program, accesses, returned, intervals, size).place(order)
    else:
        offset = 0
        for tid in order:
            program.tensors[tid].arena_offset = offset
            offset += size[tid]
        report.arena_bytes = offset
    if report.arena_bytes > report.naive_bytes:
        _pack(program, order)
    if program.config.hosts > 1:
        hosts = tensor_hosts(program, accesses, returned)
        ends = [0] * program.config.hosts
        for tid in order:
            for h in hosts[tid]:
                ends[h] = max(ends[h], program.tensors[tid].arena_offset + program.tensors[tid].nbytes)
        program.reports["host_arena_bytes"] = ends
        report.arena_bytes = max(ends)
        # each host's arena holds its own live tensors: the bound is the largest host's
        report.lower_bound_bytes = max(
            lower_bound({t: iv for t, iv in intervals.items() if h in hosts[t]}, exact)
            for h in range(program.config.hosts))
    # The inputs' staging area, in front of the intermediates: known here, so that the dumps of a
    # program read the same before and after it is lowered or run.
    report.staging_bytes = tensor_bases(program)[1]
    return program


def tensor_hosts(program: Program, accesses: dict[int, list[int]],
                 returned: set[int]) -> dict[int, frozenset[int]]:
    """The hosts whose arena holds each intermediate: those of the tasks that access it, or every
    host for a returned one (the results are broadcast to all)."""
    every = frozenset(range(program.config.hosts))
    return {t.id: every if t.id in returned else
            frozenset(program.host_of(program.task(v)) for v in accesses.get(t.id, ()))
            for t in program.tensors if t.kind == "intermediate"}


def _pack(program: Program, order: list[int]) -> None:
    """Every placed intermediate at its own offset, back to back, largest item size first (then
    largest first): offsets stay multiples of each tensor's item size, and the arena is the exact
    sum. Ordering edges added for reuse are dropped: nothing is reused any more."""
    report = program.memory
    for u, v in program.reports["memory_edges"]:
        program.graph.remove_edge(u, v)
    report.added_edges = 0
    program.reports["memory_edges"] = []
    tensors = program.tensors
    offset = 0
    for tid in sorted(order, key=lambda t: (-np.dtype(tensors[t].dtype).itemsize,
                                            -tensors[t].nbytes, t)):
        tensors[tid].arena_offset = offset
        offset += tensors[tid].nbytes
    report.arena_bytes = offset
    report.alignment = 0


class _Planner:
    """Best-fit placement with exact happens-before tests (see module docstring).

    Vector clocks: `clock[t, w]` is the highest queue position on worker w that has completed when
    task t completes (t's own position included); a task's clock is the element-wise max of its
    graph predecessors' and its queue predecessor's. x happens before y (x != y) exactly when
    `before(y)[slot(x)] >= queue_pos(x)`, where `before(y)` is y's clock without y itself. A clock
    is a numpy vector, so merging one costs ~1 us whether there are 3 workers or 576 (a Python
    loop over 576 entries costs ~30 us), computed lazily in program order; clocks stay valid for
    a prefix of the program: an ordering edge added into task y invalidates the clocks from y on.

    Per tensor only its first accessing task on each worker and its last position on each worker
    are kept (sparse: the workers its accesses touch), so "every access of A before every access
    of B" costs O(workers A touches) once B's smallest `before` clock is known.
    """

    def __init__(self, program, accesses, returned, intervals, size) -> None:
        self.program = program
        self.returned, self.intervals, self.size = returned, intervals, size
        cfg = program.config
        self.workers = ([("chip", i) for i in range(cfg.units("chip"))]
                        + [("sub", i) for i in range(cfg.units("sub"))])
        self.host_of_slot = [cfg.host_of_unit(kind, i) for kind, i in self.workers]
        slot = {w: i for i, w in enumerate(self.workers)}
        tasks = self.tasks = task_list(program)
        n, width = len(tasks), len(self.workers)
        self.slot_of: list[int] = [0] * n
        self.pos: list[int] = [0] * n
        self.queue: list[list[int]] = [[] for _ in self.workers]
        self.sources: list[list[int]] = iteration_preds(program, n)
        for t in tasks:
            if t.chip is None or t.queue_pos is None:
                raise L3CError(f"{t.loc}: task {t.id} is not placed; the memory pass runs after "
                               f"the schedule pass")
            s = slot[(t.worker, t.chip)]
            self.slot_of[t.id], self.pos[t.id] = s, t.queue_pos
            if self.queue[s]:
                self.sources[t.id].append(self.queue[s][-1])   # queue predecessor
            self.queue[s].append(t.id)
        # Per tensor: its "heads" per worker slot (the first accessing task, and every later one
        # an earlier access there may not order: `loopnest.unvouched`), and (slot, last position,
        # last task).
        self.bounds = structure_bounds(program, tasks) if program.loops else None
        self.firsts: dict[int, dict[int, list[int]]] = {}
        self.lasts: dict[int, list[tuple[int, int, int]]] = {}
        for tid, ids in accesses.items():
            first: dict[int, list[int]] = {}
            last: dict[int, int] = {}
            for t in ids:
                s = self.slot_of[t]
                if s not in first:
                    first[s] = [t]
                elif self.bounds is not None and unvouched(last[s], t, *self.bounds):
                    first[s].append(t)
                last[s] = t
            self.firsts[tid] = first
            self.lasts[tid] = [(s, self.pos[t], t) for s, t in last.items()]
        self.starts = queue_starts(self.queue, self.bounds[0]) if self.bounds else {}
        self.clock: list[np.ndarray | None] = [None] * n
        self.valid_upto = 0                      # clocks of tasks < valid_upto are up to date
        self.times = None                        # schedule estimates (start, finish), when needed
        self.handoff = float(program.costs.handoff_cost)

    def _ensure(self, upto: int) -> None:
        if upto < self.valid_upto:
            return
        clock, sources, slot_of, pos = self.clock, self.sources, self.slot_of, self.pos
        width, bounds = len(self.workers), self.bounds
        for t in range(self.valid_upto, upto + 1):
            src = sources[t]
            if bounds is not None:
                vc = merged_clock(clock, src, t, *bounds, self.starts, width)
            elif not src:
                vc = np.full(width, -1, dtype=np.int64)
            elif len(src) == 1:
                vc = clock[src[0]].copy()
            else:
                vc = np.maximum(clock[src[0]], clock[src[1]])
                for p in src[2:]:
                    np.maximum(vc, clock[p], out=vc)
            vc[slot_of[t]] = pos[t]
            clock[t] = vc
        self.valid_upto = upto + 1

    def _min_before(self, tid: int) -> list[int]:
        """Element-wise smallest `before` clock among the tensor's accesses (the first on each
        worker: later ones follow one of them in the queue)."""
        firsts = self.firsts.get(tid)
        if not firsts:
            return [NEVER] * len(self.workers)
        self._ensure(max(ys[-1] for ys in firsts.values()))
        clock = self.clock
        found = None
        for s, ys in firsts.items():
            for y in ys:
                row = clock[y].copy()
                row[s] -= 1
                found = row if found is None else np.minimum(found, row, out=found)
        return found.tolist()

    def _seen_by_future(self, point: int) -> list[int] | None:
        """A clock every future task (id >= point) has seen complete, or None if some worker
        with future tasks has none before `point`, or the program has loops (iterations repeat)."""
        if self.bounds is not None:
            return None
        rows = []
        for q in self.queue:
            i = bisect.bisect_left(q, point)
            if i == len(q):
                continue                                  # no future task on this worker
            if i == 0:
                return None
            rows.append(q[i - 1])
        if not rows:
            return [NEVER] * len(self.workers)
        self._ensure(max(rows))
        clock = self.clock
        return np.minimum.reduce([clock[t] for t in rows]).tolist()

    def _edges_needed(self, a_tid: int, b_tid: int) -> list[tuple[int, int]] | None:
        """Ordering edges that would put all of A before all of B without delaying the schedule's
        estimate, or None if some needed edge would delay it, cross hosts (it would become a
        network message the estimate does not price, and hosts have separate arenas anyway), or
        the pair needs more than `MAX_EDGES_PER_REUSE` of them."""
        if a_tid in self.returned or not self.firsts.get(b_tid):
            return None
        if self.times is None:
            self.times = estimate_times(self.program)
        start, finish = self.times
        clock, slot_of, pos, host = self.clock, self.slot_of, self.pos, self.host_of_slot
        needed = []
        for wb, y in ((wb, y) for wb, ys in self.firsts[b_tid].items() for y in ys):
            self._ensure(y)
            for wa, p, x in self.lasts[a_tid]:
                seen = int(clock[y][wa]) - (1 if wa == wb else 0)
                if seen >= p:
                    continue
                if x >= y or host[wa] != host[wb] or len(needed) == MAX_EDGES_PER_REUSE:
                    return None
                if self.bounds is not None and unvouched(x, y, *self.bounds):
                    return None         # x's body may run no iteration: x -> y orders nothing
                if finish[x] + (self.handoff if wa != wb else 0.0) > start[y]:
                    return None
                needed.append((x, y))
        return needed

    def place(self, order: list[int]) -> None:
        if self.program.config.hosts > 1:
            self._place_on_hosts(order)
            return
        program = self.program
        tensors = program.tensors
        size, lasts, intervals = self.size, self.lasts, self.intervals
        space = OpenSpace()
        open_until: list[tuple[int, int]] = []     # heap of (last use, tensor) of open tensors
        closed: list[int] = []                     # placed, last use passed, not yet retired
        retire_at = RETIRE_CHECK
        top = 0
        for b in order:
            first_b = intervals[b][0]
            while open_until and open_until[0][0] < first_b:
                _, a = heapq.heappop(open_until)
                lo = tensors[a].arena_offset
                space.remove(lo, lo + size[a])
                closed.append(a)
            if len(closed) > retire_at:
                seen = self._seen_by_future(first_b)
                if seen is not None:
                    closed = [a for a in closed if any(seen[s] < p for s, p, _ in lasts[a])]
                retire_at = max(RETIRE_CHECK, 2 * len(closed))
            # Open tensors are live at b's first use: they conflict, and no edge can fix that
            # (it would point backwards). Closed ones conflict unless all their accesses happen
            # before all of b's; an ordering edge may fix that when few are needed.
            min_b = self._min_before(b) if closed else None
            busy: dict[int, tuple[int, int]] = {}
            fixable: list[int] = []
            for a in closed:
                unordered = sum(1 for s, p, _ in lasts[a] if min_b[s] < p)
                if unordered:
                    lo = tensors[a].arena_offset
                    busy[a] = (lo, lo + size[a])
                    if unordered <= MAX_EDGES_PER_REUSE:
                        fixable.append(a)
            nbytes = size[b]
            offset = space.best_fit(nbytes, list(busy.values()))
            if offset + nbytes > top and fixable:
                edges = {a: self._edges_needed(a, b) for a in fixable}
                relaxed = space.best_fit(nbytes, [r for a, r in busy.items()
                                                  if edges.get(a) is None])
                if relaxed < offset:
                    offset = relaxed
                    for a in fixable:
                        lo, hi = busy[a]
                        if edges[a] is not None and lo < offset + nbytes and offset < hi:
                            self._add_edges(a, b, edges[a])
            tensors[b].arena_offset = offset
            top = max(top, offset + nbytes)
            space.insert(offset, offset + nbytes)
            heapq.heappush(open_until, (intervals[b][1], b))
        program.memory.arena_bytes = top

    def _place_on_hosts(self, order: list[int]) -> None:
        """Several hosts: tensors no host shares never conflict, so open tensors may overlap
        and every active tensor is checked (hosts have small arenas of their own)."""
        program = self.program
        tensors = program.tensors
        returned, size, lasts = self.returned, self.size, self.lasts
        host = self.host_of_slot
        several_hosts = program.config.hosts > 1
        on = {tid: frozenset(host[s] for s in self.firsts.get(tid, ())) for tid in order}
        every = frozenset(range(program.config.hosts))
        for tid in returned:
            on[tid] = every
        active: list[int] = []
        retire_at = RETIRE_CHECK
        top = 0
        for b in order:
            if len(active) > retire_at:
                seen = self._seen_by_future(self.intervals[b][0])
                if seen is not None:
                    active = [a for a in active if a in returned
                              or any(seen[s] < p for s, p, _ in lasts[a])]
                retire_at = max(RETIRE_CHECK, 2 * len(active))
            min_b = self._min_before(b)
            # Conflicts (not every access before all of b's) and, among them, those no ordering
            # edge can fix: returned, or unordered on a host b does not run on (edges never cross
            # hosts), or needing more than MAX_EDGES_PER_REUSE edges (one per unordered worker
            # at least).
            busy: dict[int, tuple[int, int]] = {}
            fixed: set[int] = set()
            hosts_b = {host[s] for s in self.firsts.get(b, ())} if several_hosts else None
            for a in active:
                if several_hosts and not on[a] & on[b]:
                    continue                    # no host holds both: separate arenas
                if a in returned:
                    lo = tensors[a].arena_offset
                    busy[a] = (lo, lo + size[a])
                    fixed.add(a)
                    continue
                unordered = 0
                for s, p, _ in lasts[a]:
                    if min_b[s] < p:
                        unordered += 1
                        if several_hosts and host[s] not in hosts_b:
                            unordered = MAX_EDGES_PER_REUSE + 1
                            break
                if unordered:
                    lo = tensors[a].arena_offset
                    busy[a] = (lo, lo + size[a])
                    if unordered > MAX_EDGES_PER_REUSE:
                        fixed.add(a)
            nbytes = size[b]
            offset = best_fit_scan(list(busy.values()), nbytes)
            if offset + nbytes > top and len(fixed) < len(busy):
                edges = {a: None if a in fixed else self._edges_needed(a, b) for a in busy}
                relaxed = best_fit_scan([r for a, r in busy.items() if edges[a] is None], nbytes)
                if relaxed < offset:
                    offset = relaxed
                    for a, (lo, hi) in busy.items():
                        if edges[a] is not None and lo < offset + nbytes and offset < hi:
                            self._add_edges(a, b, edges[a])
            tensors[b].arena_offset = offset
            top = max(top, offset + nbytes)
            active.append(b)
        program.memory.arena_bytes = top

    def _add_edges(self, a_tid: int, b_tid: int, pairs: list[tuple[int, int]]) -> None:
        program = self.program
        for u, v in pairs:
            if program.graph.has_edge(u, v):
                continue
            writes = any(acc.writes for acc in program.task(u).accesses if acc.tensor == a_tid)
            program.add_dependency(u, v, "WAW" if writes else "WAR", b_tid, added_by="memory")
            program.graph.edges[u, v]["tensors"].add(a_tid)
            program.memory.added_edges += 1
            program.reports["memory_edges"].append((u, v))
            self.sources[v].append(u)
            self.valid_upto = min(self.valid_upto, v)
