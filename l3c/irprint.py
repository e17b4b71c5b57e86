"""Printers of the IR: one canonical text form, and JSON and Graphviz DOT views of the same data.

The text form is for people and golden tests: deterministic (sorted sets, program order), one line
per task. Example (`examples/axpy_rows.py` after all passes, abridged)::

    program examples.axpy_rows:step  @ axpy_rows.py:31
      config chips=2 sub_workers=1 hosts=1 fuse_groups=True
      passes trace deps scopes fuse schedule memory
      params x=arg0 w=arg1
    tasks:
      %0 matmul  chip 0 g0.0  reads arg0[0:7:2,0:8] arg1  writes t0[0:7:2,0:8]  scope /  @ axpy_rows.py:34
      %2 relu  chip 1  reads t0  writes t1  waits %0(RAW t0) %1(RAW t0)  scope /0  @ axpy_rows.py:37
      %3 axpy  chip 1  reads t1  updates t0  scalars alpha=0.5  waits %2(RAW+WAR t0,t1)  scope /0  @ axpy_rows.py:38
    tensors:
      t1 intermediate float32[8,8]  scope /0  uses %2..%3  dead after %3  arena 256  @ axpy_rows.py:36
    results: (t0, t2)
    groups:
      g0: %0 %1
    memory: arena 512 B (lower bound 512 B, naive 576 B) staging 0 B added_edges 0

`docs/ir.md` describes every field.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import L3CError
from .ir import Access, Program, Region, ResultRef, ScalarArg, Task

FORMATS = ("text", "json", "dot")


def dump(program: Program, format: str = "text") -> str:  # noqa: A002 - the public name (docs/cli.md)
    """The program in `format` ("text", "json" or "dot")."""
    if format == "text":
        return to_text(program)
    if format == "json":
        return to_json(program)
    if format == "dot":
        return to_dot(program)
    raise L3CError(f"unknown IR format {format!r}; use one of {', '.join(FORMATS)}")


# ---- shared helpers -----------------------------------------------------------------------------
def _tensor_name(program: Program, tensor: int) -> str:
    return program.tensors[tensor].name if 0 <= tensor < len(program.tensors) else f"?{tensor}"


def region_text(program: Program, tensor: int, region: Region) -> str:
    """`arg0` for a whole tensor, `arg0[0:8:2,3]`-style for a box, raw mapping otherwise."""
    info = program.tensors[tensor]
    name = info.name
    if region.is_whole(info.shape) and region.shape == info.shape:
        return name
    return f"{name}{region}"


def _placement(task: Task) -> str:
    where = "?" if task.chip is None else str(task.chip)
    text = f"{task.worker} {where}"
    if task.pin is not None:
        text += f" (pin {task.pin})"
    if task.group is not None:
        text += f" g{task.group}.{task.group_rank}"
    return text


def _scope_text(path: tuple[int, ...]) -> str:
    return "/" + "/".join(map(str, path))


def _waits(program: Program, task_id: int) -> list[tuple[int, list[str], list[str], str]]:
    """(u, kinds, tensor names, added_by) for every edge into `task_id`, sorted by u."""
    out = []
    for u in sorted(program.graph.predecessors(task_id)):
        data = program.graph.edges[u, task_id]
        tensors = sorted(_tensor_name(program, t) for t in data.get("tensors", ()))
        out.append((u, sorted(data.get("kinds", ())), tensors, data.get("added_by", "deps")))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return [_jsonable(v) for v in sorted(value, key=repr)]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):                  # numpy scalars
        return _jsonable(value.item())
    return str(value)


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


def _schedule_lines(program: Program) -> list[str]:
    """The schedule's estimate beside its bounds, and the kernel costs it used (when any)."""
    reports = program.reports
    if "makespan" not in reports:
        return []
    lines = [f"schedule: estimated makespan {reports['makespan']:g}, critical path "
             f"{reports['critical_path']:g}, lower bound {reports.get('makespan_lower_bound', 0):g} "
             "(cost units)"]
    costs = program.costs.kernel_costs
    if costs:
        lines.append("costs: " + " ".join(f"{k.rsplit(':', 1)[-1]}={v:g}"
                                          for k, v in sorted(costs.items())))
    return lines


def _results_text(program: Program, tree: Any) -> str:
    if tree is None:
        return "None"
    if isinstance(tree, ResultRef):
        return region_text(program, tree.tensor, tree.region)
    kind, items = tree
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {_results_text(program, v)}" for k, v in items) + "}"
    inner = ", ".join(_results_text(program, v) for v in items)
    if kind == "tuple":
        return f"({inner}{',' if len(items) == 1 else ''})"
    return f"[{inner}]"


