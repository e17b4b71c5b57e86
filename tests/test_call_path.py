"""The call path's shortcuts (a jitted call's per-signature fast key, a Compiled call's checks by
comparison) pick the same schedule and report the same errors as the full bind and check."""
from __future__ import annotations

import numpy as np
import pytest

import l3c


@l3c.kernel
def scale_into(x: l3c.In, y: l3c.InOut, k):
    y += k * x


@l3c.kernel
def add_one(x: l3c.InOut):
    x += 1


def axpy(x, y, k):
    scale_into(x, y, k)
    return y


def test_repeated_calls_trace_once_and_changes_retrace():
    f = l3c.jit(chips=2)(axpy)
    x, y = np.ones(4), np.zeros(4)
    for i in range(3):
        np.testing.assert_array_equal(f(x, y, 2.0), np.full(4, 2.0 * (i + 1)))
    assert f.traces == 1
    f(x, y, 3.0)                                   # another static value
    f(x, y, 3)                                     # same value, another type
    f(np.ones(5), np.zeros(5), 2.0)                # another shape
    f(np.ones(4, np.float32), np.zeros(4, np.float32), 2.0)   # another dtype
    assert f.traces == 5
    f(x, y, 2.0)
    f(x, y, 3)
    assert f.traces == 5
    assert str(f._last_key) == str(f.cache_key(x, y, 3))


def test_the_same_array_twice_is_another_signature_than_two_arrays():
    def twice(a, b):
        add_one(a)
        add_one(b)

    f = l3c.jit(chips=2)(twice)
    a, b = np.zeros(3), np.zeros(3)
    f(a, b)
    np.testing.assert_array_equal(a, 1)
    f(a, a)                                        # one tensor: both kernels write it
    np.testing.assert_array_equal(a, 3)
    f(a, b)
    np.testing.assert_array_equal(b, 2)
    assert f.traces == 2
    with pytest.raises(l3c.TraceError, match="overlap"):
        f(a[:2], a[1:])


def test_keywords_and_defaults_bind_like_positional_calls():
    def with_default(x, y, k=5.0):
        scale_into(x, y, k)
        return y

    f = l3c.jit(chips=1)(with_default)
    x = np.ones(2)
    np.testing.assert_array_equal(f(x, np.zeros(2)), [5, 5])
    np.testing.assert_array_equal(f(x, y=np.zeros(2)), [5, 5])
    np.testing.assert_array_equal(f(x, np.zeros(2), 5.0), [5, 5])
    np.testing.assert_array_equal(f(x, np.zeros(2), 1.0), [1, 1])
    assert f.traces == 2


def test_compiled_call_checks_still_refuse_what_does_not_match():
    f = l3c.jit(chips=2)(axpy)
    x, y = np.ones(4), np.zeros(4)
    c = f.lower(x, y, 2.0)
    np.testing.assert_array_equal(c(x, y, 2.0), [2] * 4)
    with pytest.raises(l3c.ScheduleError, match="static argument 'k'"):
        c(x, y, 3.0)
    with pytest.raises(l3c.ScheduleError, match="must be float64"):
        c(x, np.zeros(5), 2.0)
    with pytest.raises(l3c.ScheduleError, match="must be float64"):
        c(x.astype(np.float32), y, 2.0)
    with pytest.raises(l3c.ScheduleError, match="overlap"):
        big = np.zeros(6)
        c(big[:4], big[2:], 2.0)
    swapped = np.ones(4, dtype=">f8")             # another byte order: staged with conversion
    np.testing.assert_array_equal(c(swapped, np.zeros(4), 2.0), [2] * 4)


@l3c.kernel
def mark(log: l3c.InOut, tag: l3c.In):
    log[int(np.argmax(log == 0))] = tag[0]


def append_tag(log, tag):
    mark(log, tag)


