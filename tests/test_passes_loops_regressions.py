"""Programs the random property of tests/test_passes_loops_random.py found, kept as fixed cases:
each broke a pass (checked by `verify`, the schedule checker and the unrolling oracle), and the
one whose missing edge let a compiled run race is also run compiled against `.eager`."""
from __future__ import annotations

import time

import numpy as np
import pytest

import l3c
from l3c.ir import Access, Loop, Region
from l3c.passes import PassOptions, run_passes
from l3c.passes import shifts
from l3c.passes.verify import InvariantError, check_schedule, verify

from _ir_builders import call, program, region
from _loop_oracle import affine, arena_clashes, sample_runs, unordered, unroll, with_loops

# the random generator's tensors (every one an intermediate; `tmp` created in loop 0's body)
SHAPES = {"x": (24,), "y": (6, 6), "acc": (1,), "flag": (2,), "tmp": (4,), "u": (24,)}
FLAG = Region(0, (), (), ((0, 1, 1),))


def generated(calls, loops):
    prog = program(dict(SHAPES), calls)
    prog.tensors[4].loops = (0,)
    return with_loops(prog, loops)


def through_every_pass(prog):
    run_passes(prog, options=PassOptions(verify=True))
    check_schedule(prog)
    for trips, taken in sample_runs(prog):
        inst = unroll(prog, trips, taken)
        assert not unordered(prog, inst), (trips, taken)
        assert not arena_clashes(prog, inst), (trips, taken)
    return prog


def x_at(start, coefs=None, keep_box=True):
    """One element of x, moving by `coefs` ({loop: coef}) per unit of each loop's variable."""
    return affine((24,), [(start, coefs or {}, 1, 1)], keep_box=keep_box)


def read_around_a_while_loop():
    """x read before a while loop (task 0), in its body (1, 2: x[2 - k]) and after it (3); acc
    read after it (4, 5); views without a box, as the generator made them."""
    return [call("k0", ("x", x_at(0, keep_box=False), "In")),
            call("k1", ("x", x_at(2, {0: -1}, keep_box=False), "In")),
            call("k2", ("x", x_at(2, {0: -1}, keep_box=False), "In")),
            call("k3", ("x", x_at(0, keep_box=False), "In")),
            call("k4", ("acc", affine((1,), [(0, {}, 1, 1)], keep_box=False), "In")),
            call("k5", ("acc", affine((1,), [(0, {}, 1, 1)], keep_box=False), "In"))]


def test_an_edge_from_a_loop_body_does_not_free_what_came_before_the_loop():
    """x is read before a while loop, in its body and after it (tasks 0-3, on chips 0, 1, 0, 1);
    acc after it (tasks 4, 5). Task 2 in the body is the last reader of x on chip 0, but the loop
    may run no iteration: an edge 2 -> 5 orders nothing before the loop, so task 0 may still read
    x while task 5 uses acc. The memory plan used to give acc x's bytes on such edges (a vector
    clock entry of a body task vouched for the whole queue before it)."""
    prog = through_every_pass(generated(read_around_a_while_loop(), [
        Loop(0, "while", "prog.py:1", None, 1, 3, flag=Access("go", 3, FLAG, "In"))]))
    x, acc = prog.tensors[0], prog.tensors[2]
    assert [t.chip for t in prog.tasks] == [0, 1, 0, 1, 0, 1]
    assert (x.arena_offset + x.nbytes <= acc.arena_offset
            or acc.arena_offset + acc.nbytes <= x.arena_offset)


def test_the_schedule_checker_refuses_that_reuse_too():
    """The placement the memory plan used to make (acc on x's bytes, ordered by 2 -> 5 and 3 -> 4
    only) passed the schedule checker, whose clocks let a body task vouch for its queue before
    the loop and which checked only each worker's last use of x."""
    prog = through_every_pass(generated(read_around_a_while_loop(), [
        Loop(0, "while", "prog.py:1", None, 1, 3, flag=Access("go", 3, FLAG, "In"))]))
    prog.tensors[2].arena_offset = prog.tensors[0].arena_offset
    for u, v in ((2, 5), (3, 4)):
        prog.add_dependency(u, v, "WAR", 2, added_by="memory")
    with pytest.raises(InvariantError, match="task 0 may still use the first while task 5"):
        check_schedule(prog)
    with pytest.raises(InvariantError, match="x and acc share arena bytes"):
        verify(prog)


def test_the_schedule_checker_vouches_through_a_body_above_a_gap():
    """Chip 1 runs a (writes p), b (writes q: nothing to do with c), then a loop's body task w
    (writes r); c on chip 0 after the loop reads p and r. c's clock holds a's position on chip 1
    but not w's above the gap left by b (a body that ran no iteration vouches for nothing below
    it): the checker finds the edge w -> c itself."""
    n = region((1,), 0)
    prog = program({"p": (1,), "q": (1,), "r": (1,), "arg_n": (1,)},
                   [call("a", ("p", (), "Out"), pin=1), call("b", ("q", (), "Out"), pin=1),
                    call("w", ("r", (), "Out"), pin=1),
                    call("c", ("p", (), "In"), ("r", (), "In"), pin=0)])
    with_loops(prog, [Loop(0, "range", "prog.py:1", None, 2, 3, start=0,
                           stop=Access("n", 3, n, "In"), step=1)])
    through_every_pass(prog)
    assert {(0, 3), (2, 3)} <= set(prog.graph.edges)
    prog.graph.remove_edge(2, 3)
    with pytest.raises(InvariantError, match="tasks 2 and 3 both access r"):
        check_schedule(prog)


