"""Compiled runs of every program of tests/test_loops_eager.py (traced with `l3c.range`,
`l3c.while_loop` and `l3c.cond`, through every pass): the same checks against plain Python hold
when `.eager` is replaced by the compiled run, errors included (their messages name the same line
and loop variable)."""
from __future__ import annotations

import inspect

import pytest

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
