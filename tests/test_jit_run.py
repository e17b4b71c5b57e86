"""Jitted functions run end to end: compiled and eager results equal running the kernels in order."""
from __future__ import annotations

import numpy as np

import l3c
from examples.axpy_rows import reference, step


@l3c.kernel
def add_one(x: l3c.InOut):
    x += 1


@l3c.jit(chips=2)
def bump(x):
    add_one(x[0::2])
    add_one(x[1::2])
    add_one(x[:2])


def test_compiled_and_eager_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    ref_h, ref_out = reference(x, w)
    for h, out in (step(x, w), step.eager(x, w)):
        np.testing.assert_allclose(h, ref_h, atol=1e-5)
        np.testing.assert_allclose(out, ref_out, atol=1e-5)
    assert step.traces == 1


def test_kernels_writing_inputs_update_the_callers_array():
    x = np.zeros(6)
    assert bump(x) is None
    np.testing.assert_array_equal(x, [2, 2, 1, 1, 1, 1])


def test_an_input_that_already_lives_in_the_arena_is_not_staged_onto_itself():
    from l3c.execute import prepare
    from l3c.runtime.pool import get_pool

    compiled = bump.lower(np.zeros(6))
    compiled(np.zeros(6))                          # installs the plan and builds its arena views
    plan = prepare(compiled)[0].plan
    staged = get_pool(plan.chips, plan.sub_workers, plan.arena_bytes).plan_cache(plan)["io"][0][0]
    staged[...] = [10, 20, 30, 40, 50, 60]
    assert compiled(staged) is None                # the arena view itself as the argument
    np.testing.assert_array_equal(staged, [12, 22, 31, 41, 51, 61])
    x = np.zeros(6)
    compiled(x)                                    # an ordinary array is staged again
    np.testing.assert_array_equal(x, [2, 2, 1, 1, 1, 1])
