"""Every optimisation can be switched off, and each switched-off pipeline still gives `.eager`'s
results: a wrong result can then be bisected to one optimisation (`PassOptions`).

Random programs come from the stress suite's generator (views, in-place updates, groups, scopes,
sub workers, random sleeps inside kernels); each is lowered once per switch setting from its
traced program, run compiled, and compared with numpy and with the dynamic runtime.
"""
from __future__ import annotations

import copy
import os
import sys

import pytest

from l3c.compiled import Compiled
from l3c.passes import PassOptions, run_passes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "stress"))

import stress_programs as sp  # noqa: E402

SWITCHES = {
    "no-fusion": PassOptions(fuse_groups=False, verify=True),
    "no-edge-reduction": PassOptions(reduce_edges=False, verify=True),
    "no-memory-reuse": PassOptions(reuse_memory=False, verify=True),
    "nothing": PassOptions(fuse_groups=False, reduce_edges=False, reuse_memory=False, verify=True),
}
SEEDS = range(30_000, 30_012)


def _compiled_with(p: sp.Program, options: PassOptions) -> Compiled:
    x, y = p.inputs()
    traced = p.fn.trace(p.ctl(delays=False), x, y, ops=p.ops)
    return Compiled(run_passes(copy.deepcopy(traced), options=options))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_switched_off_pipeline_equals_numpy_and_eager(seed, switch):
    p = sp.Program(seed)
    compiled = _compiled_with(p, SWITCHES[switch])
    p.check_run(lambda ctl, x, y: compiled(ctl, x, y, ops=p.ops), f"compiled, {switch}")
    if seed % 4 == 0:
        p.check_run(p.eager_run, "eager")


def test_switches_change_the_schedule():
    """The switches are not no-ops: on a program with fusable calls and reusable intermediates,
    turning fusion off leaves no group and turning reuse off grows the arena to the naive size."""
    for seed in SEEDS:
        p = sp.Program(seed)
        full = _compiled_with(p, PassOptions())
        unfused = _compiled_with(p, SWITCHES["no-fusion"])
        no_reuse = _compiled_with(p, SWITCHES["no-memory-reuse"])
        if len(full.groups) > len(unfused.groups) and \
                full.memory.arena_bytes < no_reuse.memory.arena_bytes:
            assert no_reuse.memory.arena_bytes >= no_reuse.memory.naive_bytes
            return
    pytest.fail("no seed had both a fused group and memory reuse; widen SEEDS")
