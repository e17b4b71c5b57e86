"""Several hosts over many calls: agreement on every call, failures on one rank, and how ranks end.

Real `mpiexec -n 2` / `-n 3` jobs (tests/_dist_calls_driver.py); each takes a few seconds. Skipped
when mpi4py or mpiexec is missing.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from test_dist import HAVE_MPI, ROOT, _alive, results

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_dist_calls_driver.py")
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and mpiexec (pip install .[dist])")


def job(n: int, *args: str, timeout: float = 90, env: dict | None = None) -> str:
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    proc = subprocess.run(["mpiexec", "-n", str(n), sys.executable, DRIVER, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env)
    return proc.stdout + proc.stderr[-3000:]


def assert_all_ok(out: str, n: int, names: list[str]) -> None:
    found = results(out)
    for r in range(n):
        for name in names:
            ok, detail = found.get((r, name), (False, "missing: " + out[-3000:]))
            assert ok, f"rank {r} {name}: {detail}"
        assert f"DONE {r}" in out, out[-3000:]


@needs_mpi
def test_two_thousand_calls_in_one_run_all_correct():
    """The data tags of each call's transfers wrap around within the communicator's tag limit
    (MPICH: 511 calls), so call 512 and every later one works."""
    assert_all_ok(job(2, "many", "2000"), 2, ["many"])


@needs_mpi
def test_kernel_errors_mixed_with_good_calls_past_the_tags_wrap():
    """A failed call leaves receives posted and sends unmatched: they are cancelled and purged, so
    no later run (the tags come round again after 511 calls) takes a stale message."""
    assert_all_ok(job(2, "mixed", "1200"), 2, ["mixed"])


@needs_mpi
def test_calls_that_differ_after_caching_raise_on_every_rank_and_the_next_call_works():
    out = job(2, "diverge")
    assert_all_ok(out, 2, ["cache_a2", "cache_a3", "static", "after_static", "cache_22", "shape",
                           "after_shape", "one_cached", "after_one_cached", "function",
                           "after_function"])
    found = results(out)
    assert "alpha=2.0) but host 1 called" in found[0, "static"][1]
    assert "float64[2, 2]" in found[1, "shape"][1]


@needs_mpi
def test_a_failure_before_the_call_on_one_rank_raises_everywhere_and_later_calls_work():
    out = job(2, "localfail")
    assert_all_ok(out, 2, ["trace_error_rank1", "good0", "good1", "good2", "bad_argument_rank0",
                           "good_after", "bad_keyword_rank1", "good_last"])
    found = results(out)
    assert found[1, "trace_error_rank1"][1].startswith("TraceError")
    assert "HostFailed" in found[0, "trace_error_rank1"][1] and "host 1" in found[0, "trace_error_rank1"][1]
    assert "host 0's call failed before it started (ScheduleError" in found[1, "bad_argument_rank0"][1]


@needs_mpi
def test_calls_that_differ_on_one_of_three_ranks():
    out = job(3, "diverge")
    assert_all_ok(out, 3, ["static", "after_static", "shape", "after_shape", "one_cached",
                           "after_one_cached"])


@needs_mpi
def test_a_rank_that_exits_early_is_reported_as_exited_at_once():
    """Rank 1 makes one call fewer and exits normally: rank 0's extra call raises HostFailed
    "exited" within seconds (not after the silence window), and the job ends."""
    t0 = time.monotonic()
    out = job(2, "exited", env={"L3C_REMOTE_SILENCE": "30"})
    assert time.monotonic() - t0 < 25, out
    found = results(out)
    for name in ("exited", "later"):
        ok, detail = found.get((0, name), (False, out))
        assert ok and "exited" in detail, detail
    assert "DONE 0" in out and "DONE 1" in out


@needs_mpi
def test_errors_name_global_chips_and_the_host_on_every_rank():
    assert_all_ok(job(2, "chips"), 2, ["chips", "crash", "crash_after"])


@needs_mpi
def test_after_a_timeout_only_the_hung_host_is_blamed_and_replaces_workers():
    out = job(3, "hang", "3", timeout=120)
    assert_all_ok(out, 3, ["before", "hang", "replaced", "after"])


@needs_mpi
def test_survivors_of_a_killed_rank_exit_by_themselves_with_the_recommended_launcher(tmp_path):
    """docs/distributed.md's launcher command; host 1's rank is SIGKILLed mid-run. The survivor
    raises HostLost, a later call fails at once, and the job ends by itself (MPI_Finalize does not
    wait for the dead rank) well within the timeout, leaving no MPICH segment behind."""
    marker, pidfile = tmp_path / "running", tmp_path / "pid"
    env = dict(os.environ, PYTHONPATH=ROOT, L3C_TEST_MARKER=str(marker),
               L3C_TEST_PIDFILE=str(pidfile), L3C_REMOTE_SILENCE="2")
    job_ = subprocess.Popen(["mpiexec", "-disable-auto-cleanup", "-n", "2", "sh", "-c",
                             'trap : USR1; "$0" "$@"; exit $?', sys.executable, DRIVER, "lost"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and job_.poll() is None, "host 1 never ran"
            time.sleep(0.02)
        pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
        os.kill(pids[1], signal.SIGKILL)
        out, err = job_.communicate(timeout=20)        # ends by itself, or the test fails here
    finally:
        if job_.poll() is None:
            job_.kill()
            job_.communicate()
    assert not _alive(pids[0])
    found = results(out)
    for name in ("lost", "later"):
        ok, detail = found.get((0, name), (False, out + err[-2000:]))
        assert ok, detail
    assert "DONE 0" in out
    mapped = [line.split()[2:] for line in out.splitlines() if line.startswith("SHM 0")]
    assert mapped and mapped[0], out                 # MPICH's segments the survivor had mapped
    left = [path for path in mapped[0] if os.path.exists(path)]
    left += [n for n in os.listdir("/dev/shm") if n.startswith(f"mpich_shm_{pids[1]:x}_")]
    assert not left, left                            # nor the dead rank's own files


@needs_mpi
def test_profile_of_a_two_host_function_is_one_timeline_with_every_host():
    assert_all_ok(job(2, "profile"), 2, ["profile", "after_profile"])


@needs_mpi
def test_l3c_profile_under_mpiexec_writes_one_trace_of_every_host(tmp_path):
    (tmp_path / "two_hosts.py").write_text(TWO_HOSTS)
    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "l3c", "profile",
                           "two_hosts.py:step", "--arg", "f32[4,4]", "--arg", "f32[4,4]", "-o",
                           "trace.json"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("wrote trace.json") == 1              # rank 0 writes it
    import json
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert {e["pid"] for e in trace["traceEvents"] if e["ph"] == "X"} == {1, 2}
    assert any(e.get("cat") == "transfer" for e in trace["traceEvents"])


# ------------------------------------------------------------------ without a launcher
TWO_HOSTS = (
    "import numpy as np, l3c\n"
    "@l3c.kernel\ndef mm(a: l3c.In, b: l3c.In, c: l3c.Out):\n    c[...] = a @ b\n"
    "@l3c.kernel\ndef relu(a: l3c.In, b: l3c.Out):\n    b[...] = np.maximum(a, 0)\n"
    "@l3c.jit(hosts=2, chips=1)\ndef step(x, w):\n"
    "    h = l3c.empty(x.shape, x.dtype)\n"
    "    l3c.group(mm, [(x[i::2], w, h[i::2]) for i in range(2)])\n"
    "    t = l3c.empty_like(h)\n    relu(h, t)\n    return t\n")
NO_LAUNCHER = {k: v for k, v in os.environ.items()
               if k not in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS",
                            "HYDRA_CONTROL_FD", "PMI_RANK")}


def test_lower_of_a_two_host_function_needs_no_launcher(tmp_path):
    """Nothing runs in `lower`, so it plans for both hosts without MPI (a call still needs it)."""
    (tmp_path / "two_hosts.py").write_text(TWO_HOSTS)
    code = ("import numpy as np, two_hosts, sys\n"
            "c = two_hosts.step.lower(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))\n"
            "print(sorted({c.graph.nodes[n]['host'] for n in c.graph.nodes}))\n"
            "print('mpi4py.MPI' in sys.modules)\n"
            "try:\n    c(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=dict(NO_LAUNCHER, PYTHONPATH=ROOT))
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["[0, 1]", "False"], proc.stdout + proc.stderr
    assert lines[2].startswith("L3CError") and "mpiexec -n 2" in lines[2], lines


def test_dot_dump_of_a_two_host_function_shows_hosts_and_transfers(tmp_path):
    (tmp_path / "two_hosts.py").write_text(TWO_HOSTS)
    proc = subprocess.run([sys.executable, "-m", "l3c", "dump-ir", "two_hosts.py:step", "--arg",
                           "f32[4,4]", "--arg", "f32[4,4]", "--format", "dot"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=dict(NO_LAUNCHER, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    assert "chip 1 host 1" in proc.stdout and "chip 0 host 0" in proc.stdout
    assert 't0 -> t2 [label="x0 host 0 -> host 1, 32 B"' in proc.stdout


def test_run_of_a_two_host_file_without_a_launcher_says_the_command_to_use(tmp_path):
    (tmp_path / "two_hosts.py").write_text(TWO_HOSTS)
    env = dict(NO_LAUNCHER, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-m", "l3c", "compile", "two_hosts.py:step", "--arg", "f32[4,4]",
                    "--arg", "f32[4,4]", "-o", "s.l3c"], check=True, timeout=120, cwd=tmp_path,
                   env=env)
    import numpy as np
    np.savez(tmp_path / "in.npz", arg0=np.ones((4, 4), np.float32), arg1=np.ones((4, 4), np.float32))
    proc = subprocess.run([sys.executable, "-m", "l3c", "run", "s.l3c", "--input", "in.npz"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 1 and "mpiexec -n 2 l3c run s.l3c --input in.npz" in proc.stderr, \
        proc.stderr


@needs_mpi
def test_one_rank_for_two_hosts_says_1_rank():
    code = ("import numpy as np, l3c\n"
            "f = l3c.jit(hosts=2, chips=1)(lambda x: x)\n"
            "try:\n    f(np.ones(2))\nexcept l3c.L3CError as e:\n    print('ERR', e)\n")
    proc = subprocess.run(["mpiexec", "-n", "1", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert "started 1 rank;" in proc.stdout, proc.stdout + proc.stderr


def test_multihost_benchmark_help_prints_help_without_starting_mpiexec():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "multihost.py"),
                           "--help"], capture_output=True, text=True, timeout=60,
                          env=dict(NO_LAUNCHER, PYTHONPATH=ROOT, PATH="/usr/bin:/bin"))
    assert proc.returncode == 0 and proc.stdout.startswith("usage: multihost.py"), proc.stderr
    assert "--calls" in proc.stdout and "mpiexec" not in proc.stderr
