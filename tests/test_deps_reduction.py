"""deps: the loop-free transitive reduction (framed ancestor sets) against simple references.

`_Reducer` without bounds takes a fast path (`_step_unbounded`); with bounds it runs the general
algorithm, which trivial bounds (every task outside loops) turn into the same rule. Both must keep
exactly the edges the rule defines: a predecessor within the window is dropped when it is an
ancestor of a later predecessor; one further back only when it is a kept predecessor of one of
the kept ones. A small window makes the frames, their rebasing and the far rule all matter.
"""
import random

import networkx as nx
import pytest

from _ir_builders import call, program
from l3c.passes import deps


def random_dag(rng: random.Random, n: int, span: int) -> dict[int, list[int]]:
    preds = {}
    for v in range(n):
        lo = max(0, v - span)
        count = rng.randint(0, min(4, v - lo))
        preds[v] = rng.sample(range(lo, v), count) if count else []
    return preds


def reference(preds: dict[int, list[int]], n: int, window: int) -> dict[int, list[int]]:
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from((u, v) for v, us in preds.items() for u in us)
    kept: dict[int, list[int]] = {}
    for v in range(n):
        out: list[int] = []
        ordered = sorted(set(preds[v]), reverse=True)
        for u in ordered:
            if v - u <= window:
                if any(u in nx.ancestors(graph, k) for k in ordered if k > u):
                    continue
            elif any(u in kept[k] for k in out):
                continue
            out.append(u)
        kept[v] = out
    return kept


@pytest.fixture
def small_window(monkeypatch):
    def use(window: int) -> None:
        monkeypatch.setattr(deps, "ANCESTOR_WINDOW", window)
        monkeypatch.setattr(deps, "_WINDOW_MASK", (1 << window) - 1)
    return use


@pytest.mark.parametrize("seed", range(40))
def test_unbounded_reduction_keeps_what_the_rule_keeps(seed, small_window):
    rng = random.Random(seed)
    window = rng.choice([2, 3, 5, 8, 16])
    small_window(window)
    n = rng.randint(1, 120)
    preds = random_dag(rng, n, span=rng.choice([3, window, 2 * window, 4 * window]))
    expected = reference(preds, n, window)

    fast = deps.reduce_preds(preds, range(n))
    assert fast == expected
    trivial_bounds = ([0] * n, [n] * n)
    assert deps.reduce_preds(preds, range(n), trivial_bounds) == expected

    # As `_run_loop_free` runs it: far checks through the successors built from the kept edges.
    successors: dict[int, dict] = {v: {} for v in range(n)}
    reducer = deps._Reducer(successors=successors)
    for v in range(n):
        kept = reducer.step(v, set(preds[v]))
        assert kept == expected[v]
        for u in kept:
            successors[u][v] = None

    closure = nx.transitive_closure_dag(nx.DiGraph([(u, v) for v, us in preds.items() for u in us]))
    reduced = nx.DiGraph([(u, v) for v, us in fast.items() for u in us])
    reduced.add_nodes_from(closure)
    assert set(nx.transitive_closure_dag(reduced).edges) == set(closure.edges)


def test_edges_share_frozen_sets_and_add_dependency_copies():
    prog = program({"x": (4,), "y": (4,)}, [
        call("w", ("x", (), "Out"), ("y", (), "Out")),
        call("r", ("x", (), "In")), call("s", ("y", (), "In"))])
    deps.run(prog)
    g = prog.graph
    first, second = g.edges[0, 1], g.edges[0, 2]
    assert first["kinds"] == second["kinds"] == {"RAW"}
    assert first["tensors"] == {0} and second["tensors"] == {1}
    prog.add_dependency(0, 1, "WAW", 1)
    assert g.edges[0, 1]["kinds"] == {"RAW", "WAW"} and g.edges[0, 1]["tensors"] == {0, 1}
    assert g.edges[0, 2]["kinds"] == {"RAW"} and g.edges[0, 2]["tensors"] == {1}
    with pytest.raises(AttributeError):
        g.edges[0, 2]["kinds"].add("WAR")        # frozen: changing one in place cannot leak
