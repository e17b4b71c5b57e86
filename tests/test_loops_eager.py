"""`.eager` runs of programs with `l3c.range`, `l3c.while_loop` and `l3c.cond` on the real worker
pool, checked against the same orchestration function run as plain Python: outside a trace the
loops are Python loops and the kernels plain numpy functions, i.e. exactly the sequential
semantics the eager reference must reproduce."""
from __future__ import annotations

import numpy as np
import pytest

import l3c

FILE = "test_loops_eager.py"


@l3c.kernel
def add(x: l3c.InOut, k):
    x[...] += k


@l3c.kernel
def scale_into(x: l3c.In, y: l3c.Out, k):
    y[...] = x * k


@l3c.kernel
def accumulate(acc: l3c.InOut, x: l3c.In):
    acc[...] += x


@l3c.kernel
def count_down(flag: l3c.InOut, counter: l3c.InOut):
    counter[...] += 1
    flag[...] = np.where(counter >= 5, 0, flag)


@l3c.kernel
def set_value(out: l3c.Out, value):
    out[...] = value


@l3c.kernel
def halve_until(x: l3c.InOut, flag: l3c.Out, tol):
    x[...] = x / 2
    flag[...] = 1 if np.abs(x).max() > tol else 0


@l3c.kernel(worker="sub")
def record(log: l3c.InOut, value):
    log[value % log.shape[0]] += value + 1


@l3c.kernel
def boom(x: l3c.InOut, k):
    if k == 2:
        raise ValueError("iteration two fails")
    x[...] += 1


def check(fn, *args, chips=2, sub_workers=0):
    """Run `fn` as plain Python and through `.eager`; results and written inputs must agree."""
    plain_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    eager_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    expected = fn(*plain_args)
    got = l3c.jit(fn, chips=chips, sub_workers=sub_workers).eager(*eager_args)
    for want, have in zip(plain_args, eager_args):
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(have, want)
    if expected is not None:
        for want, have in zip(expected if isinstance(expected, tuple) else (expected,),
                              got if isinstance(got, tuple) else (got,)):
            np.testing.assert_array_equal(have, want)
    return eager_args, got


def test_static_range_with_scalar_and_row_index():
    def f(x):
        for i in l3c.range(1, 7, 2):
            add(x[i], i)
            add(x[i - 1, 2 * i:2 * i + 2], 10 * i + 1)
    (x,), _ = check(f, np.zeros((8, 16)))
    assert x[5, 0] == 5 and x[4, 10] == 51 and x[7].sum() == 0


def test_negative_step_and_zero_trips():
    def f(x):
        for i in l3c.range(6, -1, -3):          # 6, 3, 0
            add(x[i], i + 1)
        for i in l3c.range(4, 4):              # never runs
            add(x, 100.0)
        for i in l3c.range(3, 5, -1):          # never runs
            add(x, 100.0)
    (x,), _ = check(f, np.zeros((7, 2)))
    assert list(x[:, 0]) == [1, 0, 0, 4, 0, 0, 7]


def test_tensor_bounds_are_read_when_the_loop_starts():
    def f(x, n):
        set_value(n[0:1], 5)                  # the earlier writer the read waits for
        for i in l3c.range(n[1:2], n[0:1], n[2:3]):
            add(x[i], 1.0)
            set_value(n[0:1], 0)              # later writes do not change this loop's trips
        for i in l3c.range(n[0:1]):           # read again by the next loop: now 0 trips
            add(x, 100.0)
    (x, n), _ = check(f, np.zeros((6, 3)), np.array([2, 1, 2], np.int64))
    assert list(x[:, 0]) == [0, 1, 0, 1, 0, 0] and n[0] == 0


def test_negative_tensor_step():
    def f(x, b):
        for i in l3c.range(b[0:1], b[1:2], b[2:3]):
            add(x[2 * i:2 * i + 2], i)
    (x, _), _ = check(f, np.zeros((10,)), np.array([4, 0, -2], np.int32))
    assert list(x) == [0, 0, 0, 0, 2, 2, 0, 0, 4, 4]


def test_while_with_the_flag_written_in_the_body():
    def f(x, flag, counter):
        for k in l3c.while_loop(flag):
            add(x[k], k + 1)
            count_down(flag, counter)
    (x, flag, counter), _ = check(f, np.zeros((8, 2)), np.array([1], np.int32),
                                  np.zeros((1,), np.int32))
    assert counter[0] == 5 and flag[0] == 0 and list(x[:6, 0]) == [1, 2, 3, 4, 5, 0]


