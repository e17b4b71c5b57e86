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
