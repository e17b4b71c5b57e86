"""SPEC "Loops and conditionals in the schedule", clause by clause, end to end through the public
API: every program runs through `.eager` (the sequential reference) and, where this l3c compiles
loops (`loop_programs.compiled_loops()`), as a compiled schedule; both must equal numpy iterating
in plain Python."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import l3c

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "stress"))

import loop_programs as lp  # noqa: E402

MODES = ["eager", "compiled"]
TIMEOUT = 20          # seconds: a schedule that deadlocks fails the test instead of hanging it
FILE = os.path.basename(__file__)


def run(fn, mode: str, *args, **kwargs):
    if mode == "eager":
        return fn.eager(*args, **kwargs)
    if not lp.compiled_loops():
        pytest.skip("this l3c runs loops only through .eager (its lowering refuses them)")
    return fn(*args, **kwargs)


def line_of(marker: str) -> str:
    """`test_loops_spec.py:LINE` of the one source line that ends with `# marker`."""
    with open(__file__) as f:
        lines = [n for n, text in enumerate(f, 1) if text.rstrip().endswith("# " + marker)]
    assert len(lines) == 1, marker
    return f"{FILE}:{lines[0]}"


def ints(*values) -> np.ndarray:
    return np.array(values, np.int64)


# ---------------------------------------------------------------------------------------- kernels
@l3c.kernel
def record(k: int, log: l3c.InOut):
    """Appends k to log (log[0] counts): the order and values a loop's iterations ran with."""
    assert type(k) is int, f"a loop variable reached the kernel as {type(k).__name__}"
    log[0] += 1
    log[log[0]] = k


@l3c.kernel
def set_to(src: l3c.In, dst: l3c.Out):
    dst[...] = src


@l3c.kernel
def inc(n: l3c.InOut):
    n[0] += 1


@l3c.kernel
def is_positive(left: l3c.In, flag: l3c.Out):
    flag[0] = left[0] > 0


@l3c.kernel
def countdown(left: l3c.InOut, flag: l3c.Out):
    left[0] -= 1
    flag[0] = left[0] > 0


@l3c.kernel
def odd(k: int, flag: l3c.Out):
    flag[0] = k % 2


@l3c.kernel
def twice(x: l3c.In, y: l3c.Out):
    y[...] = 2 * x


@l3c.kernel
def add(x: l3c.In, acc: l3c.InOut):
    acc += x


@l3c.kernel(worker="sub")
def sub_add(x: l3c.In, acc: l3c.InOut):
    acc += x


@l3c.kernel
def slow_record(k: int, log: l3c.InOut):
    time.sleep(0.02)
    log[0] += 1
    log[log[0]] = k


def logged(log) -> list[int]:
    return [int(v) for v in log[1:1 + int(log[0])]]


# ---------------------------------------------------------------------------------------- l3c.range
@l3c.jit(chips=2, timeout=TIMEOUT)
def static_range(log, start: int, stop: int, step: int):
    for i in l3c.range(start, stop, step):
        record(i, log)


@l3c.jit(chips=2, timeout=TIMEOUT)
def one_bound(log, stop: int):
    for i in l3c.range(stop):
        record(i, log)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bounds", [(0, 5, 1), (2, 11, 3), (5, -1, -2), (3, 3, 1), (4, 2, 1)])
def test_static_range_runs_start_plus_k_step(mode, bounds):
    log = np.zeros(16, np.int64)
    run(static_range, mode, log, *bounds)
    assert logged(log) == list(range(*bounds))
    log[:] = 0
    run(one_bound, mode, log, bounds[1])
    assert logged(log) == list(range(bounds[1]))


def test_the_body_is_traced_once_whatever_the_trip_count():
    small = one_bound.lower(np.zeros(16, np.int64), 10)
    huge = one_bound.lower(np.zeros(16, np.int64), 10 ** 6)
    assert small.graph.number_of_nodes() == huge.graph.number_of_nodes() == 1
    assert small.dump().count("record") == huge.dump().count("record")