def test_while_stops_at_max_iterations_and_skips_when_the_flag_is_zero():
    def f(x, flag, counter):
        for k in l3c.while_loop(flag, max_iterations=3):
            add(x[k], 1.0)
            count_down(flag, counter)
    (x, flag, counter), _ = check(f, np.zeros((8, 1)), np.array([1], np.int32),
                                  np.zeros((1,), np.int32))
    assert counter[0] == 3 and flag[0] == 1 and x.sum() == 3
    (x, _, counter), _ = check(f, np.zeros((8, 1)), np.array([0], np.int32),
                               np.zeros((1,), np.int32))
    assert counter[0] == 0 and x.sum() == 0


def test_while_solves_to_a_tolerance():
    def f(x, tol):
        go = l3c.empty((1,), np.int8)
        set_value(go, 1)
        for it in l3c.while_loop(go, max_iterations=100):
            halve_until(x, go, tol)
        return x
    (x, _), got = check(f, np.full((4,), 40.0), 1.0)
    assert np.abs(got).max() <= 1.0 and np.abs(got).max() > 0.5


@pytest.mark.parametrize("value, invert, runs", [(1, False, True), (0, False, False),
                                                  (0, True, True), (3, True, False)])
def test_cond(value, invert, runs):
    def f(x, flag):
        with l3c.cond(flag, invert=invert):
            add(x, 2.0)
            t = l3c.empty((4,), np.float64)
            scale_into(x, t, 3.0)
            accumulate(x, t)
        add(x, 1.0)
    x = np.ones((4,))
    l3c.jit(f, chips=2).eager(x, np.array([value], np.int64))
    assert list(x) == ([13.0] * 4 if runs else [2.0] * 4)     # ((1 + 2) * 3 + 3) + 1


def test_cond_flag_set_by_an_earlier_call_and_nested_in_a_loop():
    def f(x, flags):
        for i in l3c.range(4):
            with l3c.cond(flags[i:i + 1]):
                add(x[i], 1.0)
            set_value(flags[3:4], 1)
    x = np.zeros((4, 2))
    flags = np.array([1, 0, 1, 0], np.int8)
    l3c.jit(f, chips=2).eager(x, flags)
    # flags[3] is set in iteration 0, so the cond of iteration 3 sees it
    assert list(x[:, 0]) == [1, 0, 1, 1]


def test_nesting_with_outer_variables_in_inner_indices():
    def f(x, n, flag, counter):
        for i in l3c.range(3):
            for j in l3c.range(n[0:1]):
                add(x[i, j:j + 1], 10 * i + j)
            with l3c.cond(flag):
                add(x[i], 0.5)
        for k in l3c.while_loop(flag):
            for j in l3c.range(2):
                add(x[3, 2 * k + j:2 * k + j + 1], 1.0)
            count_down(flag, counter)
    (x, *_), _ = check(f, np.zeros((4, 12)), np.array([4]), np.array([1]), np.zeros((1,), int))
    assert x[2, 3] == 23.5 and x[3].sum() == 10


def test_intermediates_live_one_iteration_and_carry_through_tensors():
    def f(x):
        acc = l3c.zeros((4,), np.float64)
        for i in l3c.range(5):
            t = l3c.empty((4,), np.float64)
            scale_into(x[i], t, i)               # t: this iteration's value only
            accumulate(acc, t)                   # acc carries across iterations
        return acc
    check(f, np.arange(20.0).reshape(5, 4))


def test_groups_scopes_sub_workers_and_pins_inside_loops():
    def f(x, log):
        for i in l3c.range(3):
            l3c.group(add, [(x[2 * i + r], i + r) for r in range(2)])
            with l3c.scope():
                t = l3c.empty((4,), np.float64)
                scale_into.on(1)(x[2 * i], t, 2.0)
                accumulate.on(0)(x[2 * i + 1], t)
            record(log, i)
    (x, log), _ = check(f, np.ones((6, 4)), np.zeros((3,)), chips=2, sub_workers=1)
    assert list(log) == [1, 2, 3]


def test_affine_slices_on_views_of_views():
    def f(x):
        for i in l3c.range(4):
            row = x[3 - i]
            add(row[2 * i:2 * i + 2], i + 1)
            add(x.T[i + 1][1:3], 100)
            add(x[::-1][i, 7 - i:8 - i], 1000)
    check(f, np.zeros((4, 8)))


def test_many_iterations_run_in_batches():
    def f(x):
        for i in l3c.range(500):
            add(x[0, 0:1], 1.0)
            add(x[1, 0:1], i)
    (x,), _ = check(f, np.zeros((2, 4)))
    assert x[0, 0] == 500 and x[1, 0] == sum(range(500))


