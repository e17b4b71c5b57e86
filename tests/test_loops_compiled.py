"""Compiled runs of every program of tests/test_loops_eager.py (traced with `l3c.range`,
`l3c.while_loop` and `l3c.cond`, through every pass): the same checks against plain Python hold
when `.eager` is replaced by the compiled run, errors included (their messages name the same line
and loop variable)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import l3c
from l3c.jit import Jitted
import test_loops_eager as eager_tests
from _loops_kernels import relax, solve

SKIP = {"test_eager_loops_on_two_hosts_under_mpiexec",            # several hosts: eager only
        "test_compiled_runs_of_looped_programs_match_eager_or_say_so"}
CASES = [name for name, fn in inspect.getmembers(eager_tests, inspect.isfunction)
         if name.startswith("test_") and name not in SKIP]


@pytest.mark.parametrize("name", CASES)
def test_compiled_run_of_eager_test_program(name, monkeypatch, request):
    monkeypatch.setattr(Jitted, "eager", lambda self, *a, **k: self(*a, **k))
    fn = getattr(eager_tests, name)
    params = inspect.signature(fn).parameters
    kwargs = {}
    for p in params:
        if p == "line_of":
            kwargs[p] = request.getfixturevalue("line_of")
    marks = getattr(fn, "pytestmark", [])
    cases = [dict()]
    for mark in marks:
        if mark.name == "parametrize":
            names = [n.strip() for n in mark.args[0].split(",")]
            cases = [dict(zip(names, v if isinstance(v, tuple) else (v,))) for v in mark.args[1]]
    for case in cases:
        fn(**kwargs, **case)




@pytest.mark.parametrize("steps", [0, 1, 7])
def test_the_spec_relax_example_compiled_equals_eager(steps):
    jitted = l3c.jit(relax, chips=2)
    u = np.linspace(0.0, 1.0, 8)
    want = jitted.eager(u.copy(), np.array([steps]))
    got = jitted(u.copy(), np.array([steps]))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("tol", [1e-3, 100.0])
def test_the_spec_solve_example_compiled_equals_eager(tol):
    jitted = l3c.jit(solve, chips=2)
    x = np.full((6,), 40.0)
    np.testing.assert_array_equal(jitted(x.copy(), tol), jitted.eager(x.copy(), tol))
