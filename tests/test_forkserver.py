"""Workers are forked by a clean, single-threaded fork server (l3c/runtime/forkserver.py), so a pool
started, grown, repaired or re-forked beside other threads never hangs.

Each case runs in a fresh interpreter with a timeout: a hang fails the test instead of freezing the
suite. The busy thread is numpy's multithreaded OpenBLAS (`a @ a`, 256x256): forking a process while
it runs hangs in OpenBLAS's pre-fork handler (a plain `os.fork()` loop does). L3C_CHAOS_SECONDS
lengthens the crash storm for a manual chaos run.
"""
import os
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHAOS_SECONDS = float(os.environ.get("L3C_CHAOS_SECONDS", "10"))

PRELUDE = textwrap.dedent(f"""
    import os, sys, threading, time
    sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {HERE!r})
    import numpy as np
    import l3c
    from _proc import children

    @l3c.kernel
    def add_one(x: l3c.InOut):
        x += 1

    @l3c.kernel
    def die(x: l3c.InOut):
        os._exit(7)

    @l3c.jit(chips=2)
    def bump(x):
        add_one(x)
        add_one(x)

    @l3c.jit(chips=2)
    def crash(x):
        add_one(x)
        die(x)

    @l3c.jit(chips=3, sub_workers=1)
    def wide(x):
        add_one(x)

    stop = threading.Event()
    blas_calls = [0]

    def blas_loop():
        a = np.random.default_rng(0).random((256, 256))
        while not stop.is_set():
            a @ a
            blas_calls[0] += 1

    def busy_blas():
        t = threading.Thread(target=blas_loop, daemon=True)
        t.start()
        while blas_calls[0] < 3:
            time.sleep(0.001)
        return t
""")


