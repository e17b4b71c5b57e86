"""`passes.arena_space.OpenSpace`: the gap index the memory pass places with gives exactly the
offsets a best fit over every busy range gives (`arena_space.best_fit_scan`, the brute-force
oracle)."""
from __future__ import annotations

import random

import pytest

from l3c.passes.arena_space import INDEX_ABOVE, INDEX_BELOW, OpenSpace
from l3c.passes.arena_space import best_fit_scan as brute_best_fit


@pytest.mark.parametrize("seed", range(20))
def test_best_fit_equals_brute_force(seed):
    """Few open tensors (a scan of them) and, from seed 10 on, sometimes many (the gap index,
    built past `INDEX_ABOVE` and dropped again below `INDEX_BELOW`)."""
    rng = random.Random(seed)
    for _ in range(60):
        space, opened = OpenSpace(), []
        many = seed >= 10 and rng.random() < 0.3
        steps, close = (4 * INDEX_ABOVE, 0.2) if many else (rng.randrange(1, 30), 0.4)
        for step in range(steps):
            if many and step == 2 * INDEX_ABOVE:
                close = 0.8                            # back below INDEX_BELOW
            if opened and rng.random() < close:       # an open tensor closes
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
                     for a in (rng.randrange(0, max(2000, space.top), 64)
                               for _ in range(rng.randrange(0, 4)))]
            size = rng.choice([64, 128, 256, 1024])
            assert space.best_fit(size, extra) == brute_best_fit(opened + extra, size)
            assert space.top == max((hi for _, hi in opened), default=0)
            if len(opened) > INDEX_ABOVE:
                assert space.indexed
            elif len(opened) < INDEX_BELOW:
                assert not space.indexed
