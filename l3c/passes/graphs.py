"""Fast read access to a Program's networkx graph for the passes.

`program.tasks` sorts the node ids and looks each record up through networkx's NodeView, and
`graph.pred[v]` builds a view object per call; on 10k-task programs these lookups cost more than
some passes' own work. Node ids are `0..n-1` (the IR schema; `verify` checks it), so the passes
read the underlying dicts by id instead.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

import networkx as nx

from ..ir import Program, Task


def task_list(program: Program) -> list[Task]:
    """The Task records in program order (what `program.tasks` returns)."""
    nodes = program.graph._node
    try:
        return [nodes[v]["task"] for v in range(len(nodes))]
    except KeyError:                    # ids are not 0..n-1 (hand-built IR): the slow, sorted way
        return program.tasks


def iteration_graph(program: Program) -> nx.DiGraph:
    """The graph without carried edges: a DAG in program order (the graph itself, or a view of
    it, when the program has carried edges)."""
    graph = program.graph
    if not program.has_carried:
        return graph
    return nx.subgraph_view(graph, filter_edge=lambda u, v: not graph.edges[u, v].get("carried"))


def predecessor_lists(graph: nx.DiGraph, n: int) -> list[list[int]]:
    """`[list of predecessors of task v for v in 0..n-1]`."""
    pred = graph._pred
    return [list(pred[v]) for v in range(n)]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The passes (and the copy they run on) allocate many small containers and free none of them
    as cycles: pausing the cyclic garbage collector for the whole pipeline saves ~20% of their time
    on large programs (re-enabling it between passes let a full collection run at each boundary)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            # Without a collection of everything made meanwhile (all in the youngest generation):
            # freeze + unfreeze moves it to the oldest in constant time (see
            # `l3c.trace.tracer.resume_collector`).
            gc.freeze()
            gc.unfreeze()
            gc.enable()
