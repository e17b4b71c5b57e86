"""Tracing `l3c.range`, `l3c.while_loop` and `l3c.cond`: the Loop records, Task/TensorInfo.loops,
affine loop variables as scalars and in indices (Region.shifts), and every misuse as a TraceError
naming the user's file:line."""
from __future__ import annotations

import numpy as np
import pytest

import l3c
from l3c.ir import Access, Affine, ScalarArg, Shift

FILE = "test_loops_trace.py"


@l3c.kernel
def add(x: l3c.InOut, k):
    x[...] += k


@l3c.kernel
def copy(x: l3c.In, y: l3c.Out):
    y[...] = x


def x48():
    return np.zeros((4, 8), np.float32)


def trace(fn, *args, chips=2, **options):
    return l3c.jit(fn, chips=chips, **options).trace(*(args or (x48(),)))


def expect_error(fn, line_of, *fragments, args=None, marker="# ERR"):
    with pytest.raises(l3c.TraceError) as info:
        trace(fn, *(args or (x48(),)))
    message = str(info.value)
    assert f"{FILE}:{line_of(fn, marker)}: " in message, message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- records ------------------------------------------------------------------------------------
def test_static_range_records_one_body(line_of):
    def f(x):
        t = l3c.empty((8,), np.float32)
        for i in l3c.range(1, 4):  # LOOP
            u = l3c.empty((8,), np.float32)
            copy(x[i], u)
            add(u, i)
        copy(x[0], t)
        return t
    p = trace(f)
    assert len(p.tasks) == 3                       # the body once, whatever the trip count
    (loop,) = p.loops.values()
    assert (loop.kind, loop.start, loop.stop, loop.step, loop.parent) == ("range", 1, 4, 1, None)
    assert loop.loc == f"{FILE}:{line_of(f, '# LOOP')}"
    assert (loop.first_task, loop.end_task) == (0, 2)
    assert [t.loops for t in p.tasks] == [(0,), (0,), ()]
    assert [t.loops for t in p.tensors] == [(), (), (0,)]
    assert p.tensors[2].dead_after == 1            # lives one iteration: dies with the body
    assert p.tasks[1].args[1] == ScalarArg("k", Affine(0, ((0, 1),)))
    assert p.graph.nodes[0]["loops"] == (0,) and p.graph.nodes[2]["loops"] == ()


def test_tensor_bounds_while_and_cond_read_one_element():
    def f(x, n):
        for i in l3c.range(n[0:1], 0, -1):
            add(x[i - 1], 1)
        for k in l3c.while_loop(n[1:2], max_iterations=7):
            add(x[0, k], 1.0)
        with l3c.cond(n[2:3], invert=True):
            add(x, 2.0)
    p = trace(f, x48(), np.array([4, 1, 0], np.int32))
    r, w, c = (p.loops[i] for i in range(3))
    assert isinstance(r.start, Access) and r.start.region.offset == 0 and r.start.mode == "In"
    assert (r.stop, r.step) == (0, -1)
    assert w.kind == "while" and w.flag.region.offset == 1 and w.max_iterations == 7
    assert c.kind == "cond" and c.invert and c.flag.region.offset == 2
    assert [t.loops for t in p.tasks] == [(0,), (1,), (2,)]


def test_nesting_records_parents_and_paths():
    def f(x, n):
        for i in l3c.range(4):
            with l3c.cond(n[0:1]):
                for j in l3c.range(2):
                    add(x[i, 4 * j:4 * j + 4], i + j)
            add(x[i], 0.5)
        add(x, 1.0)
    p = trace(f, x48(), np.array([1], np.int64))
    assert [(lp.kind, lp.parent) for lp in p.loops.values()] == [
        ("range", None), ("cond", 0), ("range", 1)]
    assert [t.loops for t in p.tasks] == [(0, 1, 2), (0,), ()]
    assert p.tasks[0].args[1].value == Affine(0, ((0, 1), (2, 1)))
    compiled = l3c.jit(f, chips=2).lower(x48(), np.array([1], np.int64))
    assert compiled.loops[2]["kind"] == "range" and compiled.loops[2]["parent"] == 1
    assert compiled.loops[1] == {"kind": "cond", "loc": p.loops[1].loc, "parent": 0,
                                 "tasks": [0], "flag": "arg1", "invert": False}
    assert compiled.graph.nodes[0]["loops"] == (0, 1, 2) and compiled.graph.nodes[2]["loops"] == ()