# ---- text ---------------------------------------------------------------------------------------
def transfers(program: Program) -> list:
    """Moves between hosts (`l3c.passes.transfers`) of a placed, memory-planned multi-host program,
    by id; [] otherwise."""
    if program.config.hosts == 1 or "memory" not in program.passes_run:
        return []
    from .passes.transfers import analyse
    return analyse(program).moves


def _transfer_lines(program: Program) -> list[str]:
    """`x3 %2 host 0 -> host 1  t0[0:4,0:8] (128 B)  for %5 %6`: what moves, after which task, for
    which consumers (a token carries no data: only the order of a WAR/WAW/memory edge)."""
    moves = transfers(program)
    if not moves:
        return []
    lines = ["transfers:"]
    for t in moves:
        what = " ".join(f"{program.tensors[p.tensor].name}[{p.count} el]" for p in t.pieces)
        lines.append(f"  x{t.id} %{t.producer} host {t.src} -> host {t.dst}  "
                     f"{what + f' ({t.nbytes} B)' if t.pieces else 'token'}  landing {t.order}  "
                     f"for " + " ".join(f"%{c}" for c in t.consumers))
    return lines


def task_line(program: Program, task: Task) -> str:
    """One task: id, kernel, placement, reads/writes, scalars, waits (why), scope, location."""
    placement = _placement(task)
    if program.config.hosts > 1 and task.chip is not None:
        placement = f"host {program.host_of(task)} {placement}"
    parts = [f"%{task.id} {task.short_kernel}", placement]
    reads = [region_text(program, a.tensor, a.region) for a in task.accesses if a.mode == "In"]
    updates = [region_text(program, a.tensor, a.region) for a in task.accesses if a.mode == "InOut"]
    writes = [region_text(program, a.tensor, a.region) for a in task.accesses if a.mode == "Out"]
    scalars = [f"{a.param}={a.value!r}" for a in task.args if isinstance(a, ScalarArg)]
    for label, items in (("reads", reads), ("updates", updates), ("writes", writes),
                         ("scalars", scalars)):
        if items:
            parts.append(f"{label} " + " ".join(items))
    waits = [f"%{u}({'+'.join(kinds)} {','.join(tensors)}{'' if by == 'deps' else ' ' + by})"
             for u, kinds, tensors, by in _waits(program, task.id)]
    if waits:
        parts.append("waits " + " ".join(waits))
    parts.append(f"scope {_scope_text(task.scope)}")
    parts.append(f"@ {task.loc}")
    return "  ".join(parts)


def to_text(program: Program) -> str:
    """The canonical text form (deterministic; golden files compare it)."""
    c = program.config
    lines = [f"program {program.name}  @ {program.loc}",
             f"  config chips={c.chips} sub_workers={c.sub_workers} hosts={c.hosts} "
             f"fuse_groups={c.fuse_groups}",
             f"  passes {' '.join(program.passes_run)}"]
    params = [f"{p.name}={_tensor_name(program, p.tensor)}" if p.tensor is not None
              else f"{p.name}={p.static!r}" for p in program.params]
    lines.append("  params " + (" ".join(params) if params else "-"))
    lines.append("tasks:")
    for task in program.tasks:
        lines.append("  " + task_line(program, task))
    lines.append("tensors:")
    for t in program.tensors:
        dims = ",".join(map(str, t.shape))
        parts = [f"{t.name} {t.kind} {t.dtype}[{dims}]"]
        if t.zero_init:
            parts.append("zeros")
        if t.kind == "intermediate":
            parts.append(f"scope {_scope_text(t.scope)}")
        if t.first_use is not None:
            parts.append(f"uses %{t.first_use}..%{t.last_use}")
        if t.dead_after is not None:
            parts.append(f"dead after %{t.dead_after}")
        if t.arena_offset is not None:
            parts.append(f"arena {t.arena_offset}")
        parts.append(f"@ {t.loc}")
        lines.append("  " + "  ".join(parts))
    lines.extend(_transfer_lines(program))
    lines.append(f"results: {_results_text(program, program.results)}")
    lines.append("groups:" + ("" if program.groups else " -"))
    for g, members in enumerate(program.groups):
        lines.append(f"  g{g}: " + " ".join(f"%{m}" for m in members))
    m = program.memory
    lines.append(f"memory: {m} staging {m.staging_bytes} B added_edges {m.added_edges}")
    lines.extend(_schedule_lines(program))
    reports = {k: v for k, v in program.reports.items() if k != "warnings"}
    if reports:
        lines.append("reports:")
        for key in sorted(reports):
            lines.append(f"  {key}: {json.dumps(_jsonable(reports[key]), sort_keys=True)}")
    warnings = program.reports.get("warnings") or []
    if warnings:
        lines.append("warnings:")
        lines.extend(f"  {w}" for w in warnings)
    return "\n".join(lines) + "\n"


