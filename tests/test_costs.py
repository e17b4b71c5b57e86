"""Costs steer the schedule: `@l3c.kernel(cost=...)` hints, the pass options, and the
profile-guided path (`l3c profile --save-costs`, then `--costs` / `l3c.jit(costs=...)`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import l3c
from l3c.costs import load_costs, measured_costs, save_costs
from l3c.passes import PassOptions, run_passes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One slow call, then three quick independent calls of another kernel, on 2 chips.
PROGRAM = textwrap.dedent("""
    import time
    import l3c

    @l3c.kernel
    def heavy(x: l3c.InOut):
        time.sleep(0.03)
        x += 1

    @l3c.kernel
    def light(x: l3c.InOut):
        x += 2

    @l3c.jit(chips=2)
    def step(a, b):
        heavy(a)
        for i in range(3):
            light(b[i])
        return a, b
""")


@l3c.kernel(cost=10.0)
def heavy(x: l3c.InOut):
    x += 1


@l3c.kernel(cost=1.0)
def light(x: l3c.InOut):
    x += 2


@l3c.kernel
def plain(x: l3c.InOut):
    x += 2


def _program(light_kernel):
    @l3c.jit(chips=2)
    def step(a, b):
        heavy(a)
        for i in range(3):
            light_kernel(b[i])
        return a, b
    return step


ARGS = (np.zeros(4, np.float32), np.zeros((3, 4), np.float32))


def test_cost_hints_stop_a_group_that_would_wait_behind_a_heavy_call():
    hinted = _program(light).lower(*ARGS).program
    assert hinted.costs.kernel_costs[heavy.name] == 10.0
    assert hinted.groups == []                     # grouping would put a light call behind heavy
    assert {hinted.task(i).chip for i in (1, 2, 3)} == {1 - hinted.task(0).chip}
    assert hinted.reports["makespan"] == 10.0 == hinted.reports["makespan_lower_bound"]
    # without a hint for the light kernel every call costs 1 except heavy (10): the same plan
    assert _program(plain).lower(*ARGS).program.reports["makespan"] == 10.0


@pytest.mark.parametrize("light_kernel", [light, plain])
def test_compiled_results_equal_eager_with_and_without_hints(light_kernel):
    step = _program(light_kernel)
    want = step.eager(*(x.copy() for x in ARGS))
    got = step(*(x.copy() for x in ARGS))
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
    np.testing.assert_array_equal(got[1], np.full((3, 4), 2, np.float32))


def test_measured_costs_override_hints_through_pass_options():
    step = _program(light)
    from l3c.passes import copy_program
    traced = step.trace(*ARGS)
    cheap_heavy = run_passes(copy_program(traced),
                             options=PassOptions(kernel_costs={heavy.name: 1.0}))
    assert cheap_heavy.costs.kernel_costs[heavy.name] == 1.0
    assert cheap_heavy.groups, "with equal costs the light calls are fused again"
    assert traced.costs.kernel_costs[heavy.name] == 10.0      # the traced program is untouched


def test_bad_cost_hint_is_a_config_error():
    with pytest.raises(l3c.ConfigError, match="cost"):
        l3c.kernel(cost=0)(lambda x: None)
    with pytest.raises(l3c.ConfigError, match="cost"):
        l3c.kernel(cost="slow")(lambda x: None)


def test_costs_file_round_trip_and_bad_files(tmp_path):
    trace = {"traceEvents": [
        {"ph": "X", "dur": 30.0, "args": {"kernel": "m:heavy"}},
        {"ph": "X", "dur": 10.0, "args": {"kernel": "m:heavy"}},
        {"ph": "X", "dur": 50.0, "args": {"kernel": "m:heavy"}},
        {"ph": "X", "dur": 2.0, "args": {"kernel": "m:light"}},
        {"ph": "M", "name": "thread_name", "args": {"name": "chip 0"}}]}
    costs = measured_costs(trace)
    assert costs == {"m:heavy": 30.0, "m:light": 2.0}
    path = tmp_path / "c.json"
    save_costs(path, costs, program="m:step")
    assert load_costs(path) == {"kernel_costs": costs, "default_cost": 16.0}
    (tmp_path / "bad.json").write_text(json.dumps({"format": "l3c-costs", "version": 1,
                                                   "kernel_costs": {"k": -1}}))
    for bad in ("bad.json", "missing.json"):
        with pytest.raises(l3c.L3CError):
            load_costs(tmp_path / bad)
    with pytest.raises(l3c.L3CError, match="costs"):
        l3c.jit(lambda x: x).use_costs({"k": "fast"})


def _l3c(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "l3c", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _placement(cwd, *extra):
    result = _l3c("dump-ir", "prog.py:step", "--arg", "f32[4]", "--arg", "f32[3,4]",
                  "--format", "json", *extra, cwd=cwd)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return data["groups"], {t["id"]: t["chip"] for t in data["tasks"]}, data["reports"]


def test_a_measured_cost_changes_the_placement(tmp_path):
    (tmp_path / "prog.py").write_text(PROGRAM)
    groups, chips, _ = _placement(tmp_path)
    assert groups                                  # unit costs: two light calls form a group,
    assert chips[0] in {chips[m] for m in groups[0]}   # one of them behind heavy on its chip
    profiled = _l3c("profile", "prog.py:step", "--arg", "f32[4]", "--arg", "f32[3,4]",
                    "-o", "t.json", "--save-costs", "costs.json", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    assert "critical path" in profiled.stdout and "costs.json" in profiled.stdout
    saved = load_costs(tmp_path / "costs.json")["kernel_costs"]
    assert saved["prog:heavy"] > 10 * saved["prog:light"]       # 30 ms of sleep vs an add
    groups, chips, reports = _placement(tmp_path, "--costs", "costs.json")
    assert groups == []
    assert chips[0] not in {chips[1], chips[2], chips[3]}    # the light calls keep off heavy's chip
    assert reports["makespan"] <= 1.1 * reports["makespan_lower_bound"]
    text = _l3c("dump-ir", "prog.py:step", "--arg", "f32[4]", "--arg", "f32[3,4]",
                "--costs", "costs.json", cwd=tmp_path).stdout
    assert "schedule: estimated makespan" in text and "critical path" in text
    # and the API reads the same file
    run = _l3c("compile", "prog.py:step", "--arg", "f32[4]", "--arg", "f32[3,4]", "--costs",
               "nope.json", "-o", "x.l3c", cwd=tmp_path)
    assert run.returncode == 1 and "nope.json" in run.stderr
