"""The memory pass's placement: best fit of each intermediate among the tensors it conflicts with,
and the ordering edges that let it reuse a tensor no path orders before it (`l3c.passes.memory`
says what and why; this module is how).

Tensors come in order of first use. *Open* tensors (last use not yet passed) conflict with the new
one and are pairwise disjoint: `arena_space.OpenSpace` keeps their gaps. *Closed* ones conflict
unless every access of theirs happens before every access of the new one
(`happens_before.VectorClocks`); once more than `RETIRE_CHECK` are closed, those every future task
is ordered after are retired (they conflict with nothing any more). Per tensor only its heads
(first accessing task per worker slot) and last position per slot are read (`arena_uses.Uses`),
so a test costs O(workers the tensor touches).
"""
from __future__ import annotations

import heapq

from ..ir import Access, Program, Task
from .arena_space import OpenSpace, best_fit_scan
from .arena_uses import Slots, Uses
from .happens_before import NEVER, VectorClocks
from .loopnest import unvouched
from .schedule import estimate_times

MAX_EDGES_PER_REUSE = 16       # ordering edges one reuse may add (more: grow the arena instead)
RETIRE_CHECK = 8               # look for retirable tensors at this many closed (then 2x the rest)


class Planner:
    """Best-fit placement with exact happens-before tests (see the module docstring)."""

    def __init__(self, program: Program, tasks: list[Task], slots: Slots, uses: Uses,
                 bounds: tuple[list[int], list[int]] | None, returned: set[int]) -> None:
        """`bounds`: `loopnest.structure_bounds` with loops, else None."""
        self.program, self.tasks, self.uses, self.bounds, self.returned = (
            program, tasks, uses, bounds, returned)
        self.width = len(slots.workers)
        self.host_of_slot = [program.config.host_of_unit(kind, i) for kind, i in slots.workers]
        self.clocks = VectorClocks(program, slots.slot_of, slots.pos, self.width, slots.queues,
                                   bounds)
        self.times = None                        # schedule estimates (start, finish), when needed
        self.handoff = float(program.costs.handoff_cost)

    def _head_rows(self, b_tid: int) -> list[tuple[int, int, list[int]]]:
        """(slot, task, `before` clock) of each head of tensor b."""
        heads = self.uses.heads[b_tid]
        if not heads:
            return []
        clocks = self.clocks
        clocks.ensure(self.uses.last_head[b_tid])
        return [(wb, y, clocks.before(y)) for wb, y in heads]

    def _edges_needed(self, a_tid: int, rows_b: list[tuple[int, int, list[int]]]
                      ) -> list[tuple[int, int]] | None:
        """Ordering edges that would put all of A before all of B (B's `_head_rows`) without
        delaying the schedule's estimate, or None if some needed edge would delay it, cross hosts
        (it would become a network message the estimate does not price, and hosts have separate
        arenas anyway), or the pair needs more than `MAX_EDGES_PER_REUSE` of them."""
        if a_tid in self.returned or not rows_b:
            return None
        if self.times is None:
            self.times = estimate_times(self.program)
        start, finish = self.times
        host, bounds, handoff = self.host_of_slot, self.bounds, self.handoff
        lasts_a = self.uses.lasts[a_tid]
        needed = []
        for wb, y, seen_y in rows_b:
            for wa, p, x in lasts_a:
                if seen_y[wa] >= p:
                    continue
                if x >= y or host[wa] != host[wb] or len(needed) == MAX_EDGES_PER_REUSE:
                    return None
                if bounds is not None and unvouched(x, y, *bounds):
                    return None         # x's body may run no iteration: x -> y orders nothing
                if finish[x] + (handoff if wa != wb else 0.0) > start[y]:
                    return None
                needed.append((x, y))
        return needed

    def place(self, order: list[int], size: list[int], first: list[int],
              last: list[int]) -> int:
        """Offsets of the tensors of `order` (by first use) of aligned `size`, live over
        [first, last] (lists by tensor id), into `TensorInfo.arena_offset`; the arena's size."""
        if self.program.config.hosts > 1:
            return self._place_on_hosts(order, size, first)
        tensors = self.program.tensors
        heads, lasts, last_head = self.uses.heads, self.uses.lasts, self.uses.last_head
        clocks = self.clocks
        clock, pos, lists = clocks.clock, clocks.pos, clocks.lists
        never = [NEVER] * self.width
        # at most `width` unordered positions: within the edge budget whenever busy
        all_fixable = self.width <= MAX_EDGES_PER_REUSE
        space = OpenSpace()
        best_fit, insert, remove = space.best_fit, space.insert, space.remove
        heappush, heappop = heapq.heappush, heapq.heappop
        open_until: list[tuple[int, int]] = []     # heap of (last use, tensor) of open tensors
        closed: list[int] = []                     # placed, last use passed, not yet retired
        offset_of = [0] * len(size)
        retire_at = RETIRE_CHECK
        top = 0
        for b in order:
            first_b = first[b]
            while open_until and open_until[0][0] < first_b:
                a = heappop(open_until)[1]
                lo = offset_of[a]
                remove(lo, lo + size[a])
                closed.append(a)
            if len(closed) > retire_at:
                seen = clocks.seen_by_future(first_b)
                if seen is not None:
                    closed = [a for a in closed if _unordered(lasts[a], seen)]
                retire_at = max(RETIRE_CHECK, 2 * len(closed))
            nbytes = size[b]
            if not closed:
                offset = best_fit(nbytes, ())
            else:
                # b's smallest `before` clock: what every access of b has seen complete
                heads_b = heads[b]
                if not heads_b:
                    min_b = never
                else:
                    if last_head[b] >= clocks.valid_upto:
                        clocks.ensure(last_head[b])
                    if lists and len(heads_b) == 1:
                        s, y = heads_b[0]
                        min_b = clock[y][:]
                        min_b[s] = pos[y] - 1
                    else:
                        min_b = clocks.smallest_before(heads_b)
                busy: list[tuple[int, int]] = []   # byte ranges of closed tensors not before b
                busy_of: list[int] = []
                for a in closed:
                    for s, p, _ in lasts[a]:
                        if min_b[s] < p:
                            lo = offset_of[a]
                            busy.append((lo, lo + size[a]))
                            busy_of.append(a)
                            break
                offset = best_fit(nbytes, busy)
                if offset + nbytes > top and busy_of:
                    offset = self._reuse_with_edges(b, nbytes, offset, busy, busy_of, min_b,
                                                    all_fixable, offset_of, size, space)
            offset_of[b] = offset
            tensors[b].arena_offset = offset
            if offset + nbytes > top:
                top = offset + nbytes
            insert(offset, offset + nbytes)
            heappush(open_until, (last[b], b))
        return top

    def _reuse_with_edges(self, b: int, nbytes: int, offset: int, busy: list[tuple[int, int]],
                          busy_of: list[int], min_b: list[int], all_fixable: bool,
                          offset_of: list[int], size: list[int], space: OpenSpace) -> int:
        """b's offset when its plain fit (`offset`) would grow the arena: the closed tensors not
        all before b (`busy_of`, at `busy`) that an ordering edge of few
        (`MAX_EDGES_PER_REUSE`) may put before b free their bytes, if that fits b lower. Open
        tensors are live at b's first use: they conflict, and no edge can fix that (it would
        point backwards)."""
        lasts = self.uses.lasts
        fixable = busy_of if all_fixable else [
            a for a in busy_of if _unordered(lasts[a], min_b) <= MAX_EDGES_PER_REUSE]
        if not fixable:
            return offset
        rows_b = self._head_rows(b)
        edges = {a: self._edges_needed(a, rows_b) for a in fixable}
        relaxed = space.best_fit(nbytes, [r for a, r in zip(busy_of, busy)
                                          if edges.get(a) is None])
        if relaxed < offset:
            offset = relaxed
            for a in fixable:
                lo = offset_of[a]
                if edges[a] is not None and lo < offset + nbytes and offset < lo + size[a]:
                    self._add_edges(a, b, edges[a])
        return offset

    def _place_on_hosts(self, order: list[int], size: list[int], first: list[int]) -> int:
        """Several hosts: tensors no host shares never conflict, so open tensors may overlap
        and every active tensor is checked (hosts have small arenas of their own)."""
        program = self.program
        tensors = program.tensors
        returned, heads, lasts = self.returned, self.uses.heads, self.uses.lasts
        host = self.host_of_slot
        on = {tid: frozenset(host[s] for s, _ in heads[tid]) for tid in order}
        every = frozenset(range(program.config.hosts))
        for tid in returned:
            on[tid] = every
        active: list[int] = []
        retire_at = RETIRE_CHECK
        top = 0
        for b in order:
            if len(active) > retire_at:
                seen = self.clocks.seen_by_future(first[b])
                if seen is not None:
                    active = [a for a in active if a in returned or _unordered(lasts[a], seen)]
                retire_at = max(RETIRE_CHECK, 2 * len(active))
            rows_b = self._head_rows(b)
            min_b = self.clocks.smallest([row for _, _, row in rows_b])
            # Conflicts (not every access before all of b's) and, among them, those no ordering
            # edge can fix: returned, or unordered on a host b does not run on (edges never cross
            # hosts), or needing more than MAX_EDGES_PER_REUSE edges (one per unordered worker
            # at least).
            busy: dict[int, tuple[int, int]] = {}
            fixed: set[int] = set()
            hosts_b = {host[s] for s, _ in heads[b]}
            for a in active:
                if not on[a] & on[b]:
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
                        if host[s] not in hosts_b:
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
                edges = {a: None if a in fixed else self._edges_needed(a, rows_b) for a in busy}
                relaxed = best_fit_scan([r for a, r in busy.items() if edges[a] is None], nbytes)
                if relaxed < offset:
                    offset = relaxed
                    for a, (lo, hi) in busy.items():
                        if edges[a] is not None and lo < offset + nbytes and offset < hi:
                            self._add_edges(a, b, edges[a])
            tensors[b].arena_offset = offset
            top = max(top, offset + nbytes)
            active.append(b)
        return top

    def _add_edges(self, a_tid: int, b_tid: int, pairs: list[tuple[int, int]]) -> None:
        program, tasks, clocks = self.program, self.tasks, self.clocks
        succ = program.graph._succ
        for u, v in pairs:
            if v in succ[u]:
                continue
            writes = False
            for acc in tasks[u].args:
                if acc.__class__ is Access and acc.tensor == a_tid and acc.writes:
                    writes = True
                    break
            program.add_dependency(u, v, "WAW" if writes else "WAR", b_tid, added_by="memory")
            succ[u][v]["tensors"].add(a_tid)
            program.memory.added_edges += 1
            program.reports["memory_edges"].append((u, v))
            clocks.invalidate(v)


def _unordered(lasts: list[tuple[int, int, int]], seen: list[int]) -> int:
    """How many of a tensor's last positions per slot the clock `seen` has not covered."""
    count = 0
    for s, p, _ in lasts:
        if seen[s] < p:
            count += 1
    return count