@l3c.jit(chips=2, timeout=TIMEOUT)
def tensor_bounds(log, n0, first, step):
    n = l3c.empty((1,), np.int64)
    set_to(n0, n)
    inc(n)                                   # an earlier writer: the loop reads n after it
    for i in l3c.range(first, n, step):
        record(i, log)
        inc(n)                               # a later writer: the trip count stays as read
    return n


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n0, first, step", [(4, 0, 1), (9, 2, 3), (-1, 0, 1), (0, 3, 1),
                                             (0, 6, -2)])
def test_tensor_bounds_are_read_when_the_loop_starts_after_earlier_writers(mode, n0, first, step):
    log = np.zeros(16, np.int64)
    n = run(tensor_bounds, mode, log, ints(n0), ints(first), ints(step))
    expected = list(range(first, n0 + 1, step))
    assert logged(log) == expected
    assert n[0] == n0 + 1 + len(expected)


# ---------------------------------------------------------------------------------------- while_loop
@l3c.jit(chips=2, timeout=TIMEOUT)
def counted_while(log, n0, cap: int | None):
    left = l3c.empty((1,), np.int64)
    go = l3c.empty((1,), np.int32)
    set_to(n0, left)
    is_positive(left, go)                    # the flag's writer right before the loop
    for k in l3c.while_loop(go, max_iterations=cap):
        countdown(left, go)                  # go drops to 0 here; the iteration still ends
        record(k, log)
    return left


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n0, cap, runs", [(3, None, 3), (0, None, 0), (-2, None, 0), (5, 2, 2),
                                           (2, 7, 2), (4, 0, 0)])
def test_while_flag_is_tested_before_every_iteration_and_max_iterations_caps(mode, n0, cap, runs):
    log = np.zeros(16, np.int64)
    left = run(counted_while, mode, log, ints(n0), cap)
    assert logged(log) == list(range(runs))             # k is the iteration's index
    assert left[0] == n0 - runs


@l3c.jit(chips=1, timeout=TIMEOUT)
def while_on_input(log, go):
    for k in l3c.while_loop(go, max_iterations=3):
        record(k, log)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flag", [np.array([True]), np.array([False]), ints(7), ints(0)])
def test_while_flag_may_be_a_bool_or_int_input(mode, flag):
    log = np.zeros(8, np.int64)
    run(while_on_input, mode, log, flag)
    assert logged(log) == ([0, 1, 2] if flag[0] else [])


# ---------------------------------------------------------------------------------------- cond
@l3c.jit(chips=2, sub_workers=1, timeout=TIMEOUT)
def conditional(x, f0, invert: bool):
    y = l3c.zeros(x.shape, x.dtype)
    f = l3c.empty((1,), np.int32)
    set_to(f0, f)                            # the flag's writer right before the block
    with l3c.cond(f, invert=invert):
        t = l3c.empty_like(x)                # a block intermediate
        twice(x, t)
        sub_add(t, y)
    add(x, y)
    return y


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("f0", [0, 1, -3])
def test_cond_runs_its_block_on_nonzero_or_with_invert_on_zero(mode, f0, invert):
    x = np.arange(6.0).reshape(2, 3)
    y = run(conditional, mode, x, np.array([f0], np.int32), invert)
    taken = (f0 != 0) != invert
    np.testing.assert_array_equal(y, 3 * x if taken else x)


@l3c.jit(chips=2, timeout=TIMEOUT)
def odd_iterations(log):
    f = l3c.empty((1,), np.int64)
    for i in l3c.range(1, 8):
        odd(i, f)
        with l3c.cond(f):                    # read each time the block is reached
            record(i, log)


@pytest.mark.parametrize("mode", MODES)
def test_cond_flag_is_read_each_time_the_block_is_reached(mode):
    log = np.zeros(8, np.int64)
    run(odd_iterations, mode, log)
    assert logged(log) == [1, 3, 5, 7]


