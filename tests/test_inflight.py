"""Runs in flight (`submit`, `l3c.Run`, `max_inflight`) and `l3c.shared` arrays, against the
SPEC's section "Runs in flight and shared arrays": captured inputs, written arguments, ordering on
shared arrays across functions (under random kernel delays), errors per run, back-pressure,
`result(timeout)`, threads, loaded schedules, and the shared memory's hygiene."""
from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import l3c
from _proc import fds


@l3c.kernel
def slow_add(delay: float, x: l3c.In, y: l3c.Out):
    time.sleep(delay)
    y[...] = x + 1


@l3c.kernel
def bump(delay: float, x: l3c.InOut):
    time.sleep(delay)
    x += 1


@l3c.kernel
def twice(delay: float, x: l3c.InOut):
    time.sleep(delay)
    x *= 2


@l3c.kernel
def fail_if_negative(x: l3c.In, y: l3c.Out):
    if x[0] < 0:
        raise ValueError("negative input")
    y[...] = x


@l3c.jit(chips=2)
def add_one(x, delay=0.0):
    y = l3c.empty_like(x)
    slow_add(delay, x, y)
    return y


@l3c.jit(chips=2)
def bump_it(s, delay=0.0):
    bump(delay, s)


@l3c.jit(chips=2)
def double_it(s, delay=0.0):
    twice(delay, s)


@l3c.jit(chips=2)
def checked(x):
    y = l3c.empty_like(x)
    fail_if_negative(x, y)
    return y


@l3c.jit(chips=1, max_inflight=1)
def one_at_a_time(x, delay=0.0):
    y = l3c.empty_like(x)
    slow_add(delay, x, y)
    return y


def test_submit_returns_before_the_run_ends_and_result_waits():
    x = np.arange(4.0)
    add_one(x)                                  # compiled and the pool started: not timed below
    run = add_one.submit(x, 0.3)
    assert isinstance(run, l3c.Run)
    assert not run.done()
    np.testing.assert_array_equal(run.result(), x + 1)
    assert run.done()


def test_ordinary_inputs_are_captured_at_submit():
    x = np.zeros(4)
    runs = []
    for i in range(6):
        x[...] = i
        runs.append(add_one.submit(x, 0.01))    # the caller changes x at once
    for i, run in enumerate(runs):
        np.testing.assert_array_equal(run.result(), np.full(4, i + 1.0))


def test_written_arguments_are_updated_by_result():
    a = np.arange(3.0)
    run = bump_it.submit(a, 0.05)
    np.testing.assert_array_equal(run.result(), None)
    np.testing.assert_array_equal(a, [1.0, 2.0, 3.0])


def test_shared_array_runs_take_effect_in_submission_order_across_functions():
    """bump (+1) and double (*2) do not commute: any reordering gives another value."""
    rng = random.Random(7)
    s = l3c.shared(np.ones(5))
    expected = np.ones(5)
    runs = []
    for _ in range(24):
        delay = rng.choice([0.0, 0.0, 0.002, 0.01])
        if rng.random() < 0.5:
            runs.append(bump_it.submit(s, delay))
            expected += 1
        else:
            runs.append(double_it.submit(s, delay))
            expected *= 2
    for run in runs:
        run.result()
    np.testing.assert_array_equal(s, expected)


def test_a_direct_call_sees_what_queued_runs_wrote():
    s = l3c.shared(np.zeros(2))
    for _ in range(5):
        bump_it.submit(s, 0.01)
    double_it(s)                                 # queued behind the five bumps
    np.testing.assert_array_equal(s, [10.0, 10.0])


def test_views_of_shared_arrays_are_used_in_place():
    s = l3c.shared((4, 4), np.float64)
    assert isinstance(s, np.ndarray) and s.flags.c_contiguous and not s.any()
    runs = [bump_it.submit(s[i], 0.0) for i in range(4)] + [bump_it.submit(s[:, 1])]
    for run in runs:
        run.result()
    expected = np.ones((4, 4))
    expected[:, 1] += 1
    np.testing.assert_array_equal(s, expected)


