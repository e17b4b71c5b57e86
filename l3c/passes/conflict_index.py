"""The deps pass's index of pending accesses: per tensor, the accesses not yet covered by a later
write, findable by the chunks of flat index space they touch (`conflicts.ConflictSweep` keeps one
for the writes and one for the pure reads of each tensor). See docs/passes.md ("deps").
"""
from __future__ import annotations

from ..ir import Region

MAX_BUCKET_SPAN = 16          # a contiguous span of up to this many chunks is bucketed as a range
MAX_BUCKET_CHUNKS = 64        # a strided access touching more chunks goes to the `wide` set
SMALL_INDEX = 8               # pending accesses of a tensor kept as a list, up to this many


class Pending:
    """One pending access: its task, region, mode, flat bounding interval [lo, hi], and the index
    chunks it may touch (`chunks`; None: too many to list, kept in the index's `wide` set)."""

    __slots__ = ("tensor", "task", "region", "reads", "writes", "lo", "hi", "whole", "chunks")

    def __init__(self, tensor: int, task: int, region: Region, reads: bool, writes: bool,
                 lo: int, hi: int, whole: bool, chunks) -> None:
        self.tensor, self.task, self.region = tensor, task, region
        self.reads, self.writes, self.lo, self.hi, self.whole = reads, writes, lo, hi, whole
        self.chunks = chunks


def chunks_of(region: Region, lo: int, hi: int, chunk: int, strides: tuple[int, ...]):
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


class Index:
    """Pending accesses of one tensor, findable by the chunks of flat index space they touch.

    Up to `SMALL_INDEX` entries (most tensors: a few accesses between covering writes) are a
    plain list, compared with every new access; past that they are bucketed by chunk. A chunk
    one access touches holds that `Pending` itself, a set only from the second (the rows of a
    long accumulator, written once each, need no set per row)."""

    __slots__ = ("entries", "buckets", "wide")

    def __init__(self) -> None:
        self.entries: list[Pending] | set[Pending] = []
        # chunk number -> the pending access, or set of them, touching it
        self.buckets: dict[int, Pending | set[Pending]] | None = None
        self.wide: set[Pending] = NO_WIDE

    def add(self, e: Pending) -> None:
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

    def remove(self, e: Pending) -> None:
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


NO_WIDE: set = set()       # the `wide` set of an index that is still a list (never changed)
