"""Every `examples/*.py` runs as a script (its `__main__` checks the result against numpy), and each
example's jitted function profiles into a well-formed trace through the CLI."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_profile import check_trace, l3c_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "examples", "*.py")))


def test_there_are_at_least_three_examples():
    assert len(EXAMPLES) >= 3, EXAMPLES


def _needs_numba(name: str) -> bool:
    with open(os.path.join(ROOT, "examples", name)) as f:
        return "from numba import" in f.read()


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_and_matches_numpy(name, tmp_path):
    if _needs_numba(name):
        pytest.importorskip("numba")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "matches numpy" in proc.stdout
    assert "program examples." in proc.stdout or "program " in proc.stdout   # prints its schedule


PROFILED = [
    ("examples/tiled_matmul.py:tiled_matmul", ["f32[64,32]", "f32[32,64]"], "examples.tiled_matmul",
     lambda: (np.zeros((64, 32), np.float32), np.zeros((32, 64), np.float32))),
    ("examples/axpy_rows.py:step", ["f32[8,8]", "f32[8,8]"], "examples.axpy_rows",
     lambda: (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))),
    ("examples/jacobi.py:jacobi", ["f64[34,16]", "6"], "examples.jacobi",
     lambda: (np.zeros((34, 16)), 6)),
    ("examples/native_matmul.py:matmul", ["f64[64,48]", "f64[48,32]"], "examples.native_matmul",
     lambda: (np.zeros((64, 48)), np.zeros((48, 32)))),
]


@pytest.mark.parametrize("target, specs, module, make", PROFILED, ids=[p[2] for p in PROFILED])
def test_example_profiles(target, specs, module, make, tmp_path):
    if _needs_numba(target.split(":")[0].split("/")[-1]):
        pytest.importorskip("numba")
    out = tmp_path / "trace.json"
    argv = [a for s in specs for a in ("--arg", s)]
    result = l3c_cli("profile", target, *argv, "-o", str(out))
    assert result.returncode == 0, result.stderr
    import importlib
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    jitted = getattr(importlib.import_module(module), target.rsplit(":", 1)[1])
    check_trace(json.loads(out.read_text()), jitted.lower(*make()).program)
