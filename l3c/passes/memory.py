"""memory: give every intermediate an offset in one shared arena, reusing dead tensors' space.

Tensor B may take space that tensor A used only if every access of A *happens before* every access
of B in every run: A's task reaches B's task in the graph, or runs before it on the same worker
queue, or a chain of both. Happens-before is tracked exactly with vector clocks over the placed
schedule (one counter per worker; a task's clock is the element-wise max of its predecessors' and its
queue predecessor's, plus its own queue position), so each "A before B" test costs O(workers A
touches): A's last queue position on each of its workers must be covered by the smallest clock
among B's first tasks.

Tensors are placed in order of first use, best fit into the gaps left by tensors that still
conflict. When the only way to avoid growing the arena is to reuse a tensor on another worker with
no path to B, the pass adds ordering edges (`added_by="memory"`, earlier -> later task) from A's last
task on each worker to B's first task on each worker, but only when the schedule's estimate already
has the first finished (plus hand-off) before the second starts (the edge then delays nothing),
both tasks are on one host (an edge between hosts is a network message the estimate does not
price, and each host has its own arena), and the reuse needs at most `MAX_EDGES_PER_REUSE` edges.
Loops (docs/passes.md): a tensor used in a loop lives for the whole outermost loop
(`loopnest.lifetime`); clocks run over the iteration graph, merged by `loopnest.merged_clock`.
Inputs are not placed (they live in a staging area; `arena_offset` stays None). Returned tensors are
live until the caller has copied them, so nothing reuses their space. Placement rounds sizes up to
64 bytes (a cache line: two workers writing neighbouring tensors never share one); the figures are
exact bytes. When rounding costs more than reuse saves (a few tiny tensors), the pass packs every
intermediate back to back instead, largest item size first (each at a multiple of its own item
size), so `lower_bound <= arena <= naive` always holds.

Several hosts: each host has its own arena, so two tensors no host shares (the hosts of their
accessing tasks; a returned tensor is on every host) never conflict; `reports["host_arena_bytes"]`
gives each host's size, `arena_bytes` the largest, `lower_bound_bytes` the largest host's bound.

Writes `TensorInfo.arena_offset`, `program.memory` (docs/passes.md) and
`program.reports["memory_edges"]`. `reuse_memory=False` gives every intermediate its own space.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..ir import Program
from .arena_layout import ALIGNMENT, staging_layout
from .arena_plan import Planner
from .arena_space import best_fit_scan
from .arena_uses import read_tasks, scan_uses
from .graphs import task_list
from .loopnest import lifetime, structure_bounds
from .scopes import result_tensors

__all__ = ["best_fit_scan", "lower_bound", "run", "tensor_hosts"]


def lower_bound(first: Sequence[int], last: Sequence[int], size: Sequence[int]) -> int:
    """Largest total size of tensors whose [first, last] intervals (parallel lists or arrays, one
    entry per tensor) contain one program point."""
    if len(first) == 0:
        return 0
    points = np.concatenate([np.asarray(first, np.int64), np.asarray(last, np.int64)])
    closing = np.repeat(np.array([0, 1], np.int8), len(first))  # closes after opens at a point
    delta = np.concatenate([np.asarray(size, np.int64), -np.asarray(size, np.int64)])
    live = np.cumsum(delta[np.lexsort((closing, points))])
    return max(0, int(live.max()))


def run(program: Program, *, reuse_memory: bool = True,
        times: tuple[list[float], list[float]] | None = None) -> Program:
    """The memory pass (see module docstring). `times`: the schedule's start and finish
    estimates of every task, exactly `schedule.estimate_times(program)` (the schedule pass hands
    them over); None: computed when first needed."""
    tasks = task_list(program)
    end = len(tasks)
    returned = result_tensors(program)
    tensors = program.tensors
    wanted, exact, size = intermediate_bytes(program)
    slots, access_tensors, access_tasks = read_tasks(program, tasks)
    bounds = structure_bounds(program, tasks) if program.loops else None
    uses = scan_uses(slots, access_tensors, access_tasks, wanted, bounds)
    first, last = uses.first, uses.last          # becomes each tensor's [first, last] lifetime
    intermediates = [tid for tid, keep in enumerate(wanted) if keep]
    if program.loops:
        for tid in intermediates:
            if first[tid] >= 0:
                first[tid], last[tid] = lifetime(program, tasks, uses.tasks_of[tid],
                                                 tensors[tid].loops, tid)
    for tid in returned:
        if wanted[tid]:
            if first[tid] < 0:
                first[tid] = end
            last[tid] = end
    first_of = np.array(first, dtype=np.int64)
    live_of = first_of >= 0
    live_of &= np.array(wanted, dtype=bool)
    live_ids = np.flatnonzero(live_of)           # tensors with a lifetime (used or returned)
    live = live_ids.tolist()
    report = program.memory
    report.alignment = ALIGNMENT
    report.naive_bytes = sum(exact)
    report.lower_bound_bytes = lower_bound(first_of[live_ids], [last[t] for t in live],
                                           [exact[t] for t in live])
    report.added_edges = 0
    program.reports["memory_edges"] = []
    size_of = np.array(size, dtype=np.int64)
    placed = live_ids[size_of[live_ids] > 0]
    order = placed[np.lexsort((placed, -size_of[placed], first_of[placed]))].tolist()
    placed_of = np.zeros(len(tensors), dtype=bool)
    placed_of[placed] = True
    for tid in np.flatnonzero(np.array(wanted, dtype=bool) & ~placed_of).tolist():
        tensors[tid].arena_offset = 0            # unused or empty: nothing needs its bytes

    if reuse_memory:
        planner = Planner(program, tasks, slots, uses, bounds, returned)
        if times is not None:
            planner.times = times
        report.arena_bytes = planner.place(order, size, first, last)
    else:
        offset = 0
        for tid in order:
            tensors[tid].arena_offset = offset
            offset += size[tid]
        report.arena_bytes = offset
    if report.arena_bytes > report.naive_bytes:
        _pack(program, order)
    if program.config.hosts > 1:
        cfg = program.config
        host_of_slot = [cfg.host_of_unit(kind, i) for kind, i in slots.workers]
        every = frozenset(range(cfg.hosts))
        hosts = {tid: every if tid in returned else
                 frozenset(host_of_slot[s] for s, _ in uses.heads[tid]) for tid in intermediates}
        ends = [0] * cfg.hosts
        for tid in order:
            for h in hosts[tid]:
                ends[h] = max(ends[h], tensors[tid].arena_offset + exact[tid])
        program.reports["host_arena_bytes"] = ends
        report.arena_bytes = max(ends)
        # each host's arena holds its own live tensors: the bound is the largest host's
        held = [[t for t in live if h in hosts[t]] for h in range(cfg.hosts)]
        report.lower_bound_bytes = max(
            lower_bound([first[t] for t in ts], [last[t] for t in ts], [exact[t] for t in ts])
            for ts in held)
    # The inputs' staging area, in front of the intermediates: known here, so that the dumps of a
    # program read the same before and after it is lowered or run.
    report.staging_bytes = staging_layout(program)[1]
    return program


def intermediate_bytes(program: Program) -> tuple[list[bool], list[int], list[int]]:
    """Per tensor id: whether it is an intermediate (the tensors the pass places), its size in
    bytes, and that size rounded up to the alignment (sizes 0 for the others)."""
    tensors = program.tensors
    wanted = [False] * len(tensors)
    exact = [0] * len(tensors)
    size = [0] * len(tensors)
    itemsize: dict[str, int] = {}
    prod = math.prod
    for tid, t in enumerate(tensors):
        if t.kind == "intermediate":
            dtype = t.dtype
            if dtype not in itemsize:
                itemsize[dtype] = np.dtype(dtype).itemsize
            wanted[tid] = True
            exact[tid] = nbytes = itemsize[dtype] * prod(t.shape)
            size[tid] = -(-nbytes // ALIGNMENT) * ALIGNMENT        # `aligned(nbytes)`
    return wanted, exact, size


def tensor_hosts(program: Program, accesses: dict[int, list[int]],
                 returned: set[int]) -> dict[int, frozenset[int]]:
    """The hosts whose arena holds each intermediate: those of the tasks that access it, or every
    host for a returned one (the results are broadcast to all)."""
    every = frozenset(range(program.config.hosts))
    return {t.id: every if t.id in returned else
            frozenset(program.host_of(program.task(v)) for v in accesses.get(t.id, ()))
            for t in program.tensors if t.kind == "intermediate"}


def _pack(program: Program, order: list[int]) -> None:
    """Every placed intermediate at its own offset, back to back, largest item size first (then
    largest first): offsets stay multiples of each tensor's item size, and the arena is the exact
    sum. Ordering edges added for reuse are dropped: nothing is reused any more."""
    report = program.memory
    for u, v in program.reports["memory_edges"]:
        program.graph.remove_edge(u, v)
    report.added_edges = 0
    program.reports["memory_edges"] = []
    tensors = program.tensors
    offset = 0
    for tid in sorted(order, key=lambda t: (-np.dtype(tensors[t].dtype).itemsize,
                                            -tensors[t].nbytes, t)):
        tensors[tid].arena_offset = offset
        offset += tensors[tid].nbytes
    report.arena_bytes = offset
    report.alignment = 0
