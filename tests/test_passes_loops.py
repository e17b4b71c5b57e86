"""The passes on programs with loops and conds: carried edges exact for affine views, the bound and
flag reads' dependencies, memory for per-iteration intermediates, placement over the iteration
graph, and the schedule checker. A brute-force oracle (`_loop_oracle`) unrolls a few iterations
with concrete loop values and checks which instance pairs conflict against what the edges order."""
from __future__ import annotations

import pytest

from l3c.ir import Access, Loop
from l3c.passes import PassOptions, copy_program, run_passes
from l3c.passes.verify import InvariantError, check_schedule, verify

from _ir_builders import call, program, region
from _loop_oracle import (moving, needed_carried, unordered, unroll, with_loops)

N = 8


def rng(lid, first, end, start=0, stop=N, step=1, parent=None):
    return Loop(lid, "range", f"prog.py:{lid}", parent, first, end, start=start, stop=stop,
                step=step)


def edges(prog, carried=None):
    return {(u, v) for u, v, d in prog.graph.edges(data=True)
            if carried is None or bool(d.get("carried")) == carried}


def deps_only(prog):
    return run_passes(prog, until="deps", options=PassOptions(verify=True))


def row(i_index):
    """x[f(i)] of a 1-D tensor of N + 2 elements as a function of loop 0's variable."""
    return moving((N + 2,), lambda v: i_index(v[0]), {0: 1})


def test_same_element_each_iteration_is_not_carried():
    """for i: a writes x[i]; b reads x[i]: RAW within the iteration, nothing carried."""
    prog = with_loops(program({"x": (N + 2,), "y": (N + 2,)},
                              [call("a", ("x", row(lambda i: i), "Out")),
                               call("b", ("x", row(lambda i: i), "In"),
                                    ("y", row(lambda i: i), "Out"))]),
                      [rng(0, 0, 2)])
    deps_only(prog)
    assert edges(prog) == {(0, 1)} and not edges(prog, carried=True)
    assert not unordered(prog, unroll(prog, {}))


def test_accumulator_is_carried():
    """for i: acc += x[i]: the update waits for the previous iteration's (a self-loop)."""
    prog = with_loops(program({"x": (N + 2,), "acc": (1,)},
                              [call("add", ("x", row(lambda i: i), "In"), ("acc", (), "InOut"))]),
                      [rng(0, 0, 1)])
    deps_only(prog)
    assert edges(prog, carried=True) == {(0, 0)}
    assert prog.graph.edges[0, 0]["kinds"] == {"RAW", "WAR", "WAW"}
    assert not unordered(prog, unroll(prog, {}))


def test_previous_element_is_carried_raw():
    """for i in 1..N: a writes x[i]; b reads x[i - 1]: carried RAW a -> b, no edge within."""
    prog = with_loops(program({"x": (N + 2,), "y": (N + 2,)},
                              [call("a", ("x", row(lambda i: i), "Out")),
                               call("b", ("x", row(lambda i: i - 1), "In"),
                                    ("y", row(lambda i: i), "Out"))]),
                      [rng(0, 0, 2, start=1)])
    deps_only(prog)
    assert edges(prog, carried=False) == set()
    assert edges(prog, carried=True) == {(0, 1)}
    assert prog.graph.edges[0, 1]["kinds"] == {"RAW"}
    inst = unroll(prog, {})
    assert not unordered(prog, inst)
    assert needed_carried(prog, inst) == {(0, 1)}


def test_next_element_read_then_written_is_carried_war():
    """for i: b reads x[i + 1]; a writes x[i]: a at i + 1 overwrites what b read at i: WAR b -> a
    carried (backwards in program order would also be b -> a: here b comes first)."""
    prog = with_loops(program({"x": (N + 2,), "y": (N + 2,)},
                              [call("b", ("x", row(lambda i: i + 1), "In"),
                                    ("y", row(lambda i: i), "Out")),
                               call("a", ("x", row(lambda i: i), "Out"))]),
                      [rng(0, 0, 2)])
    deps_only(prog)
    assert edges(prog) == {(0, 1)} and edges(prog, carried=True) == {(0, 1)}
    assert prog.graph.edges[0, 1]["kinds"] == {"WAR"}
    assert not unordered(prog, unroll(prog, {}))


# ---- random programs against the unrolling oracle --------------------------------------------
from hypothesis import HealthCheck, given, note, settings, strategies as st  # noqa: E402

from l3c.ir import Access, Loop, Region  # noqa: E402,F811

from _loop_oracle import affine, arena_clashes, describe  # noqa: E402

SHAPES = {"x": (24,), "y": (6, 6), "acc": (1,), "flag": (2,), "tmp": (4,), "u": (24,)}


