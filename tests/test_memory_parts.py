"""The memory pass's parts against simple references on random placed programs: the vector clocks
against reachability in the graph plus the queues (also after ordering edges are added), the
grouped uses against a walk of each tensor's accesses, and the lower bound against a sweep of
sorted events."""
import random

import networkx as nx
import pytest

from l3c.passes import run_passes
from l3c.passes.arena_uses import read_tasks, scan_uses
from l3c.passes.happens_before import SMALL_WIDTH, VectorClocks
from l3c.passes.memory import lower_bound
from test_passes import random_pipeline_program


def placed_program(seed: int, chips: int, subs: int):
    rng = random.Random(seed)
    prog = random_pipeline_program(rng, chips, subs)
    if not subs and any(t.worker == "sub" for t in prog.tasks):
        return None, rng
    run_passes(prog, until="schedule")
    return prog, rng


def reachable(prog, slots) -> set[tuple[int, int]]:
    """(x, y) pairs with a path x -> y through graph edges and queue order."""
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(slots.slot_of)))
    dag.add_edges_from(prog.graph.edges)
    for queue in slots.queues:
        dag.add_edges_from(zip(queue, queue[1:]))
    return {(x, y) for x in dag for y in nx.descendants(dag, x)}


def check_clocks(prog, slots, clocks) -> None:
    n = len(slots.slot_of)
    clocks.ensure(n - 1)
    want = reachable(prog, slots)
    for y in range(n):
        seen = clocks.before(y)
        full = clocks.clock_of(y)
        assert full[slots.slot_of[y]] == slots.pos[y]
        for x in range(n):
            if x == y:
                continue
            got = seen[slots.slot_of[x]] >= slots.pos[x]
            assert got == ((x, y) in want), (x, y)


@pytest.mark.parametrize("chips,subs", [(1, 1), (3, 2), (SMALL_WIDTH + 2, 1)])
@pytest.mark.parametrize("seed", range(25))
def test_vector_clocks_are_reachability(seed, chips, subs):
    prog, rng = placed_program(seed, chips, subs)
    if prog is None:
        return
    slots, _, _ = read_tasks(prog, prog.tasks)
    clocks = VectorClocks(prog, slots.slot_of, slots.pos, len(slots.workers), slots.queues, None)
    assert clocks.lists == (len(slots.workers) <= SMALL_WIDTH)
    n = len(slots.slot_of)
    clocks.ensure(n // 2)                 # part computed, then invalidated by new edges
    check_clocks(prog, slots, clocks)
    for _ in range(3):
        if n < 2:
            break
        u, v = sorted(rng.sample(range(n), 2))
        prog.add_dependency(u, v, "WAR", 0, added_by="memory")
        clocks.invalidate(v)
    check_clocks(prog, slots, clocks)


@pytest.mark.parametrize("seed", range(40))
def test_uses_are_each_tensors_accesses(seed):
    prog, _ = placed_program(seed, *random.Random(seed).choice([(2, 1), (3, 2), (1, 1)]))
    if prog is None:
        return
    tasks = prog.tasks
    slots, tensors, owners = read_tasks(prog, tasks)
    wanted = [t.kind == "intermediate" for t in prog.tensors]
    uses = scan_uses(slots, tensors, owners, wanted, None)
    for info in prog.tensors:
        ids = sorted({t.id for t in tasks for a in t.accesses if a.tensor == info.id})
        if not wanted[info.id] or not ids:
            assert uses.first[info.id] == -1 and not uses.heads[info.id]
            continue
        heads: dict[int, int] = {}
        lasts: dict[int, int] = {}
        for t in ids:
            heads.setdefault(slots.slot_of[t], t)
            lasts[slots.slot_of[t]] = t
        assert (uses.first[info.id], uses.last[info.id]) == (ids[0], ids[-1])
        assert uses.heads[info.id] == list(heads.items())
        assert uses.lasts[info.id] == [(s, slots.pos[t], t) for s, t in lasts.items()]
        assert uses.last_head[info.id] == max(heads.values())


@pytest.mark.parametrize("seed", range(30))
def test_lower_bound_is_the_most_bytes_live_at_one_point(seed):
    rng = random.Random(seed)
    first, last, size = [], [], []
    for _ in range(rng.randint(0, 30)):
        a = rng.randint(0, 20)
        first.append(a)
        last.append(a + rng.choice([0, 0, 1, 5, 20]))
        size.append(rng.choice([0, 1, 64, 100, 4096]))
    want = max([sum(s for f, l, s in zip(first, last, size) if f <= point <= l)
                for point in range(45)], default=0)
    assert lower_bound(first, last, size) == want
