"""Lowering a placed Program to a Plan: waits, signals, views, staging, groups, results."""
from __future__ import annotations

import random

import numpy as np
import pytest

from l3c.codegen.lower import lower
from l3c.ir import Access, Config, Param, Program, Region, ResultRef, ScalarArg, Task, TensorInfo
from l3c.runtime.plan import View


def make_program(chips: int, sub: int, placement: list[tuple[str, int]], edges: list[tuple[int, int]],
                 groups: list[list[int]] = ()) -> Program:
    """Tasks placed on (worker, index) in program order, with the given edges (u < v)."""
    prog = Program(name="m:f", loc="f.py:1", config=Config(chips=chips, sub_workers=sub))
    prog.tensors.append(TensorInfo(0, "arg0", "input", (8,), "float32", "f.py:1"))
    prog.params.append(Param("x", tensor=0))
    counts: dict[tuple[str, int], int] = {}
    for tid, (worker, idx) in enumerate(placement):
        pos = counts.get((worker, idx), 0)
        counts[(worker, idx)] = pos + 1
        prog.add_task(Task(tid, "m:k", worker, (ScalarArg("i", tid),), f"f.py:{10 + tid}",
                           chip=idx, queue_pos=pos))
    for u, v in edges:
        prog.add_dependency(u, v, "RAW", 0)
    for gi, members in enumerate(groups):
        prog.groups.append(list(members))
        for rank, tid in enumerate(members):
            prog.task(tid).group = gi
            prog.task(tid).group_rank = rank
    return prog


def simulate(prog: Program, plan, rng: random.Random) -> list[int]:
    """Run the plan's queues in a random interleaving that respects only the plan's waits;
    assert every IR edge is honoured. Returns the completion order."""
    done = [0] * plan.slots
    finished: set[int] = set()
    order = []
    while sum(done) < sum(plan.expected):
        ready = [s for s in range(plan.slots) if done[s] < len(plan.queues[s])
                 and all(done[t] >= c for t, c in plan.queues[s][done[s]].waits)]
        assert ready, "deadlock: no slot can proceed"
        s = rng.choice(ready)
        step = plan.queues[s][done[s]]
        for u in prog.graph.predecessors(step.task):
            assert u in finished, f"task {step.task} started before its predecessor {u}"
        finished.add(step.task)
        order.append(step.task)
        done[s] += 1
    return order


def test_chain_on_one_worker_needs_no_waits():
    prog = make_program(2, 0, [("chip", 0)] * 4, [(0, 1), (1, 2), (2, 3)])
    plan = lower(prog).plan
    assert [s.task for s in plan.queues[0]] == [0, 1, 2, 3]
    assert plan.queues[1] == ()
    assert all(s.waits == () and not s.signal for s in plan.queues[0])


def test_cross_worker_wait_and_signal():
    prog = make_program(2, 1, [("chip", 0), ("chip", 1), ("sub", 0)], [(0, 1), (1, 2)])
    plan = lower(prog).plan
    assert plan.queues[1][0].waits == ((0, 1),)
    assert plan.queues[2][0].waits == ((1, 1),)       # sub worker 0 is slot chips + 0 = 2
    assert plan.queues[0][0].signal and plan.queues[1][0].signal
    assert not plan.queues[2][0].signal
    assert plan.expected == (1, 1, 1)


def test_redundant_waits_are_dropped():
    # slot0: a0(0) a1(1); slot1: b0(2) <- a0, b1(3) <- a0, a1; slot2: c0(4) <- b1, a0
    prog = make_program(3, 0, [("chip", 0), ("chip", 0), ("chip", 1), ("chip", 1), ("chip", 2)],
                        [(0, 2), (0, 3), (1, 3), (3, 4), (0, 4)])
    plan = lower(prog).plan
    b0, b1 = plan.queues[1]
    (c0,) = plan.queues[2]
    assert b0.waits == ((0, 1),)
    assert b1.waits == ((0, 2),)           # max per slot
    assert c0.waits == ((1, 2),)           # a0 implied through b1's wait
    assert plan.queues[0][0].signal and plan.queues[0][1].signal


