"""The passes on programs with loops and conds: carried edges exact for affine views, the bound and
flag reads' dependencies, memory for per-iteration intermediates, placement over the iteration
graph, and the schedule checker, on hand-built and traced programs. A brute-force oracle
(`_loop_oracle`) unrolls a few iterations with concrete loop values and checks which instance pairs
conflict against what the edges order; `test_passes_loops_random.py` runs it on random programs."""
from __future__ import annotations

import numpy as np
import pytest

import l3c
from l3c.errors import TraceError
from l3c.ir import Access, Loop
from l3c.passes import PassOptions, copy_program, run_passes
from l3c.passes.verify import InvariantError, check_schedule, verify

from _ir_builders import call, program, region
from _loops_kernels import copy_into, relax, solve, update
from _loop_oracle import (arena_clashes, moving, needed_carried, read_waits, sample_runs,
                          unordered, unroll, with_loops)

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



def test_differing_shifts_in_one_iteration_are_decided_exactly():
    """for i in 1..4: a writes x[2i]; b reads x[i]: never the same element in one iteration
    (2i == i only at 0), but b at i = 2p reads what a wrote at p: carried RAW only."""
    two = moving((N + 2,), lambda v: 2 * v[0], {0: 1})
    prog = with_loops(program({"x": (N + 2,), "y": (N + 2,)},
                              [call("a", ("x", two, "Out")),
                               call("b", ("x", row(lambda i: i), "In"),
                                    ("y", row(lambda i: i), "Out"))]),
                      [rng(0, 0, 2, start=1, stop=5)])
    deps_only(prog)
    assert edges(prog, carried=False) == set() and edges(prog, carried=True) == {(0, 1)}
    assert not unordered(prog, unroll(prog, {}))


def test_nested_loops_rows_and_columns_are_not_carried():
    """for i: for j: a writes y[i, j]; b reads y[i, j]; acc(j) += ...: only the accumulator
    carries (at both levels), y's elements never meet across iterations."""
    cell = moving((4, 4), lambda v: (v[0], v[1]), {0: 1, 1: 1})
    prog = with_loops(program({"y": (4, 4), "acc": (1,)},
                              [call("a", ("y", cell, "Out")),
                               call("b", ("y", cell, "In"), ("acc", (), "InOut"))]),
                      [rng(0, 0, 2, stop=4), rng(1, 0, 2, stop=4, parent=0)])
    deps_only(prog)
    assert edges(prog, carried=False) == {(0, 1)} and edges(prog, carried=True) == {(1, 1)}
    assert not unordered(prog, unroll(prog, {}))


def test_while_flag_reads_wait_for_writers_and_hold_back_later_ones():
    """go = init(); while go: update(x); go = check(x); report(go): the test before iteration k
    waits for init (within) and check of iteration k - 1 (carried); check and report wait for it."""
    flag = region((1,), 0)
    prog = program({"x": (4,), "go": (1,)},
                   [call("init", ("go", (), "Out")),
                    call("update", ("x", (), "InOut")),
                    call("check", ("x", (), "In"), ("go", (), "Out")),
                    call("report", ("go", (), "InOut"))])
    with_loops(prog, [Loop(0, "while", "prog.py:1", None, 1, 3, flag=Access("go", 1, flag, "In"))])
    deps_only(prog)
    loop = prog.loops[0]
    assert loop.reads_after == ((0, False), (2, True))
    assert loop.reads_before == ((2, False), (3, False))
    waits = {-1: list(loop.reads_after), 2: [(-1, False)], 3: [(-1, False)]}
    for trips in (0, 1, 3):
        assert not unordered(prog, unroll(prog, {0: trips}, flag_reads=True), waits)


def test_range_bound_written_later_in_the_enclosing_loop():
    """for p: for i in range(n[0]): work(x[i]); n[0] = next(n): the bound read of iteration p + 1
    waits for next of iteration p (carried), next of iteration p waits for the read (within)."""
    prog = program({"x": (N,), "n": (1,)},
                   [call("work", ("x", (), "InOut")), call("next", ("n", (), "InOut"))])
    stop = Access("n", 1, region((1,), 0), "In")
    with_loops(prog, [rng(0, 0, 2, stop=3),
                      Loop(1, "range", "prog.py:2", 0, 0, 1, start=0, stop=stop, step=1)])
    deps_only(prog)
    assert prog.loops[1].reads_after == ((1, True),)
    assert prog.loops[1].reads_before == ((1, False),)


