"""`copy_program` (l3c/passes/copying.py): the passes annotate a copy, the traced program stays
as traced.

The copy builds new `Task` and `TensorInfo` records field by field and skips the edge walk of a
program without edges, so these tests check every field of every record against the original,
that the copy shares no record, node dict or adjacency or edge dict with it, and that lowering
leaves the traced program's dump unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import l3c
from l3c.ir import Task, TensorInfo
from l3c.irjson import to_dict
from l3c.passes import copy_program

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compile_scaling import BLOCK_COSTS, COLS, ROWS, traced_blocks  # noqa: E402
from _loops_kernels import looped  # noqa: E402


def _block_trace():
    jitted = l3c.jit(traced_blocks, chips=2, sub_workers=1, static_argnames=("blocks", "chips"),
                     costs=BLOCK_COSTS)
    args = (np.zeros((ROWS, COLS), np.float32), np.zeros((COLS, COLS), np.float32))
    return jitted, args, {"blocks": 20, "chips": 2}


def _fields(record) -> dict:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def _assert_copied(original, copy) -> None:
    """Equal records field by field, none of them shared; separate graph dicts."""
    assert len(copy.graph) == len(original.graph)
    for v, attrs in original.graph._node.items():
        fresh = copy.graph._node[v]
        assert fresh is not attrs
        assert list(fresh) == list(attrs)            # same keys in the same order
        assert fresh["task"] is not attrs["task"]
        assert type(fresh["task"]) is Task
        assert _fields(fresh["task"]) == _fields(attrs["task"])
        assert {k: x for k, x in fresh.items() if k != "task"} == \
            {k: x for k, x in attrs.items() if k != "task"}
        assert copy.graph._succ[v] is not original.graph._succ[v]
        assert copy.graph._pred[v] is not original.graph._pred[v]
    assert sorted(copy.graph.edges(data=True)) == sorted(original.graph.edges(data=True))
    for u, v, data in original.graph.edges(data=True):
        assert copy.graph.edges[u, v] is not data
    assert len(copy.tensors) == len(original.tensors)
    for mine, theirs in zip(copy.tensors, original.tensors):
        assert mine is not theirs and type(mine) is TensorInfo
        assert _fields(mine) == _fields(theirs)


def test_the_copy_of_a_traced_program_has_every_field_and_shares_no_record():
    jitted, args, kwargs = _block_trace()
    traced = jitted.trace(*args, **kwargs)
    _assert_copied(traced, copy_program(traced))


def test_the_copy_of_a_lowered_program_keeps_its_edges_placement_and_offsets():
    jitted, args, kwargs = _block_trace()
    lowered = jitted.lower(*args, **kwargs).program
    assert lowered.graph.number_of_edges() > 0
    copied = copy_program(lowered)
    _assert_copied(lowered, copied)
    assert json.dumps(to_dict(copied), sort_keys=True) == \
        json.dumps(to_dict(lowered), sort_keys=True)


def test_lowering_leaves_the_traced_program_as_traced():
    """What `.eager` and `dump-ir --after trace` read does not change when the passes run, with
    loops and with groups."""
    jitted, args, kwargs = _block_trace()
    cases = [(jitted, args, kwargs),
             (l3c.jit(looped, chips=2),
              (np.zeros((4, 8)), np.ones(1, np.int32), np.zeros(1, np.int32)), {})]
    for fn, fn_args, fn_kwargs in cases:
        traced = fn.trace(*fn_args, **fn_kwargs)
        before = json.dumps(to_dict(traced), sort_keys=True)
        records = [(_fields(t), t) for t in traced.tasks]
        lowered = fn.lower(*fn_args, **fn_kwargs).program
        assert lowered is not traced and all(t.chip is not None for t in lowered.tasks)
        assert json.dumps(to_dict(traced), sort_keys=True) == before
        assert all(_fields(t) == fields for fields, t in records)
        assert all(t.chip is None and t.queue_pos is None for t in traced.tasks)
        assert traced.graph.number_of_edges() == 0
