"""memory: give every intermediate an offset in one shared arena, reusing dead tensors' space.

Tensor B may take space that tensor A used only if every access of A *happens before* every access
of B in every run: A's task reaches B's task in the graph, or runs before it on the same worker
queue, or a chain of both. Happens-before is tracked exactly with vector clocks over the placed
schedule (one counter per worker; a task's clock is the element-wise max of its predecessors' and its
queue predecessor's, plus its own queue position), so each "A before B" test costs O(workers):
A's last queue position per worker must be covered by the smallest clock among B's tasks.

Tensors are placed in order of first use, best fit into the gaps left by tensors that still
conflict. When the only way to avoid growing the arena is to reuse a tensor on another worker with
no path to B, the pass adds ordering edges (`added_by="memory"`, earlier -> later task) from A's last
task on each worker to B's first task on each worker, but only when the schedule's estimate already
has the first finished (plus hand-off) before the second starts: the edge then delays nothing.

Inputs are not placed (they live in a staging area; `arena_offset` stays None). Returned tensors are
live until the caller has copied them, so nothing reuses their space. Sizes are rounded up to the
64-byte alignment for placement and for the figures below.

Writes `TensorInfo.arena_offset`, `program.memory` (`arena_bytes`, `lower_bound_bytes` = largest
aligned total of intermediates live at one point of program order, `naive_bytes` = aligned sum of
all intermediates, `added_edges`, `alignment`) and `program.reports["memory_edges"]`.
Switch: `reuse_memory=False` places every intermediate at its own offset (arena = naive).
"""
from __future__ import annotations

import bisect

from ..errors import L3CError
from ..ir import Program
from .schedule import estimate_times
from .scopes import result_tensors

ALIGNMENT = 64
NEVER = 1 << 62                # a queue position no task reaches (returned tensors)


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


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


def _best_fit(busy: list[tuple[int, int]], size: int) -> int:
    """Lowest-waste offset for `size` bytes outside the busy [start, end) ranges."""
    best = None
    cursor = 0
    for start, end in sorted(busy):
        if start - cursor >= size and (best is None or start - cursor < best[0]):
            best = (start - cursor, cursor)
        cursor = max(cursor, end)
    return best[1] if best is not None else cursor


def run(program: Program, *, reuse_memory: bool = True) -> Program:
    """The memory pass (see module docstring)."""
    tasks = program.tasks
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
    intervals: dict[int, tuple[int, int]] = {}
    for t in intermediates:
        used = accesses.get(t.id, [])
        if t.id in returned:
            intervals[t.id] = (used[0] if used else end, end)
        elif used:
            intervals[t.id] = (used[0], used[-1])
    report = program.memory
    report.alignment = ALIGNMENT
    report.naive_bytes = sum(size.values())
    report.lower_bound_bytes = lower_bound(intervals, size)
    report.added_edges = 0
    program.reports["memory_edges"] = []
    for t in intermediates:
        t.arena_offset = 0                       # unused tensors: nothing touches them
    order = sorted((tid for tid in intervals if size[tid] > 0),
                   key=lambda tid: (intervals[tid][0], -size[tid], tid))

    if not reuse_memory:
        offset = 0
        for tid in order:
            program.tensors[tid].arena_offset = offset
            offset += size[tid]
        report.arena_bytes = offset
        return program

    _Planner(program, accesses, returned, intervals, size).place(order)
    return program