def test_a_swept_view_meets_a_tied_view_that_is_outside_the_tensor_at_zero():
    """for i in range(4, 3, -1): read x[i - 1]; for k in while: write x[i - k]. Loop 0 moves both
    views alike and drops out, leaving x[-1] (the read at i = 0) against the write swept over
    all of x (k has no static values): the sweep is absolute, so the two meet (at i = 4, k = 1
    on x[3]), a WAR within the iteration."""
    read = x_at(-1, {0: 1})
    write = x_at(0, {0: 1, 1: -1})
    calls = [call("k0", ("x", x_at(4, {0: -1}, keep_box=False), "In")),
             call("k1", ("x", read, "In")),
             call("k2", ("x", write, "Out"))]
    loops = [Loop(0, "range", "prog.py:1", None, 0, 3, start=4, stop=3, step=-1),
             Loop(1, "while", "prog.py:2", 0, 2, 3, flag=Access("go", 3, FLAG, "In"))]
    prog = through_every_pass(generated(calls, loops))
    assert prog.graph.has_edge(1, 2) and not prog.graph.edges[1, 2]["carried"]
    facts = shifts.loop_facts(prog)
    assert shifts.may_meet(read, write, (24,), {0}, facts)
    assert not shifts.may_meet(read, x_at(20, {0: 1}), (24,), {0}, facts)   # x[i-1] vs x[i+20]


@pytest.mark.parametrize("first, last", [("In", "Out"), ("Out", "In")])
def test_a_covering_box_hides_no_moving_view_without_a_box(first, last):
    """while (at most 3 iterations): a touches x[19 - k] (a view without a box, e.g. after a
    reshape), b writes x[19 - k : 21 - k]; after the loop c touches x[8]. Neither meets x[8], but
    `meet` answers "may" for a's view (it cannot place it) and "no" for b's box: deps let b's
    covering write hide a's access, verify then found a and c unordered. A box no longer hides a
    moving view without one."""
    calls = [call("a", ("x", x_at(19, {0: -1}, keep_box=False), first)),
             call("b", ("x", affine((24,), [(19, {0: -1}, 2, 1)]), "Out")),
             call("c", ("x", x_at(8), last))]
    prog = program({"x": (24,), "flag": (2,)}, calls)
    with_loops(prog, [Loop(0, "while", "prog.py:1", None, 0, 2,
                           flag=Access("go", 1, FLAG, "In"), max_iterations=3)])
    through_every_pass(prog)
    assert prog.graph.has_edge(0, 2)


def test_a_covering_box_hides_no_view_without_a_box_beside_a_moving_one():
    """The same with a's view still (x[5], without a box) and the later access moving with an
    inner loop (x[20 - j] for j in range(2)): x[5] against a moving view can only answer "may"."""
    calls = [call("a", ("x", x_at(5, keep_box=False), "Out")),
             call("b", ("x", affine((24,), [(5, {}, 2, 1)]), "Out")),
             call("c", ("x", x_at(20, {1: -1}), "In"))]
    prog = program({"x": (24,), "flag": (2,)}, calls)
    with_loops(prog, [Loop(0, "while", "prog.py:1", None, 0, 3,
                           flag=Access("go", 1, FLAG, "In"), max_iterations=3),
                      Loop(1, "range", "prog.py:2", 0, 2, 3, start=0, stop=2, step=1)])
    through_every_pass(prog)
    assert prog.graph.has_edge(0, 2)


@l3c.kernel
def slow_read(x: l3c.In, y: l3c.Out):
    time.sleep(0.2)                 # long enough for an unordered writer to get in first
    y[...] = x


@l3c.kernel
def stamp(x: l3c.Out, k):
    x[...] = 100 + k


def read_then_overwrite(x, n, y):
    for i in l3c.range(4, 5):
        slow_read(x[i - 1:i], y)
        for k in l3c.range(n):       # tensor bound: k has no static values, its view is swept
            stamp(x[i - k:i - k + 1], k)
    return x, y


def test_the_missing_war_edge_would_race_in_a_compiled_run():
    """The traced form of the case above: without the WAR edge the two tasks go to different
    chips and stamp (k = 1) overwrites x[3] before slow_read reads it."""
    jitted = l3c.jit(read_then_overwrite, chips=2)

    def args():
        return np.arange(8.0), np.array([3]), np.zeros(1)
    want = jitted.eager(*args())
    assert want[1][0] == 3.0 and want[0][3] == 101.0
    got = jitted(*args())
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
