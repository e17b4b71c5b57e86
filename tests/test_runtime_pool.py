"""The worker pool with hand-built plans: real forked processes, real shared memory, real futexes."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _runtime_kernels as K  # noqa: E402

from l3c import registry  # noqa: E402
from l3c.errors import KernelError, L3CError, Timeout, WorkerCrashed  # noqa: E402
from l3c.runtime import context, layout  # noqa: E402
from l3c.runtime.plan import Plan, Step, View  # noqa: E402
from l3c.runtime.pool import get_pool, shutdown  # noqa: E402


def key(fn):
    return registry.register(fn, f"_runtime_kernels:{fn.__name__}")


def vec(offset, n, dtype="float64"):
    size = np.dtype(dtype).itemsize
    return View(offset, (n,), (size,), dtype)


def run(plan, timeout=20.0):
    pool = get_pool(plan.chips, plan.sub_workers, plan.arena_bytes)
    with pool.lock:
        pool.run_plan(pool.install(plan), plan, timeout)
    return pool


def chain_plan():
    """chip 0 adds one, chip 1 waits for it and adds one, chip 0 waits for chip 1 and adds one."""
    v = vec(0, 8)
    q0 = (Step(0, key(K.add_one), (v,), signal=True), Step(2, key(K.add_one), (v,), waits=((1, 1),)))
    q1 = (Step(1, key(K.add_one), (v,), waits=((0, 1),), signal=True),)
    return Plan(2, 0, (q0, q1), 64), v


def check_healthy():
    plan, v = chain_plan()
    pool = get_pool(2, 0, 64)
    with pool.lock:
        pool.array(v)[:] = 0
        pool.run_plan(pool.install(plan), plan, 20.0)
        assert pool.array(v).tolist() == [3.0] * 8
        assert all(pool.state(s) == layout.ST_FINISHED for s in range(2))


def test_registry_keys_and_resolution():
    def f():
        return 1

    def g():
        return 2
    k1 = registry.register(f, "tests.some:kern")
    assert registry.register(f, "tests.some:kern") == k1 == "tests.some:kern"
    gen = registry.generation()
    k2 = registry.register(g, "tests.some:kern")
    assert k2 == "tests.some:kern#2" and registry.generation() == gen + 1
    assert registry.resolve(k2)() == 2
    registry.register(K.add_one, "_runtime_kernels:add_one")
    assert registry.resolve("_runtime_kernels:add_one") is K.add_one
    with pytest.raises(LookupError, match="not an l3c kernel"):   # importable, but not a kernel
        registry.resolve("os.path:join")
    with pytest.raises(LookupError):
        registry.resolve("no_such_module_xyz:f")


def test_context_defaults_outside_workers():
    assert (context.chip_id(), context.group_rank(), context.group_size(), context.host_id()) == (0, 0, 1, 0)


def test_dependent_steps_across_workers_repeat():
    plan, v = chain_plan()
    pool = get_pool(2, 0, 64)
    with pool.lock:
        pool.array(v)[:] = 0
        plan_id = pool.install(plan)
        for i in range(1, 6):
            pool.run_plan(plan_id, plan, 20.0)
            assert pool.array(v).tolist() == [3.0 * i] * 8


def test_context_inside_kernels_and_separate_processes():
    out = View(0, (3, 4), (32, 8), "int64")
    row = [View(32 * i, (4,), (8,), "int64") for i in range(3)]
    w = key(K.whoami)
    plan = Plan(2, 1, ((Step(0, w, (row[0],), group_rank=0, group_size=2),),
                       (Step(1, w, (row[1],), group_rank=1, group_size=2),),
                       (Step(2, w, (row[2],)),)), 96)
    pool = run(plan)
    with pool.lock:
        got = pool.array(out).copy()
    assert got[:, :3].tolist() == [[0, 0, 2], [1, 1, 2], [0, 0, 1]]   # sub worker 0 is chip_id 0
    pids = set(got[:, 3].tolist())
    assert len(pids) == 3 and os.getpid() not in pids
    assert pool.slots >= 3 and pool.chips >= 2 and pool.sub_workers >= 1


def test_chip_globals_are_isolated():
    out = View(0, (2,), (8,), "int64")
    one = [View(8 * i, (1,), (8,), "int64") for i in range(2)]
    plan = Plan(2, 0, ((Step(0, key(K.set_global), (41,)), Step(1, key(K.read_global), (one[0],))),
                       (Step(2, key(K.read_global), (one[1],), waits=((0, 1),)),)), 16)
    plan = Plan(2, 0, (plan.queues[0][:1] + (Step(1, key(K.read_global), (one[0],), signal=True),),
                       plan.queues[1]), 16)
    pool = run(plan)
    with pool.lock:
        assert pool.array(out).tolist() == [41, 0]
    assert K.STATE["value"] == 0


def test_independent_steps_run_concurrently():
    # each member spins until every member has raised its flag: only concurrent execution finishes
    flags = View(0, (4,), (8,), "int64")
    out = View(64, (2,), (8,), "int64")
    h = key(K.handshake)
    plan = Plan(2, 0, ((Step(0, h, (flags, out)),), (Step(1, h, (flags, out)),)), 128)
    pool = get_pool(2, 0, 128)
    with pool.lock:
        pool.array(flags)[:] = 0
        pool.array(out)[:] = 0
        pool.run_plan(pool.install(plan), plan, 30.0)
        assert pool.array(out).tolist() == [1, 1]


def fault_plan(fn):
    """chip 0: fault; chip 1 waits for chip 0 then adds one (must never start)."""
    v = vec(0, 4)
    q0 = (Step(7, key(fn), (v,), signal=True, loc="user.py:12"),)
    q1 = (Step(8, key(K.add_one), (v,), waits=((0, 1),)),)
    return Plan(2, 0, (q0, q1), 32), v


def test_kernel_error_then_healthy():
    plan, v = fault_plan(K.boom)
    pool = get_pool(2, 0, 64)
    with pool.lock:
        pool.array(v)[:] = 0
        with pytest.raises(KernelError) as info:
            pool.run_plan(pool.install(plan), plan, 20.0)
        assert pool.array(v).tolist() == [0.0] * 4           # the dependent step never ran
    e = info.value
    assert e.kernel == "_runtime_kernels:boom" and e.task == 7 and e.loc == "user.py:12"
    assert "ValueError: boom on chip 0" in e.remote_traceback and "def boom" not in e.remote_traceback
    assert "_runtime_kernels.py" in e.remote_traceback
    check_healthy()


@pytest.mark.parametrize("fn,sig,code", [(K.die_signal, 9, None), (K.die_exit, None, 7)])
def test_worker_crash_then_healthy(fn, sig, code):
    plan, v = fault_plan(fn)
    pool = get_pool(2, 0, 64)
    with pool.lock:
        old = pool._workers[0].pid
        with pytest.raises(WorkerCrashed) as info:
            pool.run_plan(pool.install(plan), plan, 20.0)
        assert pool._workers[0].pid != old and pool._alive(0)
    assert (info.value.worker, info.value.signal, info.value.exitcode) == (0, sig, code)
    check_healthy()


def test_timeout_replaces_hung_worker_then_healthy():
    plan, v = fault_plan(K.hang)
    pool = get_pool(2, 0, 64)
    with pool.lock:
        old = pool._workers[0].pid
        with pytest.raises(Timeout):
            pool.run_plan(pool.install(plan), plan, 0.5)
        assert pool._workers[0].pid != old
        with pytest.raises(ChildProcessError):
            os.waitpid(old, os.WNOHANG)                        # the hung one was reaped
    check_healthy()


def test_kernel_defined_after_fork_restarts_pool():
    check_healthy()
    pool = get_pool(2, 0, 64)
    gen = pool.generation
    old = pool._workers[0].pid
    ns = {}
    exec("def late(x):\n    x *= 2\n", ns)
    ns["late"].__module__ = "__main__"
    k = registry.register(ns["late"], "__main__:late_kernel_for_test")
    v = vec(0, 2)
    plan = Plan(1, 0, ((Step(0, k, (v,)),),), 16)
    with pool.lock:
        pool.array(v)[:] = 3
        pool.run_plan(pool.install(plan), plan, 20.0)
        assert pool.array(v).tolist() == [6.0, 6.0]
    assert pool.generation == gen and pool._workers[0].pid != old   # re-forked, same arena


def test_unresolvable_kernel_is_a_clear_error():
    plan = Plan(1, 0, ((Step(0, "no_such_module_abc:kern", (1,)),),), 16)
    pool = get_pool(1, 0, 16)
    with pool.lock:
        with pytest.raises(L3CError, match="no_such_module_abc:kern"):
            pool.install(plan)
    check_healthy()


def test_pool_grows_and_maps_sub_worker_slots():
    w = key(K.whoami)
    small = Plan(1, 1, ((), (Step(0, w, (View(0, (4,), (8,), "int64"),)),)), 32)
    pool = get_pool(3, 1, 64)
    assert pool.chips >= 3 and pool.pool_slot(small, 1) == pool.chips
    with pool.lock:
        pool.run_plan(pool.install(small), small, 20.0)
        assert pool.array(View(0, (3,), (8,), "int64")).tolist() == [0, 0, 1]


def test_shutdown_is_idempotent_and_restartable():
    check_healthy()
    shutdown()
    shutdown()
    check_healthy()
