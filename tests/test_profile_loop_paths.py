"""What bounds a loop's iteration rate in a profile (`l3c.profile_loop_paths`): the longest chain of
measured durations within one iteration and around a carried edge, on instances given by hand
(exact figures) and in a real profiled run."""
from __future__ import annotations

import time

import numpy as np
import pytest

import l3c
from l3c.ir import Access, Loop
from l3c.passes import run_passes
from l3c.profile_loop_paths import loop_paths

from _ir_builders import call, program, region
from _loop_oracle import moving, with_loops

TRIPS = 4
DURATION = {0: 10.0, 1: 20.0, 2: 5.0, 3: 50.0, 4: 40.0}   # us per instance


def chain_and_side_task():
    """for i in range(4): a(acc -> u); b(u -> v); c(v -> acc); d(w[i]); if flag: e(v -> z).
    a..c form a chain closed by the carried RAW c -> a (acc); d is alone (w[i] differs each
    iteration: nothing carried); e, in a cond, reads v, which the next iteration's b overwrites
    (a carried WAR e -> b)."""
    w = moving((TRIPS,), lambda v: v[0], {0: 1})
    calls = [call("a", ("acc", (), "In"), ("u", (), "Out")),
             call("b", ("u", (), "In"), ("v", (), "Out")),
             call("c", ("v", (), "In"), ("acc", (), "Out")),
             call("d", ("w", w, "Out")),
             call("e", ("v", (), "In"), ("z", (), "Out"))]
    prog = program({"acc": (1,), "u": (1,), "v": (1,), "w": (TRIPS,), "z": (1,), "flag": (1,)},
                   calls)
    loops = [Loop(0, "range", "prog.py:1", None, 0, 5, start=0, stop=TRIPS, step=1),
             Loop(1, "cond", "prog.py:2", 0, 4, 5, flag=Access("f", 5, region((1,), 0), "In"))]
    return run_passes(with_loops(prog, loops), until="deps")


def instances(ran_e: set[int]):
    """Each iteration 100 us long, tasks back to back from its start (e in iterations `ran_e`)."""
    where = {}
    for k in range(TRIPS):
        t = 100.0 * k
        for task in range(5):
            if task == 4 and k not in ran_e:
                continue
            where[(task, (k,))] = (0, t, t + DURATION[task])
    return where


def test_chains_within_an_iteration_and_around_the_carried_edge():
    prog = chain_and_side_task()
    carried = {(u, v) for u, v, d in prog.graph.edges(data=True) if d["carried"]}
    assert {(2, 0), (4, 1)} <= carried and (3, 3) not in carried
    found = loop_paths(prog, instances(ran_e={1, 3}))
    assert list(found) == [0]                        # conds have no iterations
    got = found[0]
    assert got["iteration_path_tasks"] == [3] and got["iteration_path_us"] == 50.0
    # e runs in half the iterations: 20 us per iteration; b + e (40 us) beats a + b + c (35 us)
    assert got["recurrence_tasks"] == [1, 4] and got["recurrence_edge"] == [4, 1]
    assert got["recurrence_us"] == 40.0
    assert got["us_per_iteration"] == (300.0 + 50.0) / TRIPS     # first start to last end


def test_a_cond_task_that_always_runs_weighs_its_whole_duration():
    got = loop_paths(chain_and_side_task(), instances(ran_e=set(range(TRIPS))))[0]
    assert got["iteration_path_tasks"] == [0, 1, 4] and got["iteration_path_us"] == 70.0
    assert got["recurrence_tasks"] == [1, 4] and got["recurrence_us"] == 60.0


def test_without_the_cond_task_the_chain_closed_by_the_raw_bounds_the_rate():
    where = {k: v for k, v in instances(set()).items()}
    for k in range(TRIPS):
        where[(2, (k,))] = (0, 100.0 * k, 100.0 * k + 30.0)     # c: 30 us, e never runs
    got = loop_paths(chain_and_side_task(), where)[0]
    assert got["recurrence_tasks"] == [0, 1, 2] and got["recurrence_edge"] == [2, 0]
    assert got["recurrence_us"] == 60.0


def test_no_iteration_run_no_entry():
    where = {k: v for k, v in instances(set()).items() if k[0] > 4}
    assert loop_paths(chain_and_side_task(), where) == {}


@l3c.kernel
def slow_add(acc: l3c.InOut):
    time.sleep(0.03)
    acc += 1


@l3c.kernel
def mark(w: l3c.Out, k):
    w[...] = k


@l3c.jit(chips=2)
def accumulate(acc, w):
    for i in l3c.range(3):
        slow_add(acc)               # carried: each iteration's waits for the previous one
        mark(w[i], i)
    return acc, w


def test_a_profiled_run_reports_the_carried_chain_that_bounds_its_iterations():
    args = (np.zeros(1), np.zeros(3))
    compiled = accumulate.lower(*args)
    _, trace = compiled.profile(np.zeros(1), np.zeros(3))
    slow = next(t.id for t in compiled.program.tasks if t.short_kernel == "slow_add")
    (lid,) = compiled.program.loops
    got = trace["metadata"]["loops"][str(lid)]
    assert got["recurrence_tasks"] == [slow] and got["recurrence_edge"] == [slow, slow]
    assert got["iteration_path_tasks"] == [slow]
    assert got["recurrence_us"] >= 30_000 and got["us_per_iteration"] >= got["recurrence_us"]
    assert got["us_per_iteration"] == pytest.approx(got["recurrence_us"], rel=0.5)
