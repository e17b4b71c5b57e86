"""Profiling programs with loops: one slice per executed task instance, with its iteration numbers.

The expected instances are worked out from the program's semantics (trip counts of the ranges, the
while loop's count-down), not from the trace: every instance appears once, on its task's worker,
named and tagged with the iterations of its enclosing loops; a worker's slices follow one another;
cross-worker flows join the instances of one iteration, producer before consumer; a capacity keeps
each worker's first instances and counts the rest; `l3c profile` writes such a trace.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import l3c
from l3c.codegen.lower import slot_of
from l3c.execute import profile as run_profile
from l3c.viz import timeline_html
from tests._native_kernels import fill

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHILE_TRIPS = 3


@l3c.kernel
def bump(x: l3c.InOut, k):
    x[...] += k


@l3c.kernel(worker="sub")
def count_down(flag: l3c.InOut, left: l3c.InOut):
    left[...] -= 1
    flag[...] = left > 0


@l3c.kernel
def add_left(left: l3c.In, x: l3c.InOut):
    x[...] += left


@l3c.jit(chips=2, sub_workers=1)
def looped(x, flag, left):
    for i in l3c.range(3):
        fill(x[4 + i], i, 0.5)                     # a native kernel with the loop variable
        for j in l3c.range(2):
            bump(x[i, j:j + 1], i + 10 * j)
            bump(x[i, 2 + j:3 + j], 1)
    for k in l3c.while_loop(flag, max_iterations=8):
        count_down(flag, left)                     # sub worker -> chip: a flow every iteration
        add_left(left, x[3, k:k + 1])
    with l3c.cond(flag, invert=True):
        bump(x[3, 7:8], 1000)
    return x


def inputs():
    return (np.zeros((7, 8)), np.ones((), np.int32), np.full((), WHILE_TRIPS, np.int32))


def expected_instances(program) -> set[tuple[int, tuple[int, ...]]]:
    """(task, iterations of its range/while loops) of every instance the run executes."""
    trips = {"range": None, "while": WHILE_TRIPS}
    out = set()
    for task in program.tasks:
        loops = [lid for lid in task.loops if program.loops[lid].kind != "cond"]
        combos: list[tuple[int, ...]] = [()]
        for lid in loops:
            lp = program.loops[lid]
            n = len(range(lp.start, lp.stop, lp.step)) if lp.kind == "range" else trips["while"]
            combos = [c + (i,) for c in combos for i in range(n)]
        out |= {(task.id, c) for c in combos}
    return out


def slices(trace):
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


@pytest.fixture(scope="module")
def profiled():
    compiled = looped.lower(*inputs())
    results, trace = compiled.profile(*inputs())
    yield compiled, results, trace


def test_every_executed_instance_once_with_its_iterations(profiled):
    compiled, results, trace = profiled
    program = compiled.program
    np.testing.assert_array_equal(results, looped.eager(*inputs()))
    got = [(e["args"]["task"], tuple(e["args"]["iterations"])) for e in slices(trace)]
    assert len(got) == len(set(got))
    assert set(got) == expected_instances(program)
    for e in slices(trace):
        task = program.task(e["args"]["task"])
        loops = [lid for lid in task.loops if program.loops[lid].kind != "cond"]
        assert e["args"]["loops"] == loops
        label = " ".join(f"L{lid}={i}" for lid, i in zip(loops, e["args"]["iterations"]))
        assert e["name"] == f"{task.short_kernel} #{task.id}" + (f" [{label}]" if label else "")
        assert e["tid"] == slot_of(program, task.id)
    meta = trace["metadata"]
    assert meta["tasks"] == len(got) and sum(meta["instances"].values()) == len(got)
    assert set(meta["dropped_instances"].values()) == {0}
    kinds = {lid: (lp["kind"], lp.get("entered"), lp.get("iterations"), lp.get("reached"),
                   lp.get("ran")) for lid, lp in meta["loops"].items()}
    ids = sorted(program.loops)
    assert kinds == {str(ids[0]): ("range", 1, 3, None, None),
                     str(ids[1]): ("range", 3, 6, None, None),
                     str(ids[2]): ("while", 1, WHILE_TRIPS, None, None),
                     str(ids[3]): ("cond", None, None, 1, 1)}


def test_a_workers_slices_follow_one_another_in_sequential_order(profiled):
    compiled, _, trace = profiled
    program = compiled.program
    by_tid: dict = {}
    for e in slices(trace):
        by_tid.setdefault(e["tid"], []).append(e)
    assert len(by_tid) == 3
    for row in by_tid.values():
        for a, b in zip(row, row[1:]):                 # in the order the worker ran them
            assert a["dur"] >= 0 and b["ts"] >= a["ts"] + a["dur"]
        # a worker runs its instances in the sequential order of (iterations, program order)
        order = [(tuple(e["args"]["iterations"]), e["args"]["task"]) for e in row]
        for (ia, ta), (ib, tb) in zip(order, order[1:]):
            la, lb = program.task(ta).loops, program.task(tb).loops
            if la == lb and la:
                assert (ia, program.task(ta).queue_pos) < (ib, program.task(tb).queue_pos)


def test_flows_join_the_instances_of_one_iteration_in_time(profiled):
    compiled, _, trace = profiled
    program = compiled.program
    where = {(e["args"]["task"], tuple(e["args"]["iterations"])): e for e in slices(trace)}
    starts = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "s"}
    finishes = [e for e in trace["traceEvents"] if e["ph"] == "f"]
    assert len(finishes) == len(starts) == trace["metadata"]["cross_worker_edges"]
    writer = next(t.id for t in program.tasks if t.kernel.endswith(":count_down"))
    reader = next(t.id for t in program.tasks if t.kernel.endswith(":add_left"))
    pairs = set()
    for f in finishes:
        s = starts[f["id"]]
        u = where[(s["args"]["from"], tuple(s["args"]["from_iterations"]))]
        v = where[(f["args"]["to"], tuple(f["args"]["to_iterations"]))]
        assert u["tid"] == s["tid"] and v["tid"] == f["tid"] and u["tid"] != v["tid"]
        if not program.graph.edges[u["args"]["task"], v["args"]["task"]].get("carried"):
            assert u["args"]["iterations"] == v["args"]["iterations"][:len(u["args"]["iterations"])]
        assert u["ts"] + u["dur"] <= v["ts"]           # the consumer started after its producer
        pairs.add((s["args"]["from"], f["args"]["to"], tuple(f["args"]["to_iterations"])))
    assert {(writer, reader, (k,)) for k in range(WHILE_TRIPS)} <= pairs


def test_a_capacity_keeps_each_workers_first_instances_and_counts_the_rest(profiled):
    compiled, _, full = profiled
    results, trace = run_profile(compiled, *inputs(), capacity=5)
    np.testing.assert_array_equal(results, looped.eager(*inputs()))
    meta, full_meta = trace["metadata"], full["metadata"]
    assert meta["instance_capacity"] == 5
    for worker, total in full_meta["recorded_steps"].items():
        assert meta["recorded_steps"][worker] == min(total, 5)
        assert meta["dropped_instances"][worker] == max(0, total - 5)
        kept = [e["name"] for e in slices(trace) if e["args"] and e["tid"] == _tid(trace, worker)]
        first = [e["name"] for e in slices(full) if e["tid"] == _tid(full, worker)]
        assert kept == first[:len(kept)]
    assert sum(meta["dropped_instances"].values()) > 0
    assert not all(lp["complete"] for lp in meta["loops"].values())
    with pytest.raises(l3c.L3CError, match="instances per worker"):
        run_profile(compiled, *inputs(), capacity=-1)


def _tid(trace, worker: str) -> int:
    return next(e["tid"] for e in trace["traceEvents"]
                if e.get("name") == "thread_name" and e["args"]["name"] == worker)


PROGRAM = textwrap.dedent("""
    import numpy as np
    import l3c


    @l3c.kernel
    def bump(x: l3c.InOut, k):
        x[...] += k


    @l3c.kernel(worker="sub")
    def start(flag: l3c.Out, left: l3c.Out):
        flag[...] = 1
        left[...] = 4


    @l3c.kernel(worker="sub")
    def count_down(flag: l3c.InOut, left: l3c.InOut):
        left[...] -= 1
        flag[...] = left > 0


    @l3c.jit(chips=2, sub_workers=1)
    def step(x):
        flag, left = l3c.empty((), np.int32), l3c.empty((), np.int32)
        start(flag, left)
        for i in l3c.range(2):
            bump(x[i], i)
        for k in l3c.while_loop(flag):
            count_down(flag, left)
            bump(x[2, k:k + 1], 1)
        return x
