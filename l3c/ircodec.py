"""The JSON codec of the IR: `enc_program` is the JSON view `dump-ir --format json` prints
(`l3c.irjson.to_dict`), and `dec_program` rebuilds a `Program` from it, checking every field's type
and range on the way in (a schedule file, `l3c/aot.py`, is untrusted input). One form, so what a
user reads in a dump is what a schedule file holds.

Static and scalar values keep their Python type through tagged JSON (`{"tuple": [...]}`,
`{"list": ...}`, `{"dict": [[k, v]]}`, `{"complex": [re, im]}`). Edges are each task's `waits`
(predecessor, kinds, tensor names, `added_by`). Decoding raises ValueError, TypeError, KeyError (or
IndexError) describing what is malformed; the caller names the file.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .ir import (Access, Affine, Config, Loop, MemoryReport, Param, Program, Region, ResultRef,
                 ScalarArg, Shift, Task, TensorInfo)
from .irjson import tagged_value, to_dict
from .passes.regions import bounds, inside

__all__ = ["enc_program", "dec_program", "enc_value", "dec_value"]


def enc_program(program: Program) -> dict:
    """The program as JSON data; TypeError if a static value cannot be stored."""
    return to_dict(program, strict=True, with_transfers=False)


def enc_value(value: Any) -> Any:
    """A static value as tagged JSON; TypeError if it cannot be stored."""
    return tagged_value(value, strict=True)


# ------------------------------------------------------------------------------------ values
def dec_value(j: Any) -> Any:
    """The value `enc_value` tagged."""
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
        if tag == "complex":
            re, im = _pair(items)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (re, im)):
                return complex(re, im)
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


def _opt_int(j: Any) -> int | None:
    return None if j is None else _int(j)


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
    value = dec_value(j)
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        return value
    raise ValueError(f"expected a scalar, got {type(value).__name__}")


def _dict(j: Any) -> dict:
    if not isinstance(j, dict):
        raise ValueError(f"expected an object, got {type(j).__name__}")
    return j


def dec_region(j: Any) -> Region:
    """A region; a moving one (`shifts`) may lie outside its tensor at loop variables 0, so its
    start and box starts may be negative."""
    j = _dict(j)
    shape, strides = _ints(j["shape"]), _ints(j["strides"], None)
    if len(shape) != len(strides):
        raise ValueError("region shape and strides differ in length")
    moving = "shifts" in j
    shifts = tuple(Shift(_int(loop), _int(off, -(1 << 62)), _ints(box, None))
                   for loop, off, box in (_list(x) for x in _list(j.get("shifts", []))))
    if moving and (not shifts or [s.loop for s in shifts] != sorted({s.loop for s in shifts})):
        raise ValueError("region shifts must be non-empty and sorted by distinct loop ids")
    low = -(1 << 62) if moving else 0
    box = j["box"]
    if box is not None:
        box = tuple((_int(s, low), _int(c), _int(st, 1))
                    for s, c, st in (_list(b) for b in _list(box)))
        if any(len(s.box) != len(box) for s in shifts):
            raise ValueError("a region shift moves another number of axes than its box has")
    return Region(_int(j["offset"], low), shape, strides, box, shifts)


def _value_range(loops: dict[int, Loop], loop_id: int) -> tuple[int, int] | None:
    """Smallest and largest value of a static range's variable (None: decided at run time)."""
    loop = loops[loop_id]
    if loop.kind != "range" or not all(type(b) is int for b in (loop.start, loop.stop, loop.step)):
        return None
    values = range(loop.start, loop.stop, loop.step)
    return (min(values[0], values[-1]), max(values[0], values[-1])) if values else None