def test_groups_scopes_and_pins_inside_loops():
    def f(x):
        for i in l3c.range(2):
            l3c.group(add, [(x[2 * i + r], 1.0) for r in range(2)])
            with l3c.scope():
                t = l3c.empty((8,), np.float32)
                copy.on(1)(x[i], t)
    p = trace(f)
    assert p.groups == [[0, 1]]
    assert [t.loops for t in p.tasks] == [(0,)] * 3 and p.tasks[2].pin == 1
    assert p.tasks[1].args[0].region.shifts == (Shift(0, 16, (2, 0)),)
    assert p.tensors[1].loops == (0,) and p.tensors[1].scope == (0,)


def test_programs_without_loops_are_unchanged():
    def f(x):
        copy(x[0], x[1])
    p = trace(f)
    assert p.loops == {} and p.tasks[0].loops == () and p.graph.nodes[0]["loops"] == ()
    assert p.tasks[0].args[0].region.shifts == ()
    compiled = l3c.jit(f, chips=2).lower(x48())
    assert compiled.loops == {}


# ---- the loop variable --------------------------------------------------------------------------
def test_affine_arithmetic():
    seen = {}

    def f(x):
        for i in l3c.range(3):
            for j in l3c.range(2):
                seen.update(a=i + 1, b=2 * i - 3, c=3 + i, d=1 - i, e=-i, f=i + j, g=(i + j) - j,
                            h=i - i, k=+i * 4, m=j * 2 + i * 3 - 5)
    trace(f)
    assert seen["a"].affine == Affine(1, ((0, 1),))
    assert seen["b"].affine == Affine(-3, ((0, 2),))
    assert seen["c"].affine == Affine(3, ((0, 1),))
    assert seen["d"].affine == Affine(1, ((0, -1),))
    assert seen["e"].affine == Affine(0, ((0, -1),))
    assert seen["f"].affine == Affine(0, ((0, 1), (1, 1)))
    assert seen["g"].affine == Affine(0, ((0, 1),))
    assert seen["h"] == 0 and type(seen["h"]) is int          # no variable left: a plain int
    assert seen["k"].affine == Affine(0, ((0, 4),))
    assert seen["m"].affine == Affine(-5, ((0, 3), (1, 2)))
    assert str(seen["m"].affine) == "3*L0 + 2*L1 - 5"


def test_affine_indices_make_shifted_views():
    def f(x):
        for i in l3c.range(2):
            copy(x[i], x[i + 2])                      # rows move by 8 elements per iteration
            copy(x[:, 2 * i + 1], x[:, 0])            # a column: 2 elements per iteration
            copy(x[1:3, 4 * i:4 * i + 4], x[1:3, 0:4])
            row = x[3 - i]
            copy(row[2 * i:2 * i + 2], row[0:2])      # a view of a shifted view
            copy(x.T[i + 1], x[0])                    # a transposed view: a column
            copy(x[::-1][i], x[0])                    # reversed rows: the row moves backwards
    tasks = trace(f).tasks
    r = [t.args[0].region for t in tasks]
    assert (r[0].offset, r[0].shape, r[0].shifts) == (0, (8,), (Shift(0, 8, (1, 0)),))
    assert tasks[0].args[1].region.offset == 16
    assert (r[1].offset, r[1].shape, r[1].strides, r[1].shifts) == (
        1, (4,), (8,), (Shift(0, 2, (0, 2)),))
    assert (r[2].offset, r[2].shape, r[2].box, r[2].shifts) == (
        8, (2, 4), ((1, 2, 1), (0, 4, 1)), (Shift(0, 4, (0, 4)),))
    assert (r[3].offset, r[3].box, r[3].shifts) == (24, ((3, 1, 1), (0, 2, 1)),
                                                    (Shift(0, -8 + 2, (-1, 2)),))
    assert (r[4].offset, r[4].strides, r[4].shifts) == (1, (8,), (Shift(0, 1, (0, 1)),))
    assert (r[5].offset, r[5].box, r[5].shifts) == (24, ((3, 1, 1), (0, 8, 1)),
                                                    (Shift(0, -8, (-1, 0)),))
    assert tasks[3].args[1].region.shifts == (Shift(0, -8, (-1, 0)),)


