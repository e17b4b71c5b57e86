"""`l3c.ArraySpec`: lowering from shapes and dtypes alone, in the API and in the CLI, where a child
process with a capped address space proves that nothing of the given shape is allocated."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import l3c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDRESS_SPACE_LIMIT = 3 << 30       # far below the 40 GB one f32[100000,100000] array would take

PROGRAM = textwrap.dedent("""
    import l3c

    @l3c.kernel
    def scale(x: l3c.In, out: l3c.Out):
        out[...] = 2 * x

    @l3c.kernel
    def add(x: l3c.In, y: l3c.InOut):
        y += x

    @l3c.jit(chips=2)
    def step(x, k: int = 1):
        h = l3c.empty(x.shape, x.dtype)
        n = x.shape[0] // 2
        l3c.group(scale, [(x[:n], h[:n]), (x[n:], h[n:])])
        out = l3c.empty(x.shape, x.dtype)
        scale(h, out)
        for _ in range(k):
            add(x, out)
        return out
""")


@l3c.kernel
def scale(x: l3c.In, out: l3c.Out):
    out[...] = 2 * x


@l3c.kernel
def add(x: l3c.In, y: l3c.InOut):
    y += x


@l3c.jit(chips=2)
def step(x, w):
    h = l3c.empty(x.shape, x.dtype)
    l3c.group(scale, [(x[i::2], h[i::2]) for i in range(2)])
    add(w, h)
    return h


def test_lower_with_specs_equals_lower_with_arrays_and_runs_with_arrays():
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    w = np.ones((6, 4), np.float32)
    spec = step.lower(l3c.ArraySpec((6, 4), np.float32), l3c.ArraySpec([6, 4], "float32"))
    assert step.cache_key(l3c.ArraySpec((6, 4), np.float32), w) == step.cache_key(x, w)
    assert spec is step.lower(x, w)                   # one signature, one compiled entry
    np.testing.assert_array_equal(spec(x, w), step.eager(x, w))
    np.testing.assert_array_equal(spec(x, w), 2 * x + w)


def test_a_spec_of_another_dtype_is_another_signature():
    a = step.lower(l3c.ArraySpec((6, 4), np.float64), l3c.ArraySpec((6, 4), np.float64))
    assert a.program.tensors[0].dtype == "float64"
    assert step.cache_key(l3c.ArraySpec((6, 4), np.float64), np.ones((6, 4))) != \
        step.cache_key(np.ones((6, 4), np.float32), np.ones((6, 4), np.float32))


@pytest.mark.parametrize("shape, dtype", [((-1, 2), np.float32), ((2.5,), np.float32),
                                           ("ab", np.float32), ((2,), "not-a-dtype")])
def test_bad_specs_are_trace_errors(shape, dtype):
    with pytest.raises(l3c.TraceError, match="ArraySpec"):
        l3c.ArraySpec(shape, dtype)


def test_running_a_spec_is_an_error_not_a_crash():
    with pytest.raises(l3c.L3CError):
        step.lower(np.ones((6, 4), np.float32), np.ones((6, 4), np.float32))(
            l3c.ArraySpec((6, 4), np.float32), np.ones((6, 4), np.float32))


def test_eager_with_a_spec_says_so():
    with pytest.raises(l3c.L3CError, match=r"argument 'x' must be a numpy array float32\[6, 4\], "
                       r"got ArraySpec \(an l3c.ArraySpec describes"):
        step.eager(l3c.ArraySpec((6, 4), np.float32), np.ones((6, 4), np.float32))


def _capped(argv: list[str], cwd: str) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "l3c", *argv], cwd=cwd, env=env,
                          preexec_fn=cap, capture_output=True, text=True, timeout=120)


def test_cli_dump_ir_and_compile_of_production_shapes_allocate_nothing(tmp_path):
    (tmp_path / "big.py").write_text(PROGRAM)
    huge = ["--arg", "f32[100000,100000]"]
    dump = _capped(["dump-ir", "big.py:step", *huge, "--arg", "2"], str(tmp_path))
    assert dump.returncode == 0, dump.stderr
    assert "arg0 input float32[100000,100000]" in dump.stdout
    assert "naive 80000000000 B" in dump.stdout          # two 40 GB intermediates, planned only
    out = tmp_path / "big.l3c"
    comp = _capped(["compile", "big.py:step", *huge, "-o", str(out)], str(tmp_path))
    assert comp.returncode == 0, comp.stderr
    assert out.stat().st_size > 0
    # the cap is real: a run of the same shape must allocate, and fails with one clear line
    run = _capped(["profile", "big.py:step", *huge, "-o", str(tmp_path / "t.json")],
                  str(tmp_path))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
