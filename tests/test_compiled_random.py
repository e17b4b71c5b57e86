"""Compiled results equal plain numpy (and, sampled, the eager runtime) on many random programs.

The programs come from the stress suite's generator (`tests/stress/stress_programs.py`): strided,
reversed and transposed views, in-place updates, copies, `l3c.zeros`, sub-worker kernels, pinned
kernels, explicit groups and nested scopes, with random short sleeps inside kernels so that workers
finish in varying orders. The oracle is the same list of operations interpreted with numpy. Here
no faults are injected (the stress suite does that): these are the plain correctness runs, over a
seed range of their own.

Programs with loops and conditionals of the schedule come from `tests/stress/loop_programs.py`
(their own generator and seeds): each is checked against numpy iterating in Python and against
`.eager`, then compiled (where this l3c compiles loops: `loop_programs.compiled_loops()`) with
two runs drawing other trip counts.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "stress"))

import loop_programs as lp  # noqa: E402
import stress_programs as sp  # noqa: E402

SEEDS = range(10_000, 10_150)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_program_compiled_equals_numpy(seed):
    p = sp.Program(seed)
    p.check_run(p.compiled_run, "compiled")
    if seed % 5 == 0:                       # the dynamic reference agrees too (slower, so sampled)
        p.check_run(p.eager_run, "eager")


def test_repeated_runs_of_one_schedule_with_varying_delays():
    """The same compiled plan run many times, each run with other kernels sleeping."""
    p = sp.Program(SEEDS[0] + 7)
    for _ in range(20):
        p.check_run(p.compiled_run, "compiled, again")


LOOP_SEEDS = range(20_000, 20_060)


@pytest.mark.parametrize("seed", LOOP_SEEDS)
def test_random_loop_program_equals_numpy_and_eager(seed):
    p = lp.LoopProgram(seed)
    p.check_run(p.eager_run, "eager")
    if lp.compiled_loops():
        compiled = p.fn.lower(p.ctl(False), *p.inputs(), ops=p.ops)
        assert compiled.graph.number_of_nodes() == p.ntasks, "one node per call of a body"
        for _ in range(2):                  # each run draws its own trip counts and delays
            p.check_run(p.compiled_run, "compiled")
