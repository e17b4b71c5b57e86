"""deps: order every pair of conflicting accesses, then drop the edges implied by others.

Two accesses of one base tensor conflict when their regions may share an element and at least one
writes. For each conflicting pair (earlier task u, later task v) the program gets an edge u -> v with
the kinds RAW/WAR/WAW and the tensor (`added_by="deps"`), except where the pair is already ordered
through a chain of conflicting pairs: an access hidden behind a later write that covers it entirely
is forgotten, since anything that touches its elements also touches the covering write's and so
waits for that write, which waits for it. Reachability therefore equals the transitive closure of
the conflict relation, with the exact overlap test of `regions` for basic slices.

To stay near-linear, each tensor keeps only its *pending* accesses (not yet covered by a later
write), split into writes and pure reads and bucketed by flat index interval, so a new access is
compared with the few pending accesses whose bounding intervals meet its own.

Writes: edges, `program.reports["edges_before_reduction"]`, `["edges_after_reduction"]`.
Switch: `reduce_edges=False` keeps every edge (no transitive reduction).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..ir import Program, Region
from . import regions

BUCKETS_PER_TENSOR = 1024     # flat index space of a tensor is cut into this many chunks
MAX_BUCKET_SPAN = 16          # accesses spanning more chunks go to the `wide` list
REDUCTION_BUDGET = 4096       # predecessor-search steps per task before reduction gives up (keeps edges)


@dataclass(eq=False)
class _Pending:
    task: int
    region: Region
    reads: bool
    writes: bool
    lo: int
    hi: int
    whole: bool
    chunks: range | None = None


@dataclass
class _Index:
    """Pending accesses of one tensor, findable by flat index interval."""

    chunk: int
    entries: set = field(default_factory=set)
    buckets: dict = field(default_factory=dict)   # chunk number -> set of _Pending
    wide: set = field(default_factory=set)

    def add(self, e: _Pending) -> None:
        self.entries.add(e)
        first, last = e.lo // self.chunk, e.hi // self.chunk
        if e.whole or last - first >= MAX_BUCKET_SPAN:
            self.wide.add(e)
        else:
            e.chunks = range(first, last + 1)
            for c in e.chunks:
                self.buckets.setdefault(c, set()).add(e)

    def remove(self, e: _Pending) -> None:
        self.entries.discard(e)
        if e.chunks is None:
            self.wide.discard(e)
        else:
            for c in e.chunks:
                bucket = self.buckets[c]
                bucket.discard(e)
                if not bucket:
                    del self.buckets[c]

    def near(self, e: _Pending):
        """Pending accesses whose bounding interval may meet `e`'s (a superset)."""
        if not self.entries:
            return ()
        first, last = e.lo // self.chunk, e.hi // self.chunk
        if e.whole or last - first >= MAX_BUCKET_SPAN or len(self.entries) <= 8:
            return list(self.entries)
        found = set(self.wide)
        for c in range(first, last + 1):
            bucket = self.buckets.get(c)
            if bucket:
                found.update(bucket)
        return found


def _overlap(a: _Pending, b: _Pending) -> bool:
    if a.hi < b.lo or b.hi < a.lo:
        return False
    if a.whole or b.whole:
        return True
    return regions.overlap(a.region, b.region)


def _covers(outer: _Pending, inner: _Pending) -> bool:
    if outer.whole:
        return True
    if inner.lo < outer.lo or inner.hi > outer.hi:
        return False
    return regions.covers(outer.region, inner.region)


def _kinds(earlier: _Pending, later: _Pending) -> list[str]:
    kinds = []
    if earlier.writes and later.reads:
        kinds.append("RAW")
    if earlier.reads and later.writes:
        kinds.append("WAR")
    if earlier.writes and later.writes:
        kinds.append("WAW")
    return kinds


def add_data_edges(program: Program) -> None:
    """Add an edge for every conflicting pair not already ordered through covering writes."""
    sizes = {t.id: _numel(t.shape) for t in program.tensors}
    shapes = {t.id: t.shape for t in program.tensors}
    writes: dict[int, _Index] = {}
    reads: dict[int, _Index] = {}
    for task in program.tasks:
        fresh: list[tuple[int, _Pending]] = []
        for access in task.accesses:
            region = access.region
            if region.size == 0:
                continue
            tid = access.tensor
            if tid not in writes:
                chunk = max(1, -(-sizes[tid] // BUCKETS_PER_TENSOR))
                writes[tid], reads[tid] = _Index(chunk), _Index(chunk)
            lo, hi = regions.bounds(region)
            n = sizes[tid]
            whole = (lo == 0 and hi == n - 1 and region.size == n
                     and (region.is_whole(shapes[tid]) or regions._is_dense(region)))
            e = _Pending(task.id, region, access.reads, access.writes, lo, hi, whole)
            indexes = (writes[tid], reads[tid]) if e.writes else (writes[tid],)
            for index in indexes:
                for old in index.near(e):
                    if old.task == task.id or not _overlap(old, e):
                        continue
                    for kind in _kinds(old, e):
                        program.add_dependency(old.task, task.id, kind, tid)
                    if e.writes and _covers(e, old):
                        index.remove(old)
            fresh.append((tid, e))
        for tid, e in fresh:
            (writes if e.writes else reads)[tid].add(e)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def transitive_reduction(program: Program) -> int:
    """Remove every edge u -> v implied by another path from u to v; returns how many went.

    Nodes are visited in program order (a topological order). For each v, its predecessors are
    tried from the latest down; u is redundant when a backward search from the predecessors kept so
    far reaches it. The search only walks nodes not below v's lowest predecessor whose lowest
    ancestor (`min_anc`) is not above the current target, and gives up after `REDUCTION_BUDGET` steps (keeping the edge: reachability stays exact,
    the graph is just not fully reduced in such pathological cases).
    """
    g = program.graph
    min_anc: dict[int, int] = {}
    kept_preds: dict[int, list[int]] = {}
    removed = 0
    for v in sorted(g.nodes):
        preds = sorted(g.pred[v], reverse=True)
        kept: list[int] = []
        if len(preds) > 1:
            visited: set[int] = set()
            heap: list[int] = []
            lowest = None
            floor = preds[-1]
            budget = REDUCTION_BUDGET
            for u in preds:
                if u not in visited and kept and lowest <= u and budget > 0:
                    while heap and -heap[0] > u and budget > 0:
                        x = -heapq.heappop(heap)
                        budget -= 1
                        for y in kept_preds[x]:
                            if y >= floor and y not in visited and min_anc[y] <= u:
                                visited.add(y)
                                heapq.heappush(heap, -y)
                        if u in visited:
                            break
                if u in visited:
                    g.remove_edge(u, v)
                    removed += 1
                    continue
                kept.append(u)
                visited.add(u)
                heapq.heappush(heap, -u)
                lowest = min_anc[u] if lowest is None else min(lowest, min_anc[u])
        else:
            kept = preds
        kept_preds[v] = kept
        min_anc[v] = min([v] + [min_anc[u] for u in kept])
    return removed


def run(program: Program, *, reduce_edges: bool = True) -> Program:
    """The deps pass: data edges, then (unless switched off) transitive reduction."""
    add_data_edges(program)
    program.reports["edges_before_reduction"] = program.graph.number_of_edges()
    if reduce_edges:
        transitive_reduction(program)
    program.reports["edges_after_reduction"] = program.graph.number_of_edges()
    return program
