"""The tracer's fast record constructors and its collector pause (`l3c/trace/records.py`,
`l3c.trace.tracer.resume_collector`), and the copy of its slots records the passes run on
(`l3c/passes/copying.py`)."""
import dataclasses
import gc
import weakref

import numpy as np

import l3c
from l3c.ir import Access, Config, Region, Task, TensorInfo
from l3c.passes import copy_program
from l3c.trace import trace
from l3c.trace.records import make_access, make_region


def test_fast_records_equal_the_dataclass_ones():
    box = ((3, 1, 1), (0, 16, 1))
    fast, slow = make_region(48, (16,), (1,), box), Region(48, (16,), (1,), box)
    assert fast == slow and hash(fast) == hash(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    assert [f.name for f in dataclasses.fields(Region)] == list(vars(fast))
    access = make_access("a", 2, fast, "In")
    assert access == Access("a", 2, slow, "In")
    assert [f.name for f in dataclasses.fields(Access)] == list(vars(access))
    assert access.reads and not access.writes


@l3c.kernel
def _add(a: l3c.In, b: l3c.In, out: l3c.InOut):
    out += a + b


class _Node:
    pass


def test_trace_leaves_the_collector_on_and_cycles_collectable():
    made = []

    def fn(x):
        node = _Node()
        node.me = node                       # a cycle made while the collector is paused
        made.append(weakref.ref(node))
        t = l3c.empty((4, 4), x.dtype)
        _add(x[0], x[1], t[2])
        return t

    assert gc.isenabled()
    program = trace(fn, (np.zeros((4, 4), np.float32),))
    assert gc.isenabled()
    assert len(program.graph) == 1
    task = program.graph.nodes[0]["task"]
    # the tracer builds tasks positionally: every field must land in its place
    assert (task.id, task.kernel, task.worker, task.scope, task.loops, task.pin, task.group,
            task.group_rank, task.chip, task.queue_pos) == (0, _add.name, "chip", (), (), None,
                                                            None, 0, None, None)
    assert task.loc.startswith("test_trace_records.py:")
    assert [a.region.box for a in task.accesses] == [((0, 1, 1), (0, 4, 1)),
                                                     ((1, 1, 1), (0, 4, 1)),
                                                     ((2, 1, 1), (0, 4, 1))]
    gc.collect()
    assert made[0]() is None                 # the cycle was still collected


def test_copy_program_copies_every_field_of_the_slots_records():
    def fn(x):
        t = l3c.zeros((4, 4), x.dtype)
        with l3c.scope():
            u = l3c.empty((4, 4), x.dtype)
            _add(x, t, u)
        l3c.group(_add, [(x[0], x[1], t[0]), (x[2], x[3], t[1])])
        return t

    traced = trace(fn, (np.zeros((4, 4), np.float32),), config=Config(chips=2))
    copied = copy_program(traced)
    pairs = [(traced.task(n), copied.task(n)) for n in traced.graph]
    pairs += list(zip(traced.tensors, copied.tensors))
    assert len(pairs) == len(traced.graph) + 3
    for old, new in pairs:
        assert new is not old and type(new) is type(old)
        names = [f.name for f in dataclasses.fields(type(old))]
        assert [getattr(new, n) for n in names] == [getattr(old, n) for n in names]
    first = copied.task(0)
    first.chip, first.queue_pos = 1, 0
    copied.tensors[1].arena_offset = 64
    assert traced.task(0).chip is None and traced.tensors[1].arena_offset is None
    assert not hasattr(first, "__dict__") and not hasattr(copied.tensors[1], "__dict__")
    assert isinstance(first, Task) and isinstance(copied.tensors[1], TensorInfo)