""")


def test_cli_profile_writes_the_iterations(tmp_path):
    (tmp_path / "prog.py").write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "l3c", "profile", "prog.py:step",
                          "--arg", "f64[3,8]", "-o", "t.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    loops = (r"loops: L0 range 2 iterations, [\d.]+ .s each \(one iteration's chain [\d.]+ .s: "
             r"#1\); L1 while 4 iterations, [\d.]+ .s each \(one iteration's chain [\d.]+ .s: "
             r"#[23]; carried cycle [\d.]+ .s: #2\)")
    assert re.search(loops, run.stdout), run.stdout
    trace = json.loads((tmp_path / "t.json").read_text())
    names = sorted(e["name"] for e in slices(trace))
    assert names == sorted(["start #0", "bump #1 [L0=0]", "bump #1 [L0=1]"]
                           + [f"{n} [L1={k}]" for k in range(4)
                              for n in ("count_down #2", "bump #3")])
    assert trace["metadata"]["loops"]["1"]["iterations"] == 4
    page = timeline_html(trace)                          # what `-o t.html` writes
    assert '"L1=3"' in page and "L1 while 4 iterations" in page


@l3c.kernel
def slow_at(x: l3c.Out, k, slow):
    if k == slow:
        time.sleep(0.3)                 # longer than a worker's futex slice: the waiter resumes
    x[...] = k


@l3c.kernel
def copy_into(src: l3c.In, dst: l3c.Out):
    dst[...] = src


@l3c.jit(chips=2)
def waits_across_slices(x, y):
    for i in l3c.range(3):
        slow_at.on(0)(x[i], i, 1)
        copy_into.on(1)(x[i], y[i])
    return y


def test_instances_stay_numbered_when_a_wait_outlasts_the_futex_slice():
    x, y = np.zeros((3, 2)), np.zeros((3, 2))
    compiled = waits_across_slices.lower(x, y)
    results, trace = compiled.profile(x, y)
    np.testing.assert_array_equal(results, np.repeat(np.arange(3.0), 2).reshape(3, 2))
    rows: dict = {}
    for e in slices(trace):
        rows.setdefault(e["tid"], []).append((e["name"].split(" #")[0], e["args"]["iterations"],
                                              e["ts"], e["dur"]))
    assert sorted(rows) == [0, 1]
    assert [r[:2] for r in rows[0]] == [("slow_at", [i]) for i in range(3)]
    assert [r[:2] for r in rows[1]] == [("copy_into", [i]) for i in range(3)]
    assert rows[0][1][3] >= 0.25e6                        # the slow instance is the one timed so
    assert rows[1][1][2] >= rows[0][1][2] + rows[0][1][3]   # and its reader waited for it


def test_cli_profile_of_the_jacobi_solve_example(tmp_path):
    """The example's while loop, forced to run 5 iterations (a negative tolerance), as a real
    `l3c profile` subprocess: every body task once per iteration, flows in time order."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "solve.json"
    run = subprocess.run([sys.executable, "-m", "l3c", "profile", "examples/jacobi_solve.py:solve",
                          "--arg", "f64[34,16]", "--arg", "-1.0", "--arg", "5", "-o", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "loops: L0 while 5 iterations" in run.stdout
    trace = json.loads(out.read_text())
    got = [(e["args"]["task"], tuple(e["args"]["iterations"])) for e in slices(trace)]
    body = sorted({t for t, iters in got if iters})
    outside = sorted({t for t, iters in got if not iters})
    assert len(body) == 5 and len(outside) == 3              # 4 smooth + the flag writer; 2 copies + start
    assert sorted(got) == sorted([(t, (k,)) for t in body for k in range(5)]
                                 + [(t, ()) for t in outside])
    where = {(e["args"]["task"], tuple(e["args"]["iterations"])): e for e in slices(trace)}
    starts = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "s"}
    flows = [(starts[f["id"]], f) for f in trace["traceEvents"] if f["ph"] == "f"]
    assert flows and len(flows) == trace["metadata"]["cross_worker_edges"]
    for s, f in flows:
        u = where[(s["args"]["from"], tuple(s["args"]["from_iterations"]))]
        v = where[(f["args"]["to"], tuple(f["args"]["to_iterations"]))]
        assert u["ts"] + u["dur"] <= v["ts"]
