"""Several threads calling the same or different compiled functions at once.

Every call must get its own correct results (compared with numpy), no run may see another run's arena
regions, and nothing may deadlock: every thread is joined with a deadline. Functions differ in chips,
sub workers and arena size, so some calls grow the shared pool while other threads wait their turn;
eager calls and a schedule loaded from a file run alongside.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

import l3c

JOIN_TIMEOUT = 120.0


@l3c.kernel
def axpy(alpha: float, x: l3c.In, y: l3c.InOut):
    y += alpha * x


@l3c.kernel
def fill_tag(out: l3c.Out, tag: float):
    out[...] = tag


@l3c.kernel(worker="sub")
def total(x: l3c.In, out: l3c.Out):
    out[...] = x.sum()


@l3c.jit(chips=2, timeout=60)
def small(x, y):
    t = l3c.empty(x.shape, x.dtype)
    fill_tag(t, 0.0)
    l3c.group(axpy, [(1.0, x[i::2], t[i::2]) for i in range(2)])
    axpy(2.0, t, y)
    return t, y


@l3c.jit(chips=3, sub_workers=1, timeout=60)
def wide(x, y):
    h = l3c.empty(x.shape, x.dtype)
    fill_tag(h, 1.0)
    for i in range(3):
        axpy.on(i)(0.5, x[i::3], h[i::3])
    s = l3c.empty((1,), x.dtype)
    total(h, s)
    axpy(-1.0, h, y)
    return s, y


def expect_small(x, y):
    t = x.copy()
    return t, y + 2 * t


def expect_wide(x, y):
    h = 1.0 + 0.5 * x
    return np.array([h.sum()]), y - h


def _run_threads(workers):
    errors: list[BaseException] = []

    def guard(fn):
        def body():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
        return body

    threads = [threading.Thread(target=guard(fn), daemon=True) for fn in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread did not finish: deadlock?"
    if errors:
        raise errors[0]


def _caller(fn, expect, seed, rounds, big=False):
    def body():
        rng = np.random.default_rng(seed)
        for _ in range(rounds):
            shape = (64, 48) if big else (12, 6)
            x, y = rng.standard_normal(shape), rng.standard_normal(shape)
            want = expect(x, y.copy())
            got = fn(x, y)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(y, want[1], rtol=1e-12, atol=1e-12)     # written back
    return body


def test_threads_calling_the_same_and_different_functions():
    workers = []
    for i in range(3):
        workers.append(_caller(small, expect_small, i, 25))
        workers.append(_caller(wide, expect_wide, 100 + i, 25))
    workers.append(_caller(small.eager, expect_small, 200, 8))
    workers.append(_caller(wide.eager, expect_wide, 201, 8))
    workers.append(_caller(small, expect_small, 300, 10, big=True))   # another signature
    _run_threads(workers)


def test_threads_with_a_loaded_schedule_and_a_growing_pool(tmp_path):
    path = str(tmp_path / "wide.l3c")
    wide.lower(np.zeros((12, 6)), np.zeros((12, 6))).save(path)
    loaded = l3c.load(path)

    @l3c.jit(chips=4, sub_workers=2, timeout=60)
    def bigger(x, y):              # first called on a thread: the pool grows under the others
        for i in range(4):
            axpy.on(i)(1.0, x[i::4], y[i::4])
        return y

    workers = [_caller(loaded, expect_wide, 400 + i, 20) for i in range(2)]
    workers += [_caller(small, expect_small, 500, 20),
                _caller(lambda x, y: (bigger(x, y), y), lambda x, y: (y + x, y + x), 600, 20)]
    _run_threads(workers)


def test_pool_started_on_a_short_lived_thread_keeps_its_workers():
    """PR_SET_PDEATHSIG fires when the forking *thread* exits: a pool started on a thread that
    then ended must keep its workers (l3c forks from a thread that lasts)."""
    l3c.shutdown()
    _run_threads([_caller(small, expect_small, 700, 2)])
    from l3c.runtime.pool import get_pool
    pool = get_pool(1, 0, 1)
    time.sleep(0.2)
    pids = [w.pid for w in pool._workers]
    assert all(pids) and all(os.path.exists(f"/proc/{p}") for p in pids)
    assert all(pool._alive(s) for s in range(pool.slots)), "workers died with the forking thread"
    _caller(small, expect_small, 701, 2)()
    assert [w.pid for w in pool._workers] == pids


def test_threads_running_random_programs_with_faults():
    """Faults in one thread's runs (raise, SIGKILL, os._exit) while other threads run: each thread
    sees exactly its own errors, and every run after a fault is correct."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "stress"))
    import stress_programs as sp
    _run_threads([lambda s=seed: sp.run_program(s, faults=2, allow_hang=False)
                  for seed in range(2000, 2006)])