def test_an_index_outside_the_axis_at_run_time_names_the_line(line_of):
    def f(x, n):
        for i in l3c.range(n[0:1]):
            add(x[i + 2], 1.0)  # ERR
    jitted = l3c.jit(f, chips=2)
    x = np.zeros((4, 2))
    with pytest.raises(l3c.L3CError) as info:
        jitted.eager(x, np.array([3]))
    message = str(info.value)
    assert f"{FILE}:{line_of(f)}" in message and "L0=2" in message and "arg0" in message, message
    jitted.eager(x, np.array([2]))                # the pool stays usable
    assert list(x[:, 0]) == [0, 0, 1, 1]


def test_negative_affine_index_in_a_while_loop_does_not_wrap(line_of):
    def f(x, flag, counter):
        for k in l3c.while_loop(flag):
            add(x[3 - 2 * k:4 - 2 * k], 1.0)  # ERR
            count_down(flag, counter)
    with pytest.raises(l3c.L3CError) as info:
        l3c.jit(f, chips=2).eager(np.zeros((4,)), np.array([1]), np.zeros((1,), int))
    assert f"{FILE}:{line_of(f)}" in str(info.value) and "L0=2" in str(info.value)


def test_a_kernel_error_in_an_iteration():
    def f(x):
        for i in l3c.range(4):
            boom(x[i], i)
    with pytest.raises(l3c.KernelError, match="iteration two fails") as info:
        l3c.jit(f, chips=2).eager(np.zeros((4,)))
    assert info.value.loc.startswith(FILE)


def test_compiled_runs_of_looped_programs_match_eager_or_say_so():
    """A compiled run of a program with loops either equals `.eager` or, where the build's runtime
    cannot run loops, is a clear L3CError naming the loop's line (never a wrong result)."""
    def f(x):
        for i in l3c.range(2):
            add(x[i], i + 1)
    jitted = l3c.jit(f, chips=2)
    compiled = jitted.lower(np.zeros((2, 2)))      # inspecting works either way
    assert compiled.graph.nodes[0]["loops"] == (0,) and compiled.loops[0]["kind"] == "range"
    x, y = np.zeros((2, 2)), np.zeros((2, 2))
    jitted.eager(y)
    try:
        jitted(x)
    except l3c.L3CError as exc:
        assert compiled.loops[0]["loc"] in str(exc) and "loops" in str(exc), str(exc)
    else:
        np.testing.assert_array_equal(x, y)


def test_native_kernels_get_the_loop_variable_as_int64():
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    import _native_kernels as nk

    def f(x):
        for i in l3c.range(1, 4):
            nk.fill(x[i], 2 * i - 1, 0.5)       # C: x[k] = start + k * step
    x = np.zeros((4, 3))
    l3c.jit(f, chips=2).eager(x)
    assert x.tolist() == [[0, 0, 0], [1, 1.5, 2], [3, 3.5, 4], [5, 5.5, 6]]


def test_eager_loops_on_two_hosts_under_mpiexec():
    import os
    import shutil
    import subprocess
    import sys
    if shutil.which("mpiexec") is None:
        pytest.skip("needs mpiexec")
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable,
                           os.path.join(here, "_loops_eager_hosts.py")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    assert [line.split()[:3] for line in lines] == [["RESULT", "0", "ok"], ["RESULT", "1", "ok"]], \
        proc.stdout + proc.stderr


def test_inner_trip_counts_read_from_an_element_moved_by_the_outer_variable():
    def f(x, counts):
        for i in l3c.range(3):
            for j in l3c.range(counts[i:i + 1]):      # a ragged loop nest
                add(x[i, j:j + 1], j + 1)
    (x, _), _ = check(f, np.zeros((3, 4)), np.array([2, 0, 4], np.int64))
    assert x.tolist() == [[1, 2, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]]


@l3c.kernel
def keep_going(flag: l3c.InOut):
    flag[...] = 1


def test_a_while_loop_that_never_ends_stops_at_the_timeout():
    import time

    def f(x, flag):
        for k in l3c.while_loop(flag):
            keep_going(flag)
    start = time.monotonic()
    with pytest.raises(l3c.Timeout):
        l3c.jit(f, chips=2, timeout=1.0).eager(np.zeros((2,)), np.array([1]))
    assert time.monotonic() - start < 30
    l3c.jit(f, chips=2).eager(np.zeros((2,)), np.array([0]))      # the pool stays usable
