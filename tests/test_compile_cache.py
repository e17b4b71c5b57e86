"""The jit's bounded compile cache: least recently used signatures are evicted, their native code
freed, and calling with many shapes does not make memory grow without bound."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

import l3c
from l3c.jit import DEFAULT_CACHE_SIZE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@l3c.kernel
def bump(x: l3c.InOut):
    x += 1


def _counting(cache_size):
    @l3c.jit(chips=2, cache_size=cache_size)
    def f(x):
        bump(x)
        return x
    return f


def test_least_recently_used_signature_is_evicted_and_retraced():
    f = _counting(2)
    a, b, c = (np.zeros(n, np.float32) for n in (3, 4, 5))
    f(a)
    f(b)
    f(a)                       # a is now the most recently used
    assert f.traces == 2
    f(c)                       # evicts b
    assert f.traces == 3
    f(a)
    assert f.traces == 3       # still cached
    f(b)
    assert f.traces == 4       # b was evicted: traced again, same results
    np.testing.assert_array_equal(b, np.full(4, 2, np.float32))


def test_evicted_native_code_is_freed():
    # Dispatchers are shared by programs whose slots have equal step counts (`_alive` in
    # l3c/codegen/dispatcher.py): an unusual count keeps other tests' programs, alive in their
    # modules' caches, from holding this one's.
    @l3c.jit(chips=2, cache_size=1)
    def f(x):
        for _ in range(29):
            bump(x)
        return x
    first = f.lower(np.zeros(3, np.float32))
    f(np.zeros(3, np.float32))
    dispatcher = weakref.ref(first.artifacts["dispatcher"])
    assert dispatcher() is not None
    second = f.lower(np.zeros((2, 2), np.float32))    # a new signature evicts the first
    del first
    gc.collect()
    # the second signature's plan has the same step counts, so it may share the engine while
    # it runs; once both are gone nothing holds it
    f.cache_clear()
    del second
    gc.collect()
    assert dispatcher() is None


def test_cache_size_is_checked_and_has_a_documented_default():
    assert DEFAULT_CACHE_SIZE >= 1
    assert _counting(DEFAULT_CACHE_SIZE).cache_size == DEFAULT_CACHE_SIZE
    with pytest.raises(l3c.ConfigError, match="cache_size"):
        l3c.jit(lambda x: x, cache_size=0)


GROWTH_SCRIPT = textwrap.dedent("""
    import numpy as np
    import l3c

    @l3c.kernel
    def inc(x: l3c.InOut):
        x += 1

    @l3c.jit(chips=2, static_argnames=("n",))
    def g(x, n):
        for _ in range(n % 20 + 1):      # 20 different schedules: distinct native dispatchers
            inc(x[: x.shape[0] // 2])
            inc(x[x.shape[0] // 2:])
        return x

    def rss_mb():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024

    for k in range(20):                   # warm up the pool, the allocator and the first engines
        g(np.zeros(k + 2, np.float32), n=k)
    before = rss_mb()
    for k in range(64):
        out = g(np.zeros(100 + k, np.float32), n=k)
        assert out[0] == k % 20 + 1
    print(rss_mb() - before)
    l3c.shutdown()
""")


def test_many_new_signatures_keep_memory_bounded():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", GROWTH_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    growth = float(result.stdout.strip().splitlines()[-1])
    # one engine per signature kept forever grew ~1.4 MB each: ~90 MB for these 64
    assert growth < 30, growth


def test_forgetting_a_plan_never_waits_for_a_busy_pool():
    import threading
    import time

    from l3c.runtime.pool import current_pool
    f = _counting(1)
    compiled = f.lower(np.zeros(7, np.float32))
    f(np.zeros(7, np.float32))
    pool = current_pool()
    plan = compiled.artifacts["lowered"].plan
    assert id(plan) in pool._plans
    held, release = threading.Event(), threading.Event()

    def hold():
        with pool.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    t0 = time.monotonic()
    f.cache_clear()                                             # evicts while the pool is busy
    assert time.monotonic() - t0 < 1.0
    release.set()
    holder.join(10)
    f(np.zeros(9, np.float32))                                  # the next install drops it
    assert id(plan) not in pool._plans or pool._plans[id(plan)].plan is not plan
    np.testing.assert_array_equal(compiled(np.zeros(7, np.float32)), np.ones(7, np.float32))


def test_workers_drop_the_plans_of_evicted_signatures():
    from l3c.runtime.pool import current_pool
    f = _counting(2)
    first = f.lower(np.zeros(3, np.float32))
    f(np.zeros(3, np.float32))
    pool = current_pool()
    first_id = pool._plans[id(first.artifacts["lowered"].plan)].plan_id
    assert any(first_id in w.installed for w in pool._workers)
    earlier = [set(w.installed) - {first_id} for w in pool._workers]   # other tests' plans
    del first
    for n in range(4, 16):                     # 12 new signatures through a cache of 2
        x = np.zeros(n, np.float32)
        f(x)
        np.testing.assert_array_equal(x, np.ones(n, np.float32))
    held = [len(w.installed - e) for w, e in zip(pool._workers, earlier)]
    assert all(first_id not in w.installed for w in pool._workers)
    assert max(held) <= 3, held                # the cached signatures' plans, not all 13
    x = np.zeros(3, np.float32)
    f(x)                                       # evicted: traced and installed again
    np.testing.assert_array_equal(x, np.ones(3, np.float32))
