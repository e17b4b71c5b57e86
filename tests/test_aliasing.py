"""The same array passed twice is one tensor (as with plain numpy); partial overlaps are refused."""
import numpy as np
import pytest

import l3c


@l3c.kernel
def add_into(x: l3c.In, y: l3c.InOut):
    y += x


@l3c.jit(chips=2)
def twice(a, b):
    add_into(a, b)      # with a is b: b doubles
    add_into(a, b)      # and doubles again
    return b


def numpy_twice(a, b):
    b += a
    b += a
    return b


def test_same_array_twice_behaves_like_numpy_compiled_and_eager():
    for run in (twice, twice.eager):
        x, ref = np.arange(4.0), np.arange(4.0)
        numpy_twice(ref, ref)                                 # plain numpy: [0, 4, 8, 12]
        out = run(x, x)
        assert np.array_equal(out, ref)
        assert np.array_equal(x, ref)                         # the caller's array saw every update


def test_aliasing_is_part_of_the_cache_key():
    x, y = np.ones(3), np.ones(3)
    assert np.array_equal(twice(x, y), [3, 3, 3])
    z = np.ones(3)
    assert np.array_equal(twice(z, z), [4, 4, 4])
    assert twice.cache_key(x, y) != twice.cache_key(z, z)
    assert "b is a" in str(twice.cache_key(z, z))


def test_partial_overlap_is_a_trace_error_naming_the_call_line():
    x = np.arange(6.0)
    with pytest.raises(l3c.TraceError, match=r"test_aliasing\.py:\d+.*'a' and 'b' overlap"):
        twice(x[:3], x[2:5])


def test_compiled_checks_the_alias_pattern_it_was_compiled_with():
    x = np.ones(3)
    same = twice.lower(x, x)
    with pytest.raises(l3c.ScheduleError, match="must be the same array"):
        same(np.ones(3), np.ones(3))
    apart = twice.lower(np.ones(3), np.ones(3))
    with pytest.raises(l3c.ScheduleError, match="must be its own array"):
        apart(x, x)
