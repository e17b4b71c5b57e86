"""Compiled runs of hand-placed programs on the real pool: staging, cross-worker waits,
write-back of modified inputs, results, and every failure status of the native dispatcher."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import l3c
from l3c.ir import Access, Config, Param, Program, Region, ResultRef, ScalarArg, Task, TensorInfo


@l3c.kernel
def k_copy(src: l3c.In, dst: l3c.Out):
    dst[...] = src


@l3c.kernel
def k_add(x: l3c.InOut, value: float):
    x += value


@l3c.kernel
def k_fail(x: l3c.InOut):
    raise ValueError("boom from a kernel")


@l3c.kernel
def k_die(x: l3c.InOut):
    os._exit(9)


@l3c.kernel
def k_sleep(x: l3c.InOut, seconds: float):
    time.sleep(seconds)


def whole(shape):
    return Region.whole(shape)


def rows(n, start, step):
    count = len(range(start, n, step))
    return Region(start, (count,), (step,), ((start, count, step),))


def build(second=k_add, second_arg=1.0, n=16) -> Program:
    """x -> t0 (chip0); t0[0::2] += 1 (chip1); t0[1::2] += 1 (chip0); x += 1 (sub 0); t0 += 10."""
    prog = Program(name="tests:handmade", loc="t.py:1", config=Config(chips=2, sub_workers=1))
    prog.tensors += [TensorInfo(0, "arg0", "input", (n,), "float64", "t.py:1"),
                     TensorInfo(1, "t0", "intermediate", (n,), "float64", "t.py:2", arena_offset=0)]
    prog.params += [Param("x", tensor=0), Param("flag", static="on")]
    prog.memory.arena_bytes = n * 8
    specs = [
        (k_copy, "chip", 0, 0, (Access("src", 0, whole((n,)), "In"),
                                Access("dst", 1, whole((n,)), "Out"))),
        (second, "chip", 1, 0, (Access("x", 1, rows(n, 0, 2), "InOut"),
                                ScalarArg("value", second_arg))),
        (k_add, "chip", 0, 1, (Access("x", 1, rows(n, 1, 2), "InOut"), ScalarArg("value", 1.0))),
        (k_add, "sub", 0, 0, (Access("x", 0, whole((n,)), "InOut"), ScalarArg("value", 1.0))),
        (k_add, "chip", 0, 2, (Access("x", 1, whole((n,)), "InOut"), ScalarArg("value", 10.0))),
    ]
    for tid, (k, worker, chip, pos, args) in enumerate(specs):
        if k in (k_fail, k_die):
            args = args[:1]
        if k is k_sleep:
            args = (args[0], ScalarArg("seconds", second_arg))
        prog.add_task(Task(tid, k.name, worker, args, f"t.py:{10 + tid}", chip=chip, queue_pos=pos))
    for u, v, kind, t in [(0, 1, "RAW", 1), (0, 2, "RAW", 1), (0, 3, "WAR", 0), (1, 4, "RAW", 1),
                          (2, 4, "RAW", 1)]:
        prog.add_dependency(u, v, kind, t)
    prog.results = ("dict", [("t", ResultRef(1, whole((n,)), "float64")),
                             ("odd", ("list", [ResultRef(0, rows(n, 1, 2), "float64")]))])
    return prog


def test_run_results_write_back_and_reuse():
    compiled = l3c.Compiled(build())
    for trial in range(3):
        x = np.arange(16.0) * (trial + 1)
        x0 = x.copy()
        out = compiled(x, "on")
        np.testing.assert_array_equal(out["t"], x0 + 11)
        np.testing.assert_array_equal(x, x0 + 1)                 # written back into the caller's array
        np.testing.assert_array_equal(out["odd"][0], (x0 + 1)[1::2])
        assert out["t"].base is None and out["odd"][0].flags.c_contiguous   # fresh arrays we own
    assert "dispatcher" in compiled.artifacts


def test_signature_mismatch_is_a_schedule_error():
    compiled = l3c.Compiled(build())
    with pytest.raises(l3c.ScheduleError, match=r"expected \(x: float64\[16\], flag='on'\)"):
        compiled(np.zeros(8), "on")
    with pytest.raises(l3c.ScheduleError, match="float32"):
        compiled(np.zeros(16, np.float32), "on")
    with pytest.raises(l3c.ScheduleError, match="static argument 'flag'"):
        compiled(np.zeros(16), "off")
    with pytest.raises(l3c.ScheduleError, match="takes 2 arguments, 0 given"):
        compiled()
    compiled(np.zeros(16))          # a static left out takes the value it was compiled with


def test_kernel_error_then_pool_usable():
    compiled = l3c.Compiled(build(second=k_fail))
    with pytest.raises(l3c.KernelError, match="boom from a kernel") as info:
        compiled(np.zeros(16), "on")
    assert info.value.task == 1 and info.value.loc == "t.py:11"
    good = l3c.Compiled(build())
    np.testing.assert_array_equal(good(np.ones(16), "on")["t"], np.full(16, 12.0))


def test_crash_then_pool_usable():
    compiled = l3c.Compiled(build(second=k_die))
    with pytest.raises(l3c.WorkerCrashed) as info:
        compiled(np.zeros(16), "on")
    assert info.value.worker == 1 and info.value.exitcode == 9
    np.testing.assert_array_equal(l3c.Compiled(build())(np.ones(16), "on")["t"], np.full(16, 12.0))


def test_timeout_then_pool_usable():
    compiled = l3c.Compiled(build(second=k_sleep, second_arg=30.0))
    compiled.timeout = 0.3
    t0 = time.monotonic()
    with pytest.raises(l3c.Timeout, match="exceeded its timeout of 0.3 s"):
        compiled(np.zeros(16), "on")
    assert time.monotonic() - t0 < 10
    np.testing.assert_array_equal(l3c.Compiled(build())(np.ones(16), "on")["t"], np.full(16, 12.0))


def test_threads_each_get_their_own_results():
    import threading
    compiled = l3c.Compiled(build())
    errors, results = [], {}

    def worker(i):
        try:
            for j in range(5):
                x = np.full(16, float(i * 10 + j))
                out = compiled(x, "on")
                results[(i, j)] = (out["t"].copy(), x.copy())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 20
    for (i, j), (t, x) in results.items():
        np.testing.assert_array_equal(t, np.full(16, i * 10 + j + 11.0))
        np.testing.assert_array_equal(x, np.full(16, i * 10 + j + 1.0))


def test_ctrl_c_during_a_compiled_run_then_pool_usable():
    import signal
    import threading
    compiled = l3c.Compiled(build(second=k_sleep, second_arg=30.0))
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        compiled(np.zeros(16), "on")
    timer.join()
    assert time.monotonic() - t0 < 10
    np.testing.assert_array_equal(l3c.Compiled(build())(np.ones(16), "on")["t"], np.full(16, 12.0))


def test_a_stray_abort_ends_the_run_with_an_error_and_the_next_run_works():
    """H_ABORT set with no failing worker (a protocol bug would do this): every worker stops
    ABORTED; the run must end with an L3CError, not wait forever, and the pool must recover."""
    from l3c.runtime import layout, sync
    from l3c.runtime.pool import get_pool

    @l3c.kernel
    def bump(x: l3c.InOut):
        x += 1

    @l3c.jit(chips=2)
    def twice(x):
        bump(x[0:1])
        bump(x[1:2])
        return x

    assert np.array_equal(twice(np.zeros(2)), [1, 1])
    pool = get_pool(2, 0, 1)
    sync.store_u32(pool.control_address + layout.H_ABORT, 1)
    with pytest.raises(l3c.L3CError, match="aborted with no failing worker"):
        twice(np.zeros(2))
    assert np.array_equal(twice(np.zeros(2)), [1, 1])
