"""The passes on random programs with loops, conds and while loops, against the unrolling oracle
(`_loop_oracle`): every conflicting pair of instances is ordered, one static loop's edges are all
real conflicts, and every pass (with its invariants checked) keeps placed schedules and shared
arena bytes safe."""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, note, settings, strategies as st

from l3c.ir import Access, Loop, Region
from l3c.passes import PassOptions, run_passes
from l3c.passes.verify import check_schedule

from _ir_builders import call, program
from _loop_oracle import (affine, arena_clashes, conflicts, describe, needed_carried, read_waits,
                          sample_runs, unordered, unroll, with_loops)


def deps_only(prog):
    return run_passes(prog, until="deps", options=PassOptions(verify=True))


def edges(prog, carried=None):
    return {(u, v) for u, v, d in prog.graph.edges(data=True)
            if carried is None or bool(d.get("carried")) == carried}


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
                                                         "tensor", "tensor step"]))
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
    elif kind == "tensor step":                   # the oracle runs it with step 1
        outer = Loop(0, "range", "prog.py:1", None, first, end, start=0,
                     stop=Access("stop", 3, flag, "In"), step=Access("step", 3, flag, "In"))
        values = [0, 1, 2]
    else:
        outer = Loop(0, "while", "prog.py:1", None, first, end, flag=Access("go", 3, flag, "In"),
                     max_iterations=draw(st.sampled_from([None, 3])))
        values = [0, 1, 2]
    loops = [outer]
    ranges = {0: values}
    inner_kind = None if single else draw(st.sampled_from([None, None, "range", "cond", "while"]))
    if inner_kind and end - first >= 2:
        a = draw(st.integers(first, end - 1))
        b = draw(st.integers(a + 1, end))
        if inner_kind == "range":
            loops.append(Loop(1, "range", "prog.py:2", 0, a, b, start=0, stop=2, step=1))
            ranges[1] = [0, 1]
        elif inner_kind == "while":
            loops.append(Loop(1, "while", "prog.py:2", 0, a, b, flag=Access("go", 3, flag, "In"),
                              max_iterations=draw(st.sampled_from([None, 3]))))
            ranges[1] = [0, 1, 2]
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
    return list(itertools.product(*lists)) or [()]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(looped_programs())
def test_random_loops_every_conflicting_instance_pair_is_ordered(prog):
    note(describe(prog))
    deps_only(prog)
    for trips, taken in sample_runs(prog):
        inst = unroll(prog, trips, taken, flag_reads=True)
        assert not unordered(prog, inst, read_waits(prog)), (trips, taken)


def _within_conflicts(prog, inst):
    """Task pairs (u, v), u before v, with conflicting instances in one iteration."""
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


# Examples it found are kept in tests/test_passes_loops_regressions.py.
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
    for trips, taken in sample_runs(prog):
        inst = unroll(prog, trips, taken)
        assert not unordered(prog, inst), (trips, taken)
        assert not arena_clashes(prog, inst), (trips, taken)
