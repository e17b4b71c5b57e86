"""`l3c run` and the top-level command: --version, --timeout, Ctrl-C (exit 130), inputs that are not
.npz files, ambiguous input names, and dict results that keep their keys. Real subprocesses."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import l3c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SOURCE = """\
    import os, time
    import l3c

    @l3c.kernel
    def combine(k: int, x: l3c.In, y: l3c.In, out: l3c.Out):
        out[...] = k * x + y

    @l3c.kernel
    def nap(marker: str, seconds: float, x: l3c.In, out: l3c.Out):
        open(marker, "w").close()
        time.sleep(seconds)
        out[...] = x

    @l3c.jit(chips=1)
    def h(k, x, y):
        out = l3c.empty_like(x)
        combine(k, x, y, out)
        twice = l3c.empty_like(x)
        combine(2, x, y, twice)
        return {"sum": out, "parts": (x, twice)}

    @l3c.jit(chips=1)
    def slow(marker, seconds, x):
        out = l3c.empty_like(x)
        nap(marker, seconds, x, out)
        return out
    """


def run_l3c(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "l3c", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_line_error(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l3c: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "runmod.py").write_text(textwrap.dedent(SOURCE))
    schedule = tmp_path / "h.l3c"
    result = run_l3c("compile", "runmod.py:h", "--arg", "3", "--arg", "f32[4]", "--arg", "f32[4]",
                     "-o", str(schedule), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path, schedule


def test_version():
    result = run_l3c("--version", cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == f"l3c {l3c.__version__}"


def test_dict_results_keep_their_keys(project):
    tmp_path, schedule = project
    x, y = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    np.savez(tmp_path / "in.npz", arg1=x, arg2=y)
    result = run_l3c("run", str(schedule), "--input", "in.npz", "--output", "out.npz",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["sum: float32[4]", "parts.0: float32[4]",
                                          "parts.1: float32[4]"]
    with np.load(tmp_path / "out.npz") as out:
        assert out.files == ["sum", "parts.0", "parts.1"]
        np.testing.assert_array_equal(out["sum"], 3 * x + y)
        np.testing.assert_array_equal(out["parts.0"], x)
        np.testing.assert_array_equal(out["parts.1"], 2 * x + y)


def test_an_npz_fitting_two_namings_is_refused(project):
    tmp_path, schedule = project
    x, y = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    np.savez(tmp_path / "both.npz", arg0=x, arg1=y, arg2=y, x=x, y=y)
    one_line_error(run_l3c("run", str(schedule), "--input", "both.npz", cwd=tmp_path),
                   "both.npz fits more than one naming", "by position", "by parameter name",
                   "counting array parameters only")


@pytest.mark.parametrize("content, fragment", [
    (b"just some text\n", "is not an .npz file"),
    (None, "is a .npy file (one array)"),
    (b"PK\x03\x04 broken zip", "is a damaged .npz file"),
    (b"", "is not an .npz file"),
])
def test_inputs_that_are_not_npz_say_what_the_file_is(project, content, fragment):
    tmp_path, schedule = project
    path = tmp_path / "in.npz"
    if content is None:
        with open(path, "wb") as f:
            np.save(f, np.zeros(4, np.float32))
    else:
        path.write_bytes(content)
    one_line_error(run_l3c("run", str(schedule), "--input", "in.npz", cwd=tmp_path),
                   f"in.npz {fragment}")


def test_object_arrays_are_never_unpickled(project):
    tmp_path, schedule = project
    np.savez(tmp_path / "obj.npz", arg1=np.array([{"a": 1}], dtype=object), arg2=np.ones(4))
    one_line_error(run_l3c("run", str(schedule), "--input", "obj.npz", cwd=tmp_path),
                   "holds an object array")


def _compile_slow(tmp_path, seconds):
    schedule = tmp_path / "slow.l3c"
    marker = str(tmp_path / "started")
    result = run_l3c("compile", "runmod.py:slow", "--arg", repr(marker), "--arg", str(seconds),
                     "--arg", "f64[4]", "-o", str(schedule), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    np.savez(tmp_path / "x.npz", arg2=np.ones(4))
    return schedule, marker


def test_run_timeout(project):
    tmp_path, _ = project
    schedule, _ = _compile_slow(tmp_path, 30.0)
    start = time.monotonic()
    one_line_error(run_l3c("run", str(schedule), "--input", "x.npz", "--timeout", "0.5",
                           cwd=tmp_path), "0.5")
    assert time.monotonic() - start < 20
    one_line_error(run_l3c("run", str(schedule), "--input", "x.npz", "--timeout", "0",
                           cwd=tmp_path), "--timeout must be a number of seconds > 0")


def test_interrupted_run_exits_130(project):
    tmp_path, _ = project
    schedule, marker = _compile_slow(tmp_path, 60.0)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "l3c", "run", str(schedule), "--input",
                             "x.npz"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(marker):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the kernel never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip() == "l3c: error: interrupted"
