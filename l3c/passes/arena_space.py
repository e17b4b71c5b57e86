"""Free space of the arena for the memory pass: the byte ranges of the *open* tensors and, while
there are many, the gaps between them, kept so that a best fit costs O(log n) instead of a scan of
every live tensor (with a few open tensors the scan is cheaper than keeping the gaps).

A tensor is open while program order has not passed its last use. Two open tensors are both live
at one program point, so they conflict and their byte ranges never overlap: the free space among
them is a set of gaps, kept by start (to find the gaps a range touches) and by length (to find the
best fit). Tensors whose last use has passed are the memory pass's business: it hands the ranges
of those that still conflict with the tensor being placed (few, since it retires the others) to
`best_fit`, which carves them out of the gaps they touch.
"""
from __future__ import annotations

import bisect


def best_fit_scan(busy: list[tuple[int, int]], size: int) -> int:
    """Lowest-waste offset for `size` bytes outside the busy [start, end) ranges (lowest offset on
    ties), by a scan of every range: what several-host plans use, and the reference the gap index
    of `OpenSpace` must match."""
    best = None
    cursor = 0
    for start, end in sorted(busy):
        if start - cursor >= size and (best is None or start - cursor < best[0]):
            best = (start - cursor, cursor)
        cursor = max(cursor, end)
    return best[1] if best is not None else cursor


INDEX_ABOVE = 32      # open ranges beyond which the gaps are indexed
INDEX_BELOW = 16      # ... and below which the index is dropped again (a scan costs less)


class OpenSpace:
    """Disjoint [lo, hi) ranges of open tensors and, while there are many, the bounded gaps between
    them indexed by start and by length. With few (`INDEX_BELOW`..`INDEX_ABOVE`, with hysteresis)
    a best fit scans the ranges instead: keeping the index up to date costs more than it saves."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []     # open (lo, hi) ranges, sorted and disjoint
        self.indexed = False                 # whether the three gap structures below are kept
        self.gap_starts: list[int] = []      # bounded free gaps below `top`, sorted by start
        self.gap_end: dict[int, int] = {}    # gap start -> gap end
        self.by_length: list[tuple[int, int]] = []   # (length, start) of every gap, sorted
        self.top = 0                         # end of the highest open range

    # ---- gaps ------------------------------------------------------------------------------------
    def _add_gap(self, lo: int, hi: int) -> None:
        if hi > lo:
            bisect.insort(self.gap_starts, lo)
            self.gap_end[lo] = hi
            bisect.insort(self.by_length, (hi - lo, lo))

    def _drop_gap(self, lo: int) -> None:
        hi = self.gap_end.pop(lo)
        del self.gap_starts[bisect.bisect_left(self.gap_starts, lo)]
        del self.by_length[bisect.bisect_left(self.by_length, (hi - lo, lo))]

    def _index(self, on: bool) -> None:
        """Build the gap index from the open ranges, or drop it."""
        self.indexed = on
        self.gap_starts, self.gap_end, self.by_length = [], {}, []
        if on:
            cursor = 0
            for lo, hi in self.ranges:
                if lo > cursor:
                    self.gap_starts.append(cursor)
                    self.gap_end[cursor] = lo
                    self.by_length.append((lo - cursor, cursor))
                cursor = hi
            self.by_length.sort()

    # ---- open ranges -----------------------------------------------------------------------------
    def insert(self, lo: int, hi: int) -> None:
        """An open tensor at [lo, hi): inside a gap, or at or above `top`."""
        if lo >= self.top:
            if self.indexed and lo > self.top:
                self._add_gap(self.top, lo)
            self.top = hi
        elif self.indexed:
            i = bisect.bisect_right(self.gap_starts, lo) - 1
            start = self.gap_starts[i]
            end = self.gap_end[start]
            self._drop_gap(start)
            self._add_gap(start, lo)
            self._add_gap(hi, end)
        ranges = self.ranges
        ranges.insert(bisect.bisect_left(ranges, (lo, hi)), (lo, hi))
        if not self.indexed and len(ranges) > INDEX_ABOVE:
            self._index(True)

    def remove(self, lo: int, hi: int) -> None:
        """The open tensor at [lo, hi) closed: its bytes join the gaps around it."""
        ranges = self.ranges
        i = bisect.bisect_left(ranges, (lo, hi))
        del ranges[i]
        left = ranges[i - 1][1] if i > 0 else 0
        if not self.indexed:
            if i == len(ranges):                   # it was the highest
                self.top = left
            return
        if left < lo:
            self._drop_gap(left)
        if i == len(ranges):                       # it was the highest: the free tail grows
            self.top = left
        else:
            right = ranges[i][0]
            if hi < right:
                self._drop_gap(hi)
            self._add_gap(left, right)
        if len(ranges) < INDEX_BELOW:
            self._index(False)

    # ---- placement -------------------------------------------------------------------------------
    def best_fit(self, size: int, busy: list[tuple[int, int]]) -> int:
        """Lowest-waste offset for `size` bytes outside the open ranges and the extra `busy`
        ranges (lowest offset among equal waste); above everything when no gap fits."""
        if not self.indexed:
            ranges = sorted(self.ranges + busy) if busy else self.ranges
            best, at, cursor = -1, 0, 0
            for lo, hi in ranges:
                gap = lo - cursor
                if gap >= size and (best < 0 or gap < best):
                    best, at = gap, cursor
                if hi > cursor:
                    cursor = hi
            return at if best >= 0 else cursor
        lengths = self.by_length
        if not busy:
            i = bisect.bisect_left(lengths, (size, -1))
            return lengths[i][1] if i < len(lengths) else self.top
        busy = sorted(busy)
        if not lengths:                             # no gaps: above the open ranges
            best = None
            cursor = self.top
            for lo, hi in busy:
                if hi <= cursor:
                    continue
                if lo - cursor >= size and (best is None or (lo - cursor - size, cursor) < best):
                    best = (lo - cursor - size, cursor)
                cursor = hi if hi > cursor else cursor
            return best[1] if best is not None else cursor
        i = bisect.bisect_left(lengths, (size, -1))
        touched: set[int] = set()
        gap_starts, gap_end = self.gap_starts, self.gap_end
        for lo, hi in busy:
            j = max(0, bisect.bisect_right(gap_starts, lo) - 1)
            while j < len(gap_starts) and gap_starts[j] < hi:
                if gap_end[gap_starts[j]] > lo:
                    touched.add(gap_starts[j])
                j += 1
        best: tuple[int, int] | None = None        # (waste, offset)
        while i < len(lengths):
            length, start = lengths[i]
            if start not in touched:
                best = (length - size, start)
                break
            i += 1
        pieces = [(start, gap_end[start]) for start in touched] + [(self.top, None)]
        for start, end in pieces:
            cursor = start
            for lo, hi in busy:
                if hi <= cursor or (end is not None and lo >= end):
                    continue
                if lo - cursor >= size and (best is None or (lo - cursor - size, cursor) < best):
                    best = (lo - cursor - size, cursor)
                cursor = max(cursor, hi)
            if end is None:
                tail = cursor                       # everything above is free
            elif end - cursor >= size and (best is None or (end - cursor - size, cursor) < best):
                best = (end - cursor - size, cursor)
        return best[1] if best is not None else tail
