"""Random programs, compiled and eager, against numpy, with random delays and injected faults.

CI runs a bounded slice (a few dozen programs). A long run is one command:

    L3C_STRESS_PROGRAMS=2000 L3C_STRESS_SEED=100000 python -m pytest tests/stress -m stress -q

Every program: one compiled run and (sampled) one eager run and one run of the schedule saved and
loaded again, all equal to numpy; then faults (a kernel raising, SIGKILL, `os._exit`, a hang past the
timeout) at random tasks of compiled or eager runs, each answered by the matching l3c error with the
caller's arrays untouched, and each followed by a run that must be correct.

Programs with loops (`loop_programs.py`) go through the same steps over their own seeds
(L3C_STRESS_LOOP_PROGRAMS, default half as many); where this l3c runs loops only through `.eager`
(`loop_programs.compiled_loops()`), `.eager` takes the compiled runs' place, and where its
schedule files cannot hold loops yet (`loop_programs.schedule_files_with_loops`) the loaded-schedule
run is left out.
"""
from __future__ import annotations

import os

import pytest

import loop_programs as lp
import stress_programs as sp

PROGRAMS = int(os.environ.get("L3C_STRESS_PROGRAMS", "36"))
SEED = int(os.environ.get("L3C_STRESS_SEED", "0"))
LONG = "L3C_STRESS_PROGRAMS" in os.environ
LOOP_PROGRAMS = int(os.environ.get("L3C_STRESS_LOOP_PROGRAMS", str(PROGRAMS // 2)))
LOOP_SEED = SEED + 50_000


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(SEED, SEED + PROGRAMS))
def test_random_program_with_faults(seed, tmp_path):
    # Hangs cost a whole timeout each: every 6th program in CI, every 3rd in a long run.
    allow_hang = seed % (3 if LONG else 6) == 0
    sp.run_program(seed, faults=3 if LONG else 2, allow_hang=allow_hang, tmp_dir=str(tmp_path))


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(LOOP_SEED, LOOP_SEED + LOOP_PROGRAMS))
def test_random_loop_program_with_faults(seed, tmp_path):
    allow_hang = seed % (3 if LONG else 6) == 0
    sp.run_program(seed, faults=3 if LONG else 2, allow_hang=allow_hang, tmp_dir=str(tmp_path),
                   program=lp.LoopProgram(seed), compiled=lp.compiled_loops(),
                   aot=not lp.schedule_files_with_loops(str(tmp_path)))