# ---------------------------------------------------------------------------------------- the loop variable
@l3c.jit(chips=2, sub_workers=1, timeout=TIMEOUT)
def affine_views(x):
    rows = l3c.zeros((8, 8), x.dtype)
    cols = l3c.zeros((8, 8), x.dtype)
    blocks = l3c.zeros((8, 8), x.dtype)
    diag = l3c.zeros((16,), x.dtype)
    for i in l3c.range(2, 6):
        twice(x[i], rows[2 * i - 3])
        twice(x[:, i + 1], cols[:, 7 - i])
    for i in l3c.range(2):
        twice(x[4 * i:4 * i + 4], blocks[4 - 4 * i:8 - 4 * i])
    for i in l3c.range(3):
        for j in l3c.range(4):
            sub_add(x[i, j:j + 1], diag[i + j:i + j + 1])   # sums of two loops' variables
    return rows, cols, blocks, diag


def affine_reference(x):
    rows, cols, blocks, diag = (np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8)),
                                np.zeros(16))
    for i in range(2, 6):
        rows[2 * i - 3] = 2 * x[i]
        cols[:, 7 - i] = 2 * x[:, i + 1]
    for i in range(2):
        blocks[4 - 4 * i:8 - 4 * i] = 2 * x[4 * i:4 * i + 4]
    for i in range(3):
        for j in range(4):
            diag[i + j] += x[i, j]
    return rows, cols, blocks, diag


@pytest.mark.parametrize("mode", MODES)
def test_affine_indices_and_slice_bounds_of_loop_variables(mode):
    x = np.random.default_rng(0).standard_normal((8, 8))
    for got, want in zip(run(affine_views, mode, x), affine_reference(x)):
        np.testing.assert_array_equal(got, want)


@l3c.jit(chips=1, timeout=TIMEOUT)
def while_index(log, go):
    for k in l3c.while_loop(go, max_iterations=4):
        record(3 * k + 1, log)


@pytest.mark.parametrize("mode", MODES)
def test_while_loop_variable_is_the_iteration_index(mode):
    log = np.zeros(8, np.int64)
    run(while_index, mode, log, ints(1))
    assert logged(log) == [1, 4, 7, 10]


def _value_read(how):
    def bad(x):
        for i in l3c.range(4):               # loop
            how(i, x)                        # the bad line
    return l3c.jit(chips=1, timeout=TIMEOUT)(bad)


@pytest.mark.parametrize("how", [
    lambda i, x: twice(x[int(i)], x[0]),
    lambda i, x: twice(x, x) if i else None,
    lambda i, x: twice(x[i * i], x[0]),
    lambda i, x: twice(x[i / 2], x[0]),
    lambda i, x: twice(x[:i], x[:1]),
], ids=["int", "if", "product", "division", "length"])
def test_reading_the_loop_variable_is_a_trace_error_naming_the_line(how):
    with pytest.raises(l3c.TraceError) as info:
        _value_read(how).lower(np.zeros((4, 4)))
    assert FILE in str(info.value)


# ---------------------------------------------------------------------------------------- lifetimes
@l3c.jit(chips=2, timeout=TIMEOUT)
def per_iteration(x):
    acc = l3c.zeros((x.shape[1],), x.dtype)  # created before the loop: carries values
    for i in l3c.range(x.shape[0]):
        t = l3c.empty((x.shape[1],), x.dtype)  # lives one iteration
        twice(x[i], t)
        add(t, acc)
    return acc


@pytest.mark.parametrize("mode", MODES)
def test_intermediates_live_one_iteration_and_outer_tensors_carry(mode):
    x = np.random.default_rng(1).standard_normal((5, 3))
    np.testing.assert_allclose(run(per_iteration, mode, x), 2 * x.sum(axis=0))


def test_using_a_body_intermediate_after_the_loop_is_a_trace_error():
    @l3c.jit(chips=1, timeout=TIMEOUT)
    def leak(x):
        for _ in l3c.range(2):
            t = l3c.empty_like(x)
            twice(x, t)
        add(t, x)                            # leak-line
    with pytest.raises(l3c.TraceError) as info:
        leak.lower(np.zeros(3))
    assert line_of("leak-line") in str(info.value)