def test_affine_views_match_numpy_at_every_iteration():
    """The region at variable values v (offset and box moved by v * shift) is numpy's view."""
    base = np.arange(6 * 10).reshape(6, 10)
    views = []

    def f(x):
        for i in l3c.range(2):
            for j in l3c.range(3):
                views.append(("a", x[i + j, 2 * j:2 * j + 3:2].region))
                views.append(("b", x[1:5][::2, j + i + 1].region))
                views.append(("c", x.T[j][2 * i:2 * i + 3].region))
    trace(f, np.zeros((6, 10)))
    expect = {"a": lambda i, j: base[i + j, 2 * j:2 * j + 3:2],
              "b": lambda i, j: base[1:5][::2, j + i + 1],
              "c": lambda i, j: base.T[j][2 * i:2 * i + 3]}
    for name, region in views:
        for i in range(2):
            for j in range(3):
                values = {0: i, 1: j}
                off = region.offset + sum(values[s.loop] * s.offset for s in region.shifts)
                got = np.lib.stride_tricks.as_strided(base.ravel()[off:], region.shape,
                                                      [s * base.itemsize for s in region.strides])
                assert np.array_equal(got, expect[name](i, j)), (name, i, j)
                starts = [b[0] + sum(values[s.loop] * s.box[a] for s in region.shifts)
                          for a, b in enumerate(region.box)]
                cells = np.argwhere(np.isin(base, expect[name](i, j)))
                assert list(cells.min(axis=0)) == starts, (name, i, j)


def test_dynamic_bounds_leave_index_checks_to_the_run():
    def f(x, n):
        for i in l3c.range(n[0:1]):
            add(x[i + 10], 1.0)                 # would be out of range for any i >= 0, at run time
        for k in l3c.while_loop(n[0:1], max_iterations=2):
            add(x[k], 1.0)
    trace(f, x48(), np.array([1], np.int64))


def test_outside_a_trace_the_helpers_are_plain_python():
    assert list(l3c.range(3)) == [0, 1, 2]
    assert list(l3c.range(np.array([5]), 0, -2)) == [5, 3, 1]
    flag = np.array([1])
    seen = []
    for k in l3c.while_loop(flag, max_iterations=10):
        seen.append(k)
        if k == 3:
            flag[0] = 0
    assert seen == [0, 1, 2, 3]
    assert list(l3c.while_loop(np.array([1]), max_iterations=2)) == [0, 1]
    ran = []
    with l3c.cond(np.array([1])):
        ran.append(1)
    with l3c.cond(np.array([0]), invert=True):
        ran.append(2)
    assert ran == [1, 2]
    with pytest.raises(l3c.L3CError, match="cannot skip its block"):
        with l3c.cond(np.array([0])):
            pass


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("use", [
    lambda i: int(i), lambda i: bool(i), lambda i: i * i, lambda i: i / 2, lambda i: i // 2,
    lambda i: i < 3, lambda i: i == 1, lambda i: range(i), lambda i: i % 2, lambda i: i * 0.5,
    lambda i: i + 0.5, lambda i: float(i), lambda i: abs(i), lambda i: 2 ** i,
])
def test_reading_the_loop_variable(use):
    def f(x):
        for i in l3c.range(4):
            use(i)
    with pytest.raises(l3c.TraceError) as info:
        trace(f)
    message = str(info.value)
    assert f"{FILE}:{use.__code__.co_firstlineno}: " in message, message
    assert "loop variable L0" in message and "kernel" in message


def test_if_on_the_loop_variable(line_of):
    def f(x):
        for i in l3c.range(4):
            if i:  # ERR
                add(x, 1.0)
    expect_error(f, line_of, "bool()", "loop variable")


@pytest.mark.parametrize("index", [
    lambda x, i: x[:i], lambda x, i: x[i:], lambda x, i: x[i:2 * i], lambda x, i: x[0:i + 1],
    lambda x, i: x[:, i:i + 2:i],
])
def test_slice_length_depends_on_the_variable(index):
    def f(x):
        for i in l3c.range(2):
            add(index(x, i), 1.0)
    with pytest.raises(l3c.TraceError) as info:
        trace(f)
    assert f"{FILE}:{index.__code__.co_firstlineno}: " in str(info.value), str(info.value)