def _check_region(region: Region, info: TensorInfo, where: str,
                  loops: dict[int, Loop] | None = None, enclosing: tuple[int, ...] = ()) -> None:
    """A region must stay inside its tensor, so no view can reach outside its bytes; a moving one
    at every value of its static-range variables (other variables are checked when it runs), and
    it may move only with the variables of loops around it."""
    if not region.shifts:
        if not inside(region, info.shape):
            raise ValueError(f"{where}: region {region} reaches outside tensor {info.name} "
                             f"{info.dtype}{list(info.shape)}")
        return
    lo, hi = bounds(region)
    if hi < lo:
        return
    for shift in region.shifts:
        if shift.loop not in enclosing:
            raise ValueError(f"{where}: a region moves with loop {shift.loop}, which does not "
                             "enclose it")
        span = _value_range(loops or {}, shift.loop)
        if span is None:
            return
        moves = (span[0] * shift.offset, span[1] * shift.offset)
        lo, hi = lo + min(moves), hi + max(moves)
    if lo < 0 or hi >= int(np.prod(info.shape, dtype=np.int64)):
        raise ValueError(f"{where}: a moving region reaches outside tensor {info.name} "
                         f"{info.dtype}{list(info.shape)} in some iteration")


def dec_tree(j: Any, tensors: list[TensorInfo]) -> Any:
    if j is None:
        return None
    j = _dict(j)
    if "tensor" in j:
        t = _int(j["tensor"])
        if t >= len(tensors):
            raise ValueError(f"a result names tensor {t}, which does not exist")
        ref = ResultRef(t, dec_region(j["region"]), _dtype(j["dtype"]))
        _check_region(ref.region, tensors[t], "result")
        return ref
    if len(j) != 1:
        raise ValueError("malformed result structure")
    (tag, body), = j.items()
    if tag == "dict":
        return ("dict", [(dec_value(k), dec_tree(sub, tensors)) for k, sub in map(_pair, _list(body))])
    if tag in ("tuple", "list"):
        return (tag, [dec_tree(sub, tensors) for sub in _list(body)])
    raise ValueError(f"unknown result kind {tag!r}")


def _dec_tensors(prog: Program, j: Any) -> dict[str, int]:
    names: dict[str, int] = {}
    for i, t in enumerate(_list(j)):
        if _int(t["id"]) != i or t["kind"] not in ("input", "intermediate"):
            raise ValueError(f"tensor {i} is malformed")
        info = TensorInfo(
            id=i, name=_str(t["name"]), kind=t["kind"], shape=_ints(t["shape"]),
            dtype=_dtype(t["dtype"]), loc=_str(t["loc"]), scope=_ints(t["scope"]),
            loops=_ints(t["loops"]),
            zero_init=bool(t["zero_init"]), first_use=_opt_int(t["first_use"]),
            last_use=_opt_int(t["last_use"]), dead_after=_opt_int(t["dead_after"]),
            arena_offset=_opt_int(t["arena_offset"]))
        if info.name in names:
            raise ValueError(f"two tensors are named {info.name!r}")
        names[info.name] = i
        prog.tensors.append(info)
    return names


def _dec_task(prog: Program, i: int, t: Any) -> Task:
    if _int(t["id"]) != i or t["worker"] not in ("chip", "sub"):
        raise ValueError(f"task {i} is malformed")
    loops = _ints(t["loops"])
    if loops != tuple(lp.id for lp in sorted(prog.loops.values(), key=lambda lp: lp.id)
                      if lp.first_task <= i < lp.end_task):
        raise ValueError(f"task {i}: its loops {list(loops)} are not the loops whose body holds it")
    args: list[Access | ScalarArg] = []
    for a in _list(t["args"]):
        a = _dict(a)
        if "tensor" in a:
            tensor, mode = _int(a["tensor"]), a["mode"]
            if tensor >= len(prog.tensors) or mode not in ("In", "Out", "InOut"):
                raise ValueError(f"task {i}: bad access")
            access = Access(_str(a["param"]), tensor, dec_region(a["region"]), mode)
            _check_region(access.region, prog.tensors[tensor], f"task {i}", prog.loops, loops)
            args.append(access)
        elif "affine" in a:
            const, terms = _pair(a["affine"])
            affine = Affine(_int(const, -(1 << 62)),
                            tuple((_int(lp), _int(c, -(1 << 62))) for lp, c in map(_pair, _list(terms))))
            if any(lp not in loops or not c for lp, c in affine.terms) \
                    or [lp for lp, _ in affine.terms] != sorted({lp for lp, _ in affine.terms}):
                raise ValueError(f"task {i}: a loop-variable scalar names loops that do not "
                                 "enclose it")
            args.append(ScalarArg(_str(a["param"]), affine))
        else:
            args.append(ScalarArg(_str(a["param"]), _scalar(a["value"])))
    kernel = _str(t["kernel"])
    if ":" not in kernel:
        raise ValueError(f"task {i}: kernel {kernel!r} is not an import path 'module:qualname'")
    return Task(id=i, kernel=kernel, worker=t["worker"], args=tuple(args), loc=_str(t["loc"]),
                scope=_ints(t["scope"]), loops=loops, pin=_opt_int(t["pin"]),
                group=_opt_int(t["group"]),
                group_rank=_int(t["group_rank"]), chip=_opt_int(t["chip"]),
                queue_pos=_opt_int(t["queue_pos"]))


