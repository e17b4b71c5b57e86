"""Signals: to a worker (SIGSTOP/SIGCONT, SIGKILL while idle) and to the parent (SIGINT, SIGTERM,
SIGKILL, a handler that raises) during compiled runs.

Parent-signal cases run in a fresh interpreter (subprocess) so that the process that receives the
signal is not pytest; its workers' pids are printed so the test can check they are gone.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import l3c

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@l3c.kernel
def note_pid(out: l3c.Out):
    out[...] = os.getpid()


@l3c.kernel
def nap_then_add(x: l3c.InOut, seconds: float):
    time.sleep(seconds)
    x += 1


@l3c.kernel
def add(x: l3c.In, y: l3c.InOut):
    y += x


def _pids(chips: int) -> list[int]:
    """The pid of the worker of every chip (each pinned task reports its own)."""
    @l3c.jit(chips=chips, timeout=30)
    def who():
        out = l3c.empty((chips,), np.int64)
        for c in range(chips):
            note_pid.on(c)(out[c:c + 1])
        return out
    return who().tolist()


def _stall_program(timeout: float):
    @l3c.jit(chips=2, timeout=timeout)
    def stall(x, y):
        nap_then_add.on(0)(x, 0.05)
        add.on(1)(x, y)              # chip 1 waits for chip 0's step
        return y
    return stall


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_worker_stopped_then_continued_is_a_stall_not_a_crash():
    """SIGSTOP a chip for several of the parent's check slices, then SIGCONT: the run completes
    correctly on the same workers (a stopped process is not an exited one)."""
    stall = _stall_program(timeout=30)
    x, y = np.zeros(4), np.ones(4)
    np.testing.assert_array_equal(stall(x.copy(), y.copy()), [2.0] * 4)       # warm: installed
    before = _pids(2)
    for victim in before:                          # the running chip, then the waiting one
        os.kill(victim, signal.SIGSTOP)
        timer = threading.Timer(0.5, os.kill, (victim, signal.SIGCONT))
        timer.start()
        try:
            np.testing.assert_array_equal(stall(x.copy(), y.copy()), [2.0] * 4)
        finally:
            timer.join()
            os.kill(victim, signal.SIGCONT)
        assert _pids(2) == before, "a stalled worker was replaced"


def test_worker_stopped_past_the_timeout_is_a_timeout_then_replaced():
    stall = _stall_program(timeout=0.6)
    x, y = np.zeros(4), np.ones(4)
    np.testing.assert_array_equal(stall(x.copy(), y.copy()), [2.0] * 4)
    victim = _pids(2)[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        with pytest.raises(l3c.Timeout):
            stall(x, y)
        np.testing.assert_array_equal(x, 0.0)       # a failed run writes nothing back
    finally:
        if _alive(victim):
            os.kill(victim, signal.SIGCONT)
    assert not _alive(victim), "the hung worker was not replaced"
    np.testing.assert_array_equal(stall(x, y), [2.0] * 4)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_worker_killed_while_idle_is_replaced_before_the_next_run(sig):
    """A worker that dies between runs (OOM killer, a stray kill) is not a crash *during* a run:
    the next compiled and eager runs replace it and succeed."""
    stall = _stall_program(timeout=30)
    x, y = np.zeros(4), np.ones(4)
    np.testing.assert_array_equal(stall(x.copy(), y.copy()), [2.0] * 4)
    for runner in (stall, stall.eager):
        victims = _pids(2)
        for pid in victims:
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.01)
        np.testing.assert_array_equal(runner(x.copy(), y.copy()), [2.0] * 4)
        assert not set(_pids(2)) & set(victims)


# ------------------------------------------------------------------------------ parent signals
PRELUDE = textwrap.dedent(f"""
    import os, signal, sys, threading, time
    sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {HERE!r})
    import numpy as np
    import l3c

    @l3c.kernel
    def note_pid(out: l3c.Out):
        out[...] = os.getpid()

    @l3c.kernel
    def nap_then_add(x: l3c.InOut, seconds: float):
        time.sleep(seconds)
        x += 1

    @l3c.kernel
    def add(x: l3c.In, y: l3c.InOut):
        y += x

    @l3c.jit(chips=2, sub_workers=1, timeout=60)
    def who():
        out = l3c.empty((2,), np.int64)
        note_pid.on(0)(out[0:1])
        note_pid.on(1)(out[1:2])
        return out

    @l3c.jit(chips=2, sub_workers=1, static_argnames=("seconds",), timeout=60)
    def step(x, y, seconds):
        nap_then_add.on(0)(x, seconds)
        add.on(1)(x, y)
        return y

    from _proc import children

    def healthy():
        y = step(np.zeros(4), np.ones(4), seconds=0.0)
        assert y.tolist() == [2.0] * 4, y
