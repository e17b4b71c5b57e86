"""deps: edges order exactly the conflicting pairs a brute-force element-set check finds."""
import random

import networkx as nx
import numpy as np
import pytest

from l3c.passes import conflict_index, deps, regions
from _ir_builders import call, program, random_index

S = slice
MODES = ["In", "In", "Out", "InOut"]


def random_program(rng: random.Random, n_tasks: int, n_tensors: int, chips: int = 2):
    shapes = {f"t{i}": tuple(rng.randint(1, 8) for _ in range(rng.randint(1, 2)))
              for i in range(n_tensors)}
    calls = []
    for _ in range(n_tasks):
        args = []
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(list(shapes))
            index = () if rng.random() < 0.3 else random_index(rng, shapes[name])
            args.append((name, index, rng.choice(MODES)))
        calls.append(call(rng.choice(["f", "g"]), *args))
    return program(shapes, calls, chips=chips)


def brute_force_conflicts(prog) -> set[tuple[int, int]]:
    tasks = prog.tasks
    elems = {}
    found = set()
    for j, tj in enumerate(tasks):
        for i in range(j):
            ti = tasks[i]
            for a in ti.accesses:
                for b in tj.accesses:
                    if a.tensor != b.tensor or not (a.writes or b.writes):
                        continue
                    ea = elems.setdefault(id(a), regions.elements(a.region))
                    eb = elems.setdefault(id(b), regions.elements(b.region))
                    if np.intersect1d(ea, eb).size:
                        found.add((i, j))
    return found


def reach_pairs(graph: nx.DiGraph) -> set[tuple[int, int]]:
    return {(u, v) for u in graph for v in nx.descendants(graph, u)}


