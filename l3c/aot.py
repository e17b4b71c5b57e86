"""Ahead-of-time schedule files: `compiled.save(path)` writes one, `read(path)` checks one and
hands back its parts (`l3c.load` in `l3c/compiled.py` makes them an `l3c.Compiled`).

File format, little-endian:

    offset  size  field
    0       8     magic b"L3CSCHED"
    8       4     format version (u32)
    12      8     payload length in bytes (u64)
    20      32    SHA-256 of the payload
    52      n     payload: UTF-8 JSON (no pickle, ever)

The JSON payload holds `signature` (parameters: shapes, dtypes, static values), `program` (the IR
after every pass, `l3c/ircodec.py`), `plan` (the lowered plain-data schedule), `kernels` (import path,
parameters with their access modes, and a digest of the source of each kernel) and `dispatcher_ir`
(LLVM IR text).

`read` checks magic, version, length and checksum before it parses anything, parses only JSON,
validates types and bounds while rebuilding the Program, compares every kernel's parameters and
access modes with the importable kernel of that name, re-derives the conflicts of the recorded
accesses and checks that the schedule orders each of them (`l3c.passes.verify.check_schedule`),
then lowers the program again and regenerates the dispatcher IR from that plan: both must equal
what the file stores. So a loaded schedule only ever runs code this l3c generated itself, and an
edited file cannot make a run race; the IR in the file is a record, never executed. Nothing is
traced. Every problem raises `l3c.ScheduleError` naming the file and what is wrong.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import stat
import struct
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

from . import registry
from .errors import L3CError, ScheduleError, ScheduleWarning
from .ir import Program
from .ircodec import dec_program, enc_program, enc_value
from .runtime.plan import Plan, Step, View

MAGIC = b"L3CSCHED"
FORMAT_VERSION = 5          # docs/aot.md lists what each version changed
HEADER = struct.Struct("<8sIQ32s")
MAX_PAYLOAD = 1 << 31


def _record(value: Any) -> Any:
    """Plan data as JSON: a view as `{"view": [offset, shape, strides, dtype]}`, any other plan
    record (a loop's control step, a moving view, a loop-variable scalar) as `{"Type": {field:
    value}}`, tuples as lists. The stored plan is only ever compared with the plan its program
    lowers to again (`read`), so one faithful deterministic form serves every record type."""
    if isinstance(value, View):
        return {"view": [value.offset, list(value.shape), list(value.strides), value.dtype]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__name__: {f.name: _record(getattr(value, f.name))
                                       for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return [_record(v) for v in value]
    return value


def enc_plan(plan: Plan) -> dict:
    def step(s: Any) -> Any:
        if not isinstance(s, Step):              # a loop or cond's control step
            return _record(s)
        return {"task": s.task, "kernel": s.kernel, "args": [_record(a) for a in s.args],
                "waits": [list(w) for w in s.waits], "group_rank": s.group_rank,
                "group_size": s.group_size, "signal": s.signal, "ring": s.ring, "loc": s.loc}
    out = {"chips": plan.chips, "sub_workers": plan.sub_workers, "arena_bytes": plan.arena_bytes,
           "queues": [[step(s) for s in q] for q in plan.queues]}
    loops = getattr(plan, "loops", ())
    if loops:
        out["loops"] = _record(loops)
    return out


def _enc_piece(piece: Any) -> dict:
    if piece.view is not None:
        v = piece.view
        return {"tensor": piece.tensor, "count": piece.count,
                "view": [v.offset, list(v.shape), list(v.strides), v.dtype]}
    return {"tensor": piece.tensor, "count": piece.count, "base": piece.base,
            "dtype": piece.dtype, "index": list(piece.index)}


def _enc_dist(dist: Any) -> dict:
    """Every host's part of a multi-host schedule: its plan, its dispatcher IR, the transfers
    between hosts and the final broadcasts (`l3c.codegen.hosts`)."""
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
    from .execute.hosts import prepare
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


# ------------------------------------------------------------------------------------ kernels
def source_digest(fn: Any) -> str | None:
    """SHA-256 of a kernel's source text (None when Python cannot find it): a changed body is
    noticed at load, where it gives a warning."""
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def kernel_record(name: str) -> dict:
    """What a schedule file records of kernel `name`: its parameters with their access modes
    (None: a scalar) and its source digest."""
    from .trace.kernel import access_modes
    fn = registry.resolve_function(name)
    return {"name": name, "params": [[p, m] for p, m in access_modes(fn).items()],
            "source": source_digest(fn)}


def _check_importable(name: str, program: str) -> None:
    """Refuse a kernel no other process can import; warn about one defined in `__main__`."""
    module, _, qualname = name.partition(":")
    if "<locals>" in qualname.split("."):
        raise ScheduleError(f"cannot save {program}: kernel {qualname.replace('.<locals>', '')} is "
                            "defined inside a function, so no other process can import it; "
                            f"define it at module level of an importable module")
    if module == "__main__":
        warnings.warn(f"saving {program}: kernel {qualname} is defined in the script being run "
                      "(__main__), so only a run of that same script can load this schedule "
                      "(`l3c run` cannot); move the kernel into a module and import it",
                      ScheduleWarning, stacklevel=4)


def _check_kernels(records: Any, program: Program) -> None:
    """Each recorded kernel must resolve here to a kernel with the same parameters and access
    modes; a changed body only warns (the schedule depends on the annotations alone)."""
    from .trace.kernel import access_modes
    names = sorted({t.kernel for t in program.tasks})
    if not isinstance(records, list) or [r.get("name") if isinstance(r, dict) else None
                                         for r in records] != names:
        raise ValueError("the kernel list does not match the tasks")
    for rec in records:
        name = rec["name"]
        try:
            fn = registry.resolve_function(name)
            now = [[p, m] for p, m in access_modes(fn).items()]
        except (LookupError, L3CError) as exc:
            raise ScheduleError(f"kernel {name}: {exc}") from None
        if now != rec["params"]:
            def show(params: Any) -> str:
                return "(" + ", ".join(f"{p}: l3c.{m}" if m else str(p) for p, m in params) + ")"
            raise ScheduleError(f"kernel {name} now takes {show(now)} but the schedule was compiled "
                                f"for {show(rec['params'])}; compile the schedule again")
        if rec["source"] is not None and source_digest(fn) not in (None, rec["source"]):
            warnings.warn(f"kernel {name} has changed since the schedule was saved; its parameters "
                          "and access modes are the same, so the schedule runs the new body",
                          ScheduleWarning, stacklevel=4)


# ------------------------------------------------------------------------------------ files
def _file_mode(path: str) -> int:
    """The mode `open(path, "w")` would give: an existing file keeps its own; a new one gets 0o666
    less the umask (read from /proc, since setting the umask to learn it races with threads)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    try:
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def save(compiled: Any, path: str | os.PathLike) -> None:
    """Write `compiled` as one versioned, checksummed schedule file (atomically replaced)."""
    prog = compiled.program
    names = sorted({t.kernel for t in prog.tasks})
    for name in names:
        _check_importable(name, prog.name)
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
            "kernels": [kernel_record(name) for name in names],
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
    mode = _file_mode(path)
    try:                     # written beside `path`, then renamed: a reader never sees half a file
        fd, tmp = tempfile.mkstemp(prefix=".l3c-", dir=os.path.dirname(os.path.abspath(path)))
    except OSError as exc:   # name the file asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, path) from None
    try:
        os.fchmod(fd, mode)
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


@dataclass
class Schedule:
    """A checked schedule file: its program, timeout and lowered form (`lowered` for one host,
    `dist` for several)."""

    program: Program
    timeout: float | None
    lowered: Any = None
    dist: Any = None


def read(path: str | os.PathLike) -> Schedule:
    """Check a schedule file completely (see the module docstring); ScheduleError if anything is
    wrong. Nothing is traced; kernels are imported by their import path to compare them."""
    from .codegen.dispatcher import generate_ir
    from .codegen.lower import lower
    from .passes.verify import check_schedule
    from .runtime.pool import MAX_WORKERS
    path = os.fspath(path)
    payload = read_payload(path)
    lowered = dist = None
    try:
        program = dec_program(payload["program"], MAX_WORKERS)
        if _canon(payload["signature"]) != _canon(signature(program)):
            raise ValueError("the signature does not match the program's parameters")
        timeout = payload["timeout"]
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise ValueError("timeout must be a number or null")
        _check_kernels(payload["kernels"], program)
        check_schedule(program)
        if program.config.hosts > 1:
            from .codegen.hosts import split
            dist = split(program)
            if _canon(_enc_dist(dist)) != _canon(payload["hosts"]):
                raise ValueError("the stored host parts differ from the split of its program")
        else:
            lowered = lower(program)
            if _canon(enc_plan(lowered.plan)) != _canon(payload["plan"]):
                raise ValueError("the stored plan differs from the plan its program lowers to")
            if generate_ir(lowered.plan) != payload["dispatcher_ir"]:
                raise ValueError("the stored dispatcher IR differs from the IR generated for its plan")
    except ScheduleError as exc:
        raise ScheduleError(f"{path}: {exc}") from None
    except L3CError as exc:          # check_schedule: an unordered conflict or arena overlap
        raise ScheduleError(f"{path}: unsafe schedule: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ScheduleError(f"{path}: malformed schedule: {what}") from None
    return Schedule(program, timeout, lowered, dist)
