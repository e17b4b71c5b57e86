"""The newcomer's path: `l3c demo` and the README's example, run as a user would (subprocesses)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd, timeout=240):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_demo_reports_figures_that_match_the_compiled_program(tmp_path):
    proc = _run([sys.executable, "-m", "l3c", "demo", "--rows", "64", "--width", "16", "--repeats", "1"],
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "matches numpy" in out

    from l3c.demo import _inputs, mlp_block
    compiled = mlp_block.lower(*_inputs(64, 16))
    figure = lambda name: re.search(rf"^\s*{name}\s+(\d+)", out, re.M).group(1)  # noqa: E731
    assert int(figure("tasks")) == compiled.graph.number_of_nodes()
    assert int(figure("groups")) == len(compiled.groups)
    edges = re.search(r"edges\s+(\d+) before reduction, (\d+) after, \+(\d+) ordering", out)
    before, after, added = (int(g) for g in edges.groups())
    assert after <= before and added == compiled.memory.added_edges
    assert after + added == compiled.graph.number_of_edges()
    arena = re.search(r"arena\s+(\d+) B \(naive (\d+) B, lower bound (\d+) B\)", out)
    assert (int(arena.group(1)), int(arena.group(2)), int(arena.group(3))) == (
        compiled.memory.arena_bytes, compiled.memory.naive_bytes, compiled.memory.lower_bound_bytes)
    assert compiled.memory.lower_bound_bytes <= compiled.memory.arena_bytes <= compiled.memory.naive_bytes


def test_readme_example_runs_verbatim(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## A short example\s+```python\n(.*?)```", readme, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = _run([sys.executable, str(script)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "scale" in proc.stdout and "total" in proc.stdout   # the dump names the kernels