# ---------------------------------------------------------------------------------------- nesting
@l3c.jit(chips=3, sub_workers=1, timeout=TIMEOUT)
def nested(x, n, go):
    acc = l3c.zeros(x.shape, x.dtype)
    for k in l3c.while_loop(go, max_iterations=2):
        for i in l3c.range(n):
            l3c.group(add, [(x[i, p::3], acc[i, p::3]) for p in range(3)])
            with l3c.scope():
                t = l3c.empty((x.shape[1],), x.dtype)
                twice.on(2)(x[i], t)
                sub_add(t, acc[i])
            with l3c.cond(go, invert=True):
                add(x, acc)                  # never runs: go stays nonzero inside the loop
    return acc


@pytest.mark.parametrize("mode", MODES)
def test_loops_conds_groups_scopes_pins_and_sub_workers_nest(mode):
    x = np.random.default_rng(2).standard_normal((4, 6))
    acc = run(nested, mode, x, ints(3), ints(1))
    np.testing.assert_allclose(acc[:3], 2 * 3 * x[:3])
    np.testing.assert_array_equal(acc[3], 0)


# ---------------------------------------------------------------------------------------- the graph
@l3c.jit(chips=2, timeout=TIMEOUT)
def shaped(x, flag):
    acc = l3c.zeros((x.shape[1],), x.dtype)
    y = l3c.empty_like(x)
    twice(x, y)
    for i in l3c.range(x.shape[0]):          # outer-loop
        add(x[i], acc)
        twice(x[i], y[i])
        with l3c.cond(flag):                 # inner-cond
            add(x[i], acc)
    return acc, y


def test_graph_has_one_node_per_body_call_with_its_loops_and_carried_edges():
    compiled = shaped.lower(np.zeros((4, 3)), ints(1))
    graph, loops = compiled.graph, compiled.loops
    assert graph.number_of_nodes() == 5      # zeros' fill, twice, add, twice, add
    kernels = {n: graph.nodes[n]["kernel"].rsplit(":", 1)[-1] for n in graph}
    by_loops = {n: graph.nodes[n]["loops"] for n in graph}
    outer = [lid for lid, info in loops.items() if info["kind"] == "range"]
    inner = [lid for lid, info in loops.items() if info["kind"] == "cond"]
    assert len(loops) == 2 and len(outer) == 1 and len(inner) == 1
    assert loops[outer[0]]["loc"] == line_of("outer-loop")
    assert loops[inner[0]]["loc"] == line_of("inner-cond")
    assert sorted(by_loops.values()) == [(), (), (outer[0],), (outer[0],), (outer[0], inner[0])]
    acc_add = next(n for n in graph if kernels[n] == "add" and by_loops[n] == (outer[0],))
    row_twice = next(n for n in graph if kernels[n] == "twice" and by_loops[n] == (outer[0],))
    carried = {(u, v) for u, v, d in graph.edges(data=True) if d.get("carried")}
    assert (acc_add, acc_add) in carried     # acc: every iteration after the one before
    assert not any(row_twice in edge for edge in carried)   # y[i], x[i]: never across iterations
    assert not any(d.get("carried") for u, v, d in graph.edges(data=True)
                   if by_loops[u] == () or by_loops[v] == ())
    # every edge says which kind it is, so `d["carried"]` works on any edge
    assert all(d["carried"] in (True, False) for _, _, d in graph.edges(data=True))


@pytest.mark.parametrize("mode", MODES)
def test_graph_program_runs(mode):
    x = np.random.default_rng(3).standard_normal((4, 3))
    for flag, times in ((1, 2), (0, 1)):
        acc, y = run(shaped, mode, x, ints(flag))
        np.testing.assert_allclose(acc, times * x.sum(axis=0))
        np.testing.assert_array_equal(y, 2 * x)


# ---------------------------------------------------------------------------------------- dumps
def test_dumps_show_the_loops():
    compiled = shaped.lower(np.zeros((4, 3)), ints(1))
    text = compiled.dump()
    assert line_of("outer-loop") in text and line_of("inner-cond") in text
    data = json.loads(compiled.dump("json"))
    assert "loops" in json.dumps(data)
    dot = compiled.dump("dot")
    assert "carried" in dot or "style=dashed" in dot


