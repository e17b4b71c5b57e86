"""A cheap structural copy of a traced Program for the passes to annotate.

`Jitted` keeps the program as traced (`.eager` and `dump-ir --after trace` read it) and runs the
passes on a copy. The passes change only some parts: the `Task`, `TensorInfo` and `Loop` records
(placement, groups, lifetimes, offsets, the bound reads' dependencies), the graph (edges and node
attributes), `groups`, `scopes`, `memory`, `passes_run` and `reports`. So the copy has its own
records, graph dicts and containers, and shares everything immutable: the tasks' argument tuples
(frozen `Access`/`Region`/`ScalarArg` records), shapes, locations, params and the result tree.
Fields not named here get a shallow copy of their container. `copy.deepcopy` copied all of it
through the generic memo machinery, about 10 times slower.

Sharing a record until a pass writes it would save nothing: the schedule pass writes every task
(`chip`, `queue_pos`) and its node dict, the scopes pass every used tensor, the deps pass every
adjacency dict. So each copy is made as cheaply as Python allows: `Task` and `TensorInfo` are
slots records, copied field by field by a function generated from their slots, and a program
without edges (as traced) skips the edge walk.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import networkx as nx

from ..ir import CostModel, Loop, MemoryReport, Program, Task, TensorInfo
from .graphs import gc_paused


def _slots_copier(cls: type) -> Callable[[Any], Any]:
    """A function copying a record of slots class `cls` field by field, generated from its slots
    as dataclasses generate `__init__` (`copy.copy` goes through `__reduce_ex__`, several times
    slower, and a large program has one `Task` per kernel call)."""
    lines = "".join(f"    new.{name} = old.{name}\n" for name in cls.__slots__)
    namespace = {"_new": object.__new__, "cls": cls}
    exec(f"def copy_{cls.__name__}(old):\n    new = _new(cls)\n{lines}    return new\n", namespace)
    return namespace[f"copy_{cls.__name__}"]


_copy_task = _slots_copier(Task)
_copy_tensor = _slots_copier(TensorInfo)


def _copy_record(record: object, cls: type) -> object:
    fresh = object.__new__(cls)
    fresh.__dict__.update(record.__dict__)
    return fresh


def _copy_report(value: object) -> object:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, set):
        return set(value)
    return value


def copy_program(program: Program) -> Program:
    """A copy of `program` that the passes may annotate without touching the original."""
    with gc_paused():
        return _copy(program)


def _copy(program: Program) -> Program:
    old = program.graph
    graph = nx.DiGraph()
    graph.graph.update(old.graph)
    nodes = graph._node
    for v, attrs in old._node.items():
        fresh = attrs.copy()
        task = attrs.get("task")
        if task.__class__ is Task:
            fresh["task"] = _copy_task(task)
        elif isinstance(task, Task):
            fresh["task"] = copy.copy(task)
        nodes[v] = fresh
    succ: dict = {v: {} for v in nodes}
    pred: dict = {v: {} for v in nodes}
    for u, targets in old._succ.items():
        if targets:                     # a traced program has no edges yet
            for v, data in targets.items():
                fresh = dict(data)
                for key in ("kinds", "tensors"):
                    if isinstance(fresh.get(key), set):
                        fresh[key] = set(fresh[key])
                succ[u][v] = pred[v][u] = fresh
    graph._adj = graph._succ = succ
    graph._pred = pred
    fields = {f.name: _copy_report(getattr(program, f.name)) for f in dataclasses.fields(program)}
    memory = program.memory
    fields.update(
        graph=graph, tensors=[_copy_tensor(t) for t in program.tensors],
        groups=[list(g) for g in program.groups],
        loops={lid: _copy_record(loop, Loop) for lid, loop in program.loops.items()},
        memory=_copy_record(memory, MemoryReport) if isinstance(memory, MemoryReport) else memory,
        reports={k: _copy_report(v) for k, v in program.reports.items()})
    if isinstance(program.costs, CostModel):
        fields["costs"] = dataclasses.replace(program.costs,
                                              kernel_costs=dict(program.costs.kernel_costs))
    return Program(**fields)