def test_an_error_is_raised_by_its_own_run_and_later_runs_still_run():
    good, bad, after = (checked.submit(np.ones(3)), checked.submit(-np.ones(3)),
                        checked.submit(np.full(3, 2.0)))
    np.testing.assert_array_equal(good.result(), np.ones(3))
    with pytest.raises(l3c.KernelError, match="negative input"):
        bad.result()
    np.testing.assert_array_equal(after.result(), np.full(3, 2.0))
    with pytest.raises(l3c.TraceError):          # a tracing error: raised by result() as well
        checked.submit([1.0, 2.0]).result()


def test_max_inflight_makes_submit_wait_for_a_slot():
    x = np.zeros(2)
    one_at_a_time(x)
    first = one_at_a_time.submit(x, 0.3)
    second = one_at_a_time.submit(x, 0.0)        # waits until `first` has ended
    assert first.done()
    second.result()


def test_result_timeout_raises_and_the_run_goes_on():
    run = add_one.submit(np.zeros(2), 0.5)
    with pytest.raises(l3c.Timeout, match="still in flight"):
        run.result(timeout=0.05)
    np.testing.assert_array_equal(run.result(timeout=30), np.ones(2))


def test_compiled_and_loaded_schedules_submit(tmp_path):
    x = np.arange(3.0)
    compiled = add_one.lower(x)
    np.testing.assert_array_equal(compiled.submit(x).result(), x + 1)
    path = str(tmp_path / "add_one.l3c")
    compiled.save(path)
    loaded = l3c.load(path)
    runs = [loaded.submit(x + i, 0.0) for i in range(3)]
    for i, run in enumerate(runs):
        np.testing.assert_array_equal(run.result(), x + i + 1)


def test_threads_submitting_to_several_functions_all_get_their_results():
    errors = []

    def client(k):
        try:
            own = l3c.shared(np.zeros(3))
            for i in range(8):
                r1 = add_one.submit(np.full(3, float(k * 100 + i)))
                r2 = bump_it.submit(own)
                np.testing.assert_array_equal(r1.result(), np.full(3, k * 100 + i + 1.0))
                r2.result()
            np.testing.assert_array_equal(own, np.full(3, 8.0))
        except BaseException as exc:              # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_shared_arrays_stay_valid_across_a_pool_restart():
    s = l3c.shared(np.zeros(3))
    bump_it(s)
    l3c.shutdown()
    bump_it(s)
    np.testing.assert_array_equal(s, [2.0, 2.0, 2.0])


def test_bad_settings_and_arguments():
    with pytest.raises(l3c.ConfigError, match="max_inflight"):
        l3c.jit(max_inflight=0)(lambda x: x)
    with pytest.raises(l3c.ConfigError, match="shape and a dtype"):
        l3c.shared("big")


def _shared_mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum("l3c-shared" in line for line in f)


def test_shared_memory_and_its_descriptor_are_freed_with_the_last_reference():
    gc.collect()                      # earlier tests' garbage (failed runs' tracebacks) goes first
    before_fds, before_maps = len(fds()), _shared_mappings()
    a = l3c.shared((256, 256), np.float32)
    view = a[::2]
    assert _shared_mappings() == before_maps + 1
    assert len(fds()) == before_fds + 1
    del a
    gc.collect()
    assert _shared_mappings() == before_maps + 1   # the view still holds it
    del view
    gc.collect()
    assert _shared_mappings() == before_maps
    assert len(fds()) == before_fds


