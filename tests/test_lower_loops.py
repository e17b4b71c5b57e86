"""Lowering programs with loops: every lowered plan of random placed programs with range (static and
tensor bounds), while and cond, nested, run by a Python model of the step loop in random
interleavings that respect only the plan's waits, honours every dependency per instance (the latest
earlier instance of each predecessor in sequential order) and runs each slot's calls in the
sequential order."""
from __future__ import annotations

import random

import pytest

from l3c.codegen.lower import lower
from l3c.runtime.plan import ControlStep

from _loop_programs import Builder, element_of, random_program
from _plan_model import simulate


@pytest.mark.parametrize("seed", range(80))
def test_random_loop_programs_respect_every_dependency(seed):
    rng = random.Random(seed)
    b = random_program(rng, chips=rng.randint(1, 3), sub=rng.randint(0, 1), size=rng.randint(4, 16))
    lowered = lower(b.prog)
    plan = lowered.plan
    if b.prog.loops:
        lengths = {sum(isinstance(st, ControlStep) for st in plan.queues[s]) for s in plan.active}
        assert len(lengths) <= 1                    # every active slot runs every control step
    for _ in range(4):
        simulate(b.prog, plan, {}, b.writes, rng, element_of(lowered))


def test_carried_dependency_waits_for_the_previous_iteration_exactly():
    b = Builder(chips=2)
    lid = b.open("range", start=0, stop=5)
    a = b.task(unit=0)
    c = b.task(unit=1)
    b.close()
    b.place()
    b.edge(a, c)
    b.edge(c, a, carried=True)
    plan = lower(b.prog).plan
    step_a = [st for st in plan.queues[0] if not isinstance(st, ControlStep)][0]
    (wait,) = step_a.waits
    from l3c.runtime.plan import HEAD, PREV, anchor
    assert wait == (1, 1, anchor(0, PREV), anchor(0, HEAD))     # c of the previous iteration
    step_c = [st for st in plan.queues[1] if not isinstance(st, ControlStep)][0]
    assert step_c.waits == ((0, 1, anchor(0, HEAD), -1),)
    assert step_a.signal and step_c.signal
    simulate(b.prog, plan, {}, {}, random.Random(1), {})
    assert lid == 0


def test_loops_across_hosts_lower_per_host_only():
    b = Builder(chips=1)
    b.prog.config.hosts = 2
    b.open("range", stop=3)
    b.task()
    b.close()
    b.place()
    with pytest.raises(ValueError, match="lower it per host"):
        lower(b.prog)
    with pytest.raises(ValueError, match="lower it per host"):
        lower(b.prog, host=0)
