"""`benchmarks/loops.py --quick` runs every section as a subprocess and reports consistent figures
(a smoke test: speed is the benchmark's business, not asserted here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "stress"))

import loop_programs as lp  # noqa: E402


def test_loops_benchmark_quick(tmp_path):
    if not lp.compiled_loops():
        pytest.skip("this l3c runs loops only through .eager (its lowering refuses them)")
    out = tmp_path / "loops.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "loops.py"), "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["l3c"].startswith(ROOT)
    kinds = [k for k in ("native", "python") if k in data]
    assert "python" in kinds
    for kind in kinds:
        a, b, c = data[kind]["per_task"], data[kind]["compile"], data[kind]["decision"]
        assert a["iterations"] == 2000 and all(a[k] > 0 for k in (
            "loop", "unrolled", "python_loop", "pipeline_loop", "pipeline_unrolled"))
        assert set(b["loop"]) == {"10", "10000"} and set(b["unrolled"]) == {"10", "200"}
        assert b["loop"]["10"]["nodes"] == b["loop"]["10000"]["nodes"] == 2    # traced once
        assert b["unrolled"]["10"]["nodes"] == 20 and b["unrolled"]["200"]["nodes"] == 400
        assert all(fig["compile_s"] > 0 for fig in b["loop"].values())
        assert c["while_us_per_iteration"] > 0 and c["range_us_per_iteration"] > 0
        assert f"[{kind} kernels]" in proc.stdout
    assert "target <= 1" in proc.stdout and "target <= 1.5x" in proc.stdout