class _Planner:
    """Best-fit placement with exact happens-before tests (see module docstring).

    Vector clocks: `clock[t][w]` is the highest queue position on worker w that has completed when
    task t completes (t's own position included); a task's clock is the element-wise max of its
    graph predecessors' and its queue predecessor's. a happens before b (a != b) exactly when
    `before(b)[slot(a)] >= queue_pos(a)`, where `before(b)` is b's clock without b itself. Clocks
    are computed lazily in program order and stay valid for a prefix of the program: an ordering
    edge added into task b invalidates the clocks from b on (they are recomputed when needed).
    """

    def __init__(self, program, accesses, returned, intervals, size) -> None:
        self.program = program
        self.accesses, self.returned, self.intervals, self.size = accesses, returned, intervals, size
        cfg = program.config
        self.workers = ([("chip", i) for i in range(cfg.chips * cfg.hosts)]
                        + [("sub", i) for i in range(cfg.sub_workers * cfg.hosts)])
        self.slot = {w: i for i, w in enumerate(self.workers)}
        self.tasks = program.tasks
        self.slot_of: list[int] = []
        self.queue: list[list[int]] = [[] for _ in self.workers]
        self.queue_prev: list[int | None] = []
        for t in self.tasks:
            if t.chip is None or t.queue_pos is None:
                raise L3CError(f"{t.loc}: task {t.id} is not placed; the memory pass runs after "
                               f"the schedule pass")
            s = self.slot[(t.worker, t.chip)]
            self.slot_of.append(s)
            self.queue_prev.append(self.queue[s][-1] if self.queue[s] else None)
            self.queue[s].append(t.id)
        self.clock: list[list[int] | None] = [None] * len(self.tasks)
        self.valid_upto = 0                      # clocks of tasks < valid_upto are up to date
        self.start, self.finish = estimate_times(program)
        self.handoff = float(program.reports.get("handoff_cost", 0.0))

    def _ensure(self, upto: int) -> None:
        if upto < self.valid_upto:
            return
        graph, width = self.program.graph, len(self.workers)
        for t in range(self.valid_upto, upto + 1):
            vc = [-1] * width
            sources = list(graph.pred[t])
            if self.queue_prev[t] is not None:
                sources.append(self.queue_prev[t])
            for p in sources:
                pc = self.clock[p]
                for i in range(width):
                    if pc[i] > vc[i]:
                        vc[i] = pc[i]
            vc[self.slot_of[t]] = self.tasks[t].queue_pos
            self.clock[t] = vc
        self.valid_upto = upto + 1

    def _before(self, t: int) -> list[int]:
        self._ensure(t)
        vc = list(self.clock[t])
        vc[self.slot_of[t]] -= 1
        return vc

    def _last_pos(self, tid: int) -> list[int]:
        """Per worker, the queue position of the tensor's last access there (-1: none)."""
        if tid in self.returned:
            return [NEVER] * len(self.workers)
        vec = [-1] * len(self.workers)
        for t in self.accesses.get(tid, ()):     # in program order, so queue order too
            vec[self.slot_of[t]] = self.tasks[t].queue_pos
        return vec

    def _firsts(self, tid: int) -> dict[int, int]:
        """Per worker slot, the tensor's first accessing task there (later ones follow it)."""
        found: dict[int, int] = {}
        for t in self.accesses.get(tid, ()):
            found.setdefault(self.slot_of[t], t)
        return found

    def _lasts(self, tid: int) -> dict[int, int]:
        found: dict[int, int] = {}
        for t in self.accesses.get(tid, ()):
            found[self.slot_of[t]] = t
        return found

    def _min_before(self, tid: int) -> list[int]:
        """Element-wise smallest `before` clock among the tensor's accesses (NEVER: none)."""
        vec = [NEVER] * len(self.workers)
        for t in self._firsts(tid).values():
            vec = [min(a, b) for a, b in zip(vec, self._before(t))]
        return vec

    def _frontiers(self, point: int) -> list[list[int]]:
        """Clocks that every future task (id >= point) of each still-busy worker dominates."""
        fronts = []
        for q in self.queue:
            i = bisect.bisect_left(q, point)
            if i == len(q):
                continue                                  # no future task on this worker
            if i == 0:
                fronts.append([-1] * len(self.workers))
            else:
                self._ensure(q[i - 1])
                fronts.append(self.clock[q[i - 1]])
        return fronts

    def _edges_needed(self, a_tid: int, b_tid: int, last_a: list[int]) -> list[tuple[int, int]] | None:
        """Ordering edges that would put all of A before all of B without delaying the schedule's
        estimate, or None if some needed edge would delay it."""
        if a_tid in self.returned or not self.accesses.get(b_tid):
            return None
        needed = []
        for wb, b in self._firsts(b_tid).items():
            before_b = self._before(b)
            for wa, a in self._lasts(a_tid).items():
                if before_b[wa] >= last_a[wa]:
                    continue
                arrive = self.finish[a] + (self.handoff if wa != wb else 0.0)
                if a >= b or arrive > self.start[b]:
                    return None
                needed.append((a, b))
        return needed

    def place(self, order: list[int]) -> None:
        program = self.program
        active: list[tuple[int, list[int]]] = []       # (tensor id, its last positions)
        top = 0
        width = len(self.workers)
        for b in order:
            fronts = self._frontiers(self.intervals[b][0])
            # What every future task has seen complete: the element-wise min of the frontiers.
            seen = [min(column) for column in zip(*fronts)] if fronts else [NEVER] * width
            active = [(a, la) for a, la in active
                      if a in self.returned or any(s < x for s, x in zip(seen, la))]
            min_b = self._min_before(b)
            conflicts = [a for a, la in active if any(m < x for m, x in zip(min_b, la))]
            size = self.size[b]
            busy = {a: (program.tensors[a].arena_offset,
                        program.tensors[a].arena_offset + self.size[a]) for a in conflicts}
            offset = _best_fit(list(busy.values()), size)
            if offset + size > top:
                last_pos = dict(active)
                edges = {a: self._edges_needed(a, b, last_pos[a]) for a in conflicts}
                relaxed = _best_fit([r for a, r in busy.items() if edges[a] is None], size)
                if relaxed < offset:
                    offset = relaxed
                    for a, (lo, hi) in busy.items():
                        if edges[a] is not None and lo < offset + size and offset < hi:
                            self._add_edges(a, b, edges[a])
            program.tensors[b].arena_offset = offset
            top = max(top, offset + size)
            active.append((b, self._last_pos(b)))
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
            self.valid_upto = min(self.valid_upto, v)