@pytest.mark.parametrize("index, reach", [
    (lambda x, i: x[i + 1], "index 4"), (lambda x, i: x[i - 1], "index -1"),
    (lambda x, i: x[:, 2 * i + 2:2 * i + 4], "index 9"), (lambda x, i: x[3 - 2 * i], "index -3"),
    (lambda x, i: x[0][i:i + 6], "index 8"),
])
def test_static_bounds_check_every_iteration(index, reach):
    def f(x):
        for i in l3c.range(4):
            add(index(x, i), 1.0)
    with pytest.raises(l3c.TraceError) as info:
        trace(f)
    message = str(info.value)
    assert f"{FILE}:{index.__code__.co_firstlineno}: " in message and reach in message, message


def test_in_range_affine_indices_at_the_edges_pass():
    def f(x):
        for i in l3c.range(3, -1, -1):
            add(x[3 - i], 1.0)
            add(x[:, 2 * i:2 * i + 2], 1.0)
        for i in l3c.range(4, 4):              # zero trips: nothing to check
            add(x[i + 100], 1.0)
    trace(f)


def test_intermediate_used_after_its_body(line_of):
    def f(x):
        for i in l3c.range(2):  # LOOP
            t = l3c.empty((8,), np.float32)
            copy(x[i], t)
        copy(t, x[0])  # ERR
    message = expect_error(f, line_of, "t0", "iteration of its l3c.range",
                           "create it before the loop")
    assert f"range at {FILE}:{line_of(f, '# LOOP')}" in message


def test_cond_block_intermediate_after_the_block(line_of):
    def f(x, n):
        with l3c.cond(n[0:1]):
            t = l3c.empty((8,), np.float32)
        copy(x[0], t)  # ERR
    expect_error(f, line_of, "block of its l3c.cond", args=(x48(), np.array([1])))


def test_returning_a_body_intermediate(line_of):
    def f(x):
        for i in l3c.range(2):
            t = l3c.empty((8,), np.float32)
            copy(x[i], t)
        return t  # ERR
    expect_error(f, line_of, "is dead")


def test_loop_variable_after_its_loop(line_of):
    def f(x):
        for i in l3c.range(2):
            pass
        add(x, i)  # ERR
    expect_error(f, line_of, "has ended")


def test_shifted_view_after_its_loop(line_of):
    def f(x):
        for i in l3c.range(2):
            row = x[i]
        add(row, 1.0)  # ERR
    expect_error(f, line_of, "has ended", "view")


def test_index_with_a_variable_after_its_loop(line_of):
    def f(x):
        for i in l3c.range(2):
            pass
        add(x[i], 1.0)  # ERR
    expect_error(f, line_of, "has ended")


def test_break_is_reported_at_its_line(line_of):
    def f(x):
        for i in l3c.range(4):
            add(x[i], 1.0)
            break  # ERR
        add(x, 2.0)
    expect_error(f, line_of, "left early", "break")


def test_break_as_the_last_statement_of_the_function(line_of):
    def f(x):
        for i in l3c.range(4):
            add(x[i], 1.0)
            break  # ERR
    expect_error(f, line_of, "left early")


def test_return_inside_a_body(line_of):
    def f(x):
        for k in l3c.while_loop(x[0, 0:1].reshape(1)):
            return x  # ERR
    expect_error(f, line_of, "left early", args=(np.zeros((4, 8), np.int32),))


def test_exception_in_a_body_propagates_and_closes_the_loop():
    tracer_state = {}

    def f(x):
        try:
            for i in l3c.range(4):
                raise KeyError("mine")
        except KeyError:
            tracer_state["after"] = True
        add(x, 1.0)
    with pytest.raises(l3c.TraceError, match="left early"):
        trace(f)
    assert tracer_state["after"]

    def g(x):
        for i in l3c.range(4):
            raise KeyError("propagates")
    with pytest.raises(KeyError, match="propagates"):
        trace(g)


@pytest.mark.parametrize("make, fragment", [
    (lambda x, n: l3c.range(n), "one-element integer"),
    (lambda x, n: l3c.range(n[0:1].astype), "needs its values"),
    (lambda x, n: l3c.range(x[0, 0:1]), "float32"),
    (lambda x, n: l3c.range(0, 4, 0), "step is 0"),
    (lambda x, n: l3c.range(1.5), "float"),
    (lambda x, n: l3c.while_loop(x[0, 0:1]), "float32"),
    (lambda x, n: l3c.while_loop(3), "int"),
    (lambda x, n: l3c.while_loop(n[0:1], max_iterations=-1), "max_iterations"),
    (lambda x, n: l3c.range(np.array([3])), "ndarray"),
])
def test_bad_bounds_and_flags(make, fragment):
    def f(x, n):
        for i in make(x, n):
            pass
    with pytest.raises(l3c.TraceError) as info:
        trace(f, x48(), np.array([2, 3], np.int32))
    message = str(info.value)
    assert f"{FILE}:{make.__code__.co_firstlineno}: " in message and fragment in message, message