""")


def python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def gone(pids, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.01)
    return False


def _read_pids(proc: subprocess.Popen) -> list[int]:
    line = proc.stdout.readline()
    assert line.startswith("PIDS"), line + proc.stderr.read()
    return [int(p) for p in line.split()[1:]]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_parent_killed_during_a_run_workers_exit_within_a_second(sig):
    """SIGKILL or SIGTERM (default action) of the parent while a kernel sleeps in a worker and
    another waits for it: every worker exits by itself (PR_SET_PDEATHSIG) within a second."""
    proc = python("""
        healthy()
        print("PIDS", *children(), flush=True)
        step(np.zeros(4), np.ones(4), seconds=30.0)
        print("finished?!", flush=True)
    """)
    try:
        pids = _read_pids(proc)
        assert len(pids) == 4                          # 3 workers and the fork server
        time.sleep(0.3)                                   # the run is under way
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert proc.returncode == -sig
        assert gone(pids, within=1.0), [p for p in pids if _alive(p)]
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_parent_killed_by_sigterm_from_a_pool_started_on_a_thread():
    """PDEATHSIG follows the forking *thread*: a pool first used from a thread that has ended must
    still have live workers, and they must still die with the parent."""
    proc = python("""
        t = threading.Thread(target=healthy)
        t.start(); t.join()
        time.sleep(0.2)
        pids = children()
        healthy()                        # the workers outlived the thread that forked them
        assert children() == pids, (children(), pids)
        print("PIDS", *pids, flush=True)
        step(np.zeros(4), np.ones(4), seconds=30.0)
    """)
    try:
        pids = _read_pids(proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert gone(pids, within=1.0)
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_sigint_during_a_compiled_and_an_eager_run_then_healthy():
    proc = python("""
        healthy()
        before = children()
        for runner in (step, step.eager):
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            x, y = np.zeros(4), np.ones(4)
            try:
                runner(x, y, seconds=30.0)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            assert x.tolist() == [0.0] * 4 and y.tolist() == [1.0] * 4    # nothing written back
            healthy()
        assert len(children()) == 4                 # 3 workers and the fork server
        l3c.shutdown()
        assert children() == []
        print("OK", flush=True)
    """)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.count("interrupted") == 2 and "OK" in out, out + err


def test_a_signal_handler_that_raises_mid_run_leaves_the_pool_usable():
    """Not only KeyboardInterrupt: any exception a signal handler raises between the dispatcher's
    wait slices (SystemExit from a SIGTERM handler, a user's alarm) must abort and recover the run,
    or the still-running workers would answer the next run with the old run's states."""
    proc = python("""
        class Alarm(Exception):
            pass

        def on_alarm(signum, frame):
            raise Alarm()

        signal.signal(signal.SIGALRM, on_alarm)
        healthy()
        for runner in (step, step.eager):
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            try:
                runner(np.zeros(4), np.ones(4), seconds=1.0)
            except Alarm:
                print("alarm", flush=True)
            for _ in range(3):
                healthy()
        print("OK", flush=True)
    """)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.count("alarm") == 2 and "OK" in out, out + err
