"""What the tracer shares between calls gives what computing each call afresh gives.

Views sliced alike from tensors of one shape share their region record (and name the same region
as the general indexing path); `l3c.jit` checks a group like one already checked only once, so a
group that conflicts still raises at its own line, however many like-looking groups came first;
tasks built field by field equal `Task(...)`, and the graph gets every node's adjacency.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import l3c
from l3c.ir import Task
from l3c.trace import proxy


@l3c.kernel
def fill(out: l3c.Out):
    pass


@l3c.kernel
def move(src: l3c.In, dst: l3c.Out):
    pass


def keys(n):
    return [0, n - 1, -1, slice(None), slice(1, None), slice(None, None, -1), slice(-2, None, -2),
            slice(0, 1), slice(1, None, 2), slice(-n - 5, n + 5, 3)]


def full_key(view, key):
    return (key,) + (slice(None),) * (view.ndim - 1)


def test_views_sliced_alike_share_one_region_and_match_the_general_path():
    seen = []

    @l3c.jit(chips=1)
    def f(x):
        tensors = [x] + [l3c.empty(x.shape, x.dtype) for _ in range(3)]
        for t in tensors:
            # whole, a sliced child, a child of that child, a transposed view (no shared dict)
            for p, parent in enumerate((t, t[1::2], t[1::2][::-1], t.T)):
                for k, key in enumerate(keys(parent.shape[0])):
                    fast, full = parent[key], parent[full_key(parent, key)]
                    seen.append((t.tensor_id, p, k, fast, full))
        return None

    f.trace(np.zeros((6, 8), np.float32))
    first = {}
    for tensor, p, k, fast, full in seen:
        assert fast.tensor_id == tensor
        assert fast.shape == full.shape and fast.region == full.region, (p, k)
        first.setdefault((p, k), fast.region)
    shared = [fast.region is first[p, k] for tensor, p, k, fast, _ in seen if p < 3]
    assert all(shared) and len(shared) == 4 * 3 * 10


def test_many_distinct_slices_and_long_axes_stay_right():
    seen = []

    @l3c.jit(chips=1)
    def f(x, y):
        for a in range(x.shape[0]):          # over SLICE_CACHE_LIMIT distinct keys of one dict
            for b in range(a + 1, a + 8):
                seen.append((x[a:b], x[a:b, :]))
        for i in range(y.shape[0]):          # a first axis longer than SLICE_CACHE_AXIS
            seen.append((y[i], y[i, :]))
            seen.append((y[i:i + 2], y[i:i + 2, :]))
        return None

    rows = proxy.SLICE_CACHE_LIMIT // 6 + 1
    assert rows <= proxy.SLICE_CACHE_AXIS < 300
    f.trace(np.zeros((rows, 4), np.float32), np.zeros((300, 4), np.float32))
    assert len(seen) > proxy.SLICE_CACHE_LIMIT
    for fast, full in seen:
        assert fast.shape == full.shape and fast.region == full.region


def test_a_conflicting_group_after_many_like_ones_raises_at_its_own_line():
    @l3c.jit(chips=2)
    def f(x):
        for _ in range(30):
            h = l3c.empty((8, 4), x.dtype)
            l3c.group(fill, [(h[0::2],), (h[1::2],)])
        h = l3c.empty((8, 4), x.dtype)
        l3c.group(fill, [(h[0::2],), (h[0:3:2],)])       # rows 0 and 2 written by both
        return None

    line = f.fn.__code__.co_firstlineno + 6
    with pytest.raises(l3c.TraceError, match=rf"test_trace_shared\.py:{line}: l3c\.group\(\) of "
                                             r"fill: members 0 and 1 both access t30"):
        f.trace(np.zeros((8, 4), np.float32))


def test_groups_alike_but_for_which_tensors_they_share_are_checked_apart():
    @l3c.jit(chips=2)
    def f(x):
        a, b, c, d = (l3c.empty((8, 4), x.dtype) for _ in range(4))
        for _ in range(5):
            l3c.group(move, [(a[0::2], b[0::2]), (c[0::2], d[0::2])])
        l3c.group(move, [(a[0::2], b[0::2]), (c[0::2], a[0::2])])    # member 1 writes what 0 reads
        return None

    line = f.fn.__code__.co_firstlineno + 5
    with pytest.raises(l3c.TraceError, match=rf"test_trace_shared\.py:{line}: .* both access t0"):
        f.trace(np.zeros((8, 4), np.float32))


def test_traced_tasks_and_graph_are_what_add_task_makes():
    @l3c.jit(chips=2, sub_workers=1)
    def f(x):
        h = l3c.zeros((8, 4), x.dtype)
        l3c.group(move, [(x[0::2], h[0::2]), (x[1::2], h[1::2])])
        with l3c.scope():
            t = l3c.empty((8, 4), x.dtype)
            move.on(1)(h, t)
        return h

    prog = f.trace(np.zeros((8, 4), np.float32))
    graph = prog.graph
    n = len(graph)
    assert n == 4
    assert list(graph.succ) == list(graph.pred) == list(range(n))
    assert graph.number_of_edges() == 0
    for tid, attrs in graph.nodes(data=True):
        task = attrs["task"]
        made = Task(**{fld.name: getattr(task, fld.name) for fld in dataclasses.fields(Task)})
        assert [getattr(task, fld.name) for fld in dataclasses.fields(Task)] == \
            [getattr(made, fld.name) for fld in dataclasses.fields(Task)]
        expected = dict(attrs)
        prog.sync_node_attrs(tid)
        assert list(attrs.items()) == list(expected.items())
    assert [graph.nodes[t]["task"].group_rank for t in range(1, 3)] == [0, 1]
    assert graph.nodes[3]["task"].pin == 1
