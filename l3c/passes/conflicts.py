"""The deps pass's search: which earlier accesses each task conflicts with, in program order.

Each tensor keeps only its *pending* accesses (not yet covered by a later write), split into writes
and pure reads. A tensor touched only whole so far keeps them in two plain lists (its latest
writer's writes and the reads since); otherwise they sit in an index bucketed by flat index
interval, so a new access is compared with the few pending accesses whose chunks meet its own.
See docs/passes.md ("deps").
"""
from __future__ import annotations

from ..ir import Access, Program, Region
from . import loopdeps, regions, shifts
from .graphs import task_list
from .scopes import TensorUses, used_outside

BUCKETS_PER_TENSOR = 1024     # flat index space of a tensor is cut into this many chunks,
MAX_BUCKETS_PER_TENSOR = 1 << 20   # or up to this many when its accesses are small
MAX_BUCKET_SPAN = 16          # a contiguous span of up to this many chunks is bucketed as a range
MAX_BUCKET_CHUNKS = 64        # a strided access touching more chunks goes to the `wide` set
SMALL_INDEX = 8               # pending accesses of a tensor kept as a list, up to this many
_EMPTY = (0, -1, False, None)  # geometry of an empty region


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
    """Pending accesses of one tensor, findable by the chunks of flat index space they touch.

    Up to `SMALL_INDEX` entries (most tensors: a few accesses between covering writes) are a
    plain list, compared with every new access; past that they are bucketed by chunk. A chunk
    one access touches holds that `_Pending` itself, a set only from the second (the rows of a
    long accumulator, written once each, need no set per row)."""

    __slots__ = ("entries", "buckets", "wide")

    def __init__(self) -> None:
        self.entries: list[_Pending] | set[_Pending] = []
        # chunk number -> the pending access, or set of them, touching it
        self.buckets: dict[int, _Pending | set[_Pending]] | None = None
        self.wide: set[_Pending] = _NO_WIDE

    def add(self, e: _Pending) -> None:
        buckets = self.buckets
        if buckets is None:
            entries = self.entries
            entries.append(e)
            if len(entries) > SMALL_INDEX:
                self.entries, self.buckets, self.wide = set(), {}, set()
                for old in entries:
                    self.add(old)
            return
        self.entries.add(e)
        if e.chunks is None:
            self.wide.add(e)
        else:
            for c in e.chunks:
                bucket = buckets.get(c)
                if bucket is None:
                    buckets[c] = e
                elif type(bucket) is set:
                    bucket.add(e)
                else:
                    buckets[c] = {bucket, e}

    def remove(self, e: _Pending) -> None:
        if self.buckets is None:
            self.entries.remove(e)
            return
        self.entries.discard(e)
        if e.chunks is None:
            self.wide.discard(e)
        else:
            buckets = self.buckets
            for c in e.chunks:
                bucket = buckets[c]
                if type(bucket) is set:
                    bucket.discard(e)
                    if bucket:
                        continue
                del buckets[c]                  # (a single entry in a chunk of e's is e)

    def near(self, chunks, writes: bool):
        """Pending accesses that may touch one of `chunks` (a superset of those meeting an
        access touching them; None: unknown). A writing access may remove some while the caller
        walks them: then they are a copy."""
        entries = self.entries
        if not entries:
            return ()
        if self.buckets is None or chunks is None or len(entries) <= SMALL_INDEX:
            return list(entries) if writes else entries
        found = set(self.wide)
        buckets = self.buckets
        for c in chunks:
            bucket = buckets.get(c)
            if bucket is not None:
                if type(bucket) is set:
                    found.update(bucket)
                else:
                    found.add(bucket)
        return found


_NO_WIDE: set = set()       # the `wide` set of an index that is still a list (never changed)