def test_reduction_keeps_an_edge_implied_only_through_a_cond():
    """a writes x; [cond: b reads x, writes y]; c reads y, writes x: c must wait for a itself,
    since b may not run (without the cond, a -> b -> c makes a -> c redundant)."""
    calls = [call("a", ("x", (), "Out")), call("b", ("x", (), "In"), ("y", (), "Out")),
             call("c", ("y", (), "In"), ("x", (), "Out"))]
    plain = deps_only(program({"x": (4,), "y": (4,)}, calls))
    assert edges(plain) == {(0, 1), (1, 2)}
    prog = with_loops(program({"x": (4,), "y": (4,)}, calls),
                      [Loop(0, "cond", "prog.py:1", None, 1, 2,
                            flag=Access("f", 0, region((4,), 0), "In"))])
    deps_only(prog)
    assert edges(prog) == {(0, 1), (1, 2), (0, 2)}
    assert not unordered(prog, unroll(prog, {}, {0: False}))


def _loop_with_temporary():
    """t0 before the loop; tmp created in the body (tasks 1..2); t1 after it."""
    prog = program({"arg0": (16,), "t0": (16,), "tmp": (16,), "t1": (16,)},
                   [call("make", ("arg0", (), "In"), ("t0", (), "Out")),
                    call("step", ("t0", (), "In"), ("tmp", (), "Out")),
                    call("fold", ("tmp", (), "In"), ("t0", (), "InOut")),
                    call("last", ("t0", (), "In"), ("t1", (), "Out"))],
                   results=("t1",))
    prog.tensors[2].loops = (0,)
    return with_loops(prog, [rng(0, 1, 3)])


def test_body_temporary_lives_for_the_whole_loop_and_nothing_shares_it():
    prog = run_passes(_loop_with_temporary(), options=PassOptions(verify=True))
    check_schedule(prog)
    t0, tmp, t1 = prog.tensors[1], prog.tensors[2], prog.tensors[3]
    assert tmp.dead_after == 2 and (tmp.first_use, tmp.last_use) == (1, 2)

    def apart(a, b):
        return a.arena_offset + a.nbytes <= b.arena_offset or b.arena_offset + b.nbytes <= a.arena_offset
    assert apart(tmp, t0)                   # t0 is used in every iteration too
    for trips in (0, 2):
        assert not arena_clashes(prog, unroll(prog, {0: trips}))
    assert prog.memory.lower_bound_bytes == t0.nbytes + tmp.nbytes


def test_body_temporary_used_after_its_loop_is_refused():
    prog = _loop_with_temporary()
    prog.task(3).args = (Access("p0", 2, region((16,), ()), "In"),) + prog.task(3).args[1:]
    with pytest.raises(TraceError, match=r"prog.py:13: last uses tensor tmp .* outside the "
                                         r"l3c.range at prog.py:0"):
        run_passes(prog)
    prog = _loop_with_temporary()
    prog.results = ("tuple", [prog.results[1][0].__class__(2, region((16,), ()), "float32")])
    with pytest.raises(TraceError, match="tmp .* is returned but was created inside a loop"):
        run_passes(prog)


def test_fuse_never_crosses_a_loop_boundary():
    calls = [call("scale", ("x", 0, "InOut")), call("scale", ("x", 1, "InOut")),
             call("scale", ("x", 2, "InOut")), call("scale", ("x", 3, "InOut"))]
    prog = with_loops(program({"x": (4, 4)}, calls, chips=4), [rng(0, 0, 2, stop=2)])
    run_passes(prog, until="fuse", options=PassOptions(verify=True))
    assert prog.groups == [[0, 1], [2, 3]]