def _dec_edges(prog: Program, tasks: list, names: dict[str, int]) -> None:
    """The edges, from each task's `waits` (which `deps` must agree with)."""
    for v, t in enumerate(tasks):
        waits = _list(t["waits"])
        if [w.get("task") if isinstance(w, dict) else None for w in waits] != t["deps"]:
            raise ValueError(f"task {v}: deps and waits disagree")
        for w in waits:
            u = _int(w["task"])
            carried = w.get("carried", False)
            if not isinstance(carried, bool):
                raise ValueError(f"edge {u} -> {v}: carried must be true or false")
            if not (u < v or carried and u < len(tasks)):
                raise ValueError(f"edge {u} -> {v} is out of order or range")
            unknown = [n for n in _list(w["tensors"]) if n not in names]
            if unknown:
                raise ValueError(f"edge {u} -> {v} names unknown tensors {unknown!r:.60}")
            prog.graph.add_edge(u, v, kinds=set(map(_str, _list(w["kinds"]))),
                                tensors={names[n] for n in w["tensors"]},
                                added_by=_str(w["added_by"]), carried=carried)


def _dec_bound(prog: Program, j: Any, where: str, enclosing: tuple[int, ...]) -> Any:
    """A loop bound or flag: an int, or an "In" access of one element of an integer tensor."""
    if not isinstance(j, dict):
        return _int(j, -(1 << 62))
    tensor = _int(j["tensor"])
    if tensor >= len(prog.tensors) or j["mode"] != "In":
        raise ValueError(f"{where}: bad access")
    access = Access(_str(j["param"]), tensor, dec_region(j["region"]), "In")
    info = prog.tensors[tensor]
    if access.region.size != 1 or np.dtype(info.dtype).kind not in "biu":
        raise ValueError(f"{where}: a bound or flag must be one element of an integer tensor")
    _check_region(access.region, info, where, prog.loops, enclosing)
    return access


def _dec_loops(prog: Program, j: Any, n_tasks: int) -> None:
    """The loop/cond records, each nested in its parent's body, by id."""
    for i, x in enumerate(_list(j)):
        x = _dict(x)
        kind, parent = x["kind"], _opt_int(x["parent"])
        first, end = _int(x["first_task"]), _int(x["end_task"])
        if _int(x["id"]) != i or kind not in ("range", "while", "cond") or end > n_tasks \
                or first > end or (parent is not None and not (
                    parent < i and prog.loops[parent].first_task <= first
                    and end <= prog.loops[parent].end_task)):
            raise ValueError(f"loop {i} is malformed")
        enclosing, up = [], parent
        while up is not None:
            enclosing.insert(0, up)
            up = prog.loops[up].parent
        where = f"loop {i}"
        loop = Loop(i, kind, _str(x["loc"]), parent, first, end,
                    *(_dec_bound(prog, x[k], where, tuple(enclosing))
                      for k in ("start", "stop", "step")),
                    flag=None if x["flag"] is None else _dec_bound(prog, x["flag"], where,
                                                                    tuple(enclosing)),
                    max_iterations=_opt_int(x["max_iterations"]), invert=x["invert"],
                    scope=_ints(x["scope"]))
        if not isinstance(loop.invert, bool) or (kind == "range") != (loop.flag is None) \
                or (kind == "range" and loop.step == 0) \
                or any(isinstance(b, Access) for b in (loop.start, loop.stop, loop.step)
                       if kind != "range"):
            raise ValueError(f"loop {i} is malformed")
        for key in ("reads_after", "reads_before"):
            pairs = []
            for p in _list(x[key]):
                t, carried = _pair(p)
                if _int(t) >= n_tasks or not isinstance(carried, bool):
                    raise ValueError(f"loop {i}: malformed {key}")
                pairs.append((t, carried))
            setattr(loop, key, tuple(pairs))
        prog.loops[i] = loop