@pytest.mark.parametrize("seed", range(60))
def test_random_programs_respect_every_edge(seed):
    rng = random.Random(seed)
    chips, sub = rng.randint(1, 4), rng.randint(0, 2)
    n = rng.randint(1, 40)
    placement = [("sub", rng.randrange(sub)) if sub and rng.random() < 0.25
                 else ("chip", rng.randrange(chips)) for _ in range(n)]
    p_edge = rng.choice([0.05, 0.15, 0.4])
    edges = [(u, v) for v in range(n) for u in range(v) if rng.random() < p_edge]
    prog = make_program(chips, sub, placement, edges)
    plan = lower(prog).plan
    assert sorted(s.task for q in plan.queues for s in q) == list(range(n))
    for _ in range(5):
        simulate(prog, plan, rng)
    # no step waits on its own slot, at most one wait per slot, and waited-on steps signal
    signalled = set()
    for s, q in enumerate(plan.queues):
        for step in q:
            slots = [t for t, _ in step.waits]
            assert s not in slots and len(slots) == len(set(slots))
            signalled |= {plan.queues[t][c - 1].task for t, c in step.waits}
    assert signalled == {st.task for q in plan.queues for st in q if st.signal}


def test_groups_get_rank_and_size():
    prog = make_program(2, 0, [("chip", 0), ("chip", 1), ("chip", 0)], [(0, 2), (1, 2)],
                        groups=[[0, 1]])
    plan = lower(prog).plan
    assert (plan.queues[0][0].group_rank, plan.queues[0][0].group_size) == (0, 2)
    assert (plan.queues[1][0].group_rank, plan.queues[1][0].group_size) == (1, 2)
    assert (plan.queues[0][1].group_rank, plan.queues[0][1].group_size) == (0, 1)
    assert plan.queues[0][1].waits == ((1, 1),)


def _numpy_view(arena: np.ndarray, view: View) -> np.ndarray:
    return np.ndarray(view.shape, np.dtype(view.dtype), arena.data, view.offset, view.strides)


def test_views_staging_intermediates_and_results():
    prog = Program(name="m:f", loc="f.py:1", config=Config(chips=1))
    prog.tensors += [TensorInfo(0, "arg0", "input", (3, 5), "float64", "f.py:1"),
                     TensorInfo(1, "arg1", "input", (7,), "int16", "f.py:1"),
                     TensorInfo(2, "t0", "intermediate", (6, 4), "float32", "f.py:2",
                                arena_offset=128)]
    prog.params += [Param("x", tensor=0), Param("n", static=3), Param("y", tensor=1)]
    prog.memory.arena_bytes = 128 + 96
    # x[1:3, ::2] read; y[::3] written; t0[::2, 1:] written
    rx = Region(1 * 5 + 0, (2, 3), (5, 2), ((1, 2, 1), (0, 3, 2)))
    ry = Region(0, (3,), (3,), ((0, 3, 3),))
    rt = Region(1, (3, 3), (8, 1), ((0, 3, 2), (1, 3, 1)))
    prog.add_task(Task(0, "m:k", "chip", (Access("x", 0, rx, "In"), ScalarArg("a", 2.5),
                                          Access("y", 1, ry, "Out"), Access("t", 2, rt, "Out")),
                       "f.py:3", chip=0, queue_pos=0))
    prog.results = ("tuple", [ResultRef(2, Region.whole((6, 4)), "float32"),
                              ("dict", [("y", ResultRef(1, ry, "int16"))])])
    low = lower(prog)
    x_view, none, y_view = low.input_views
    assert none is None and x_view.offset == 0 and y_view.offset == 128   # 120 B aligned up to 128
    assert low.staging_bytes == 192
    assert low.arena_bytes == low.plan.arena_bytes >= 192 + 128 + 96
    assert low.written_inputs == (2,)
    arena = np.zeros(low.arena_bytes, np.uint8)
    x = np.arange(15.0).reshape(3, 5)
    y = np.arange(7, dtype=np.int16)
    _numpy_view(arena, x_view)[...] = x
    _numpy_view(arena, y_view)[...] = y
    t = np.arange(24, dtype=np.float32).reshape(6, 4)
    _numpy_view(arena, View(192 + 128, (6, 4), (16, 4), "float32"))[...] = t
    step = low.plan.queues[0][0]
    assert step.args[1] == 2.5
    np.testing.assert_array_equal(_numpy_view(arena, step.args[0]), x[1:3, ::2])
    np.testing.assert_array_equal(_numpy_view(arena, step.args[2]), y[::3])
    np.testing.assert_array_equal(_numpy_view(arena, step.args[3]), t[::2, 1:])
    kind, (t_view, (dkind, [(key, yv)])) = low.results
    assert (kind, dkind, key) == ("tuple", "dict", "y")
    np.testing.assert_array_equal(_numpy_view(arena, t_view), t)
    np.testing.assert_array_equal(_numpy_view(arena, yv), y[::3])


def test_unplaced_task_is_an_error():
    prog = make_program(1, 0, [("chip", 0)], [])
    prog.task(0).chip = None
    with pytest.raises(ValueError, match="not placed"):
        lower(prog)
