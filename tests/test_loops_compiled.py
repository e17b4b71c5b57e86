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


@l3c.kernel
def smooth(u: l3c.In, v: l3c.Out):
    v[...] = 0.5 * u[::2] + 0.25


@l3c.kernel
def copy_into(v: l3c.In, u: l3c.Out):
    u[...] = v


@l3c.kernel
def not_converged(tol: float, x: l3c.In, go: l3c.Out):
    go[0] = int(abs(x).max() > tol)


@l3c.kernel
def update(x: l3c.InOut):
    x *= 0.5


@l3c.kernel
def report_failure(x: l3c.InOut):
    x[...] = -1.0


def relax(u, steps):
    v = l3c.empty_like(u)
    for i in l3c.range(steps):
        l3c.group(smooth, [(u, v[p::2]) for p in range(2)])
        copy_into(v, u)
    return u


def solve(x, tol):
    go = l3c.empty((1,), np.int32)
    not_converged(tol, x, go)
    for it in l3c.while_loop(go, max_iterations=1000):
        update(x)
        not_converged(tol, x, go)
    with l3c.cond(go):
        report_failure(x)
    return x


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
