"""Region overlap/cover tests against brute-force element sets."""
import random

import numpy as np
import pytest

from l3c.ir import Region
from l3c.passes import regions
from _ir_builders import random_index, region

S = slice


def test_elements_match_numpy_view():
    rng = random.Random(1)
    for _ in range(200):
        shape = tuple(rng.randint(1, 7) for _ in range(rng.randint(1, 3)))
        index = random_index(rng, shape)
        base = np.arange(int(np.prod(shape))).reshape(shape)
        expected = np.unique(base[index].ravel())
        assert np.array_equal(regions.elements(region(shape, index)), expected)


def test_interleaved_rows_disjoint_and_blocks():
    shape = (8, 6)
    even, odd = region(shape, S(0, None, 2)), region(shape, S(1, None, 2))
    assert not regions.overlap(even, odd)
    assert regions.overlap(even, region(shape, S(2, 3)))
    left, right = region(shape, (S(None), S(0, 3))), region(shape, (S(None), S(3, 6)))
    assert not regions.overlap(left, right)
    assert regions.overlap(left, region(shape, (S(4, 5), S(2, 4))))
    assert regions.overlap(region(shape, "T" and ()), region(shape, (3, 5)))
    assert regions.covers(region(shape), even)
    assert not regions.covers(even, region(shape, S(0, 4)))
    assert regions.covers(region(shape, S(0, None, 2)), region(shape, S(2, 7, 4)))
    assert not regions.covers(region(shape, S(0, None, 2)), region(shape, S(2, 8, 3)))


@pytest.mark.parametrize("seed", range(4))
def test_overlap_and_covers_exact_for_basic_slices(seed):
    rng = random.Random(seed)
    for _ in range(300):
        shape = tuple(rng.randint(1, 9) for _ in range(rng.randint(1, 3)))
        a = region(shape, random_index(rng, shape), transpose=rng.random() < 0.2)
        b = region(shape, random_index(rng, shape))
        ea, eb = regions.elements(a), regions.elements(b)
        assert regions.overlap(a, b) == bool(np.intersect1d(ea, eb).size), (shape, a, b)
        assert regions.overlap(b, a) == regions.overlap(a, b)
        assert regions.covers(a, b) == bool(np.isin(eb, ea).all()), (shape, a, b)


def test_progressions_large_values_use_crt():
    # 1-D tensor of 10**7 elements: x[3::6] and x[5::10] meet at 15, 45, ...; x[0::6] and x[3::9]
    # meet at 12; x[1::4] and x[2::6] never (parities differ).
    n = 10 ** 7
    assert regions.overlap(region((n,), S(3, None, 6)), region((n,), S(5, None, 10)))
    assert regions.overlap(region((n,), S(0, None, 6)), region((n,), S(3, None, 9)))
    assert not regions.overlap(region((n,), S(1, None, 4)), region((n,), S(2, None, 6)))
    assert not regions.overlap(region((n,), S(0, 10, 3)), region((n,), S(10, 20)))


def test_boxless_fallback_exact_when_small_conservative_when_large():
    small = (6, 4)
    a = region(small, S(0, None, 2), keep_box=False)
    b = region(small, S(1, None, 2), keep_box=False)
    assert not regions.overlap(a, b)
    assert regions.overlap(a, region(small, S(2, 3), keep_box=False))
    big = (1 << 10, 1 << 8)
    a = region(big, S(0, None, 2), keep_box=False)
    b = region(big, S(1, None, 2), keep_box=False)
    assert regions.overlap(a, b)                       # conservative: bounds intersect
    far = region(big, S(0, 4), keep_box=False), region(big, S(8, 12), keep_box=False)
    assert not regions.overlap(*far)                   # disjoint bounds are still exact
    assert regions.covers(region(big, keep_box=False), a)
    assert not regions.covers(a, region(big, S(0, 1), keep_box=False))


def test_empty_regions_never_overlap():
    e = region((5,), S(3, 3))
    assert e.size == 0
    assert not regions.overlap(e, region((5,)))
    assert regions.covers(region((5,), S(0, 1)), e)
    assert regions.bounds(e) == (0, -1)
    assert regions.elements(Region(0, (0,), (1,), ((0, 0, 1),))).size == 0


@pytest.mark.parametrize("seed", range(60))
def test_intersection_size_matches_element_sets(seed):
    rng = random.Random(7000 + seed)
    shape = tuple(rng.randint(1, 9) for _ in range(rng.randint(1, 3)))
    for _ in range(20):
        a = region(shape, random_index(rng, shape), transpose=rng.random() < 0.2)
        b = region(shape, random_index(rng, shape))
        expected = np.intersect1d(regions.elements(a), regions.elements(b)).size
        assert regions.intersection_size(a, b) == expected
        boxless = region(shape, random_index(rng, shape), keep_box=False)
        assert regions.intersection_size(a, boxless) == np.intersect1d(
            regions.elements(a), regions.elements(boxless)).size