def test_fuse_groups_calls_ordered_only_across_iterations():
    """scale(x[i]) and scale(x[i - 1]) in one body: independent within an iteration (a carried
    edge orders the second after the first's previous iteration), so they form a group."""
    calls = [call("scale", ("x", row(lambda i: i), "InOut")),
             call("scale", ("x", row(lambda i: i - 1), "InOut"))]
    prog = with_loops(program({"x": (N + 2,)}, calls), [rng(0, 0, 2, start=1)])
    run_passes(prog, options=PassOptions(verify=True))
    check_schedule(prog)
    assert prog.groups == [[0, 1]] and edges(prog, carried=True) == {(0, 1)}
    assert not unordered(prog, unroll(prog, {}))


def test_checkers_need_carried_edges():
    """Without the carried edge from a (x[i]) to b (x[i - 1]) on another chip, verify and the
    schedule checker both refuse the program; with it, both accept."""
    calls = [call("a", ("x", row(lambda i: i), "Out"), pin=0),
             call("b", ("x", row(lambda i: i - 1), "In"), ("y", row(lambda i: i), "Out"), pin=1)]
    prog = with_loops(program({"x": (N + 2,), "y": (N + 2,)}, calls), [rng(0, 0, 2, start=1)])
    run_passes(prog, options=PassOptions(verify=True))
    check_schedule(prog)
    broken = copy_program(prog)
    broken.graph.remove_edge(0, 1)
    with pytest.raises(InvariantError, match="later iteration"):
        check_schedule(broken)
    with pytest.raises(InvariantError, match="later iteration"):
        verify(broken)
    assert unordered(broken, unroll(broken, {}))        # the oracle agrees


def test_checkers_need_the_flag_reads_dependencies():
    """A schedule whose while loop forgets that its test waits for the body's flag writer is
    refused by verify and the schedule checker."""
    flag = region((1,), 0)
    prog = program({"x": (4,), "go": (1,)},
                   [call("init", ("go", (), "Out")),
                    call("check", ("x", (), "InOut"), ("go", (), "Out"))])
    with_loops(prog, [Loop(0, "while", "prog.py:1", None, 1, 2, flag=Access("go", 1, flag, "In"))])
    run_passes(prog, options=PassOptions(verify=True))
    check_schedule(prog)
    prog.loops[0].reads_after = ((0, False),)
    with pytest.raises(InvariantError, match=r"reads_after lacks \(%1, True\)"):
        check_schedule(prog)
    with pytest.raises(InvariantError, match="bound/flag reads"):
        verify(prog)

# ---- traced programs (l3c.range, l3c.while_loop, l3c.cond) -----------------------------------


@l3c.kernel
def produce(x: l3c.Out, k):
    x[...] = k


@l3c.kernel
def consume(x: l3c.In, y: l3c.Out):
    y[...] = x


def pipeline(x, y):
    for i in l3c.range(1, 8):
        produce(x[i], i)
        consume(x[i - 1], y[i])




def per_iteration(x):
    acc = l3c.zeros((4,), np.float64)
    for i in l3c.range(5):
        t = l3c.empty((4,), np.float64)
        consume(x[i], t)
        copy_into(t, acc[0:4])
    return acc


TRACED = {
    "pipeline": (pipeline, (np.zeros(8), np.zeros(8))),
    "relax": (relax, (np.zeros(8), np.array([3]))),
    "solve": (solve, (np.ones(4), 0.1)),
    "per_iteration": (per_iteration, (np.zeros((5, 4)),)),
}


@pytest.mark.parametrize("name", sorted(TRACED))
def test_traced_loops_through_every_pass(name):
    fn, args = TRACED[name]
    traced = l3c.jit(fn, chips=2).trace(*args)
    prog = run_passes(copy_program(traced), options=PassOptions(verify=True))
    check_schedule(prog)
    assert not any(lp.reads_after or lp.reads_before for lp in traced.loops.values())
    for trips, taken in sample_runs(prog):
        inst = unroll(prog, trips, taken, flag_reads=True)
        assert not unordered(prog, inst, read_waits(prog)), (trips, taken)
        assert not arena_clashes(prog, unroll(prog, trips, taken))


