"""The newcomer's path: `l3c demo` and the README's example, run as a user would (subprocesses)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import l3c.cli

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd, timeout=240):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_demo_reports_figures_that_match_the_compiled_program(tmp_path):
    proc = _run([sys.executable, "-m", "l3c", "demo", "--rows", "64", "--width", "16", "--repeats", "1"],
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("matches numpy") == 2 and "DIFFERS" not in out
    assert "Warning" not in proc.stderr and "nan" not in out.lower()

    # part 1: three ways of running the fine-grained program, per task, and the ratios
    from l3c.demo import tiled_matmul
    n = 96
    fine = tiled_matmul.lower(np.zeros((n, n), np.float32), np.zeros((n, n), np.float32))
    tasks = fine.graph.number_of_nodes()
    assert f"{tasks} tasks on 2 chips" in out and tasks >= 500
    rows = dict((label.strip(), (float(ms), float(us))) for label, ms, us in
                re.findall(r"^\s+(serial numpy loop.*?|dynamic runtime.*?|compiled schedule)\s+"
                           r"([\d.]+) ms\s+([\d.]+) us a task$", out, re.M))
    assert len(rows) == 3, out
    for ms, us in rows.values():
        assert us == pytest.approx(ms * 1e3 / tasks, rel=0.01, abs=0.01)
    (_, serial), (_, eager), (_, compiled) = (rows[k] for k in sorted(rows, key=list(rows).index))
    ratio = re.search(r"speed-up a task: (\d+)x over the dynamic runtime, ([\d.]+)x over the serial", out)
    assert int(ratio.group(1)) == pytest.approx(eager / compiled, rel=0.05, abs=1)
    assert float(ratio.group(2)) == pytest.approx(serial / compiled, rel=0.05, abs=0.1)
    timeline = re.search(r"timeline of one compiled run: (\S+\.html)", out).group(1)
    assert Path(timeline) == tmp_path / "l3c-demo-timeline.html"
    html = Path(timeline).read_text(encoding="utf-8")
    assert html.count('class="task') == tasks

    # part 2: the MLP block, and hints that use the sizes it ran with
    assert "--arg f32[64,16] --arg f32[16,16]" in out and "512" not in out

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


@pytest.mark.parametrize("argv, why", [
    (["--rows", "0"], "--rows must be between 8 and"),
    (["--rows", "-8"], "--rows must be between 8 and"),
    (["--rows", "12"], "--rows must be a multiple of 8"),
    (["--rows", "abc"], "invalid int value"),
    (["--width", "0"], "--width must be between 1 and"),
    (["--repeats", "0"], "--repeats must be between 1 and"),
    (["--repeats", "-1"], "--repeats must be between 1 and"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--timeline", "run.json"], "--timeline must name an .html file"),
])
def test_demo_refuses_bad_options_in_one_line(argv, why, capsys):
    assert l3c.cli.main(["demo", *argv]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l3c: error: ") and why in lines[0], lines
    assert captured.out == ""                                   # refused before anything ran


def test_demo_option_errors_as_a_user_sees_them(tmp_path):
    proc = _run([sys.executable, "-m", "l3c", "demo", "--rows", "-8"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == "l3c: error: --rows must be between 8 and 65536, got -8"
    help_text = _run([sys.executable, "-m", "l3c", "demo", "--help"], cwd=tmp_path, timeout=60)
    assert help_text.returncode == 0 and "--timeline" in help_text.stdout
