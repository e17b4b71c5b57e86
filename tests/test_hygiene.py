"""No child process, fd or /dev/shm entry outlives shutdown() or the interpreter; Ctrl-C is clean.

Each case runs in a fresh interpreter (subprocess) so the fd table and the children are its own."""
import os
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PRELUDE = textwrap.dedent(f"""
    import ctypes, os, sys, time, signal, threading
    sys.path.insert(0, {HERE!r}); sys.path.insert(0, {ROOT!r})
    import numpy as np
    import _runtime_kernels as K
    from l3c import registry
    from l3c.runtime.plan import Plan, Step, View
    from l3c.runtime.pool import get_pool, shutdown
    from _proc import children, fds

    def key(fn):
        return registry.register(fn, "_runtime_kernels:" + fn.__name__)

    v = View(0, (4,), (8,), "float64")
    add = Plan(2, 1, ((Step(0, key(K.add_one), (v,), signal=True),),
                      (Step(1, key(K.add_one), (v,), waits=((0, 1),), signal=True),),
                      (Step(2, key(K.add_one), (v,), waits=((1, 1),)),)), 32)

    def run(plan, timeout=20.0):
        pool = get_pool(plan.chips, plan.sub_workers, plan.arena_bytes)
        with pool.lock:
            pool.run_plan(pool.install(plan), plan, timeout)
            pids = list((ctypes.c_int32 * pool.slots).from_address(pool.pids_address))
            return pool.array(v).copy(), pids + [pool.server_pid]   # the workers and the fork server
""")


def python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def gone(pids, within=5.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)]
        if not alive:
            return True
        time.sleep(0.02)
    return False


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _shm() -> set:
    """/dev/shm entries, less MPICH's and UCX's: MPI runs of other processes on the machine come
    and go."""
    return {name for name in os.listdir("/dev/shm")
            if not name.startswith(("mpich_shm_", "ucx_shm_"))}


def test_shutdown_leaves_no_child_fd_or_shm():
    shm_before = _shm()
    r = python("""
        from l3c.runtime import sync; sync.ensure()
        fd0 = fds()
        assert children() == []
        values, pids = run(add)
        assert values.tolist() == [3.0] * 4, values
        assert sorted(pids) == children() and len(pids) == 4
        assert len(fds()) > len(fd0)                # the pool holds its pipes while it runs
        shutdown(); shutdown()
        assert children() == [], children()
        assert fds() == fd0, (fds(), fd0)
        values, pids2 = run(add)                   # a fresh pool starts on demand
        assert values.tolist() == [3.0] * 4 and not set(pids) & set(pids2)
        shutdown()
        assert children() == [] and fds() == fd0
        print("OK", *pids)
    """)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    assert gone([int(p) for p in r.stdout.split()[1:]])
    assert _shm() == shm_before


def test_interpreter_exit_stops_workers():
    r = python("""
        values, pids = run(add)
        print("OK", *pids)
    """)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    assert gone([int(p) for p in r.stdout.split()[1:]])


def test_workers_die_with_a_killed_parent():
    r = python("""
        values, pids = run(add)
        print("OK", *pids, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert r.returncode == -9 and r.stdout.startswith("OK"), r.stdout + r.stderr
    assert gone([int(p) for p in r.stdout.split()[1:]], within=3.0)


def test_ctrl_c_during_a_run_then_healthy():
    r = python("""
        hang = Plan(2, 0, ((Step(0, key(K.hang), (v,), signal=True),),
                           (Step(1, key(K.add_one), (v,), waits=((0, 1),)),)), 32)
        pool = get_pool(2, 1, 32)
        with pool.lock:
            pool.array(v)[:] = 0
        threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT)).start()
        t = time.monotonic()
        try:
            run(hang, timeout=None)
        except KeyboardInterrupt:
            print("interrupted after", round(time.monotonic() - t, 2), flush=True)
        else:
            raise SystemExit("no KeyboardInterrupt")
        values, pids = run(add)
        assert values.tolist() == [3.0] * 4, values
        assert len(children()) == 4
        # the same through the eager runtime
        from l3c.runtime.eager import Call, run_calls
        calls = [Call(0, key(K.hang), (v,), "chip", ((0, 0, 32, True),))]
        threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT)).start()
        pool = get_pool(2, 1, 32)
        try:
            with pool.lock:
                run_calls(pool, calls, 2, 0)
        except KeyboardInterrupt:
            print("eager interrupted", flush=True)
        values, pids = run(add)
        assert values.tolist() == [6.0] * 4, values    # +3 per healthy run, nothing from the hangs
        shutdown()
        assert children() == []
        print("OK")
    """)
    assert r.returncode == 0 and "OK" in r.stdout and "eager interrupted" in r.stdout, r.stdout + r.stderr


SHARED = textwrap.dedent("""
    import gc
    import l3c

    @l3c.kernel
    def bump(x: l3c.InOut):
        x += 1

    @l3c.jit(chips=2)
    def step(x):
        bump(x)

    def mapped(pids):
        n = 0
        for pid in pids:
            with open(f"/proc/{pid}/maps") as f:
                n += sum("l3c-shared" in line for line in f)
        return n
""")


def test_shared_memory_mapped_by_workers_leaves_nothing_after_shutdown_and_release():
    r = python(SHARED + textwrap.dedent("""
        from l3c.runtime.pool import current_pool
        step(np.zeros(64))                          # what stays open once per process
        l3c.shutdown()
        fd0 = fds()
        s = l3c.shared(np.zeros((64, 64)))
        step(s[3]); step(s[:, 5])
        pool = current_pool()
        pids = [w.pid for w in pool._workers] + [pool.server_pid]
        assert mapped(pids) == 1 and mapped(["self"]) == 1
        l3c.shutdown()
        assert children() == []
        assert len(fds()) == len(fd0) + 1           # the shared array's own descriptor
        step(s[3])                                  # valid across the restart
        assert s[3, 0] == 2 and s[0, 5] == 1 and s[3, 5] == 3
        pids = [w.pid for w in current_pool()._workers]
        del s
        gc.collect()
        deadline = time.monotonic() + 5
        while mapped(pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mapped(pids) == 0 and mapped(["self"]) == 0
        l3c.shutdown()
        assert children() == [] and fds() == fd0, (fds(), fd0)
        print("OK", *pids)
    """))
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    assert gone([int(p) for p in r.stdout.split()[1:]])


def test_exit_and_sigkill_with_shared_memory_mapped_in_workers():
    shm_before = _shm()
    for ending in ("", "os.kill(os.getpid(), signal.SIGKILL)"):
        r = python(SHARED + textwrap.dedent(f"""
            from l3c.runtime.pool import current_pool
            s = l3c.shared(np.zeros(1 << 20))
            t = l3c.shared(np.zeros(8))
            step(s); step(t)
            del t                                   # released while the process ends
            pool = current_pool()
            print("OK", *[w.pid for w in pool._workers], pool.server_pid, flush=True)
            {ending}
        """))
        assert r.returncode == (-9 if ending else 0), r.stdout + r.stderr
        assert r.stdout.startswith("OK") and (ending or not r.stderr), r.stdout + r.stderr
        assert gone([int(p) for p in r.stdout.split()[1:]], within=3.0)
    assert _shm() == shm_before