def dec_program(j: Any, max_workers: int) -> Program:
    """The Program `enc_program` wrote, checked field by field; at most `max_workers` workers
    (checked first: lowering is quadratic in workers)."""
    head = _dict(_dict(j)["program"])
    c = head["config"]
    config = Config(chips=_int(c["chips"], 1), sub_workers=_int(c["sub_workers"]),
                    hosts=_int(c["hosts"], 1), fuse_groups=bool(c["fuse_groups"]))
    if config.chips + config.sub_workers > max_workers:
        raise ValueError(f"{config.chips} chips + {config.sub_workers} sub workers exceed the "
                         f"limit of {max_workers} workers")
    prog = Program(name=_str(head["name"]), loc=_str(head["loc"]), config=config)
    names = _dec_tensors(prog, j["tensors"])
    tasks = _list(j["tasks"])
    _dec_loops(prog, j["loops"], len(tasks))
    for info in prog.tensors:
        if any(lp not in prog.loops for lp in info.loops):
            raise ValueError(f"tensor {info.name} names a loop that does not exist")
    for i, t in enumerate(tasks):
        prog.add_task(_dec_task(prog, i, t))
    _dec_edges(prog, tasks, names)
    n_tensors, n_tasks = len(prog.tensors), len(prog.graph)
    for q in _list(j["params"]):
        tensor = _opt_int(q["tensor"])
        if tensor is not None and (tensor >= n_tensors or prog.tensors[tensor].kind != "input"):
            raise ValueError(f"parameter {q['name']!r} names a tensor that is not an input")
        static = dec_value(q["static"]) if tensor is None else None
        prog.params.append(Param(_str(q["name"]), tensor=tensor, static=static))
    prog.results = dec_tree(j["results"], prog.tensors)
    prog.groups = [list(_ints(g)) for g in _list(j["groups"])]
    for members in prog.groups:
        if any(m >= n_tasks for m in members):
            raise ValueError("a group names a task that does not exist")
    for t in prog.tasks:
        if t.group is not None and t.group >= len(prog.groups):
            raise ValueError(f"task {t.id} names group {t.group}, which does not exist")
        if t.chip is not None:
            limit = config.units(t.worker)
            if t.chip >= limit:
                raise ValueError(f"task {t.id} is placed on {t.worker} {t.chip} of {limit}")
    prog.scopes = {_int(int(k) if isinstance(k, str) and k.isdigit() else k): _ints(v)
                   for k, v in _dict(head["scopes"]).items()}
    m = _dict(j["memory"])
    prog.memory = MemoryReport(**{k: _int(m[k]) for k in (
        "arena_bytes", "lower_bound_bytes", "naive_bytes", "staging_bytes", "added_edges",
        "alignment")})
    for t in prog.tensors:
        if t.arena_offset is not None and t.arena_offset + t.nbytes > prog.memory.arena_bytes:
            raise ValueError(f"tensor {t.name} lies outside the planned arena")
    prog.passes_run = [_str(x) for x in _list(head["passes_run"])]
    prog.reports = _dict(j["reports"])
    return prog
