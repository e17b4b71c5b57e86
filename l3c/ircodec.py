"""The JSON codec of the IR: a `Program` as plain JSON data and back, with every field type- and
range-checked on the way in (a schedule file is untrusted input).

`enc_program` / `dec_program` are the form schedule files store (`l3c/aot.py`); static values keep
their Python type through tagged JSON (`{"tuple": [...]}`, `{"list": ...}`, `{"dict": [[k, v]]}`).
Decoding raises ValueError, TypeError, KeyError (or IndexError) describing what is malformed; the
caller names the file.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from .ir import (Access, Config, MemoryReport, Param, Program, Region, ResultRef, ScalarArg, Task,
                 TensorInfo)


# ------------------------------------------------------------------------------------ values
def enc_value(v: Any) -> Any:
    """A static Python value as JSON, keeping tuple/list/dict apart. Raises TypeError otherwise."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {"tuple": [enc_value(x) for x in v]}
    if isinstance(v, list):
        return {"list": [enc_value(x) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[enc_value(k), enc_value(x)] for k, x in v.items()]}
    raise TypeError(f"cannot store static value {v!r} of type {type(v).__name__} in a schedule "
                    "file (allowed: None, bool, int, float, str and tuples/lists/dicts of them)")


def dec_value(j: Any) -> Any:
    if j is None or isinstance(j, (bool, int, float, str)):
        return j
    if isinstance(j, dict) and len(j) == 1:
        (tag, items), = j.items()
        if tag == "tuple":
            return tuple(dec_value(x) for x in _list(items))
        if tag == "list":
            return [dec_value(x) for x in _list(items)]
        if tag == "dict":
            return {dec_value(k): dec_value(x) for k, x in (_pair(p) for p in _list(items))}
    raise ValueError(f"not a stored value: {j!r:.80}")


def _list(j: Any) -> list:
    if not isinstance(j, list):
        raise ValueError(f"expected a list, got {type(j).__name__}")
    return j


def _pair(j: Any) -> tuple:
    j = _list(j)
    if len(j) != 2:
        raise ValueError("expected a pair")
    return j[0], j[1]


def _int(j: Any, low: int = 0) -> int:
    if not isinstance(j, int) or isinstance(j, bool) or j < low:
        raise ValueError(f"expected an integer >= {low}, got {j!r:.40}")
    return j


def _str(j: Any) -> str:
    if not isinstance(j, str):
        raise ValueError(f"expected a string, got {type(j).__name__}")
    return j


def _ints(j: Any, low: int | None = 0) -> tuple[int, ...]:
    return tuple(_int(x, low) if low is not None else _int(x, -(1 << 62)) for x in _list(j))


def _dtype(j: Any) -> str:
    name = _str(j)
    dt = np.dtype(name)
    if dt.kind not in "biufc" or dt.name != name:      # plain numeric data only, never objects
        raise ValueError(f"unsupported dtype {name!r}")
    return name


def _scalar(j: Any) -> Any:
    if j is None or isinstance(j, (bool, int, float, str)):
        return j
    raise ValueError(f"expected a scalar, got {type(j).__name__}")


# ------------------------------------------------------------------------------------ IR
def enc_region(r: Region) -> list:
    return [r.offset, list(r.shape), list(r.strides),
            None if r.box is None else [list(b) for b in r.box]]


def dec_region(j: Any) -> Region:
    offset, shape, strides, box = _list(j)
    shape, strides = _ints(shape), _ints(strides, None)
    if len(shape) != len(strides):
        raise ValueError("region shape and strides differ in length")
    if box is not None:
        box = tuple((_int(s), _int(c), _int(st, 1)) for s, c, st in (_list(b) for b in _list(box)))
    return Region(_int(offset), shape, strides, box)


def _check_region(region: Region, info: TensorInfo, where: str) -> None:
    """A region must stay inside its tensor, so no view can reach outside its bytes."""
    size = int(np.prod(info.shape, dtype=np.int64))
    if region.size == 0:
        return
    lo = region.offset + sum(s * (d - 1) for s, d in zip(region.strides, region.shape) if s < 0)
    hi = region.offset + sum(s * (d - 1) for s, d in zip(region.strides, region.shape) if s > 0)
    if lo < 0 or hi >= size:
        raise ValueError(f"{where}: region {region} reaches outside tensor {info.name} "
                         f"{info.dtype}{list(info.shape)}")


