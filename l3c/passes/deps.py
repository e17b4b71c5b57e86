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

import networkx as nx

from ..errors import TraceError
from ..ir import Access, Program, Region
from . import loopdeps, regions, shifts
from .graphs import task_list
from .loopnest import iteration_preds, structure_bounds

BUCKETS_PER_TENSOR = 1024     # flat index space of a tensor is cut into this many chunks,
MAX_BUCKETS_PER_TENSOR = 1 << 20   # or up to this many when its accesses are small
MAX_BUCKET_SPAN = 16          # a contiguous span of up to this many chunks is bucketed as a range
MAX_BUCKET_CHUNKS = 64        # a strided access touching more chunks goes to the `wide` set
_EMPTY = (0, -1, False, None)  # geometry of an empty region
ANCESTOR_WINDOW = 8192        # ancestors this close are kept as bit sets


class _Pending:
    """One pending access: its task, region, mode, flat bounding interval [lo, hi], and the index
    chunks it may touch (`chunks`; None: too many to list, kept in the index's `wide` set)."""

    __slots__ = ("tensor", "task", "region", "reads", "writes", "lo", "hi", "whole", "chunks")

    def __init__(self, tensor: int, task: int, region: Region, reads: bool, writes: bool,
                 lo: int, hi: int, whole: bool, chunks) -> None:
        self.tensor, self.task, self.region = tensor, task, region
        self.reads, self.writes, self.lo, self.hi, self.whole = reads, writes, lo, hi, whole
        self.chunks = chunks