def closure(n: int, pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(pairs)
    return reach_pairs(g)


@pytest.mark.parametrize("seed", range(300))
def test_reachability_equals_closure_of_conflicts(seed):
    rng = random.Random(seed)
    prog = random_program(rng, rng.randint(2, 14), rng.randint(1, 4))
    conflicts = brute_force_conflicts(prog)
    deps.run(prog, reduce_edges=False)
    edges = set(prog.graph.edges)
    assert edges <= conflicts                          # no extra edge for basic slices
    assert reach_pairs(prog.graph) == closure(len(prog.tasks), conflicts)
    for u, v, data in prog.graph.edges(data=True):
        assert u < v and data["added_by"] == "deps" and data["kinds"] <= {"RAW", "WAR", "WAW"}
    before = reach_pairs(prog.graph)
    expected_reduced = set(nx.transitive_reduction(prog.graph).edges)
    deps.transitive_reduction(prog)
    assert reach_pairs(prog.graph) == before
    assert set(prog.graph.edges) == expected_reduced


def long_random_program(rng: random.Random, n_tasks: int):
    """Few tensors, many views each: pending accesses pile up past a plain list into buckets."""
    shapes = {f"t{i}": (rng.randint(8, 40), rng.randint(1, 12)) for i in range(rng.randint(1, 3))}
    calls = []
    for _ in range(n_tasks):
        args = []
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(list(shapes))
            index = () if rng.random() < 0.05 else random_index(rng, shapes[name])
            args.append((name, index, rng.choice(MODES + ["In", "In"])))
        calls.append(call(rng.choice(["f", "g"]), *args))
    return program(shapes, calls)


@pytest.mark.parametrize("seed", range(12))
def test_bucketed_index_finds_the_brute_force_conflicts(seed, monkeypatch):
    # Long programs keep many pending accesses per tensor (the index's buckets, chunks shared by
    # several of them); whatever the index holds as a list, the edges are the same and exact.
    rng = random.Random(seed)
    n = rng.randint(40, 90)
    results = []
    for small in (conflict_index.SMALL_INDEX, 0, 1 << 30):
        monkeypatch.setattr(conflict_index, "SMALL_INDEX", small)
        prog = long_random_program(random.Random(seed), n)
        deps.run(prog, reduce_edges=False)
        results.append({(u, v, frozenset(d["kinds"]), frozenset(d["tensors"]))
                        for u, v, d in prog.graph.edges(data=True)})
    assert results[0] == results[1] == results[2]
    prog = long_random_program(random.Random(seed), n)
    conflicting = brute_force_conflicts(prog)
    deps.run(prog, reduce_edges=False)
    assert set(prog.graph.edges) <= conflicting
    assert reach_pairs(prog.graph) == closure(n, conflicting)


def test_edge_kinds_and_tensors():
    prog = program({"x": (4,), "y": (4,)}, [
        call("w", ("x", (), "Out")),
        call("r", ("x", (), "In"), ("y", (), "Out")),
        call("w2", ("x", (), "Out")),
        call("rw", ("x", (), "InOut"), ("y", (), "In")),
    ])
    deps.run(prog, reduce_edges=False)
    g = prog.graph
    assert g.edges[0, 1]["kinds"] == {"RAW"} and g.edges[0, 1]["tensors"] == {0}
    assert g.edges[1, 2]["kinds"] == {"WAR"}
    assert g.edges[0, 2]["kinds"] == {"WAW"}
    assert g.edges[2, 3]["kinds"] == {"RAW", "WAW"}
    assert g.edges[1, 3]["kinds"] == {"RAW"} and g.edges[1, 3]["tensors"] == {1}
    assert prog.reports["edges_before_reduction"] == prog.reports["edges_after_reduction"] == 5


def test_interleaved_and_block_views_are_independent():
    prog = program({"x": (8, 8)}, [
        call("a", ("x", S(0, None, 2), "Out")),
        call("b", ("x", S(1, None, 2), "Out")),
        call("c", ("x", (S(None), S(0, 4)), "InOut")),
        call("d", ("x", (S(0, 4), S(4, 8)), "InOut")),
        call("e", ("x", (S(4, 8), S(4, 8)), "InOut")),
    ])
    deps.run(prog)
    assert set(prog.graph.edges) == {(0, 2), (1, 2), (0, 3), (1, 3), (0, 4), (1, 4)}
    assert prog.reports["edges_after_reduction"] == 6


def test_reduction_drops_implied_edges():
    prog = program({"x": (4,)}, [call("w", ("x", (), "Out")), call("u", ("x", (), "InOut")),
                                 call("r", ("x", (), "In"))])
    deps.run(prog)
    assert set(prog.graph.edges) == {(0, 1), (1, 2)}
    assert prog.reports["edges_before_reduction"] == 2   # the covering write hides (0, 2)
    prog = program({"x": (4,), "y": (4,)}, [
        call("w", ("x", (), "Out"), ("y", (), "Out")), call("u", ("x", (), "InOut")),
        call("r", ("x", (), "In"), ("y", (), "In"))])
    deps.run(prog)
    assert prog.reports["edges_before_reduction"] == 3
    assert set(prog.graph.edges) == {(0, 1), (1, 2)}
    deps_unreduced = program({"x": (4,), "y": (4,)}, [
        call("w", ("x", (), "Out"), ("y", (), "Out")), call("u", ("x", (), "InOut")),
        call("r", ("x", (), "In"), ("y", (), "In"))])
    deps.run(deps_unreduced, reduce_edges=False)
    assert set(deps_unreduced.graph.edges) == {(0, 1), (1, 2), (0, 2)}


def test_many_disjoint_slices_stay_independent_and_fast_path():
    n = 600
    prog = program({"x": (n, 4), "y": (n, 4)},
                   [call("f", ("x", (i,), "Out")) for i in range(n)]
                   + [call("g", ("x", (S(i, i + 2),), "In"), ("y", (i,), "Out"))
                      for i in range(n - 1)]
                   + [call("h", ("y", (), "In"))])
    deps.run(prog)
    g = prog.graph
    for i in range(n - 1):
        assert set(g.pred[n + i]) == {i, i + 1}
    assert set(g.pred[2 * n - 1]) == set(range(n, 2 * n - 1))
    assert g.in_degree(0) == 0 and g.number_of_edges() == 2 * (n - 1) + (n - 1)


def test_row_interleaved_views_are_indexed_exactly():
    # x[i::64] spans most of x's flat range: such accesses used to be "wide" and compared with
    # every pending access (quadratic on the 64-host model program). Now indexed per row: still
    # exactly the conflicting pairs.
    rows, k = 512, 64
    prog = program({"x": (rows, 4), "y": (rows, 4)},
                   [call("w", ("x", (S(i, None, k),), "Out")) for i in range(k)]
                   + [call("r", ("x", (S(i, None, k),), "In"), ("y", (S(i, None, k),), "Out"))
                      for i in range(k)]
                   + [call("b", ("y", (S(j * 8, j * 8 + 8),), "In")) for j in range(rows // 8)])
    deps.run(prog)
    g = prog.graph
    for i in range(k):
        assert set(g.pred[k + i]) == {i}
    for j in range(rows // 8):
        assert set(g.pred[2 * k + j]) == {k + (r % k) for r in range(j * 8, j * 8 + 8)}
    assert g.number_of_edges() == k + (rows // 8) * 8
