"""Ahead-of-time schedule files: `compiled.save(path)` and `l3c.load(path) -> Compiled`.

File format (version 1), little-endian:

    offset  size  field
    0       8     magic b"L3CSCHED"
    8       4     format version (u32)
    12      8     payload length in bytes (u64)
    20      32    SHA-256 of the payload
    52      n     payload: UTF-8 JSON (no pickle, ever)

The JSON payload holds `signature` (parameters: shapes, dtypes, static values), `program` (the IR
after every pass: tasks, tensors, edges, groups, scopes, results, memory report, config), `plan` (the
lowered plain-data schedule), `kernels` (their import paths) and `dispatcher_ir` (LLVM IR text).

`load` checks magic, version, length and checksum before it parses anything, parses only JSON,
validates types and bounds while rebuilding the Program, then lowers the program again and
regenerates the dispatcher IR from that plan: both must equal what the file stores. So a loaded
schedule only ever runs code this l3c generated itself; the IR in the file is a record, never
executed. Kernels are resolved by import path in the workers (`l3c.registry.resolve`); nothing is
traced. Every problem raises `l3c.ScheduleError` naming the file and what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from typing import Any

import numpy as np

from .errors import ScheduleError
from .ir import (Access, Config, MemoryReport, Param, Program, Region, ResultRef, ScalarArg, Task,
                 TensorInfo)
from .runtime.plan import Plan, View

MAGIC = b"L3CSCHED"
FORMAT_VERSION = 3          # 2: the dispatcher yields its core while it spins; 3: steps say
                            # whether they ring the doorbell (several hosts)
HEADER = struct.Struct("<8sIQ32s")
MAX_PAYLOAD = 1 << 31


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


def dec_program(j: dict) -> Program:
    c = j["config"]
    config = Config(chips=_int(c["chips"], 1), sub_workers=_int(c["sub_workers"]),
                    hosts=_int(c["hosts"], 1), fuse_groups=bool(c["fuse_groups"]))
    from .runtime.pool import MAX_WORKERS       # lowering is quadratic in workers: bound them first
    if config.chips + config.sub_workers > MAX_WORKERS:
        raise ValueError(f"{config.chips} chips + {config.sub_workers} sub workers exceed the "
                         f"limit of {MAX_WORKERS} workers")
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


def enc_plan(plan: Plan) -> dict:
    def arg(a: Any) -> Any:
        if isinstance(a, View):
            return {"view": [a.offset, list(a.shape), list(a.strides), a.dtype]}
        return a
    return {"chips": plan.chips, "sub_workers": plan.sub_workers, "arena_bytes": plan.arena_bytes,
            "queues": [[{"task": s.task, "kernel": s.kernel, "args": [arg(a) for a in s.args],
                         "waits": [list(w) for w in s.waits], "group_rank": s.group_rank,
                         "group_size": s.group_size, "signal": s.signal, "ring": s.ring,
                         "loc": s.loc}
                        for s in q] for q in plan.queues]}


def _enc_piece(piece: Any) -> dict:
    if piece.view is not None:
        v = piece.view
        return {"tensor": piece.tensor, "count": piece.count,
                "view": [v.offset, list(v.shape), list(v.strides), v.dtype]}
    return {"tensor": piece.tensor, "count": piece.count, "base": piece.base,
            "dtype": piece.dtype, "index": list(piece.index)}


def _enc_dist(dist: Any) -> dict:
    """Every host's part of a multi-host schedule: its plan, its dispatcher IR, the transfers
    between hosts and the final broadcasts (`l3c.dist.split`)."""
    from .codegen.dispatcher import generate_ir
    return {
        "parts": [{"host": p.host, "plan": enc_plan(p.lowered.plan),
                   "dispatcher_ir": generate_ir(p.lowered.plan)} for p in dist.parts],
        "transfers": [{"id": t.id, "src": t.src, "dst": t.dst, "producer": t.producer,
                       "src_slot": t.src_slot, "src_count": t.src_count, "order": t.order,
                       "consumers": list(t.consumers), "pieces": [_enc_piece(p) for p in t.pieces],
                       "sent_order": t.sent_order, "sent_waiters": list(t.sent_waiters),
                       "gate_slots": [list(g) for g in t.gate_slots], "gate_order": t.gate_order}
                      for t in dist.transfers],
        "final": [{"root": f.root, "piece": _enc_piece(f.piece)} for f in dist.final],
    }


def enc_hosts(compiled: Any) -> dict:
    from .dist.run import prepare
    return _enc_dist(prepare(compiled)[0])


def signature(p: Program) -> list[dict]:
    out = []
    for q in p.params:
        if q.tensor is None:
            out.append({"name": q.name, "static": enc_value(q.static)})
        else:
            info = p.tensors[q.tensor]
            out.append({"name": q.name, "shape": list(info.shape), "dtype": info.dtype})
    return out


def _canon(j: Any) -> str:
    return json.dumps(j, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------------------------ files
def save(compiled: Any, path: str | os.PathLike) -> None:
    """Write `compiled` as one versioned, checksummed schedule file (atomically replaced)."""
    prog = compiled.program
    if prog.config.hosts > 1:
        plan, ir_text = None, None
        hosts = enc_hosts(compiled)
    else:
        from .execute import prepare
        lowered, disp = prepare(compiled)
        plan, ir_text, hosts = enc_plan(lowered.plan), disp.ir_text, None
    try:
        payload = {
            "format": "l3c-schedule",
            "signature": signature(prog),
            "program": enc_program(prog),
            "plan": plan,
            "kernels": sorted({t.kernel for t in prog.tasks}),
            "timeout": getattr(compiled, "timeout", None),
            "dispatcher_ir": ir_text,
        }
        if hosts is not None:
            payload["hosts"] = hosts
    except TypeError as exc:
        raise ScheduleError(f"cannot save {prog.name}: {exc}") from None
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    data = HEADER.pack(MAGIC, FORMAT_VERSION, len(body), hashlib.sha256(body).digest()) + body
    path = os.fspath(path)
    try:                     # written beside `path`, then renamed: a reader never sees half a file
        fd, tmp = tempfile.mkstemp(prefix=".l3c-", dir=os.path.dirname(os.path.abspath(path)))
    except OSError as exc:   # name the file asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_payload(path: str | os.PathLike) -> dict:
    """Check the envelope (magic, version, length, checksum) and parse the JSON payload."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                raise ScheduleError(f"{path}: not an l3c schedule (truncated header, "
                                    f"{len(head)} of {HEADER.size} bytes)")
            magic, version, length, digest = HEADER.unpack(head)
            if magic != MAGIC:
                raise ScheduleError(f"{path}: not an l3c schedule (bad magic {magic!r})")
            if version != FORMAT_VERSION:
                raise ScheduleError(f"{path}: schedule format version {version}; this l3c reads "
                                    f"version {FORMAT_VERSION} (compile it again with this l3c)")
            if length > MAX_PAYLOAD:
                raise ScheduleError(f"{path}: corrupt schedule (payload length {length})")
            body = f.read(length + 1)
    except OSError as exc:
        raise ScheduleError(f"{path}: cannot read schedule: {exc}") from None
    if len(body) != length:
        raise ScheduleError(f"{path}: truncated or padded schedule (payload is {len(body)} bytes, "
                            f"header says {length})")
    if hashlib.sha256(body).digest() != digest:
        raise ScheduleError(f"{path}: corrupt schedule (checksum mismatch)")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ScheduleError(f"{path}: corrupt schedule payload: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != "l3c-schedule":
        raise ScheduleError(f"{path}: not an l3c schedule payload")
    return payload


def load(path: str | os.PathLike) -> Any:
    """Load a schedule file as an `l3c.Compiled` (no tracing; kernels resolved by import path)."""
    from .codegen.dispatcher import generate_ir
    from .codegen.lower import lower
    from .compiled import Compiled
    path = os.fspath(path)
    payload = read_payload(path)
    try:
        program = dec_program(payload["program"])
        if _canon(payload["signature"]) != _canon(signature(program)):
            raise ValueError("the signature does not match the program's parameters")
        kernels = sorted({t.kernel for t in program.tasks})
        if payload["kernels"] != kernels:
            raise ValueError("the kernel list does not match the tasks")
        timeout = payload["timeout"]
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise ValueError("timeout must be a number or null")
        if program.config.hosts > 1:
            from .dist.split import split
            dist = split(program)
            if _canon(_enc_dist(dist)) != _canon(payload["hosts"]):
                raise ValueError("the stored host parts differ from the split of its program")
        else:
            lowered = lower(program)
            if _canon(enc_plan(lowered.plan)) != _canon(payload["plan"]):
                raise ValueError("the stored plan differs from the plan its program lowers to")
            ir_text = generate_ir(lowered.plan)
            if ir_text != payload["dispatcher_ir"]:
                raise ValueError("the stored dispatcher IR differs from the IR generated for its plan")
    except ScheduleError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ScheduleError(f"{path}: malformed schedule: {what}") from None
    compiled = Compiled(program)
    compiled.timeout = timeout
    if program.config.hosts > 1:
        compiled.artifacts["dist"] = dist
    else:
        compiled.artifacts["lowered"] = lowered
    compiled.artifacts["loaded_from"] = path
    return compiled