def _meet(a: Region, b: Region) -> bool:
    """`regions.overlap` of two non-empty regions whose flat intervals meet (the sweep has
    checked both): with boxes, only the per-axis test is left."""
    box_a, box_b = a.box, b.box
    if box_a is not None and box_b is not None and len(box_a) == len(box_b):
        intersect = regions._progressions_intersect
        for pa, pb in zip(box_a, box_b):
            if not intersect(pa, pb):
                return False
        return True
    return regions.overlap(a, b)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class ConflictSweep:
    """Walks the tasks in program order; `step(v, task)` finds the earlier tasks v conflicts with
    that are not already ordered through covering writes, and records v's accesses as pending.

    A tensor touched only by whole-tensor accesses so far (the common case: buffers passed whole)
    keeps plain lists instead of an index: its pending writes (all from the latest writer, whose
    whole write hid everything before it) and the reads since. Its first partial access moves the
    lists into an `_Index`. Programs with loops use the index for every tensor (`WithinPairs`
    decides what meets and what hides)."""

    def __init__(self, program: Program) -> None:
        tensors = self.tensors = program.tensors
        n = len(tensors)
        # The tensor sets of conflicts are frozen, and one set per tensor (made at its first
        # access) is shared by every conflict on that tensor alone (most of them): no set per
        # found pair.
        self.singles: list[frozenset[int] | None] = [None] * n
        # Chunk size per tensor, fixed at its first access that is not the whole tensor (whole
        # ones are never bucketed): 1/1024 of the tensor, or finer, down to 1/2^20, when that
        # access is smaller, so that many small disjoint accesses (rows of a long accumulator) do
        # not crowd into shared buckets and meet each other.
        self.chunks_of: list[int | None] = [None] * n
        # Per tensor, once accessed: whole-only, (pending writes [(task, reads too, region)],
        # reads [(task, region)]); or else its (writes, reads) indexes.
        self.whole_of: list[tuple[list, list] | None] = [None] * n
        self.index_of: list[tuple[_Index, _Index] | None] = [None] * n
        # Per tensor: id(region) -> its flat bounds, whether it is the whole tensor, the index
        # chunks it may touch. The dict is shared by the tensors of one shape and chunk size:
        # programs repeat views (whole tensors, the same rows of each layer's buffer), so they
        # are measured once per distinct view, and looked up by the region's id (the regions live
        # as long as their tasks).
        self.geometry_of: list[dict[int, tuple]] = [_UNSEEN] * n
        self.geometries: dict[tuple, dict[int, tuple]] = {}   # (shape, chunk) -> that dict
        # (shape, region id) -> (geometry, chunk size) of a view that fixed a tensor's chunk size
        self.first_partial: dict[tuple, tuple] = {}
        self.by_value: dict[tuple, tuple] = {}
        self.shapes: dict[tuple[int, ...], tuple[int, tuple[int, ...]]] = {}
        # What the scopes pass needs, recorded on the way (handed over by `deps.run`).
        self.uses = TensorUses(tensors)
        # With loops, whether two views meet depends on the loops around their tasks (`loopdeps`).
        self.pairs = (loopdeps.WithinPairs(program, task_list(program)) if program.loops
                      else None)

    def _shape(self, tid: int) -> tuple[int, tuple[int, ...]]:
        """Element count and C-contiguous strides of tensor `tid`."""
        shape = self.tensors[tid].shape
        got = self.shapes.get(shape)
        if got is None:
            acc, out = 1, []
            for d in reversed(shape):
                out.append(acc)
                acc *= d
            got = self.shapes[shape] = (_numel(shape), tuple(reversed(out)))
        return got

    def dense_strides(self, tid: int) -> tuple[int, ...]:
        """C-contiguous strides of tensor `tid` (a view with these and its shape is all of it)."""
        return self._shape(tid)[1]

    def _locate(self, tid: int, region: Region) -> tuple:
        """`_geometry`, remembered for the tensors of tid's shape and (maybe just fixed) chunk."""
        shape = self.tensors[tid].shape
        if self.chunks_of[tid] is None:
            # A tensor's first accesses: the view may have been measured for another tensor of
            # its shape already, before that one's chunk size was fixed.
            shared = self.geometries.get((shape, None))
            known = shared.get(id(region)) if shared is not None else None
            if known is None:
                first = self.first_partial.get((shape, id(region)))
                if first is not None:
                    known, chunk = first
                    self.chunks_of[tid] = chunk
                    shared = self.geometries[shape, chunk]
            if known is not None:
                self.geometry_of[tid] = shared
                return known
            known = self._geometry(tid, region)
            chunk = self.chunks_of[tid]
            if chunk is not None:                 # its first partial view fixed the chunk size
                self.first_partial[shape, id(region)] = (known, chunk)
        else:
            known = self._geometry(tid, region)
            chunk = self.chunks_of[tid]
        shared = self.geometries.get((shape, chunk))
        if shared is None:
            shared = self.geometries[shape, chunk] = {}
        self.geometry_of[tid] = shared
        shared[id(region)] = known
        return known

    def _geometry(self, tid: int, region: Region) -> tuple:
        tensors = self.tensors
        if region.shifts:                   # where it can be in any iteration (never "whole")
            hull = shifts.hull(region, tensors[tid].shape)
            if hull.size == 0 or region.size == 0:
                return _EMPTY
            lo, hi, _, chunks = self._geometry(tid, hull)
            return (lo, hi, False, chunks)
        shape = tensors[tid].shape
        size, strides = self._shape(tid)
        if region.offset == 0 and region.shape == shape and size and region.strides == strides:
            return (0, size - 1, True, None)         # the whole tensor (`_measure`)
        # Equal views of equally shaped tensors (the same rows of each layer's buffer) share
        # their geometry, given the same chunk size (which the first partial access fixes, by the
        # same rule for both).
        # (Keyed by the fields, not the Region: its generated __hash__ and __eq__ are Python calls.)
        key = (region.offset, region.shape, region.strides, region.box, shape, self.chunks_of[tid])
        known = self.by_value.get(key)
        if known is None:
            known = self.by_value[key] = (self._measure(tid, region), self.chunks_of[tid])
        elif self.chunks_of[tid] is None:
            self.chunks_of[tid] = known[1]
        return known[0]

    def _measure(self, tid: int, region: Region) -> tuple:
        """`_geometry` of a view that does not move with loop variables."""
        tensors = self.tensors
        shape = region.shape
        size = 1
        for d in shape:
            size *= d
        if size == 0:
            return _EMPTY
        lo, hi = regions.bounds(region)
        n, strides = self._shape(tid)
        whole = (lo == 0 and hi == n - 1 and size == n
                 and (region.strides == strides and shape == tensors[tid].shape
                      or region.is_whole(tensors[tid].shape) or regions._is_dense(region)))
        if whole:
            return (lo, hi, True, None)
        chunk = self.chunks_of[tid]
        if chunk is None:
            coarse = max(1, -(-n // BUCKETS_PER_TENSOR))
            chunk = self.chunks_of[tid] = max(-(-n // MAX_BUCKETS_PER_TENSOR),
                                              min(coarse, hi - lo + 1))
        first, last = lo // chunk, hi // chunk
        if last - first < MAX_BUCKET_SPAN:
            chunks = range(first, last + 1)
        else:
            chunks = _chunks_of(region, lo, hi, chunk, strides)
        return (lo, hi, whole, chunks)

    def _to_index(self, tid: int) -> tuple[_Index, _Index]:
        """Move a whole-only tensor's pending lists into an index (its first partial access)."""
        hi = self._shape(tid)[0] - 1
        w_index, r_index = indexes = self.index_of[tid] = (_Index(), _Index())
        pending_writes, pending_reads = self.whole_of[tid]
        self.whole_of[tid] = None
        for u, u_reads, region in pending_writes:
            w_index.add(_Pending(tid, u, region, u_reads, True, 0, hi, True, None))
        for u, region in pending_reads:
            r_index.add(_Pending(tid, u, region, True, False, 0, hi, True, None))
        return indexes

    def step(self, v: int, task) -> tuple[dict[int, int], dict[int, frozenset[int]]]:
        """Task v's conflicts with pending accesses: `(u -> kind bits (RAW 1, WAR 2, WAW 4),
        u -> tensor ids)`; then v's accesses become pending. The frozen sets may be shared
        between pairs and with later steps' results."""
        found_bits: dict[int, int] = {}
        found_tensors: dict[int, frozenset[int]] = {}
        geometry_of, whole_of, index_of = self.geometry_of, self.whole_of, self.index_of
        pairs = self.pairs
        covers = regions.covers
        singles = self.singles
        uses = self.uses
        first_use, last_use, read, written = uses.first, uses.last, uses.read, uses.written
        confined = uses.confined
        if task.scope:
            for sid in task.scope:
                uses.last_in_scope[sid] = v
        fresh_whole: list[tuple] = []
        for access in task.args:
            if not isinstance(access, Access):
                continue
            region = access.region
            tid = access.tensor
            mode = access.mode
            e_reads, e_writes = mode != "Out", mode != "In"
            last_use[tid] = v
            if confined[tid] and uses.misplaced is None and used_outside(task, self.tensors[tid]):
                uses.misplaced = (task, self.tensors[tid])
            if e_reads:
                read[tid] = 1
            if e_writes:
                written[tid] = 1
            known = geometry_of[tid].get(id(region))
            if known is None:
                known = self._locate(tid, region)
            if known is _EMPTY:                           # an empty region touches nothing
                if first_use[tid] is None:
                    first_use[tid] = v
                continue
            lo, hi, whole, chunks = known
            pending = whole_of[tid]
            if pending is not None:
                if whole:
                    single = singles[tid]
                    pending_writes, pending_reads = pending
                    # kinds against a pending write that does not / does read too
                    bits = (5 if e_reads else 4) if e_writes else 1
                    bits_reading = bits | 2 if e_writes else bits
                    for u, u_reads, _ in pending_writes:
                        old_bits = found_bits.get(u)
                        if old_bits is None:
                            found_bits[u] = bits_reading if u_reads else bits
                            found_tensors[u] = single
                        else:
                            found_bits[u] = old_bits | (bits_reading if u_reads else bits)
                            if tid not in found_tensors[u]:
                                found_tensors[u] = found_tensors[u] | single
                    if e_writes:                          # covers them all: they are forgotten
                        for u, _ in pending_reads:
                            old_bits = found_bits.get(u)
                            if old_bits is None:
                                found_bits[u] = 2
                                found_tensors[u] = single
                            else:
                                found_bits[u] = old_bits | 2
                                if tid not in found_tensors[u]:
                                    found_tensors[u] = found_tensors[u] | single
                        pending_writes.clear()
                        pending_reads.clear()
                    fresh_whole.append((tid, e_reads, e_writes, region))
                    continue
                indexes = self._to_index(tid)
            else:
                indexes = index_of[tid]
                if indexes is None:                       # its first (non-empty) access
                    if first_use[tid] is None:
                        first_use[tid] = v
                    singles[tid] = frozenset((tid,))
                    if whole and pairs is None:           # first access: no conflict yet
                        whole_of[tid] = ([], [])
                        fresh_whole.append((tid, e_reads, e_writes, region))
                        continue
                    indexes = index_of[tid] = (_Index(), _Index())
            single = singles[tid]
            for index in (indexes if e_writes else indexes[:1]):
                for old in index.near(chunks, e_writes):
                    if old.task == v or old.hi < lo or hi < old.lo:
                        continue                          # (v's own accesses: already added)
                    if not (whole or old.whole or (
                            _meet(old.region, region) if pairs is None
                            else pairs.meet(tid, old.task, old.region, v, region))):
                        continue
                    bits = ((1 if old.writes and e_reads else 0)
                            | (2 if old.reads and e_writes else 0)
                            | (4 if old.writes and e_writes else 0))
                    u = old.task
                    old_bits = found_bits.get(u)
                    if old_bits is None:
                        found_bits[u] = bits
                        found_tensors[u] = single
                    else:
                        found_bits[u] = old_bits | bits
                        if tid not in found_tensors[u]:
                            found_tensors[u] = found_tensors[u] | single
                    if e_writes and (
                            (whole or (lo <= old.lo and old.hi <= hi
                                       and covers(region, old.region))) if pairs is None
                            else pairs.forgets(old.task, old.region, v, region, whole)):
                        index.remove(old)
            indexes[0 if e_writes else 1].add(
                _Pending(tid, v, region, e_reads, e_writes, lo, hi, whole, chunks))
        for tid, e_reads, e_writes, region in fresh_whole:
            pending = whole_of[tid]
            if pending is not None:
                if e_writes:
                    pending[0].append((v, e_reads, region))
                else:
                    pending[1].append((v, region))
            else:                                         # a later access of v was partial
                e = _Pending(tid, v, region, e_reads, e_writes, 0, self._shape(tid)[0] - 1, True,
                             None)
                self.index_of[tid][0 if e_writes else 1].add(e)
        return found_bits, found_tensors


_UNSEEN: dict[int, tuple] = {}      # geometry of a tensor not accessed yet (never written)