def test_traced_pipeline_and_relax_edges():
    """pipeline: x[i] produced, x[i - 1] consumed: only a carried RAW; relax: the group members
    read u that copy wrote in the previous iteration and write v that copy read (carried RAW and
    WAR backwards), copy waits for both members within the iteration."""
    prog = run_passes(l3c.jit(pipeline, chips=2).trace(*TRACED["pipeline"][1]), until="deps")
    assert edges(prog, carried=False) == set()
    assert edges(prog, carried=True) == {(0, 1)}
    prog = run_passes(l3c.jit(relax, chips=2).trace(*TRACED["relax"][1]), until="deps")
    members = prog.groups[0]
    copy = next(t.id for t in prog.tasks if t.short_kernel == "copy_into")
    assert {(m, copy) for m in members} <= edges(prog, carried=False)
    for m in members:
        assert prog.graph.edges[copy, m]["carried"]
        assert prog.graph.edges[copy, m]["kinds"] == {"RAW", "WAR"}
    assert prog.loops[0].reads_after == () and prog.loops[0].reads_before == ()
    solve_prog = run_passes(l3c.jit(solve, chips=2).trace(*TRACED["solve"][1]), until="deps")
    loop, block = solve_prog.loops[0], solve_prog.loops[1]
    assert loop.reads_after == ((0, False), (2, True)) and loop.reads_before == ((2, False),)
    assert block.reads_after == ((0, False), (2, False))


def test_inner_variable_moving_a_view_is_bounded_by_its_static_values():
    """for i: for j in range(4): a writes x[4i + j]; b reads x[4i + j]: the rows of one outer
    iteration never meet another's, so no carried WAR b -> a serialises the iterations."""
    cell = moving((4 * N,), lambda v: 4 * v[0] + v[1], {0: 1, 1: 1})
    prog = with_loops(program({"x": (4 * N,), "y": (4 * N,)},
                              [call("a", ("x", cell, "Out")),
                               call("b", ("x", cell, "In"), ("y", cell, "Out"))]),
                      [rng(0, 0, 2, stop=N), rng(1, 0, 2, stop=4, parent=0)])
    deps_only(prog)
    assert edges(prog, carried=False) == {(0, 1)} and edges(prog, carried=True) == set()
    assert not unordered(prog, unroll(prog, {}))


def test_critical_path_leaves_carried_edges_out():
    """relax's copy -> group edges point backwards across iterations: the critical path (what
    `l3c profile` reports) runs over one iteration, members then copy."""
    from l3c.profile import critical_path
    prog = run_passes(l3c.jit(relax, chips=2).trace(*TRACED["relax"][1]))
    path = critical_path(prog)
    assert len(path) == 2 and prog.task(path[-1]).short_kernel == "copy_into"
    assert path[-1] > path[0]
    assert prog.reports["critical_path"] == 2.0


@l3c.kernel
def trips_of(x: l3c.In, n: l3c.Out):
    n[0] = len(x)


def bounds_and_flags_only(x, tol):
    n = l3c.empty((1,), np.int64)                  # read only as the range's stop
    trips_of(x, n)
    junk = l3c.empty((1,), np.int64)               # read by nothing
    trips_of(x, junk)
    for i in l3c.range(n):
        update(x)
    return solve(x, tol)                           # `go`: read only as the while's and cond's flag


def test_a_bound_or_flag_read_is_a_read_for_the_scopes_warning():
    """A tensor that only a loop/cond reads (a range bound, a while or cond flag) is read: the
    scopes pass warns about the tensor nothing reads, and only about it."""
    prog = run_passes(l3c.jit(bounds_and_flags_only, chips=2).trace(np.ones(4), 0.1),
                      until="scopes")
    flags = {lp.kind: prog.tensors[lp.accesses[0].tensor].name for lp in prog.loops.values()}
    assert len(set(flags.values())) == 2 and set(flags) == {"range", "while", "cond"}
    [junk] = [t for t in prog.tensors if t.kind == "intermediate" and t.name not in flags.values()]
    assert prog.reports["warnings"] == [f"tensor {junk.name} ({junk.loc}) is written but never read"]