@pytest.mark.parametrize("target, args, kinds", [
    ("examples/microbatch_pipeline.py:pipeline", ["f32[64,32]", "f32[32,48]", "f32[48,16]"],
     ["range"]),
    ("examples/jacobi_solve.py:solve", ["f64[34,16]"], ["while"]),
])
def test_cli_dump_ir_shows_loops(target, args, kinds):
    argv = [a for s in args for a in ("--arg", s)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    for fmt in ("text", "json"):
        proc = subprocess.run([sys.executable, "-m", "l3c", "dump-ir", target, *argv,
                               "--format", fmt], capture_output=True, text=True, timeout=120,
                              cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr
        for kind in kinds:
            assert kind in proc.stdout, (fmt, proc.stdout[:2000])


# ---------------------------------------------------------------------------------------- bad indices
@l3c.jit(chips=2, timeout=TIMEOUT)
def rows_of(x, n):
    y = l3c.zeros(x.shape, x.dtype)
    for i in l3c.range(n):
        twice(x[i], y[i])
    return y


@pytest.mark.parametrize("mode", MODES)
def test_an_affine_index_outside_the_tensor_is_an_error_of_the_run_not_a_wrap(mode):
    x = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(run(rows_of, mode, x, ints(4)), 2 * x)
    with pytest.raises(l3c.L3CError):
        run(rows_of, mode, x, ints(5))
    np.testing.assert_array_equal(run(rows_of, mode, x, ints(2))[2:], 0)   # still usable


def test_a_static_range_indexing_outside_the_tensor_is_a_trace_error():
    @l3c.jit(chips=1, timeout=TIMEOUT)
    def too_far(x):
        y = l3c.zeros(x.shape, x.dtype)
        for i in l3c.range(1, 6):
            twice(x[i - 1], y[i])            # too-far
        return y
    with pytest.raises(l3c.TraceError) as info:
        too_far.lower(np.zeros((5, 2)))
    assert line_of("too-far") in str(info.value)


# ---------------------------------------------------------------------------------------- flag lifetime
@l3c.jit(chips=2, sub_workers=1, timeout=TIMEOUT)
def flag_then_reuse(x, y, n0, log):
    with l3c.scope():
        l3c.zeros(x.shape, x.dtype)          # dead at once: its space is free for what follows
    left = l3c.empty((1,), np.int64)
    go = l3c.empty((1,), np.int64)
    set_to(n0, left)
    is_positive(left, go)
    for k in l3c.while_loop(go):
        t = l3c.zeros(x.shape, x.dtype)
        add(t[:, :3], x[:, 1:4])
        countdown.on(1)(left, go)
        slow_record.on(0)(k, log)            # chip 0 tests go last, well after chip 1
    after = l3c.zeros(x.shape, x.dtype)     # created after the loop: must not land on `go`
    add.on(1)(y, after)                      # while a worker may still test it
    return after


@pytest.mark.parametrize("mode", MODES)
def test_a_while_flag_stays_alive_until_every_worker_has_tested_it_the_last_time(mode):
    x = np.arange(1.0, 17.0).reshape(4, 4)
    for n0 in (0, 2, 3):
        log = np.zeros(8, np.int64)
        after = run(flag_then_reuse, mode, x, x + 1, ints(n0), log)
        assert logged(log) == list(range(n0))
        np.testing.assert_array_equal(after, x + 1)


# ---------------------------------------------------------------------------------------- schedule files
def test_a_schedule_file_keeps_the_loops(tmp_path):
    if not lp.compiled_loops():
        pytest.skip("this l3c runs loops only through .eager (its lowering refuses them)")
    why = lp.schedule_files_with_loops(str(tmp_path))
    if why:
        pytest.skip(f"this l3c cannot save a schedule with loops yet: {why}")
    x = np.random.default_rng(4).standard_normal((4, 3))
    compiled = shaped.lower(x, ints(1))
    compiled.save(tmp_path / "shaped.l3c")
    loaded = l3c.load(tmp_path / "shaped.l3c")
    assert loaded.loops == compiled.loops
    for flag, times in ((1, 2), (0, 1)):
        acc, y = loaded(x, ints(flag))
        np.testing.assert_allclose(acc, times * x.sum(axis=0))