def python(code: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def test_twenty_pool_restarts_beside_multithreaded_blas():
    r = python("""
        busy_blas()
        for i in range(20):
            x = np.zeros(4)
            bump(x)
            assert x.tolist() == [2.0] * 4, x
            l3c.shutdown()
            assert children() == [], children()
        stop.set()
        print("OK", blas_calls[0])
    """, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    assert int(r.stdout.split()[1]) > 20          # the BLAS thread really ran beside the restarts


def test_every_fork_path_beside_multithreaded_blas():
    """First start, replacement after a crash, growth, and re-fork for a kernel defined after the
    server was forked, each while another thread runs multithreaded BLAS."""
    r = python("""
        busy_blas()
        x = np.zeros(4)
        bump(x)                                             # first start
        assert x.tolist() == [2.0] * 4
        server = l3c.runtime.pool.get_pool(2, 0, 0).server_pid
        for _ in range(3):                                  # replacement
            try:
                crash(np.zeros(4))
            except l3c.WorkerCrashed as exc:
                assert exc.exitcode == 7, exc
            else:
                raise SystemExit("no WorkerCrashed")
        pool = l3c.runtime.pool.get_pool(2, 0, 0)
        assert pool.server_pid == server                    # replacements came from the same server
        bump(x)
        assert x.tolist() == [4.0] * 4
        wide(x)                                             # growth: 4 workers, new mappings
        assert x.tolist() == [5.0] * 4
        assert pool.slots == 4 and pool.server_pid != server

        @l3c.kernel                                         # registered after the server forked
        def add_ten(x: l3c.InOut):
            x += 10

        @l3c.jit(chips=2)
        def later(x):
            add_ten(x)

        server = pool.server_pid
        later(x)                                            # re-fork for a new kernel
        assert x.tolist() == [15.0] * 4 and pool.server_pid != server
        later.eager(x)
        assert x.tolist() == [25.0] * 4
        assert len(children()) == pool.slots + 1
        l3c.shutdown()
        assert children() == []
        stop.set()
        print("OK")
    """, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr


def test_pool_restarts_beside_a_thread_compiling_with_llvmlite():
    """The fork server is forked while another thread keeps compiling native code (llvmlite's
    global lock taken and released all the time): the server must never inherit it held."""
    r = python("""
        from l3c.runtime import native
        IR = 'define i64 @f(i64 %x) {\\n  %y = add i64 %x, 1\\n  ret i64 %y\\n}\\n'
        compiled = [0]

        def compile_loop():
            while not stop.is_set():
                native.compile_module(IR)
                compiled[0] += 1

        threading.Thread(target=compile_loop, daemon=True).start()
        while compiled[0] < 3:
            time.sleep(0.001)
        for _ in range(10):
            x = np.zeros(4)
            bump(x)
            assert x.tolist() == [2.0] * 4
            try:
                crash(x)                   # a replacement too
            except l3c.WorkerCrashed:
                pass
            l3c.shutdown()
        stop.set()
        print("OK", compiled[0])
    """, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    assert int(r.stdout.split()[1]) > 10


def test_crash_storm_from_three_threads_loading_schedules(tmp_path):
    """Three threads each load a schedule file (a native dispatcher built with llvmlite, outside the
    pool lock) and call it; its kernel kills its worker. Every call is a WorkerCrashed within
    seconds, and the storm ends on time: no worker inherited a lock another thread held."""
    (tmp_path / "storm_kernels.py").write_text(textwrap.dedent("""
        import os
        import l3c

        @l3c.kernel
        def add_one(x: l3c.InOut):
            x += 1

        @l3c.kernel
        def die(x: l3c.InOut):
            os._exit(7)

        @l3c.jit(chips=2)
        def storm(x, n):
            for _ in range(n):
                add_one(x)
            die(x)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT,
                                                       os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "storm.l3c"
    r = python(f"""
        import storm_kernels
        storm_kernels.storm.lower(np.zeros(4), 1).save({str(path)!r})
        busy_blas()
        results = {{"calls": 0, "crashed": 0, "other": [], "slowest": 0.0}}
        lock = threading.Lock()
        end = time.monotonic() + {CHAOS_SECONDS}

        def caller():
            while time.monotonic() < end:
                t = time.monotonic()
                try:
                    l3c.load({str(path)!r})(np.zeros(4), 1)
                    kind = "returned"
                except l3c.WorkerCrashed as exc:
                    kind = "crashed" if exc.exitcode == 7 else repr(exc)
                except Exception as exc:
                    kind = repr(exc)
                with lock:
                    results["calls"] += 1
                    results["slowest"] = max(results["slowest"], time.monotonic() - t)
                    if kind == "crashed":
                        results["crashed"] += 1
                    else:
                        results["other"].append(kind)

        threads = [threading.Thread(target=caller) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join({CHAOS_SECONDS} + 60)
        assert not any(t.is_alive() for t in threads), "a caller froze"
        stop.set()
        l3c.shutdown()
        assert children() == []
        print("CHAOS", results["calls"], results["crashed"], round(results["slowest"], 3),
              results["other"][:3], flush=True)
    """, timeout=CHAOS_SECONDS + 120, env=env)
    assert r.returncode == 0 and "CHAOS" in r.stdout, r.stdout + r.stderr
    print(r.stdout.strip().splitlines()[-1])           # calls, WorkerCrashed, slowest call (s): -s shows it
    calls, crashed, slowest = r.stdout.split("CHAOS", 1)[1].split()[:3]
    assert int(calls) >= 3 and int(crashed) == int(calls), r.stdout
    assert float(slowest) < 10.0, r.stdout


def test_a_worker_that_never_starts_is_forked_again_then_reported(tmp_path):
    """A worker that does not report ready within its bound is killed and forked again; one that
    never does makes the call fail with an L3CError naming it, not a Timeout, and not a hang."""
    r = python("""
        import l3c.runtime.lifecycle as lifecycle
        import l3c.runtime.worker as worker
        lifecycle.START_BOUNDS = (0.3, 0.3, 0.3)
        flag = os.path.join(TMP, "started-once")
        real = worker.prepare_process
        calls = [0]                            # the server calls it first, then each worker it forks

        def slow_first_start(parent):
            real(parent)
            calls[0] += 1
            if calls[0] > 1 and not os.path.exists(flag):
                open(flag, "w").close()
                time.sleep(60)

        worker.prepare_process = slow_first_start
        x = np.zeros(4)
        t = time.monotonic()
        bump(x)                                # the first worker hangs once, then a new one starts
        assert x.tolist() == [2.0] * 4 and time.monotonic() - t < 5
        l3c.shutdown()
        calls[0] = 0

        def never(parent):
            real(parent)
            calls[0] += 1
            if calls[0] > 1:
                time.sleep(60)

        worker.prepare_process = never
        t = time.monotonic()
        try:
            bump(x)
        except l3c.Timeout as exc:
            raise SystemExit(f"Timeout for a call without one: {exc}")
        except l3c.L3CError as exc:
            assert "did not start" in str(exc), exc
            print("refused after", round(time.monotonic() - t, 1), "s:", exc, flush=True)
        else:
            raise SystemExit("no error")
        assert time.monotonic() - t < 5
        worker.prepare_process = real
        bump(x)                                # a later call starts a pool normally
        assert x.tolist() == [4.0] * 4
        l3c.shutdown()
        assert children() == []
        print("OK")
    """.replace("TMP", repr(str(tmp_path))), timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout and "did not start" in r.stdout, r.stdout + r.stderr


def test_a_killed_fork_server_is_replaced():
    r = python("""
        import signal
        x = np.zeros(4)
        bump(x)
        pool = l3c.runtime.pool.get_pool(2, 0, 0)
        server = pool.server_pid
        os.kill(server, signal.SIGKILL)
        try:
            crash(x)                           # its replacement needs a server
        except l3c.WorkerCrashed:
            pass
        bump(x)
        assert pool.server_pid not in (0, server)
        l3c.shutdown()
        assert children() == []
        print("OK")
    """, timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def test_exit_with_a_run_in_a_daemon_thread_is_prompt_and_quiet():
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent("""
        @l3c.kernel
        def nap(x: l3c.InOut):
            time.sleep(30)

        @l3c.jit(chips=2)
        def slow(x):
            nap(x)

        threading.Thread(target=slow, args=(np.zeros(1),), daemon=True).start()
        time.sleep(1.0)
        print("PIDS", *children(), flush=True)
        sys.exit(0)
    """)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        exiting = time.monotonic()
        proc.wait(timeout=30)
        took = time.monotonic() - exiting
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.communicate()
    assert line.startswith("PIDS") and proc.returncode == 0, line + err
    assert took < 3.0, took
    assert "Traceback" not in err and "Exception" not in err, err
    pids = [int(p) for p in line.split()[1:]]
    deadline = time.monotonic() + 5
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)
