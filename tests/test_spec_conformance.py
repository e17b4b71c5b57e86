"""Regression tests for gaps a black-box check against docs/SPEC (the public contract) found.

Each case is written from the contract alone, with the public API only. Cases that could crash the
interpreter run in a fresh one (subprocess), so a failure is a failed test, not a dead pytest.
"""
import os
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# A 15 s kernel started in a second thread; close() gives it CLOSE_WAIT (shortened here) before it
# stops the pool under that run.
PRELUDE = textwrap.dedent(f"""
    import os, sys, threading, time
    sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {HERE!r})
    import numpy as np
    import l3c
    import l3c.runtime.pool
    l3c.runtime.pool.CLOSE_WAIT = 0.5

    @l3c.kernel
    def nap(x: l3c.InOut):
        time.sleep(15.0)
        x += 1

    @l3c.kernel
    def add_one(x: l3c.InOut):
        x += 1

    @l3c.jit(chips=2)
    def slow(x):
        nap(x)

    @l3c.jit(chips=2)
    def quick(x):
        add_one(x)

    from _proc import children
""")


def python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_shutdown_from_another_thread_during_a_run_ends_that_run_cleanly():
    """`l3c.shutdown()` while another thread's run is in a kernel used to unmap the control block
    under that run's native wait: the whole process died of SIGSEGV."""
    for how in ("compiled", "eager"):
        r = python(f"""
            result = {{}}
            def run():
                try:
                    (slow if {how!r} == "compiled" else slow.eager)(np.zeros(1))
                    result["r"] = "returned"
                except l3c.L3CError as exc:
                    result["r"] = type(exc).__name__ + ": " + str(exc)
            t = threading.Thread(target=run)
            t.start()
            time.sleep(1.0)
            l3c.shutdown()
            t.join(10)
            assert not t.is_alive()
            print(result["r"])
            x = np.zeros(1)
            quick(x)                                   # the next call works
            assert x[0] == 1
            l3c.shutdown()
            assert children() == [], children()
            print("OK")
        """)
        assert r.returncode == 0, (how, r.returncode, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        assert lines[-1] == "OK", r.stdout + r.stderr
        assert lines[0].startswith("WorkerCrashed") and "l3c.shutdown()" in lines[0], lines[0]


def test_interpreter_exit_with_a_run_in_a_daemon_thread_exits_cleanly():
    """Exit (atexit shutdown) while a daemon thread's run is in a kernel: status 0, no child left."""
    r = python("""
        threading.Thread(target=slow, args=(np.zeros(1),), daemon=True).start()
        time.sleep(1.0)
        print("PIDS", *children(), flush=True)
        sys.exit(0)
    """)
    assert r.returncode == 0, (r.returncode, r.stdout + r.stderr)
    pids = [int(p) for p in r.stdout.split("PIDS", 1)[1].split()]
    assert pids
    deadline = time.monotonic() + 5.0
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)


# ---- `compiled(*args)` takes the arguments `step.lower(*args)` took ----------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import l3c  # noqa: E402


@l3c.kernel
def fill_scaled(k: float, m: int, out: l3c.Out):
    out[...] = k * m


@l3c.jit(chips=1)
def scaled(x, k=2.0, *, m=3):
    out = l3c.empty_like(x)
    fill_scaled(k, m, out)
    return out


def test_compiled_takes_the_arguments_lower_took(tmp_path):
    """`c = step.lower(x)` then `c(x)` failed when `step` had a defaulted static ("takes 3 arguments,
    1 given"), and `c(x, m=10)` after `step.lower(x, m=10)` was a TypeError."""
    x = np.zeros(2)
    assert scaled.lower(x)(x).tolist() == [6.0, 6.0]
    compiled = scaled.lower(x, m=10)
    assert compiled(x, m=10).tolist() == [20.0, 20.0]
    assert compiled(x=x, m=10).tolist() == [20.0, 20.0]
    assert compiled(x, 2.0, 10).tolist() == [20.0, 20.0]
    with pytest.raises(l3c.ScheduleError, match="'m' was 10 when compiled, 3 given"):
        compiled(x)                                      # the default, as `scaled(x)` would use
    with pytest.raises(l3c.ScheduleError, match="unexpected keyword argument 'n'.*\n  expected"):
        compiled(x, n=1)
    with pytest.raises(l3c.ScheduleError, match="multiple values for argument 'x'"):
        compiled(x, x=x)
    path = tmp_path / "scaled.l3c"
    compiled.save(str(path))
    loaded = l3c.load(str(path))                        # the compiled statics are its defaults
    assert loaded(x, 2.0, m=10).tolist() == [20.0, 20.0]
    assert loaded(x).tolist() == [20.0, 20.0]
    with pytest.raises(l3c.ScheduleError, match="takes 3 arguments, 0 given"):
        loaded()


@pytest.mark.parametrize("settings", [dict(chips=0), dict(chips=2.5), dict(chips="2"),
                                      dict(sub_workers=-1), dict(hosts=0), dict(timeout=0),
                                      dict(timeout=-1.0), dict(timeout=float("nan")),
                                      dict(timeout="5")])
def test_bad_jit_settings_are_an_l3c_error_naming_the_line(settings):
    """`chips=0` was a bare ValueError, and `timeout=0` was accepted: every run then timed out and
    killed healthy workers."""
    with pytest.raises(l3c.ConfigError) as info:
        l3c.jit(scaled.fn, **settings)
    assert isinstance(info.value, l3c.L3CError) and isinstance(info.value, ValueError)
    assert f"{os.path.basename(__file__)}:" in str(info.value) and repr(next(iter(
        settings.values()))) in str(info.value)


def test_bad_kernel_worker_is_an_l3c_error_and_infinite_timeout_means_none():
    with pytest.raises(l3c.ConfigError, match=r"test_spec_conformance.py:\d+: .*worker='gpu'"):
        l3c.kernel(worker="gpu")(lambda x: None)
    step = l3c.jit(chips=1, timeout=float("inf"))(scaled.fn)
    assert step.timeout is None and step(np.zeros(2)).tolist() == [6.0, 6.0]


def test_saving_into_a_missing_folder_names_that_path(tmp_path):
    target = tmp_path / "missing" / "step.l3c"
    with pytest.raises(FileNotFoundError) as info:
        scaled.lower(np.zeros(2)).save(str(target))
    assert info.value.filename == str(target) and not (tmp_path / "missing").exists()
