"""What bounds a loop's iteration rate in one profiled run: per range or while loop, the longest
chains of measured task durations within one iteration and around a carried edge.

Iterations overlap wherever the dependencies allow (docs/passes.md), so a loop's time per
iteration is bounded below by two chains of its body (the tasks whose `loops` include it), each
task weighted by its measured time per iteration of the loop (all its instances' durations over the
loop's iterations: a task of a nested loop counts every inner instance, one in a cond only the
iterations it ran):

* `iteration_path`: the longest path of the iteration graph (carried edges left out) through the
  body: one iteration's latency, what bounds the rate when iterations cannot overlap;
* `recurrence`: the longest cycle closed by one carried edge a -> b whose innermost common loop is
  this one (b of the next iteration waits for a): a path b ... a within one iteration plus that
  edge. Iteration k + 1's b cannot start before iteration k's a ends, so however many workers
  there are, an iteration takes at least that long (a modulo schedule's recurrence bound for
  distance 1).

Beside them, `us_per_iteration`: the measured mean, each entry's span (first instance start to last
instance end of the body's tasks) over its iterations, summed over entries.
"""
from __future__ import annotations

from typing import Any

from .ir import Program

# instance (task id, iterations of its range/while loops, outermost first) -> (slot, start, end)
Instances = dict[tuple[int, tuple[int, ...]], tuple[int, float, float]]


def loop_paths(program: Program, where: Instances) -> dict[int, dict[str, Any]]:
    """Per range/while loop id with a measured iteration: `iteration_path_tasks`,
    `iteration_path_us`, `recurrence_tasks` (the cycle b ... a, empty without one),
    `recurrence_edge` ([a, b] or None), `recurrence_us` and `us_per_iteration`."""
    out: dict[int, dict[str, Any]] = {}
    for lid, loop in sorted(program.loops.items()):
        if loop.kind == "cond":
            continue
        body = [t.id for t in program.tasks if lid in t.loops]
        spans, busy = _spans(program, lid, body, where)
        iterations = sum(n for _, _, n in spans.values())
        if not iterations:
            continue
        weight = {t: busy.get(t, 0.0) / iterations for t in body}
        path, length = _longest_path(program, body, weight)
        cycle, edge, cycle_us = _recurrence(program, lid, body, weight)
        out[lid] = {
            "iteration_path_tasks": path, "iteration_path_us": length,
            "recurrence_tasks": cycle, "recurrence_edge": edge, "recurrence_us": cycle_us,
            "us_per_iteration": sum(hi - lo for lo, hi, _ in spans.values()) / iterations,
        }
    return out


def _iterating(program: Program, loops: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(lid for lid in loops if program.loops[lid].kind != "cond")


def _spans(program: Program, lid: int, body: list[int], where: Instances):
    """Per entry of the loop (the iterations of the loops around it): (first start, last end,
    iterations run), and each body task's total measured time."""
    in_body = set(body)
    depth: dict[int, int] = {}
    spans: dict[tuple[int, ...], list] = {}
    busy: dict[int, float] = {}
    for (task, iters), (_, start, end) in where.items():
        if task not in in_body:
            continue
        d = depth.get(task)
        if d is None:
            d = depth[task] = _iterating(program, program.task(task).loops).index(lid)
        entry = spans.setdefault(iters[:d], [start, end, set()])
        entry[0], entry[1] = min(entry[0], start), max(entry[1], end)
        entry[2].add(iters[d])
        busy[task] = busy.get(task, 0.0) + (end - start)
    return {k: (lo, hi, len(seen)) for k, (lo, hi, seen) in spans.items()}, busy


def _within_preds(program: Program, body: list[int]) -> dict[int, list[int]]:
    graph, members = program.graph, set(body)
    return {v: [u for u in graph.predecessors(v) if u in members
                and not graph.edges[u, v].get("carried")] for v in body}


def _longest_path(program: Program, body: list[int], weight: dict[int, float],
                  source: int | None = None, target: int | None = None):
    """A longest weighted path of the iteration graph within `body` (program order is
    topological), from `source` and to `target` when given: (task ids, total), or ([], 0.0)
    when `target` is unreachable from `source`."""
    preds = _within_preds(program, body)
    best: dict[int, float] = {}
    prev: dict[int, int | None] = {}
    for v in body:
        if source is not None and v < source:
            continue
        reach = [u for u in preds[v] if u in best]
        if source is not None and v != source and not reach:
            continue
        p = max(reach, key=lambda u: (best[u], -u), default=None)
        best[v] = weight[v] + (best[p] if p is not None else 0.0)
        prev[v] = p
    if not best or target is not None and target not in best:
        return [], 0.0
    node: int | None = target if target is not None else max(best, key=lambda v: (best[v], -v))
    end = node
    path = []
    while node is not None:
        path.append(node)
        node = prev[node]
    return path[::-1], best[end]


def _recurrence(program: Program, lid: int, body: list[int], weight: dict[int, float]):
    """The longest cycle b ... a -> b over carried edges a -> b whose innermost common range or
    while loop is `lid`: (cycle's task ids, [a, b], total), or ([], None, 0.0)."""
    found: tuple[list[int], list[int] | None, float] = ([], None, 0.0)
    members = set(body)
    for a, b, data in sorted(program.graph.edges(data=True)):
        if not data.get("carried") or a not in members or b not in members or b > a:
            continue
        la = _iterating(program, program.task(a).loops)
        lb = _iterating(program, program.task(b).loops)
        n = 0
        while n < min(len(la), len(lb)) and la[n] == lb[n]:
            n += 1
        if not n or la[n - 1] != lid:
            continue
        path, total = _longest_path(program, body, weight, source=b, target=a)
        if path and total > found[2]:
            found = (path, [a, b], total)
    return found
