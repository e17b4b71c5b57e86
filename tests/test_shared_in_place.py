"""`l3c.shared` arguments used in place: the kernels' views point into the shared memory itself
(checked in the worker against its own /proc/self/maps), for basic-slicing views of every kind
(columns, steps, transposes, reversals), results that are views of such an argument, layouts a view
cannot follow (staged instead, still correct), many layouts of one signature, and the workers'
mappings going away with the last reference in the parent or with the workers."""
from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

import l3c
from l3c.runtime import sharedmem
from l3c.runtime.pool import current_pool


@l3c.kernel
def in_shared_memory(x: l3c.In, out: l3c.Out):
    """out[0] = 1 if x's memory is an l3c.shared mapping in this worker, else 0."""
    address = x.__array_interface__["data"][0]
    out[0] = 0
    with open("/proc/self/maps") as f:
        for line in f:
            if "l3c-shared" in line:
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                if lo <= address < hi:
                    out[0] = 1


@l3c.kernel
def add_index(x: l3c.InOut):
    x += np.arange(x.size, dtype=x.dtype).reshape(x.shape)


@l3c.kernel
def plus_one(x: l3c.In, y: l3c.Out):
    y[...] = x + 1


@l3c.jit(chips=2)
def where(x):
    out = l3c.empty((1,), np.int64)
    in_shared_memory(x, out)
    return out


@l3c.jit(chips=2)
def bump_index(x):
    add_index(x)


@l3c.jit(chips=2)
def bump_then_slice(x):
    add_index(x)
    return x[1:3]


@l3c.jit(chips=2)
def bump_flat(x):
    add_index(x.reshape(-1))


@l3c.jit(chips=2)
def on_two_chips(a, b):
    y = l3c.empty_like(a)
    plus_one.on(0)(a, y)
    add_index.on(1)(b)
    return y


VIEWS = {
    "whole": lambda a: a,
    "row": lambda a: a[2],
    "rows": lambda a: a[1:4],
    "column": lambda a: a[:, 3],
    "steps": lambda a: a[::2, 1::3],
    "transposed": lambda a: a.T,
    "reversed": lambda a: a[::-1, 4:1:-1],
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_kernels_see_views_of_shared_arrays_in_the_shared_memory(name):
    view = VIEWS[name]
    s = l3c.shared(np.arange(30.0).reshape(5, 6))
    ref = np.arange(30.0).reshape(5, 6)
    assert where(view(s))[0] == 1
    assert where(view(ref))[0] == 0            # an ordinary array is staged in the arena
    for _ in range(2):
        bump_index(view(s))
        view(ref)[...] += np.arange(view(ref).size).reshape(view(ref).shape)
    np.testing.assert_array_equal(s, ref)


def test_a_result_that_is_a_view_of_a_shared_argument_is_read_from_it():
    s = l3c.shared(np.zeros((4, 3)))
    out = bump_then_slice(s[:, ::-1])
    expected = np.zeros((4, 3))
    expected[:, ::-1] += np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(s, expected)
    np.testing.assert_array_equal(out, expected[:, ::-1][1:3])
    assert not np.shares_memory(out, s)        # results are fresh arrays


def test_a_layout_a_view_cannot_follow_is_staged_and_still_right():
    s = l3c.shared(np.zeros((4, 6)))
    view = s[:, ::2]                           # flattened inside: not one strided view of it
    bump_flat(view)
    expected = np.zeros((4, 6))
    expected[:, ::2] = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(s, expected)
    compiled = bump_flat.lower(view)
    assert all(not layout.params for layout in compiled.artifacts["in_place"].values())
    bump_flat(s[1])                             # contiguous: used in place
    expected[1] += np.arange(6.0)
    np.testing.assert_array_equal(s, expected)


def test_many_layouts_of_one_signature_and_two_shared_arguments():
    arrays = [l3c.shared(np.zeros(8)) for _ in range(12)]
    refs = [np.zeros(8) for _ in range(12)]
    a = l3c.shared(np.arange(8.0))
    for round_ in range(2):                    # more layouts than a plan keeps variants of
        for s, ref in zip(arrays, refs):
            y = on_two_chips(a, s)
            ref += np.arange(8.0)
            np.testing.assert_array_equal(y, np.arange(8.0) + 1)
    for s, ref in zip(arrays, refs):
        np.testing.assert_array_equal(s, ref)


def _mapped_in(pids: list[int], inode: int | None = None) -> int:
    """How many mappings of l3c.shared memory (of the file `inode`, if given) `pids` have."""
    n = 0
    for pid in pids:
        with open(f"/proc/{pid}/maps") as f:
            n += sum("l3c-shared" in line and (inode is None or int(line.split()[4]) == inode)
                     for line in f)
    return n


def _inode(array: np.ndarray) -> int:
    mem = sharedmem.owner(array)
    return os.fstat(mem.fd).st_ino


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _eventually(predicate, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_workers_unmap_shared_memory_when_the_last_reference_goes():
    s = l3c.shared(np.zeros((5, 6)))
    inode = _inode(s)
    bump_index(s[:, 2])
    pool = current_pool()
    pids = [w.pid for w in pool._workers if w.pid]
    assert _mapped_in(pids, inode) == 1        # one worker ran the kernel
    view = s[1]
    del s
    gc.collect()
    time.sleep(0.05)
    assert _mapped_in(pids, inode) == 1        # a view still holds it
    del view
    gc.collect()
    assert _eventually(lambda: _mapped_in(pids, inode) == 0)
    assert np.array_equal(where(np.zeros(3)), [0])   # the pool goes on


def test_a_replaced_worker_maps_the_memory_again():
    s = l3c.shared(np.zeros(4))
    bump_index(s)
    pool = current_pool()
    killed = [w.pid for w in pool._workers if w.pid and w.mapped]
    for pid in killed:
        os.kill(pid, 9)
    assert _eventually(lambda: all(_dead(pid) for pid in killed))
    bump_index(s)                              # replaced before the run, maps on first use
    np.testing.assert_array_equal(s, 2 * np.arange(4.0))


def test_the_fork_server_holds_no_shared_memory_made_before_it():
    l3c.shutdown()
    s = l3c.shared(np.zeros(1 << 16))
    bump_index(s[:4])
    server = current_pool().server_pid
    assert _mapped_in([server], _inode(s)) == 0
    fds = [os.readlink(f"/proc/{server}/fd/{n}") for n in os.listdir(f"/proc/{server}/fd")]
    assert not any("l3c-shared" in f for f in fds)