# ---- json ---------------------------------------------------------------------------------------
def region_json(region: Region) -> dict[str, Any]:
    return {"offset": region.offset, "shape": list(region.shape), "strides": list(region.strides),
            "box": None if region.box is None else [list(b) for b in region.box]}


def _arg_json(arg: Access | ScalarArg, strict: bool) -> dict[str, Any]:
    if isinstance(arg, Access):
        return {"param": arg.param, "tensor": arg.tensor, "mode": arg.mode,
                "region": region_json(arg.region)}
    return {"param": arg.param, "value": tagged_value(arg.value, strict)}


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
    JSON cannot hold raises TypeError instead of being shown as its repr."""
    tasks = []
    for task in program.tasks:
        waits = _waits(program, task.id)
        tasks.append({
            "id": task.id, "kernel": task.kernel, "worker": task.worker, "chip": task.chip,
            "host": program.host_of(task), "group": task.group, "group_rank": task.group_rank, "pin": task.pin,
            "queue_pos": task.queue_pos, "deps": [u for u, *_ in waits],
            "waits": [{"task": u, "kinds": kinds, "tensors": tensors, "added_by": by}
                      for u, kinds, tensors, by in waits],
            "args": [_arg_json(a, strict) for a in task.args], "scope": list(task.scope),
            "loc": task.loc,
        })
    tensors = [{"id": t.id, "name": t.name, "kind": t.kind, "shape": list(t.shape),
                "dtype": t.dtype, "nbytes": t.nbytes, "loc": t.loc, "scope": list(t.scope),
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
        "tasks": tasks,
        "tensors": tensors,
        "groups": [list(g) for g in program.groups],
        "memory": {"arena_bytes": m.arena_bytes, "lower_bound_bytes": m.lower_bound_bytes,
                   "naive_bytes": m.naive_bytes, "staging_bytes": m.staging_bytes,
                   "added_edges": m.added_edges, "alignment": m.alignment},
        "results": _results_json(program.results, strict),
        "reports": _jsonable(program.reports),
    } | ({"transfers": [{"id": t.id, "producer": t.producer, "src": t.src, "dst": t.dst,
                         "landing": t.order, "consumers": list(t.consumers), "bytes": t.nbytes,
                         "pieces": [{"tensor": p.tensor, "elements": p.count} for p in t.pieces]}
                        for t in transfers(program)]} if with_transfers else {})


def to_json(program: Program) -> str:
    return json.dumps(to_dict(program), indent=1, sort_keys=False) + "\n"


# ---- dot ----------------------------------------------------------------------------------------
def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _scope_paths(program: Program) -> list[tuple[int, ...]]:
    """Every non-root scope path that holds a task or a tensor, with all its ancestors, sorted."""
    paths: set[tuple[int, ...]] = set(program.scopes.values())
    paths.update(t.scope for t in program.tasks)
    paths.update(t.scope for t in program.tensors if t.kind == "intermediate")
    closed = {p[:k] for p in paths for k in range(1, len(p) + 1)}
    return sorted(closed)


def _common_prefix(paths: list[tuple[int, ...]]) -> tuple[int, ...]:
    first = paths[0]
    n = len(first)
    for p in paths[1:]:
        n = min(n, len(p))
        while n and p[:n] != first[:n]:
            n -= 1
    return first[:n]


HOST_COLOURS = ("#e8f0fe", "#fde8e8", "#e6f4ea", "#fef7e0", "#f3e8fd", "#e0f7fa")


def to_dot(program: Program) -> str:
    """Graphviz: a box per task, an edge per dependency labelled with kinds and tensors (dashed if
    the memory plan added it). `with l3c.scope()` blocks are nested solid clusters (`cluster_sN`,
    labelled with the scope path and the temporaries that die with it); each group task is a dashed
    cluster (`cluster_gN`) inside the innermost scope that holds all its members. Several hosts:
    each box names its host and is filled with the host's colour, and each transfer between hosts
    is a bold blue edge from its producer to each consumer, labelled `xN host a -> host b, bytes`."""
    lines = [f"digraph {_quote(program.name)} {{", "  rankdir=TB;",
             '  node [shape=box, fontname="monospace"];']

    hosts = program.config.hosts

    def node(task: Task) -> str:
        where = "?" if task.chip is None else task.chip
        host = program.host_of(task) if hosts > 1 and task.chip is not None else None
        on_host = "" if host is None else f" host {host}"
        label = f"%{task.id} {task.short_kernel}\n{task.worker} {where}{on_host}\n{task.loc}"
        fill = ("" if host is None else
                f", style=filled, fillcolor={_quote(HOST_COLOURS[host % len(HOST_COLOURS)])}")
        return f"t{task.id} [label={_quote(label)}{fill}];"

    # what goes directly inside each scope: loose tasks and group clusters
    loose: dict[tuple[int, ...], list[Task]] = {}
    groups_in: dict[tuple[int, ...], list[int]] = {}
    in_group = {m for members in program.groups for m in members}
    for g, members in enumerate(program.groups):
        if members:
            where = _common_prefix([program.task(m).scope for m in members])
            groups_in.setdefault(where, []).append(g)
    for task in program.tasks:
        if task.id not in in_group:
            loose.setdefault(task.scope, []).append(task)
    paths = _scope_paths(program)
    children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for path in paths:
        children.setdefault(path[:-1], []).append(path)
    temporaries: dict[tuple[int, ...], list[str]] = {}
    for t in program.tensors:
        if t.kind == "intermediate" and t.scope:
            temporaries.setdefault(t.scope, []).append(t.name)

    def emit(path: tuple[int, ...], indent: str) -> None:
        for g in groups_in.get(path, []):
            lines.append(f"{indent}subgraph cluster_g{g} {{")
            lines.append(f"{indent}  label={_quote(f'group {g}')}; style=dashed;")
            for m in program.groups[g]:
                lines.append(f"{indent}  {node(program.task(m))}")
            lines.append(f"{indent}}}")
        for task in loose.get(path, []):
            lines.append(indent + node(task))
        for child in children.get(path, []):
            label = "scope " + _scope_text(child)
            if temporaries.get(child):
                label += "\ntemporaries " + " ".join(temporaries[child])
            lines.append(f"{indent}subgraph cluster_s{child[-1]} {{")
            lines.append(f"{indent}  label={_quote(label)}; style=rounded;")
            emit(child, indent + "  ")
            lines.append(f"{indent}}}")

    emit((), "  ")
    for u, v in sorted(program.graph.edges):
        data = program.graph.edges[u, v]
        label = "+".join(sorted(data.get("kinds", ())))
        tensors = ",".join(sorted(_tensor_name(program, t) for t in data.get("tensors", ())))
        style = ", style=dashed" if data.get("added_by", "deps") != "deps" else ""
        lines.append(f"  t{u} -> t{v} [label={_quote(f'{label} {tensors}'.strip())}{style}];")
    for t in transfers(program):
        what = f"x{t.id} host {t.src} -> host {t.dst}, {t.nbytes} B"
        for c in t.consumers:
            lines.append(f"  t{t.producer} -> t{c} [label={_quote(what)}, color=blue, "
                         f"fontcolor=blue, style=bold, constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# Rendered by Graphviz's `dot`. SVG is drawn without Graphviz by `l3c.viz.graph_svg` (`dump-ir
# --format svg`), which a printer of the IR does not import.
RENDER_FORMATS = ("png",)


def render(program: Program, format: str, timeout: float = 120.0) -> bytes:  # noqa: A002
    """The DOT view rendered by Graphviz's `dot` program ("png" bytes).

    Raises `L3CError` with a one-line hint when `dot` is not installed or fails."""
    import shutil
    import subprocess

    if format not in RENDER_FORMATS:
        raise L3CError(f"unknown render format {format!r}; use one of {', '.join(RENDER_FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise L3CError(f"--format {format} needs Graphviz's 'dot' program, which is not installed: "
                       "install graphviz (e.g. apt-get install graphviz), or use --format svg "
                       "(drawn without Graphviz) or --format dot")
    try:
        proc = subprocess.run([exe, f"-T{format}"], input=to_dot(program).encode(),
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise L3CError(f"Graphviz 'dot -T{format}' took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()
        raise L3CError(f"Graphviz 'dot -T{format}' failed: {why[-1] if why else proc.returncode}")
    return proc.stdout
