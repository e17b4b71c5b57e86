"""`passes.arena_space.OpenSpace`: the gap index the memory pass places with gives exactly the
offsets a best fit over every busy range gives (`arena_space.best_fit_scan`, the brute-force
oracle)."""
from __future__ import annotations

import random

import pytest

from l3c.passes.arena_space import OpenSpace
from l3c.passes.arena_space import best_fit_scan as brute_best_fit


@pytest.mark.parametrize("seed", range(20))
def test_best_fit_equals_brute_force(seed):
    rng = random.Random(seed)
    for _ in range(60):
        space, opened = OpenSpace(), []
        for _ in range(rng.randrange(1, 30)):
            if opened and rng.random() < 0.4:          # an open tensor closes
                lo, hi = opened.pop(rng.randrange(len(opened)))
                space.remove(lo, hi)
            else:                                      # a new one opens where best fit puts it
                size = rng.choice([64, 128, 192, 640])
                offset = space.best_fit(size, [])
                assert offset == brute_best_fit(opened, size)
                space.insert(offset, offset + size)
                opened.append((offset, offset + size))
            # closed tensors that still conflict: extra ranges, which may overlap open ones
            extra = [(a, a + rng.choice([64, 128, 512]))
                     for a in (rng.randrange(0, 2000, 64) for _ in range(rng.randrange(0, 4)))]
            size = rng.choice([64, 128, 256, 1024])
            assert space.best_fit(size, extra) == brute_best_fit(opened + extra, size)
    assert space.top == max((hi for _, hi in opened), default=0)
