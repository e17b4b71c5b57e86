"""`l3c profile` and `compiled.profile`: per-task timestamps recorded in the workers, as a Chrome trace.

The trace is checked against the compiled program: one row per worker, every task once on the row
of its placement, slices on a row in queue order without overlap, one flow per cross-worker edge
and no other, every dependency honoured in time, and the schedule's estimates in the metadata.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import l3c
from l3c.codegen.lower import slot_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def l3c_cli(*argv, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "l3c", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def slot_label(program, slot: int) -> str:
    chips = program.config.chips
    return f"chip {slot}" if slot < chips else f"sub {slot - chips}"


def check_trace(trace: dict, program) -> None:
    """Every structural promise of the trace, against the placed program."""
    assert isinstance(trace, dict) and isinstance(trace["traceEvents"], list)
    events = trace["traceEvents"]
    slots = program.config.chips + program.config.sub_workers

    names = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {s: slot_label(program, s) for s in range(slots)}
    assert any(e["ph"] == "M" and e["name"] == "process_name" for e in events)

    slices = [e for e in events if e["ph"] == "X"]
    tasks = [e["args"]["task"] for e in slices]
    assert sorted(tasks) == list(range(program.graph.number_of_nodes())), "every task exactly once"
    by_task = {e["args"]["task"]: e for e in slices}
    for task in program.tasks:
        e = by_task[task.id]
        assert e["tid"] == slot_of(program, task.id), f"task {task.id} on the wrong row"
        assert e["name"] == f"{task.short_kernel} #{task.id}"
        assert e["args"]["group"] == task.group and e["args"]["loc"] == task.loc
        assert e["dur"] >= 0 and e["ts"] >= 0

    for s in range(slots):
        row = sorted((e for e in slices if e["tid"] == s), key=lambda e: e["ts"])
        assert [program.task(e["args"]["task"]).queue_pos for e in row] == list(range(len(row))), \
            f"row {s} does not follow queue order"
        for a, b in zip(row, row[1:]):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-6, f"overlap on row {s}: {a} {b}"

    for u, v in program.graph.edges:                     # the schedule was honoured in time
        end_u = by_task[u]["ts"] + by_task[u]["dur"]
        assert by_task[v]["ts"] >= end_u - 1e-6, f"task {v} started before {u} ended"

    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    finishes = {e["id"]: e for e in events if e["ph"] == "f"}
    assert set(starts) == set(finishes) and len(starts) == sum(1 for e in events if e["ph"] == "s")
    flows = set()
    for fid, s_ev in starts.items():
        f_ev = finishes[fid]
        u, v = s_ev["args"]["from"], s_ev["args"]["to"]
        assert (f_ev["args"]["from"], f_ev["args"]["to"]) == (u, v)
        assert s_ev["tid"] == slot_of(program, u) and f_ev["tid"] == slot_of(program, v)
        su = by_task[u]
        assert su["ts"] <= s_ev["ts"] <= su["ts"] + su["dur"]     # binds to the producer's slice
        assert f_ev["ts"] == by_task[v]["ts"] and f_ev.get("bp") == "e"
        flows.add((u, v))
    cross = {(u, v) for u, v in program.graph.edges if slot_of(program, u) != slot_of(program, v)}
    assert flows == cross and len(flows) == len(starts)

    meta = trace["metadata"]
    assert meta["estimated_makespan"] == program.reports["makespan"]
    assert meta["estimated_critical_path"] == program.reports["critical_path"]
    path = meta["critical_path_tasks"]
    assert all(program.graph.has_edge(a, b) for a, b in zip(path, path[1:]))
    assert len(path) == program.reports["critical_path"]     # unit costs: one per task
    assert meta["tasks"] == program.graph.number_of_nodes()
    assert meta["measured_wall_us"] >= max(e["ts"] + e["dur"] for e in slices)


def test_cli_profile_writes_a_trace_matching_the_schedule(tmp_path):
    out = tmp_path / "trace.json"
    result = l3c_cli("profile", "examples/tiled_matmul.py:tiled_matmul", "--arg", "f32[64,32]",
                     "--arg", "f32[32,64]", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "9 tasks" in result.stdout and "perfetto" in result.stdout
    trace = json.loads(out.read_text())              # a JSON object: what Perfetto opens

    from examples.tiled_matmul import tiled_matmul
    program = tiled_matmul.lower(np.zeros((64, 32), np.float32), np.zeros((32, 64), np.float32)).program
    assert program.reports["cross_worker_edges"] > 0
    check_trace(trace, program)


def test_python_profile_returns_the_results_and_a_trace():
    from l3c.demo import _inputs, mlp_block
    args = _inputs(64, 16)
    compiled = mlp_block.lower(*args)
    results, trace = compiled.profile(*args)
    expected = compiled(*args)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    check_trace(trace, compiled.program)
    json.dumps(trace)                                   # JSON-serialisable as returned
    _, again = compiled.profile(*args)                  # stamps are cleared: a second run is whole
    check_trace(again, compiled.program)


@l3c.kernel
def _boom(x: l3c.InOut):
    raise ValueError("boom")


@l3c.kernel
def _inc(x: l3c.InOut):
    x += 1


@l3c.jit(chips=1)
def _fails(x):
    _inc(x)
    _boom(x)


def test_profile_of_a_failing_run_raises_and_the_pool_recovers():
    x = np.zeros(4, np.float32)
    with pytest.raises(l3c.KernelError, match="boom"):
        _fails.lower(x).profile(x)
    from l3c.demo import _inputs, mlp_block
    args = _inputs(64, 16)
    _, trace = mlp_block.lower(*args).profile(*args)
    check_trace(trace, mlp_block.lower(*args).program)


@pytest.mark.parametrize("argv, fragment", [
    (["examples/tiled_matmul.py:tiled_matmul", "--arg", "f32[64,32]", "--arg", "f32[32,64]"],
     "-o"),
    (["examples/tiled_matmul.py:nope", "-o", "t.json"], "no function"),
    (["examples/tiled_matmul.py:tiled_matmul", "--arg", "f32[64,32]", "-o", "t.json"], "missing a required argument"),
])
def test_cli_profile_errors_are_one_line(tmp_path, argv, fragment):
    result = l3c_cli("profile", *argv)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l3c: error: ") and fragment in lines[0], lines


def test_check_trace_catches_a_missing_flow_and_a_moved_slice():
    from examples.tiled_matmul import tiled_matmul
    a, b = np.ones((64, 32), np.float32), np.ones((32, 64), np.float32)
    compiled = tiled_matmul.lower(a, b)
    _, trace = compiled.profile(a, b, 2, 0.5)
    check_trace(trace, compiled.program)
    dropped = dict(trace, traceEvents=[e for e in trace["traceEvents"]
                                       if not (e["ph"] in "sf" and e.get("id") == 1)])
    with pytest.raises(AssertionError):
        check_trace(dropped, compiled.program)
    moved = json.loads(json.dumps(trace))
    first = next(e for e in moved["traceEvents"] if e["ph"] == "X")
    first["tid"] = (first["tid"] + 1) % 3
    with pytest.raises(AssertionError):
        check_trace(moved, compiled.program)