def enc_tree(tree: Any) -> Any:
    if tree is None:
        return None
    if isinstance(tree, ResultRef):
        return {"ref": [tree.tensor, enc_region(tree.region), tree.dtype]}
    kind, items = tree
    if kind == "dict":
        return {"dict": [[enc_value(k), enc_tree(sub)] for k, sub in items]}
    return {kind: [enc_tree(sub) for sub in items]}


def dec_tree(j: Any, tensors: list[TensorInfo]) -> Any:
    if j is None:
        return None
    if not isinstance(j, dict) or len(j) != 1:
        raise ValueError("malformed result structure")
    (tag, body), = j.items()
    if tag == "ref":
        t, region, dtype = _list(body)
        t = _int(t)
        ref = ResultRef(t, dec_region(region), _dtype(dtype))
        _check_region(ref.region, tensors[t], "result")
        return ref
    if tag == "dict":
        return ("dict", [(dec_value(k), dec_tree(sub, tensors)) for k, sub in map(_pair, _list(body))])
    if tag in ("tuple", "list"):
        return (tag, [dec_tree(sub, tensors) for sub in _list(body)])
    raise ValueError(f"unknown result kind {tag!r}")


def _json_safe(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[str(k)] = v
    return out


def enc_program(p: Program) -> dict:
    tasks = []
    for t in p.tasks:
        args = [{"access": [a.param, a.tensor, enc_region(a.region), a.mode]} if isinstance(a, Access)
                else {"scalar": [a.param, a.value]} for a in t.args]
        tasks.append({"id": t.id, "kernel": t.kernel, "worker": t.worker, "args": args,
                      "loc": t.loc, "scope": list(t.scope), "pin": t.pin, "group": t.group,
                      "group_rank": t.group_rank, "chip": t.chip, "queue_pos": t.queue_pos})
    tensors = [{"id": i.id, "name": i.name, "kind": i.kind, "shape": list(i.shape),
                "dtype": i.dtype, "loc": i.loc, "scope": list(i.scope), "zero_init": i.zero_init,
                "first_use": i.first_use, "last_use": i.last_use, "dead_after": i.dead_after,
                "arena_offset": i.arena_offset} for i in p.tensors]
    edges = [[u, v, sorted(d.get("kinds", ())), sorted(d.get("tensors", ())),
              d.get("added_by", "deps")] for u, v, d in sorted(p.graph.edges(data=True))]
    m = p.memory
    return {
        "name": p.name, "loc": p.loc,
        "config": {"chips": p.config.chips, "sub_workers": p.config.sub_workers,
                   "hosts": p.config.hosts, "fuse_groups": p.config.fuse_groups},
        "tensors": tensors, "tasks": tasks, "edges": edges,
        "params": [{"name": q.name, "tensor": q.tensor, "static": enc_value(q.static)}
                   for q in p.params],
        "results": enc_tree(p.results), "groups": [list(g) for g in p.groups],
        "scopes": [[k, list(v)] for k, v in sorted(p.scopes.items())],
        "memory": {"arena_bytes": m.arena_bytes, "lower_bound_bytes": m.lower_bound_bytes,
                   "naive_bytes": m.naive_bytes, "staging_bytes": m.staging_bytes,
                   "added_edges": m.added_edges, "alignment": m.alignment},
        "passes_run": list(p.passes_run), "reports": _json_safe(p.reports),
    }


def _opt_int(j: Any) -> int | None:
    return None if j is None else _int(j)


def dec_program(j: dict, max_workers: int) -> Program:
    """The Program `enc_program` wrote, checked field by field; at most `max_workers` workers
    (checked first: lowering is quadratic in workers)."""
    c = j["config"]
    config = Config(chips=_int(c["chips"], 1), sub_workers=_int(c["sub_workers"]),
                    hosts=_int(c["hosts"], 1), fuse_groups=bool(c["fuse_groups"]))
    if config.chips + config.sub_workers > max_workers:
        raise ValueError(f"{config.chips} chips + {config.sub_workers} sub workers exceed the "
                         f"limit of {max_workers} workers")
    prog = Program(name=_str(j["name"]), loc=_str(j["loc"]), config=config)
    for i, t in enumerate(_list(j["tensors"])):
        if _int(t["id"]) != i or t["kind"] not in ("input", "intermediate"):
            raise ValueError(f"tensor {i} is malformed")
        prog.tensors.append(TensorInfo(
            id=i, name=_str(t["name"]), kind=t["kind"], shape=_ints(t["shape"]),
            dtype=_dtype(t["dtype"]), loc=_str(t["loc"]), scope=_ints(t["scope"]),
            zero_init=bool(t["zero_init"]), first_use=_opt_int(t["first_use"]),
            last_use=_opt_int(t["last_use"]), dead_after=_opt_int(t["dead_after"]),
            arena_offset=_opt_int(t["arena_offset"])))
    n_tensors = len(prog.tensors)
    for i, t in enumerate(_list(j["tasks"])):
        if _int(t["id"]) != i or t["worker"] not in ("chip", "sub"):
            raise ValueError(f"task {i} is malformed")
        args = []
        for a in _list(t["args"]):
            if not isinstance(a, dict) or len(a) != 1:
                raise ValueError(f"task {i}: malformed argument")
            if "access" in a:
                param, tensor, region, mode = _list(a["access"])
                if _int(tensor) >= n_tensors or mode not in ("In", "Out", "InOut"):
                    raise ValueError(f"task {i}: bad access")
                acc = Access(_str(param), tensor, dec_region(region), mode)
                _check_region(acc.region, prog.tensors[tensor], f"task {i}")
                args.append(acc)
            else:
                param, value = _list(a["scalar"])
                args.append(ScalarArg(_str(param), _scalar(value)))
        kernel = _str(t["kernel"])
        if ":" not in kernel:
            raise ValueError(f"task {i}: kernel {kernel!r} is not an import path 'module:qualname'")
        prog.add_task(Task(id=i, kernel=kernel, worker=t["worker"], args=tuple(args),
                           loc=_str(t["loc"]), scope=_ints(t["scope"]), pin=_opt_int(t["pin"]),
                           group=_opt_int(t["group"]), group_rank=_int(t["group_rank"]),
                           chip=_opt_int(t["chip"]), queue_pos=_opt_int(t["queue_pos"])))
    n_tasks = len(prog.graph)
    for e in _list(j["edges"]):
        u, v, kinds, tensors, added_by = _list(e)
        if not (_int(u) < _int(v) < n_tasks):
            raise ValueError(f"edge {u} -> {v} is out of order or range")
        prog.graph.add_edge(u, v, kinds=set(map(_str, _list(kinds))), tensors=set(_ints(tensors)),
                            added_by=_str(added_by))
    for q in _list(j["params"]):
        tensor = _opt_int(q["tensor"])
        if tensor is not None and (tensor >= n_tensors or prog.tensors[tensor].kind != "input"):
            raise ValueError(f"parameter {q['name']!r} names a tensor that is not an input")
        prog.params.append(Param(_str(q["name"]), tensor=tensor, static=dec_value(q["static"])))
    prog.results = dec_tree(j["results"], prog.tensors)
    prog.groups = [list(_ints(g)) for g in _list(j["groups"])]
    for members in prog.groups:
        if any(m >= n_tasks for m in members):
            raise ValueError("a group names a task that does not exist")
    for t in prog.tasks:
        if t.group is not None and t.group >= len(prog.groups):
            raise ValueError(f"task {t.id} names group {t.group}, which does not exist")
        if t.chip is not None:
            limit = (config.chips if t.worker == "chip" else config.sub_workers) * config.hosts
            if t.chip >= limit:
                raise ValueError(f"task {t.id} is placed on {t.worker} {t.chip} of {limit}")
    prog.scopes = {_int(k): _ints(v) for k, v in map(_pair, _list(j["scopes"]))}
    m = j["memory"]
    prog.memory = MemoryReport(**{k: _int(m[k]) for k in (
        "arena_bytes", "lower_bound_bytes", "naive_bytes", "staging_bytes", "added_edges",
        "alignment")})
    for t in prog.tensors:
        if t.arena_offset is not None and t.arena_offset + t.nbytes > prog.memory.arena_bytes:
            raise ValueError(f"tensor {t.name} lies outside the planned arena")
    prog.passes_run = [_str(x) for x in _list(j["passes_run"])]
    if not isinstance(j["reports"], dict):
        raise ValueError("reports must be an object")
    prog.reports = j["reports"]
    return prog
