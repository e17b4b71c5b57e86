"""The deps pass's search: which earlier accesses each task conflicts with, in program order.

Each tensor keeps only its *pending* accesses (not yet covered by a later write), split into writes
and pure reads. A tensor touched only whole so far keeps them in two plain lists (its latest
writer's writes and the reads since); otherwise they sit in an index bucketed by flat index
interval, so a new access is compared with the few pending accesses whose chunks meet its own.
See docs/passes.md ("deps").
"""
from __future__ import annotations

from ..ir import Access, Program, Region
from . import conflict_index, loopdeps, regions, shifts
from .conflict_index import MAX_BUCKET_SPAN, Index, Pending, chunks_of
from .graphs import task_list
from .scopes import TensorUses, used_outside

BUCKETS_PER_TENSOR = 1024     # flat index space of a tensor is cut into this many chunks,
MAX_BUCKETS_PER_TENSOR = 1 << 20   # or up to this many when its accesses are small
_EMPTY = (0, -1, False, None)  # geometry of an empty region


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
    lists into an `Index`. Programs with loops use the index for every tensor (`WithinPairs`
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
        self.index_of: list[tuple[Index, Index] | None] = [None] * n
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
        size, strides = self.shapes.get(shape) or self._shape(tid)
        if region.offset == 0 and region.shape == shape and size and region.strides == strides:
            return (0, size - 1, True, None)         # the whole tensor (`_measure`)
        # Equal views of equally shaped tensors (the same rows of each layer's buffer) share
        # their geometry, given the same chunk size (which the first partial access fixes, by the
        # same rule for both).
        # (Keyed by the fields, not the Region: its generated __hash__ and __eq__ are Python calls.)
        key = (region.offset, region.shape, region.strides, region.box, shape, self.chunks_of[tid])
        known = self.by_value.get(key)
        if known is None:
            known = self.by_value[key] = (self._measure(tid, region, size, strides),
                                          self.chunks_of[tid])
        elif self.chunks_of[tid] is None:
            self.chunks_of[tid] = known[1]
        return known[0]

    def _measure(self, tid: int, region: Region, n: int, strides: tuple[int, ...]) -> tuple:
        """`_geometry` of a view that does not move with loop variables, of a tensor of `n`
        elements and C-contiguous `strides`."""
        tensors = self.tensors
        shape = region.shape
        size = 1
        lo = hi = region.offset                   # (`regions.bounds`)
        for d, stride in zip(shape, region.strides):
            size *= d
            span = (d - 1) * stride
            if span < 0:
                lo += span
            else:
                hi += span
        if size == 0:
            return _EMPTY
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
            chunks = chunks_of(region, lo, hi, chunk, strides)
        return (lo, hi, whole, chunks)

    def _to_index(self, tid: int) -> tuple[Index, Index]:
        """Move a whole-only tensor's pending lists into an index (its first partial access)."""
        hi = self._shape(tid)[0] - 1
        w_index, r_index = indexes = self.index_of[tid] = (Index(), Index())
        pending_writes, pending_reads = self.whole_of[tid]
        self.whole_of[tid] = None
        for u, u_reads, region in pending_writes:
            w_index.add(Pending(tid, u, region, u_reads, True, 0, hi, True, None))
        for u, region in pending_reads:
            r_index.add(Pending(tid, u, region, True, False, 0, hi, True, None))
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
        small = conflict_index.SMALL_INDEX
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
                    indexes = index_of[tid] = (Index(), Index())
            single = singles[tid]
            for index in (indexes if e_writes else indexes[:1]):
                entries = index.entries
                if not entries:
                    continue
                if index.buckets is None:             # (`Index.near`, inlined)
                    candidates = entries[:] if e_writes else entries
                else:
                    candidates = index.near(chunks, e_writes)
                for old in candidates:
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
            index = indexes[0 if e_writes else 1]
            e = Pending(tid, v, region, e_reads, e_writes, lo, hi, whole, chunks)
            if index.buckets is None and len(index.entries) < small:
                index.entries.append(e)                   # (`Index.add`, inlined)
            else:
                index.add(e)
        for tid, e_reads, e_writes, region in fresh_whole:
            pending = whole_of[tid]
            if pending is not None:
                if e_writes:
                    pending[0].append((v, e_reads, region))
                else:
                    pending[1].append((v, region))
            else:                                         # a later access of v was partial
                e = Pending(tid, v, region, e_reads, e_writes, 0, self._shape(tid)[0] - 1, True,
                             None)
                self.index_of[tid][0 if e_writes else 1].add(e)
        return found_bits, found_tensors


_UNSEEN: dict[int, tuple] = {}      # geometry of a tensor not accessed yet (never written)
