"""loopnest: where each task sits among the loops and conds of a program, for the passes.

A loop body or cond block is a contiguous range of tasks (`Loop.first_task .. end_task - 1`), so
"task p is inside the innermost structure of task k" is `first[k] <= p < end[k]`, with `first` and
`end` the bounds of that structure (0 and n at function level).

Why the passes need it: an instance of v waits for the latest earlier instance of each predecessor
u. A path u -> k -> v orders u before v only if k ran after u: k in a cond that was skipped, or
in a loop that ran no iteration, waits for nothing. Through its predecessor k, v may rely on
(`valid_ancestors`): all of k's ancestors when k's innermost structure encloses v (k ran in v's
iteration, after every instance of them that precedes v), else only k's ancestors inside that
structure (k, which runs in every iteration of it, ran after the last of them before v). Without
loops every structure is the whole program and nothing changes.
"""
from __future__ import annotations

import bisect

import numpy as np

from ..ir import Program, Task


def structure_bounds(program: Program, tasks: list[Task]) -> tuple[list[int], list[int]]:
    """Per task id: first task and end (exclusive) of its innermost loop/cond (0, n outside)."""
    n = len(tasks)
    first, end = [0] * n, [n] * n
    loops = program.loops
    for t in tasks:
        if t.loops:
            loop = loops[t.loops[-1]]
            first[t.id], end[t.id] = loop.first_task, loop.end_task
    return first, end


def chain(program: Program, loop_id: int | None) -> tuple[int, ...]:
    """The loop ids from the outermost down to `loop_id` (() for None)."""
    out: list[int] = []
    while loop_id is not None:
        out.append(loop_id)
        loop_id = program.loops[loop_id].parent
    return tuple(reversed(out))


def common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def repeating(program: Program, loops: tuple[int, ...]) -> tuple[int, ...]:
    """The loops of `loops` that iterate (conds run at most once where they are reached)."""
    return tuple(lid for lid in loops if program.loops[lid].kind != "cond")


def outermost_span(program: Program, loops: tuple[int, ...]) -> tuple[int, int] | None:
    """First and last task of the outermost structure in `loops` (None when empty)."""
    if not loops:
        return None
    outer = program.loops[loops[0]]
    return outer.first_task, outer.end_task - 1


def iteration_preds(program: Program, n: int) -> list[list[int]]:
    """`[predecessors of v within one iteration (carried edges left out) for v in 0..n-1]`."""
    pred = program.graph._pred
    if not program.has_carried:
        return [list(pred[v]) for v in range(n)]
    return [[u for u, data in pred[v].items() if not data.get("carried")] for v in range(n)]


def valid_ancestors(sources: list[list[int]], first: list[int], end: list[int]) -> list[int]:
    """Bitset (bit u = task u) of the tasks each task is ordered after, through `sources`
    (predecessors in program order), following only sound paths (see the module docstring)."""
    anc: list[int] = []
    for v, srcs in enumerate(sources):
        bits = 0
        for k in srcs:
            bits |= (1 << k) | vouched(anc[k], k, v, first, end)
        anc.append(bits)
    return anc


def vouched(ancestors: int, k: int, v: int, first: list[int], end: list[int]) -> int:
    """The part of task k's ancestor bitset that a path k -> v orders before v."""
    if v < end[k] or not first[k]:
        return ancestors
    return (ancestors >> first[k]) << first[k]


def lifetime(program: Program, tasks: list[Task], task_ids: list[int],
             created_in: tuple[int, ...] = (), tensor: int | None = None) -> tuple[int, int] | None:
    """First and last program point a tensor touched by `task_ids` (ascending) occupies memory:
    an access inside a loop holds it from the first to the last task of the outermost loop/cond
    around it (every iteration uses it again, at one address), as does being created in a body.
    A bound or flag a loop/cond reads (`tensor` among `Loop.accesses`) holds it to the end of the
    program: every worker slot reads it in its own time (a while flag once more after the last
    iteration), and no task orders a later tensor's writer after all those reads."""
    if not task_ids:
        return None
    lo, hi = task_ids[0], task_ids[-1]
    if tensor is not None and any(a.tensor == tensor for loop in program.loops.values()
                                  for a in loop.accesses):
        hi = len(tasks) - 1
    if program.loops:
        for span in [outermost_span(program, tasks[t].loops) for t in task_ids] + [
                outermost_span(program, created_in)]:
            if span is not None:
                lo, hi = min(lo, span[0]), max(hi, span[1])
    return lo, hi


def queue_starts(queues: list[list[int]], starts) -> dict[int, np.ndarray]:
    """For each structure start F in `starts`: per worker slot, the first queue position whose
    task is at or after F (the queue's length if none): a vector clock entry below it vouches for
    a task before F, which a path through a task of that structure cannot (module docstring)."""
    return {f: np.array([bisect.bisect_left(q, f) for q in queues], dtype=np.int64)
            for f in set(starts) if f}


def unvouched(p: int, y: int, first: list[int], end: list[int]) -> bool:
    """Whether task p, earlier than y on y's worker, may not have run before y: p sits in a
    loop/cond body that does not enclose y, and the body may have run no iteration (the rule of
    `vouched`)."""
    return y >= end[p] and bool(first[p])


def merged_clock(clocks: list[np.ndarray], sources: list[int], v: int, first: list[int],
                 end: list[int], starts: dict[int, np.ndarray], width: int) -> np.ndarray:
    """Task v's vector clock from its sources' clocks, each entry a sound prefix: entry e for slot
    s means every task at queue position <= e on s completed before v.

    A source k whose body does not enclose v vouches, on each slot, only for the positions from
    the body's first task there (`queue_starts`) up to k's entry (a body that ran no iteration
    orders nothing before its start): such an interval extends the prefix only where the prefix
    already reaches the position before it. Taken in order of their bodies' starts (outer bodies
    first, whose intervals start lowest), chained intervals join."""
    vc = np.full(width, -1, dtype=np.int64)
    masked = []
    for p in sources:
        if v < end[p] or not first[p]:
            np.maximum(vc, clocks[p], out=vc)
        else:
            masked.append(p)
    for p in sorted(masked, key=first.__getitem__):
        low = starts[first[p]]
        joins = (clocks[p] >= low) & (vc >= low - 1)
        np.maximum(vc, np.where(joins, clocks[p], -1), out=vc)
    return vc