@st.composite
def looped_programs(draw, single: bool = False):
    """A few tasks around one loop (range or while, bounds static or in a tensor), maybe a loop or
    cond nested in it, maybe a cond after it; views affine in the enclosing loops' variables.
    `single`: only one static range loop around every task, views with boxes."""
    n = draw(st.integers(3, 7))
    first = 0 if single else draw(st.integers(0, 1))
    end = n if single else draw(st.integers(first + 1, n))
    kind = "range" if single else draw(st.sampled_from(["range", "range", "range", "while",
                                                         "tensor"]))
    element = draw(st.integers(0, 1))
    flag = Region(element, (), (), ((element, 1, 1),))
    if kind == "range":
        start, step = draw(st.integers(0, 2)), draw(st.sampled_from([1, 1, 2, -1]))
        trips = draw(st.integers(1, 4))
        outer = Loop(0, "range", "prog.py:1", None, first, end, start=start + (4 if step < 0 else 0),
                     stop=start + (4 if step < 0 else 0) + trips * step, step=step)
        values = list(range(outer.start, outer.stop, outer.step))
    elif kind == "tensor":
        outer = Loop(0, "range", "prog.py:1", None, first, end, start=1,
                     stop=Access("stop", 3, flag, "In"), step=1)
        values = [1, 2, 3]
    else:
        outer = Loop(0, "while", "prog.py:1", None, first, end, flag=Access("go", 3, flag, "In"),
                     max_iterations=draw(st.sampled_from([None, 3])))
        values = [0, 1, 2]
    loops = [outer]
    ranges = {0: values}
    inner_kind = None if single else draw(st.sampled_from([None, None, "range", "cond"]))
    if inner_kind and end - first >= 2:
        a = draw(st.integers(first, end - 1))
        b = draw(st.integers(a + 1, end))
        if inner_kind == "range":
            loops.append(Loop(1, "range", "prog.py:2", 0, a, b, start=0, stop=2, step=1))
            ranges[1] = [0, 1]
        else:
            loops.append(Loop(1, "cond", "prog.py:2", 0, a, b, flag=Access("f", 3, flag, "In")))
    if not single and draw(st.booleans()) and end < n:
        loops.append(Loop(2, "cond", "prog.py:3", None, end, n,
                          flag=Access("f", 3, flag, "In"), invert=True))
    calls = []
    for t in range(n):
        enclosing = [lp.id for lp in loops if lp.first_task <= t < lp.end_task and lp.id in ranges]
        args = []
        for k in range(draw(st.integers(1, 2))):
            names = ["x", "x", "y", "acc", "flag", "u"] + (["tmp"] if 0 in enclosing else [])
            name = draw(st.sampled_from(names))
            mode = draw(st.sampled_from(["In", "Out", "InOut"]))
            shape = SHAPES[name]
            axes = []
            for d in shape:
                coefs = {lid: draw(st.sampled_from([-1, 0, 0, 1, 2])) for lid in enclosing}
                count = draw(st.integers(1, min(3, d)))
                step = draw(st.sampled_from([1, 2])) if 2 * count - 1 <= d else 1
                extent = (count - 1) * step + 1
                lows = [sum(c * v for c, v in zip(coefs.values(), vs))
                        for vs in _product([ranges[lid] for lid in coefs])]
                low, high = min(lows), max(lows)
                if high - low > d - extent:
                    coefs = {lid: 0 for lid in coefs}
                    low = high = 0
                start = draw(st.integers(-low, d - extent - high))
                axes.append((start, coefs, count, step))
            reg = affine(shape, axes, keep_box=single or draw(st.integers(0, 5)) > 0)
            args.append((name, reg, mode))
        calls.append(call(draw(st.sampled_from(["ka", "kb", f"k{t}"])), *args))
    prog = program(dict(SHAPES), calls, results=draw(st.sampled_from([(), ("x",)])))
    prog.tensors[list(SHAPES).index("tmp")].loops = (0,)       # created in loop 0's body
    return with_loops(prog, loops)


def _product(lists):
    import itertools
    return list(itertools.product(*lists)) or [()]


def _runs(prog):
    """Trip counts and cond decisions to unroll with."""
    cond_ids = [lp.id for lp in prog.loops.values() if lp.kind == "cond"]
    for trips in (0, 1, 3):
        for taken in (True, False):
            yield {0: trips, 1: trips}, {c: taken for c in cond_ids}


def _read_waits(prog):
    extra = {}
    for lp in prog.loops.values():
        extra.setdefault(-1 - lp.id, []).extend(lp.reads_after)
        for w, carried in lp.reads_before:
            extra.setdefault(w, []).append((-1 - lp.id, carried))
    return extra


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(looped_programs())
def test_random_loops_every_conflicting_instance_pair_is_ordered(prog):
    note(describe(prog))
    deps_only(prog)
    for trips, taken in _runs(prog):
        inst = unroll(prog, trips, taken, flag_reads=True)
        assert not unordered(prog, inst, _read_waits(prog)), (trips, taken)


def _within_conflicts(prog, inst):
    """Task pairs (u, v), u before v, with conflicting instances in one iteration."""
    from _loop_oracle import conflicts
    return {(inst[i].task, inst[j].task) for i, j in conflicts(inst)
            if inst[i].task < inst[j].task and inst[i].iteration == inst[j].iteration}


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(looped_programs(single=True))
def test_random_single_static_loop_is_exact(prog):
    """One range loop with static bounds, views with boxes: every edge stands for a real conflict
    of the unrolled run (carried: across iterations; within: in one iteration)."""
    note(describe(prog))
    deps_only(prog)
    inst = unroll(prog, {})
    assert edges(prog, carried=True) <= needed_carried(prog, inst)
    assert edges(prog, carried=False) <= _within_conflicts(prog, inst)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(looped_programs(), st.sampled_from([1, 2, 3]))
def test_random_loops_through_every_pass(prog, chips):
    """All passes with their invariants checked, then the schedule checker; in the unrolled run
    every conflict is ordered by edges and worker queues, and intermediates sharing arena bytes
    are used one entirely before the other."""
    prog.config.chips = chips
    note(describe(prog))
    run_passes(prog, options=PassOptions(verify=True))
    check_schedule(prog)
    for trips, taken in _runs(prog):
        inst = unroll(prog, trips, taken)
        assert not unordered(prog, inst), (trips, taken)
        assert not arena_clashes(prog, inst), (trips, taken)
