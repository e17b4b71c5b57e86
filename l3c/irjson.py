"""The JSON view of the IR: `dump-ir --format json`, and the form schedule files store (`l3c/aot.py`;
`l3c/ircodec.py` reads it back with every field checked).

Static and scalar values keep their Python type through tagged JSON (`tagged_value`). Loops are the
top-level `loops` list (bounds and flags as ints or accesses); tasks and tensors carry `loops`; a
region that moves with loop variables has `shifts` ([loop, offset, [box moves]] each); a loop
variable scalar is `{"affine": [const, [[loop, coef], ...]]}`; a carried edge has `carried: true`.
"""
from __future__ import annotations

import json
from typing import Any

from .ir import Access, Affine, Loop, Program, Region, ResultRef, ScalarArg
from .irprint import jsonable, transfers, waits


def tagged_value(value: Any, strict: bool = True) -> Any:
    """A static or scalar value as JSON that keeps its Python type (`l3c/ircodec.py` reads it
    back): tuples, lists, dicts and complex numbers are tagged (`{"tuple": [...]}`, `{"list": ...}`,
    `{"dict": [[k, v], ...]}`, `{"complex": [re, im]}`). Any other object raises TypeError, or with
    `strict=False` (a dump for people) is shown as its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, complex):
        return {"complex": [value.real, value.imag]}
    if isinstance(value, tuple):
        return {"tuple": [tagged_value(x, strict) for x in value]}
    if isinstance(value, list):
        return {"list": [tagged_value(x, strict) for x in value]}
    if isinstance(value, dict):
        return {"dict": [[tagged_value(k, strict), tagged_value(x, strict)]
                         for k, x in value.items()]}
    if not strict:
        return {"repr": repr(value)}
    raise TypeError(f"cannot store static value {value!r} of type {type(value).__name__} in a "
                    "schedule file (allowed: None, bool, int, float, complex, str and "
                    "tuples/lists/dicts of them)")


def region_json(region: Region) -> dict[str, Any]:
    """A region; `shifts` ([loop, offset, [box start moves]] each) only when it moves."""
    out: dict[str, Any] = {"offset": region.offset, "shape": list(region.shape),
                           "strides": list(region.strides),
                           "box": None if region.box is None else [list(b) for b in region.box]}
    if region.shifts:
        out["shifts"] = [[sh.loop, sh.offset, list(sh.box)] for sh in region.shifts]
    return out


def affine_json(value: Affine) -> list[Any]:
    return [value.const, [list(term) for term in value.terms]]


def _arg_json(arg: Access | ScalarArg, strict: bool) -> dict[str, Any]:
    if isinstance(arg, Access):
        return {"param": arg.param, "tensor": arg.tensor, "mode": arg.mode,
                "region": region_json(arg.region)}
    if isinstance(arg.value, Affine):
        return {"param": arg.param, "affine": affine_json(arg.value)}
    return {"param": arg.param, "value": tagged_value(arg.value, strict)}


def _bound_json(value: Any) -> Any:
    return _arg_json(value, True) if isinstance(value, Access) else value


def loop_json(loop: Loop) -> dict[str, Any]:
    """A loop/cond record: bounds and flag as ints or accesses, the deps pass's read orderings
    as [task, carried] pairs."""
    return {"id": loop.id, "kind": loop.kind, "loc": loop.loc, "parent": loop.parent,
            "first_task": loop.first_task, "end_task": loop.end_task,
            "start": _bound_json(loop.start), "stop": _bound_json(loop.stop),
            "step": _bound_json(loop.step), "flag": _bound_json(loop.flag),
            "max_iterations": loop.max_iterations, "invert": loop.invert,
            "reads_after": [[t, c] for t, c in loop.reads_after],
            "reads_before": [[t, c] for t, c in loop.reads_before], "scope": list(loop.scope)}


def _results_json(tree: Any, strict: bool) -> Any:
    if tree is None:
        return None
    if isinstance(tree, ResultRef):
        return {"tensor": tree.tensor, "dtype": tree.dtype, "region": region_json(tree.region)}
    kind, items = tree
    if kind == "dict":
        return {"dict": [[tagged_value(k, strict), _results_json(v, strict)] for k, v in items]}
    return {kind: [_results_json(v, strict) for v in items]}


def to_dict(program: Program, *, strict: bool = False, with_transfers: bool = True) -> dict[str, Any]:
    """The JSON form of a program, the one both `dump-ir --format json` and schedule files use
    (`l3c/ircodec.py` decodes it). Top-level keys: program, params, tasks, tensors, groups, memory,
    results, reports, and (`with_transfers`, several hosts) transfers. `strict`: a static value
    JSON cannot hold raises TypeError instead of being shown as its repr. `loops` lists the
    loop/cond records (`loop_json`)."""
    tasks = []
    for task in program.tasks:
        edges = waits(program, task.id)
        tasks.append({
            "id": task.id, "kernel": task.kernel, "worker": task.worker, "chip": task.chip,
            "host": program.host_of(task), "group": task.group, "group_rank": task.group_rank, "pin": task.pin,
            "queue_pos": task.queue_pos, "deps": [u for u, *_ in edges],
            "waits": [{"task": u, "kinds": kinds, "tensors": tensors, "added_by": by}
                      | ({"carried": True} if carried else {})
                      for u, kinds, tensors, by, carried in edges],
            "args": [_arg_json(a, strict) for a in task.args], "scope": list(task.scope),
            "loops": list(task.loops), "loc": task.loc,
        })
    tensors = [{"id": t.id, "name": t.name, "kind": t.kind, "shape": list(t.shape),
                "dtype": t.dtype, "nbytes": t.nbytes, "loc": t.loc, "scope": list(t.scope),
                "loops": list(t.loops),
                "zero_init": t.zero_init, "first_use": t.first_use, "last_use": t.last_use,
                "dead_after": t.dead_after, "arena_offset": t.arena_offset}
               for t in program.tensors]
    m = program.memory
    c = program.config
    return {
        "program": {"name": program.name, "loc": program.loc, "passes_run": list(program.passes_run),
                    "config": {"chips": c.chips, "sub_workers": c.sub_workers, "hosts": c.hosts,
                               "fuse_groups": c.fuse_groups},
                    "scopes": {str(k): list(v) for k, v in sorted(program.scopes.items())}},
        "params": [{"name": p.name, "tensor": p.tensor,
                    "static": None if p.tensor is not None else tagged_value(p.static, strict)}
                   for p in program.params],
        "loops": [loop_json(loop) for _, loop in sorted(program.loops.items())],
        "tasks": tasks,
        "tensors": tensors,
        "groups": [list(g) for g in program.groups],
        "memory": {"arena_bytes": m.arena_bytes, "lower_bound_bytes": m.lower_bound_bytes,
                   "naive_bytes": m.naive_bytes, "staging_bytes": m.staging_bytes,
                   "added_edges": m.added_edges, "alignment": m.alignment},
        "results": _results_json(program.results, strict),
        "reports": jsonable(program.reports),
    } | ({"transfers": [{"id": t.id, "producer": t.producer, "src": t.src, "dst": t.dst,
                         "landing": t.order, "consumers": list(t.consumers), "bytes": t.nbytes,
                         "pieces": [{"tensor": p.tensor, "elements": p.count} for p in t.pieces]}
                        for t in transfers(program)]} if with_transfers else {})


def to_json(program: Program) -> str:
    return json.dumps(to_dict(program), indent=1, sort_keys=False) + "\n"