def _chunks_of(region: Region, lo: int, hi: int, chunk: int, strides: tuple[int, ...]):
    """The chunks (of `chunk` flat elements) a region may touch, or None when there are more
    than `MAX_BUCKET_CHUNKS`.

    A contiguous span is one range. A strided box (e.g. rows `x[i::512]`, whose bounding
    interval covers most of the tensor) is listed per value of its outermost axis: the elements
    with that value lie in one flat interval. Without this, row-interleaved accesses are all
    "wide" and every access is compared with every pending one (quadratic)."""
    first, last = lo // chunk, hi // chunk
    if last - first < MAX_BUCKET_SPAN:
        return range(first, last + 1)
    box = region.box
    if box is None or len(box) != len(strides) or box[0][1] > MAX_BUCKET_CHUNKS:
        return None
    lo_rest = hi_rest = 0
    for (start, count, step), stride in zip(box[1:], strides[1:]):
        lo_rest += start * stride
        hi_rest += (start + (count - 1) * step) * stride
    start, count, step = box[0]
    if count * ((hi_rest - lo_rest) // chunk + 1) > MAX_BUCKET_CHUNKS:
        return None                     # at least that many chunks (each row spans them)
    found: set[int] = set()
    for j in range(count):
        base = (start + j * step) * strides[0]
        a, b = (base + lo_rest) // chunk, (base + hi_rest) // chunk
        if len(found) + b - a >= MAX_BUCKET_CHUNKS:
            return None
        found.update(range(a, b + 1))
    return found


class _Index:
    """Pending accesses of one tensor, findable by the chunks of flat index space they touch."""

    __slots__ = ("entries", "buckets", "wide")

    def __init__(self) -> None:
        self.entries: set[_Pending] = set()
        self.buckets: dict[int, set[_Pending]] = {}   # chunk number -> pending accesses
        self.wide: set[_Pending] = set()

    def add(self, e: _Pending) -> None:
        self.entries.add(e)
        if e.chunks is None:
            self.wide.add(e)
        else:
            buckets = self.buckets
            for c in e.chunks:
                bucket = buckets.get(c)
                if bucket is None:
                    buckets[c] = {e}
                else:
                    bucket.add(e)

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
        """Pending accesses that may touch a chunk `e` touches (a superset of those meeting it)."""
        if not self.entries:
            return ()
        if e.chunks is None or len(self.entries) <= 8:
            return list(self.entries)
        found = set(self.wide)
        buckets = self.buckets
        for c in e.chunks:
            bucket = buckets.get(c)
            if bucket:
                found.update(bucket)
        return found


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


_KIND_NAMES = {1: ("RAW",), 2: ("WAR",), 3: ("RAW", "WAR"), 4: ("WAW",), 5: ("RAW", "WAW"),
               6: ("WAR", "WAW"), 7: ("RAW", "WAR", "WAW")}


def _conflicts(program: Program) -> dict[tuple[int, int], list]:
    """Every conflicting pair not already ordered through covering writes:
    `(u, v) -> [kind bits (RAW 1, WAR 2, WAW 4), set of tensor ids]`."""
    tensors = program.tensors
    sizes = [_numel(t.shape) for t in tensors]
    # Chunk size per tensor, fixed at its first access that is not the whole tensor (whole ones
    # are never bucketed): 1/1024 of the tensor, or finer, down to 1/2^20, when that access is
    # smaller, so that many small disjoint accesses (rows of a long accumulator) do not crowd
    # into shared buckets and meet each other.
    chunks_of: list[int | None] = [None] * len(tensors)
    writes: dict[int, _Index] = {}
    reads: dict[int, _Index] = {}
    found: dict[tuple[int, int], list] = {}
    strides: dict[int, tuple[int, ...]] = {}

    def dense_strides(tid: int) -> tuple[int, ...]:
        """C-contiguous strides of tensor `tid` (a view with these and its shape is all of it)."""
        got = strides.get(tid)
        if got is None:
            acc, out = 1, []
            for d in reversed(tensors[tid].shape):
                out.append(acc)
                acc *= d
            got = strides[tid] = tuple(reversed(out))
        return got

    # Per (tensor, region): flat bounds, whether it is the whole tensor, the index chunks it may
    # touch. Programs repeat views (whole tensors, the same rows every iteration), so computing
    # them once per distinct view saves most of the per-access arithmetic.
    geometry: dict[tuple[int, int], tuple] = {}

    def _geometry(tid: int, region: Region) -> tuple:
        if region.shifts:                   # where it can be in any iteration (never "whole")
            hull = shifts.hull(region, tensors[tid].shape)
            if hull.size == 0 or region.size == 0:
                return _EMPTY
            lo, hi, _, chunks = _geometry(tid, hull)
            return (lo, hi, False, chunks)
        shape = region.shape
        size = 1
        for d in shape:
            size *= d
        if size == 0:
            return _EMPTY
        lo, hi = regions.bounds(region)
        n = sizes[tid]
        whole = (lo == 0 and hi == n - 1 and size == n
                 and (region.strides == dense_strides(tid) and shape == tensors[tid].shape
                      or region.is_whole(tensors[tid].shape) or regions._is_dense(region)))
        if whole:
            return (lo, hi, True, None)
        chunk = chunks_of[tid]
        if chunk is None:
            coarse = max(1, -(-n // BUCKETS_PER_TENSOR))
            chunk = chunks_of[tid] = max(-(-n // MAX_BUCKETS_PER_TENSOR), min(coarse, hi - lo + 1))
        first, last = lo // chunk, hi // chunk
        if last - first < MAX_BUCKET_SPAN:
            chunks = range(first, last + 1)
        else:
            chunks = _chunks_of(region, lo, hi, chunk, dense_strides(tid))
        return (lo, hi, whole, chunks)

    overlap, covers = regions.overlap, regions.covers
    nodes = program.graph.nodes
    # With loops, whether two views meet depends on the loops around their tasks (`loopdeps`).
    pairs = loopdeps.WithinPairs(program, task_list(program)) if program.loops else None
    for v in sorted(nodes):
        task = nodes[v]["task"]
        fresh: list[_Pending] = []
        for access in task.args:
            if not isinstance(access, Access):
                continue
            region = access.region
            tid = access.tensor
            key = (tid, id(region))           # regions live as long as their tasks
            known = geometry.get(key)
            if known is None:
                known = geometry[key] = _geometry(tid, region)
            lo, hi, whole, chunks = known
            if known is _EMPTY:
                continue                                  # an empty region touches nothing
            w_index = writes.get(tid)
            if w_index is None:
                w_index = writes[tid] = _Index()
                reads[tid] = _Index()
            mode = access.mode
            e_reads, e_writes = mode != "Out", mode != "In"
            e = _Pending(tid, v, region, e_reads, e_writes, lo, hi, whole, chunks)
            for index in ((w_index, reads[tid]) if e_writes else (w_index,)):
                for old in index.near(e):
                    if old.task == v or old.hi < lo or hi < old.lo:
                        continue
                    if not (whole or old.whole or (
                            overlap(old.region, region) if pairs is None
                            else pairs.meet(tid, old.task, old.region, v, region))):
                        continue
                    bits = ((1 if old.writes and e_reads else 0) | (2 if old.reads and e_writes else 0)
                            | (4 if old.writes and e_writes else 0))
                    key = (old.task, v)
                    rec = found.get(key)
                    if rec is None:
                        found[key] = [bits, {tid}]
                    else:
                        rec[0] |= bits
                        rec[1].add(tid)
                    if e_writes and (
                            (whole or (lo <= old.lo and old.hi <= hi
                                       and covers(region, old.region))) if pairs is None
                            else pairs.forgets(old.task, old.region, v, region, whole)):
                        index.remove(old)
            fresh.append(e)
        for e in fresh:
            (writes if e.writes else reads)[e.tensor].add(e)
    return found


def check_groups(program: Program) -> None:
    """Members of a group task run at the same time, so two members that conflict (one writes an
    element the other touches) would race: a TraceError at the group's line. The user layer runs
    it on every traced program (`l3c.jit`, `l3c compile --hosts`); passes on hand-built programs
    leave such members ordered by their edges."""
    pairs = loopdeps.WithinPairs(program, task_list(program)) if program.loops else None
    for members in program.groups:
        accesses = [(program.task(m), a) for m in members for a in program.task(m).accesses]
        for i, (t, a) in enumerate(accesses):
            for u, b in accesses[:i]:
                if (u.id != t.id and a.tensor == b.tensor and (a.writes or b.writes)
                        and (regions.overlap(a.region, b.region) if pairs is None
                             else pairs.meet(a.tensor, u.id, b.region, t.id, a.region))):
                    name = program.tensors[a.tensor].name
                    raise TraceError(
                        f"{t.loc}: l3c.group() of {t.short_kernel}: members {u.group_rank} and "
                        f"{t.group_rank} both access {name} (parameters {b.param!r} l3c.{b.mode} "
                        f"and {a.param!r} l3c.{a.mode}, overlapping) and one writes it, but members "
                        "run at the same time; give each member its own part of the tensor (e.g. "
                        "rows x[i::n]), or make separate calls")


def add_data_edges(program: Program) -> None:
    """Add an edge for every conflicting pair not already ordered through covering writes."""
    _add_edges(program, _conflicts(program))


def _add_edges(program: Program, found: dict[tuple[int, int], list]) -> None:
    """Add the edges of `found` (or merge into existing ones). Both ends are nodes already, so the
    graph's adjacency dicts are written directly (networkx's `add_edges_from` checks and copies
    per edge: a third of this function's time)."""
    graph = program.graph
    succ, pred = graph._succ, graph._pred
    for (u, v), (bits, tensors) in found.items():
        data = succ[u].get(v)
        if data is not None:
            data["kinds"].update(_KIND_NAMES[bits])
            data["tensors"].update(tensors)
        else:
            succ[u][v] = pred[v][u] = {"kinds": set(_KIND_NAMES[bits]), "tensors": tensors,
                                       "added_by": "deps", "carried": False}
    nx._clear_cache(graph)


def reduce_preds(preds: dict[int, list[int]], nodes,
                 bounds: tuple[list[int], list[int]] | None = None) -> dict[int, list[int]]:
    """Transitive reduction of a DAG given as `v -> predecessors` (every u < v) over `nodes`
    (ascending ids: a topological order); returns `v -> kept predecessors` (latest first).
    With loops, `bounds` are the tasks' innermost loop/cond bodies (`loopnest.structure_bounds`): a
    path through k vouches only for part of k's ancestors (`loopnest.vouched`), so only those make
    an edge redundant.

    For each v, its predecessors are tried from the latest down: u is redundant when one of the
    predecessors kept so far has it as an ancestor (lower ones cannot reach it). Ancestors within
    `ANCESTOR_WINDOW` tasks are bit sets (a Python int per task, bit i = task v-1-i, dropped after
    the task's last successor): the test is one shift, so dense conflict graphs cost O(edges).
    A predecessor further back is dropped only when `_far_reachable` sees it at once.
    """
    last_successor: dict[int, int] = {}
    for v in nodes:
        for u in preds.get(v, ()):
            last_successor[u] = v
    mask = (1 << ANCESTOR_WINDOW) - 1
    ancestors: dict[int, int] = {}
    kept_preds: dict[int, list[int]] = {}
    for v in nodes:
        mine = preds.get(v)
        if not mine:
            kept_preds[v] = []
            reach = 0
        else:
            kept: list[int] = []
            reach = 0
            for u in sorted(set(mine), reverse=True):
                d = v - u
                if d <= ANCESTOR_WINDOW:
                    if (reach >> (d - 1)) & 1:
                        continue
                elif kept and _far_reachable(u, v, kept, kept_preds, bounds):
                    continue
                kept.append(u)
                if bounds is None or v < bounds[1][u] or not bounds[0][u]:
                    reach |= (ancestors[u] << d) | (1 << (d - 1))
                else:                       # only ancestors inside u's loop/cond
                    inside = ancestors[u] & ((1 << max(0, u - bounds[0][u])) - 1)
                    reach |= (inside << d) | (1 << (d - 1))
            kept_preds[v] = kept
            reach &= mask
            for u in mine:
                if last_successor[u] == v:
                    ancestors.pop(u, None)
        if v in last_successor:
            ancestors[v] = reach
    return kept_preds


def _far_reachable(u: int, v: int, kept: list[int], kept_preds: dict[int, list[int]],
                   bounds: tuple[list[int], list[int]] | None = None) -> bool:
    """Is u, further back than the ancestor window, an ancestor of one of `kept`? Only the
    commonest case is looked for, u a kept predecessor of one of them (a write read by a task
    this one also waits for). Otherwise the edge is kept: reachability stays exact, the graph is
    just not fully reduced. (A search that far costs more than the edge it could save: in a
    program whose tensors are each touched every few thousand calls, a bounded backward search
    per far predecessor took ~20 s of a 100k-call lowering.)"""
    return any(u in kept_preds[k] and (bounds is None or v < bounds[1][k] or u >= bounds[0][k])
               for k in kept)


def transitive_reduction(program: Program) -> int:
    """Remove every edge u -> v of the graph implied by another path from u to v (see
    `reduce_preds`); returns how many went."""
    g = program.graph
    n = g.number_of_nodes()
    preds = dict(enumerate(iteration_preds(program, n)))
    bounds = structure_bounds(program, task_list(program)) if program.loops else None
    kept = reduce_preds(preds, range(n), bounds)
    drop = [(u, v) for v, us in preds.items() for u in set(us) - set(kept[v])]
    g.remove_edges_from(drop)
    return len(drop)


def run(program: Program, *, reduce_edges: bool = True) -> Program:
    """The deps pass: data edges, then (unless switched off) transitive reduction; with loops,
    also the carried edges and the bound/flag reads' dependencies (`loopdeps`).

    The conflicts are collected and reduced in plain dicts, and only the kept edges enter the
    networkx graph (adding and then removing them there costs more than finding them)."""
    graph = program.graph
    found = _conflicts(program)
    tasks = task_list(program) if program.loops else None
    carried = loopdeps.carried_conflicts(program, tasks, found) if tasks else {}
    if graph.number_of_edges() or not reduce_edges:
        _add_edges(program, found)
        program.reports["edges_before_reduction"] = graph.number_of_edges() + len(carried)
        if reduce_edges:
            transitive_reduction(program)
    else:
        program.reports["edges_before_reduction"] = len(found) + len(carried)
        preds: dict[int, list[int]] = {}
        for u, v in found:
            preds.setdefault(v, []).append(u)
        bounds = structure_bounds(program, tasks) if tasks else None
        kept = reduce_preds(preds, sorted(graph.nodes), bounds)
        succ, pred = graph._succ, graph._pred
        for v, us in kept.items():                   # ascending v; each `us` latest first
            for u in reversed(us):
                bits, tensors = found[u, v]
                succ[u][v] = pred[v][u] = {"kinds": set(_KIND_NAMES[bits]), "tensors": tensors,
                                           "added_by": "deps", "carried": False}
        nx._clear_cache(graph)
    for (u, v), (bits, tensors) in sorted(carried.items()):
        for kind in _KIND_NAMES[bits]:
            for tensor in tensors:
                program.add_dependency(u, v, kind, tensor, carried=True)
    if tasks:
        loopdeps.bound_reads(program, tasks)
    program.reports["edges_after_reduction"] = graph.number_of_edges()
    return program
