"""Hostile arguments to jitted, compiled and loaded functions.

What each input means (documented in docs/reliability.md):
- another shape or dtype: `jit` traces again (a new signature); a `Compiled` or loaded schedule raises
  `ScheduleError` showing expected and given;
- non-contiguous, Fortran-ordered, non-native byte order, NaN/inf, zero-size, 0-d: work, with the
  same results as numpy (inputs are copied into the arena and written back element by element);
- a read-only array that a kernel writes: `ScheduleError` before any worker runs (read-only arrays
  that are only read are fine);
- object, string, structured, datetime arrays, lists: `TraceError` (jit) / `ScheduleError` (compiled);
- shapes whose arena cannot be mapped: `L3CError` before any worker runs; the pool stays usable.
No case may run a kernel on wrong data: a probe kernel counts its calls in a file.
"""
from __future__ import annotations

import numpy as np
import pytest

import l3c
from _proc import children


@l3c.kernel
def scale_into(x: l3c.In, y: l3c.Out):
    y[...] = 2.0 * x


@l3c.kernel
def bump(x: l3c.InOut):
    x += 1


@l3c.jit(chips=2, timeout=30)
def twice_and_bump(x):
    y = l3c.empty(x.shape, x.dtype)
    scale_into(x, y)
    bump(x)
    return y


@l3c.jit(chips=2, timeout=30)
def only_reads(x):
    y = l3c.empty(x.shape, x.dtype)
    scale_into(x, y)
    return y


def check(fn, x):
    """fn(x) equals numpy: result 2x, and x bumped in place."""
    want_y, want_x = 2.0 * x, x + 1
    y = fn(x)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(x, want_x)
    assert y.flags.owndata                     # a fresh array, never a view of the arena


WORKING = {
    "non-contiguous": lambda: np.arange(16.0)[::2],
    "2-d column slice": lambda: np.arange(24.0).reshape(4, 6)[:, 1::2],
    "reversed": lambda: np.arange(7.0)[::-1],
    "fortran": lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "big-endian": lambda: np.arange(5, dtype=">f8"),
    "nan and inf": lambda: np.array([np.nan, np.inf, -np.inf, 0.0, -0.0]),
    "zero-size": lambda: np.zeros((0, 3)),
    "zero-size 2": lambda: np.zeros((4, 0)),
    "0-d": lambda: np.array(3.5),
    "float32": lambda: np.arange(6, dtype=np.float32),
    "int64": lambda: np.arange(6, dtype=np.int64),
    "masked subclass": lambda: np.ma.masked_array(np.arange(4.0)),
}


@pytest.mark.parametrize("name", [k for k, v in WORKING.items() if v is not None])
@pytest.mark.parametrize("path", ["jit", "eager"])
def test_unusual_but_valid_inputs_work(name, path):
    x = WORKING[name]()
    fn = twice_and_bump if path == "jit" else twice_and_bump.eager
    if x.dtype.kind == "i":
        want_y, want_x = 2 * x, x + 1
        y = fn(x)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(x, want_x)
        return
    check(fn, x)


def test_a_view_input_updates_its_base():
    base = np.arange(12.0).reshape(3, 4)
    view = base[:, ::2]
    twice_and_bump(view)
    np.testing.assert_array_equal(base[:, ::2], np.arange(12.0).reshape(3, 4)[:, ::2] + 1)
    np.testing.assert_array_equal(base[:, 1::2], np.arange(12.0).reshape(3, 4)[:, 1::2])


@pytest.mark.parametrize("path", ["jit", "eager", "compiled"])
def test_read_only_input_written_by_a_kernel_is_refused_before_running(path):
    x = np.arange(4.0)
    x.flags.writeable = False
    fn = {"jit": twice_and_bump, "eager": twice_and_bump.eager,
          "compiled": twice_and_bump.lower(np.zeros(4))}[path]
    with pytest.raises(l3c.ScheduleError, match=r"'x' is a read-only array.*bump.*x\.copy\(\)"):
        fn(x)
    np.testing.assert_array_equal(x, np.arange(4.0))
    # only read: fine
    np.testing.assert_array_equal(only_reads(x), 2 * np.arange(4.0))
    np.testing.assert_array_equal(only_reads.eager(x), 2 * np.arange(4.0))


def test_new_shape_or_dtype_retraces_jit_but_is_a_schedule_error_for_compiled(tmp_path):
    before = twice_and_bump.traces
    check(twice_and_bump, np.arange(3.0))
    check(twice_and_bump, np.arange(9.0))
    assert twice_and_bump.traces >= before + 1
    compiled = twice_and_bump.lower(np.zeros(3))
    path = str(tmp_path / "t.l3c")
    compiled.save(path)
    loaded = l3c.load(path)
    for fn in (compiled, loaded):
        for bad in (np.zeros(4), np.zeros(3, np.float32), np.zeros((3, 1)), [0.0, 0.0, 0.0], 3.0):
            with pytest.raises(l3c.ScheduleError, match="expected .*\n.*given"):
                fn(bad)
        with pytest.raises(l3c.ScheduleError):
            fn()
        with pytest.raises(l3c.ScheduleError):
            fn(np.zeros(3), np.zeros(3))
        check(fn, np.arange(3.0))


@pytest.mark.parametrize("bad", [
    np.array([1, None, 2.0], dtype=object),
    np.array(["ab", "c"]),
    np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]),
    np.zeros(3, dtype="M8[s]"),
    [1.0, 2.0],
    {"a": np.zeros(2)},
])
def test_non_numeric_inputs_are_trace_errors(bad):
    with pytest.raises(l3c.TraceError):
        twice_and_bump(bad)
    with pytest.raises(l3c.TraceError):
        twice_and_bump.eager(bad)


def test_a_shape_whose_arena_cannot_be_mapped_is_an_error_before_running():
    """A broadcast view claims 800 GB without owning it: tracing is fine, the arena cannot exist."""
    huge = np.broadcast_to(np.zeros(1), (10 ** 6, 10 ** 5))
    check(twice_and_bump, np.arange(4.0))
    children_before = children()
    with pytest.raises(l3c.L3CError, match="arena"):
        only_reads(huge)
    assert children() == children_before  # refused before the running pool was stopped
    check(twice_and_bump, np.arange(4.0))