def test_waiting_threads_run_queued_runs_in_submission_order():
    import threading
    f = l3c.jit(chips=2, max_inflight=64)(append_tag)
    log = l3c.shared(200, np.float64)
    tag = np.zeros(1)
    runs = []
    for i in range(1, 41):
        tag[0] = i                                 # captured at submit
        runs.append(f.submit(log, tag))
    for run in reversed(runs):                     # the last first: this thread runs the queue
        assert run.result() is None
    np.testing.assert_array_equal(log[:40], np.arange(1, 41))

    def submitter(base: int) -> None:
        mine = [f.submit(log, np.array([base + i], np.float64)) for i in range(20)]
        mine[-1].result()
        for run in mine:
            run.result()

    threads = [threading.Thread(target=submitter, args=(b,)) for b in (1000, 2000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = log[40:80]
    for base in (1000, 2000):
        np.testing.assert_array_equal(got[(got >= base) & (got < base + 1000)],
                                      base + np.arange(20))


def test_fast_calls_see_evictions_and_cache_clear():
    f = l3c.jit(chips=1, cache_size=1)(axpy)
    x4, y4, x5, y5 = np.ones(4), np.zeros(4), np.ones(5), np.zeros(5)
    f(x4, y4, 1.0)
    f(x5, y5, 1.0)                                 # evicts the 4-element signature
    np.testing.assert_array_equal(f(x4, y4, 1.0), [2] * 4)   # traced again, runs correctly
    assert f.traces == 3
    f.cache_clear()
    np.testing.assert_array_equal(f(x4, y4, 1.0), [3] * 4)
    assert f.traces == 4


@l3c.kernel
def served_by(x: l3c.InOut):
    """x[0] = 1 when the worker's native server (l3c/runtime/serve.py) called this kernel, 2 when
    the worker's Python loop did."""
    import traceback
    x[0] = 1 if any(f.filename.endswith("serve.py") for f in traceback.extract_stack()) else 2


@l3c.kernel
def sleep_then_add(seconds, x: l3c.In, y: l3c.Out):
    import time
    time.sleep(seconds)
    y[...] = x + 1


def two_chips_waiting(x, seconds):
    mid = l3c.empty_like(x)
    out = l3c.empty_like(x)
    sleep_then_add.on(0)(seconds, x, mid)
    sleep_then_add.on(1)(0.0, mid, out)          # waits on chip 0 longer than a futex slice
    return out


def test_runs_are_served_by_the_native_loop_and_profiles_by_python():
    f = l3c.jit(chips=2)(lambda x: served_by(x))
    x = np.zeros(2)
    for _ in range(3):
        f(x)
        assert x[0] == 1
    f.lower(x).profile(x)
    assert x[0] == 2


def test_a_wait_longer_than_a_futex_slice_goes_on_through_python():
    f = l3c.jit(chips=2)(two_chips_waiting)
    x = np.arange(3.0)
    for seconds in (0.0, 0.25, 0.0):
        np.testing.assert_array_equal(f(x, seconds), x + 2)


def test_the_cached_path_notices_workers_replaced_or_gone_between_calls():
    """A call reuses what an earlier call of its signature installed; a worker killed while
    idle, a pool shut down or restarted bigger in between, is noticed, and the call just works."""
    import os
    import signal
    import time
    from l3c.runtime.pool import current_pool
    f = l3c.jit(chips=2)(axpy)
    x, y = np.ones(4), np.zeros(4)
    f(x, y, 1.0)
    pool = current_pool()
    victim = pool._workers[0].pid
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pool._alive(0) and time.monotonic() < deadline:
        time.sleep(0.01)
    np.testing.assert_array_equal(f(x, y, 1.0), [2] * 4)       # replaced, not WorkerCrashed
    assert pool._workers[0].pid != victim
    l3c.shutdown()
    np.testing.assert_array_equal(f(x, y, 1.0), [3] * 4)
    l3c.jit(chips=3)(axpy)(x, np.zeros(4), 1.0)                # the pool grows: a restart
    np.testing.assert_array_equal(f(x, y, 1.0), [4] * 4)