def test_nothing_is_left_behind_when_the_parent_is_killed(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys
        import numpy as np
        import l3c
        a = l3c.shared((1 << 20,), np.float64)
        a[:] = 1
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    shm_before = set(os.listdir("/dev/shm"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == -9 and "ready" in proc.stdout, proc.stderr
    new = {name for name in set(os.listdir("/dev/shm")) - shm_before
           if not name.startswith("mpich_shm_")}     # other processes' MPI jobs, not this one
    assert new == set()


@l3c.jit(chips=1, timeout=0.5)
def impatient(x):
    y = l3c.empty_like(x)
    slow_add(0.0, x, y)
    return y


def test_a_call_timeout_covers_waiting_for_workers_busy_with_another_thread():
    """The other thread's long run is not disturbed (no worker is replaced), and the impatient
    call raises Timeout within about its timeout."""
    x = np.zeros(2)
    impatient(x)
    slow = threading.Thread(target=one_at_a_time, args=(x, 2.0))
    slow.start()
    time.sleep(0.3)                               # the slow run holds the workers now
    t0 = time.monotonic()
    with pytest.raises(l3c.Timeout, match="busy with another thread's run"):
        impatient(x)
    assert time.monotonic() - t0 < 1.5
    slow.join(30)
    np.testing.assert_array_equal(one_at_a_time(x), np.ones(2))
    np.testing.assert_array_equal(impatient(x), np.ones(2))


def test_a_call_queued_behind_runs_in_flight_times_out_without_running():
    s = l3c.shared(np.zeros(2))
    impatient_bump = l3c.jit(chips=2, timeout=0.3)(bump_it.fn)
    impatient_bump(s)                             # compiled; s is 1 now
    ahead = bump_it.submit(s, 1.5)
    with pytest.raises(l3c.Timeout, match="runs in flight ahead of it"):
        impatient_bump(s)
    ahead.result(timeout=30)
    time.sleep(0.3)                               # a cancelled run would have run by now
    np.testing.assert_array_equal(s, [2.0, 2.0])  # the timed-out call never ran


@l3c.kernel
def timed_stage(seconds: float, x: l3c.In, y: l3c.Out, when: l3c.Out):
    when[0] = time.monotonic()
    time.sleep(seconds)
    y[...] = x + 1
    when[1] = time.monotonic()


@l3c.jit(chips=2, max_inflight=8)
def two_stages(x, seconds):
    mid, out = l3c.empty_like(x), l3c.empty_like(x)
    first, second = l3c.empty((2,), np.float64), l3c.empty((2,), np.float64)
    timed_stage.on(0)(seconds, x, mid, first)
    timed_stage.on(1)(seconds, mid, out, second)
    return out, first, second


@l3c.jit(chips=2, max_inflight=8)
def checked_in_place(x, y):
    fail_if_negative(x, y)


def test_runs_queued_together_overlap_on_the_workers():
    """Runs of one schedule queued behind a busy one go as one batch: chip 0 starts the next
    run's first stage while chip 1 runs the previous run's second stage."""
    x = np.arange(4.0)
    two_stages(x, 0.0)
    ahead = one_at_a_time.submit(x, 0.3)           # the runs below queue behind it
    runs = [two_stages.submit(x + i, 0.05) for i in range(4)]
    ahead.result()
    outs = [r.result() for r in runs]
    for i, (out, first, second) in enumerate(outs):
        np.testing.assert_array_equal(out, x + i + 2)
        assert first[1] <= second[0]               # each run's own order holds
    overlapped = [outs[i + 1][1][0] < outs[i][2][1] for i in range(3)]
    assert any(overlapped), [(o[1].tolist(), o[2].tolist()) for o in outs]
    assert two_stages.lower(x, 0.05).artifacts["batches"]     # they did go as a batch


def test_a_failing_run_in_a_batch_fails_alone_and_written_arguments_are_updated():
    x = np.arange(3.0)
    two_stages(x, 0.0)
    ahead = one_at_a_time.submit(x, 0.2)
    inputs = [np.full(2, float(i)) for i in (1, 2, -1, 4)]
    outs = [np.zeros(2) for _ in inputs]
    runs = [checked_in_place.submit(a, o) for a, o in zip(inputs, outs)]
    for a in inputs:
        a[...] = 99.0                              # captured at submit
    ahead.result()
    for i, run in enumerate(runs):
        if i == 2:
            with pytest.raises(l3c.KernelError, match="negative input"):
                run.result()
        else:
            assert run.result() is None
            np.testing.assert_array_equal(outs[i], [(1, 2, -1, 4)[i]] * 2)
    assert checked_in_place.lower(inputs[0], outs[0]).artifacts["batches"]


def test_a_read_only_written_argument_fails_its_own_run_in_a_batch():
    x = np.arange(3.0)
    two_stages(x, 0.0)
    ahead = one_at_a_time.submit(x, 0.2)
    outs = [np.zeros(2) for _ in range(4)]
    outs[1].flags.writeable = False
    runs = [checked_in_place.submit(np.ones(2), o) for o in outs]
    ahead.result()
    for i, run in enumerate(runs):
        if i == 1:
            with pytest.raises(l3c.ScheduleError, match="read-only"):
                run.result()
        else:
            run.result()
            np.testing.assert_array_equal(outs[i], [1.0, 1.0])