def test_loop_variable_as_a_bound_or_flag(line_of):
    def f(x, n):
        for i in l3c.range(3):
            for j in l3c.range(i):  # ERR
                pass
    expect_error(f, line_of, "loop variable", args=(x48(), np.array([1])))

    def g(x, n):
        for i in l3c.range(3):
            with l3c.cond(i):  # ERR
                pass
    expect_error(g, line_of, "loop variable", args=(x48(), np.array([1])))


def test_loop_variable_for_a_tensor_parameter(line_of):
    def f(x):
        for i in l3c.range(3):
            copy(i, x)  # ERR
    expect_error(f, line_of, "annotated l3c.In", "loop variable")


def test_native_kernels_take_the_loop_variable_as_int64(line_of):
    import sys
    import os
    sys.path.insert(0, os.path.dirname(__file__))
    import _native_kernels as nk

    def f(x):
        for i in l3c.range(4):
            nk.status(x[i], i)           # code: int64 scalar

    p = trace(f, np.zeros((4, 8)))
    assert p.tasks[0].args[1].value == Affine(0, ((0, 1),))

    def g(x):
        for i in l3c.range(4):
            nk.fill(x[i], 0, i)  # ERR
    expect_error(g, line_of, "int64", args=(np.zeros((4, 8)),))


def test_while_whose_body_never_writes_its_flag(line_of):
    def f(x, n):
        for k in l3c.while_loop(n[0:1]):  # ERR
            add(x[k], 1.0)
    expect_error(f, line_of, "never writes its flag (arg1)", "max_iterations",
                 args=(x48(), np.array([1])))

    def g(x, n):                          # with a cap it is a bounded loop: fine
        for k in l3c.while_loop(n[0:1], max_iterations=3):
            add(x[k], 1.0)
    trace(g, x48(), np.array([1]))


def test_return_break_or_continue_inside_a_cond_block(line_of):
    def f(x, n):
        with l3c.cond(n[0:1]):
            add(x, 1.0)
            return x  # ERR
    expect_error(f, line_of, "leaves the l3c.cond block", args=(x48(), np.array([1])))

    def g(x, n):
        for i in l3c.range(3):
            with l3c.cond(n[0:1]):
                if x.shape[0] > 1:
                    continue  # ERR
            add(x[i], 1.0)
    expect_error(g, line_of, "leaves the l3c.cond block", args=(x48(), np.array([1])))

    def h(x, n):                          # a loop inside the block may break out of itself
        with l3c.cond(n[0:1]):
            for r in range(4):
                add(x[r], 1.0)
                if r == 1:
                    break
        return x
    p = trace(h, x48(), np.array([1]))
    assert len(p.tasks) == 2 and all(t.loops == (0,) for t in p.tasks)


def test_group_members_moving_differently_may_meet(line_of):
    def f(x):
        for i in l3c.range(1, 3):
            l3c.group(add, [(x[i], 1.0), (x[2 * i - 1], 2.0)])  # ERR
    expect_error(f, line_of, "move differently with the loop variables")

    def g(x):                                   # the same move for every member: fine
        for i in l3c.range(2):
            l3c.group(add, [(x[2 * i + r], 1.0) for r in range(2)])
            l3c.group(copy, [(x[i], x[2 + r:3 + r][0]) for r in range(1)])
    assert len(trace(g).groups) == 2


def test_numpy_integers_combine_with_the_loop_variable():
    seen = {}

    def f(x):
        for i in l3c.range(2):
            seen.update(a=np.int64(2) * i + np.int32(1), b=np.int16(3) - i)
            with pytest.raises(l3c.TraceError, match="float64"):
                np.float64(2.0) * i
    trace(f)
    assert seen["a"].affine == Affine(1, ((0, 2),)) and seen["b"].affine == Affine(3, ((0, -1),))
