"""Exact happens-before over a placed schedule, for the memory pass: vector clocks.

The clock of task t, C(t), gives per worker slot w the highest queue position on w that has
completed when t completes (t's own position included): the element-wise max of its graph
predecessors' clocks and its queue predecessor's. Task x happens before task y (x != y) exactly
when C(y)[slot(x)], less one if x and y share a slot (y's own position), is at least pos(x).

A clock is stored as a numpy vector V(t) equal to C(t) except perhaps on t's own slot, whose
entry is pos(t): a task whose graph predecessors all run on its own slot (they precede its queue
predecessor q) then shares q's vector instead of copying it, which about half the tasks of a
layered program do. A merge costs ~0.5 us whether there are 3 workers or 576 (a Python loop over
576 entries costs ~30 us). Clocks are computed lazily in program order from the graph's
predecessors (so ordering edges added meanwhile count), and an edge added into task v only
invalidates the clocks from v on (`invalidate`).

Loops: clocks run over the iteration graph (carried edges left out), merged by
`loopnest.merged_clock`, whose entries are sound prefixes.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np

from ..ir import Program
from .loopnest import merged_clock, queue_starts

NEVER = 1 << 30                # a queue position no task reaches
SMALL_WIDTH = 16               # up to this many worker slots, clocks are Python lists


class VectorClocks:
    """The clocks of a placed program's tasks (ids 0..n-1 in program order) on `width` slots."""

    def __init__(self, program: Program, slot_of: list[int], pos: list[int], width: int,
                 queues: list[list[int]], bounds: tuple[list[int], list[int]] | None) -> None:
        self.graph_pred = program.graph._pred
        self.carried = program.has_carried
        self.slot_of, self.pos, self.width, self.queues, self.bounds = (
            slot_of, pos, width, queues, bounds)
        n = len(slot_of)
        queue_pred = np.full(n, -1, dtype=np.int64)
        for queue in queues:
            if queue:
                ids = np.array(queue, dtype=np.int64)
                queue_pred[ids[1:]] = ids[:-1]
        self.queue_pred: list[int] = queue_pred.tolist()
        self.starts = queue_starts(queues, bounds[0]) if bounds else {}
        self.clock: list = [None] * n
        self.valid_upto = 0                      # clocks of tasks < valid_upto are up to date
        # Few workers and no loops: clocks are lists (merging 3 entries in Python costs less than
        # a numpy call, and reading one needs no conversion).
        self.lists = width <= SMALL_WIDTH and bounds is None and not self.carried
        self.unknown = [-1] * width if self.lists else np.full(width, -1, dtype=np.int64)
        # the element-wise max of two clocks as a new one (the min: lists only, `smallest_before`)
        if self.lists:
            self.later, self.earlier = _elementwise(width, ">"), _elementwise(width, "<")
        else:
            self.later = np.maximum

    def sources(self, t: int) -> list[int]:
        """t's graph predecessors within one iteration, then its queue predecessor."""
        pred = self.graph_pred[t]
        src = ([u for u, data in pred.items() if not data.get("carried")] if self.carried
               else list(pred))
        if self.queue_pred[t] >= 0:
            src.append(self.queue_pred[t])
        return src

    def ensure(self, upto: int) -> None:
        """Bring the clocks of tasks 0..upto up to date."""
        if upto < self.valid_upto:
            return
        if self.bounds is not None or self.carried:
            self._ensure_general(upto)
            return
        clock, graph_pred, queue_pred = self.clock, self.graph_pred, self.queue_pred
        slot_of, pos, unknown, later = self.slot_of, self.pos, self.unknown, self.later
        for t in range(self.valid_upto, upto + 1):
            s = slot_of[t]
            vc = None
            for p in graph_pred[t]:
                # an earlier task of t's own queue is covered by the queue predecessor's clock
                sp = slot_of[p]
                if sp != s:
                    if vc is None:        # a new vector: `unknown` (all -1) is below any clock
                        q = queue_pred[t]
                        vc = later(clock[q] if q >= 0 else unknown, clock[p])
                    else:
                        vc = later(vc, clock[p])
                    if vc[sp] < pos[p]:
                        vc[sp] = pos[p]
            if vc is None:
                q = queue_pred[t]
                clock[t] = clock[q] if q >= 0 else unknown
            else:
                vc[s] = pos[t]
                clock[t] = vc
        self.valid_upto = upto + 1

    def _ensure_general(self, upto: int) -> None:
        clock, slot_of, pos = self.clock, self.slot_of, self.pos
        width, bounds = self.width, self.bounds
        for t in range(self.valid_upto, upto + 1):
            src = self.sources(t)
            if bounds is not None:
                vc = merged_clock(clock, src, t, *bounds, self.starts, width)
            elif not src:
                vc = self.unknown.copy()
            else:
                vc = clock[src[0]].copy()
                for p in src[1:]:
                    np.maximum(vc, clock[p], out=vc)
            vc[slot_of[t]] = pos[t]
            clock[t] = vc           # every vector of this path is exact: C(t) = V(t)
        self.valid_upto = upto + 1

    def invalidate(self, t: int) -> None:
        """Task t has a new predecessor: its clock and every later one are stale."""
        self.valid_upto = min(self.valid_upto, t)

    def before(self, y: int) -> list[int]:
        """y's `before` clock (its clock without its own position) as a list: entry p for slot w
        means positions up to p on w happen before y. Up to date only after `ensure(y)`."""
        row = self.clock[y][:] if self.lists else self.clock[y].tolist()
        row[self.slot_of[y]] = self.pos[y] - 1
        return row

    def smallest_before(self, heads: list[tuple[int, int]]) -> list[int]:
        """The element-wise min of the `before` clocks of the tasks y of `heads` ((slot of y, y)
        pairs, at least one), as a new list. Up to date only after `ensure` of every y."""
        if not self.lists:
            return self.smallest([self.before(y) for _, y in heads])
        clock, pos, earlier = self.clock, self.pos, self.earlier
        s, y = heads[0]
        row = clock[y][:]
        row[s] = pos[y] - 1
        for s, y in heads[1:]:
            keep = row[s]
            row = earlier(row, clock[y])
            own = pos[y] - 1                 # y's `before` entry on its own slot
            row[s] = keep if keep < own else own
        return row

    def clock_of(self, t: int) -> list[int]:
        """C(t) as a list. Up to date only after `ensure(t)`."""
        row = self.clock[t][:] if self.lists else self.clock[t].tolist()
        row[self.slot_of[t]] = self.pos[t]
        return row

    def smallest(self, rows: list[list[int]]) -> list[int]:
        """The element-wise min of clock `rows` (lists); [NEVER, ...] without rows."""
        if not rows:
            return [NEVER] * self.width
        if len(rows) == 1:
            return rows[0]
        if self.width > 16:                     # a Python loop over many workers costs more
            return np.minimum.reduce(np.array(rows, dtype=np.int64)).tolist()
        if self.lists:
            row = rows[0]
            for other in rows[1:]:
                row = self.earlier(row, other)
            return row
        return list(map(min, *rows))

    def seen_by_future(self, point: int) -> list[int] | None:
        """A clock every future task (id >= point) has seen complete, or None if some worker
        with future tasks has none before `point`, or the program has loops (iterations repeat)."""
        if self.bounds is not None:
            return None
        rows = []
        for q in self.queues:
            i = bisect.bisect_left(q, point)
            if i == len(q):
                continue                                  # no future task on this worker
            if i == 0:
                return None
            rows.append(q[i - 1])
        if not rows:
            return [NEVER] * self.width
        self.ensure(max(rows))
        return self.smallest([self.clock_of(t) for t in rows])


def _elementwise(width: int, keep: str) -> Callable[[list[int], list[int]], list[int]]:
    """A function of two lists of `width` ints giving their element-wise max (`keep` ">") or min
    ("<") as a new list, unrolled for the width: over the few workers of a small pool a loop
    (comprehension, `map(max, ...)`) costs two to five times the comparisons themselves, and the
    clocks merge once per task."""
    a = "".join(f"a{i}, " for i in range(width))
    b = "".join(f"b{i}, " for i in range(width))
    picks = ", ".join(f"a{i} if a{i} {keep} b{i} else b{i}" for i in range(width))
    namespace: dict = {}
    exec(f"def pick(a, b):\n    {a}= a\n    {b}= b\n    return [{picks}]\n", namespace)
    return namespace["pick"]
