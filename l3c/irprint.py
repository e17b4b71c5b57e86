"""The canonical text form of the IR (the JSON view is `l3c.irjson`, DOT `l3c.viz.dot`, and
`l3c.irdump.dump` picks one of the three).

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

Loops and conds print as a header line (`range L0 start=0 stop=arg1[0] step=1  @ file.py:LINE`)
followed by their body's tasks indented one step; a view that moves with loop variables prints its
moving box starts as affine expressions (`arg0[L0,0:8]`), a loop-variable scalar as `k=L0+1`, and a
dependency on an earlier iteration as `%3(RAW t0 carried)`. `docs/ir.md` describes every field.
"""
from __future__ import annotations

import json
from typing import Any

from .ir import Access, Affine, Loop, Program, Region, ResultRef, ScalarArg, Task

# ---- shared helpers -----------------------------------------------------------------------------
def tensor_name(program: Program, tensor: int) -> str:
    return program.tensors[tensor].name if 0 <= tensor < len(program.tensors) else f"?{tensor}"


def _placement(task: Task) -> str:
    where = "?" if task.chip is None else str(task.chip)
    text = f"{task.worker} {where}"
    if task.pin is not None:
        text += f" (pin {task.pin})"
    if task.group is not None:
        text += f" g{task.group}.{task.group_rank}"
    return text


def scope_text(path: tuple[int, ...]) -> str:
    return "/" + "/".join(map(str, path))


def waits(program: Program, task_id: int) -> list[tuple[int, list[str], list[str], str, bool]]:
    """(u, kinds, tensor names, added_by, carried) for every edge into `task_id`, sorted by u."""
    out = []
    for u in sorted(program.graph.predecessors(task_id)):
        data = program.graph.edges[u, task_id]
        tensors = sorted(tensor_name(program, t) for t in data.get("tensors", ()))
        out.append((u, sorted(data.get("kinds", ())), tensors, data.get("added_by", "deps"),
                    bool(data.get("carried"))))
    return out


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in sorted(value, key=repr)]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):                  # numpy scalars
        return jsonable(value.item())
    return str(value)


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
    if program.config.hosts == 1 or "memory" not in program.passes_run or program.loops:
        return []                  # with loops a move is per instance (`_transfer_lines`)
    from .passes.transfers import analyse
    return analyse(program).moves


def _transfer_lines(program: Program) -> list[str]:
    """`x3 %2 host 0 -> host 1  t0[0:4,0:8] (128 B)  for %5 %6`: what moves, after which task, for
    which consumers (a token carries no data: only the order of a WAR/WAW/memory edge)."""
    if program.loops and program.config.hosts > 1 and "memory" in program.passes_run:
        from .passes.looptransfers import analyse_loops
        return ["transfers (every instance of the producer):"] + [
            f"  x{t.id} %{t.producer} host {t.src} -> host {t.dst}  " + " ".join(
                region_text(program, a.tensor, a.region) for a in t.accesses)
            for t in analyse_loops(program).transfers]
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
    scalars = [f"{a.param}={scalar_text(a.value)}" for a in task.args if isinstance(a, ScalarArg)]
    for label, items in (("reads", reads), ("updates", updates), ("writes", writes),
                         ("scalars", scalars)):
        if items:
            parts.append(f"{label} " + " ".join(items))
    edges = [f"%{u}({'+'.join(kinds)} {','.join(tensors)}{'' if by == 'deps' else ' ' + by}"
             f"{' carried' if carried else ''})"
             for u, kinds, tensors, by, carried in waits(program, task.id)]
    if edges:
        parts.append("waits " + " ".join(edges))
    parts.append(f"scope {scope_text(task.scope)}")
    parts.append(f"@ {task.loc}")
    return "  ".join(parts)


def to_text(program: Program) -> str:
    """The canonical text form (deterministic; golden files compare it)."""
    c = program.config
    lines = [f"program {program.name}  @ {program.loc}",
             f"  config chips={c.chips} sub_workers={c.sub_workers} hosts={c.hosts} "
             f"fuse_groups={c.fuse_groups}",
             f"  passes {' '.join(program.passes_run)}"]
    params = [f"{p.name}={tensor_name(program, p.tensor)}" if p.tensor is not None
              else f"{p.name}={p.static!r}" for p in program.params]
    lines.append("  params " + (" ".join(params) if params else "-"))
    lines.append("tasks:")
    openings = loop_openings(program)
    tasks = program.tasks
    for task in tasks:
        for loop in openings.get(task.id, ()):       # a loop's header, then its body indented
            lines.append("  " + "  " * loop_depth(program, loop) + loop_header(program, loop))
        lines.append("  " + "  " * len(task.loops) + task_line(program, task))
    for loop in openings.get(len(tasks), ()):
        lines.append("  " + "  " * loop_depth(program, loop) + loop_header(program, loop))
    lines.append("tensors:")
    for t in program.tensors:
        dims = ",".join(map(str, t.shape))
        parts = [f"{t.name} {t.kind} {t.dtype}[{dims}]"]
        if t.zero_init:
            parts.append("zeros")
        if t.kind == "intermediate":
            parts.append(f"scope {scope_text(t.scope)}")
        if t.loops:
            parts.append("loops " + "/".join(f"L{k}" for k in t.loops))
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
            lines.append(f"  {key}: {json.dumps(jsonable(reports[key]), sort_keys=True)}")
    warnings = program.reports.get("warnings") or []
    if warnings:
        lines.append("warnings:")
        lines.extend(f"  {w}" for w in warnings)
    return "\n".join(lines) + "\n"



# ---- loops, moving views and loop variables -------------------------------------------------------
def affine_text(value: Affine) -> str:
    """`2*L0+1`: an Affine without spaces (it sits inside index brackets and `name=value`)."""
    return str(value).replace(" ", "")


def _moving_region(region: Region) -> str:
    if region.box is None:
        moves = "".join(f"+{s.offset}*L{s.loop}" for s in region.shifts).replace("+-", "-")
        return (f"<off={region.offset}{moves} shape={list(region.shape)} "
                f"strides={list(region.strides)}>")
    parts = []
    for axis, (start, count, step) in enumerate(region.box):
        first = Affine(start, tuple((s.loop, s.box[axis]) for s in region.shifts if s.box[axis]))
        if count == 0:
            parts.append("0:0")
        elif count == 1:
            parts.append(affine_text(first))
        else:
            last = Affine(first.const + (count - 1) * step + 1, first.terms)
            parts.append(f"{affine_text(first)}:{affine_text(last)}"
                         + (f":{step}" if step != 1 else ""))
    return "[" + ",".join(parts) + "]"


def region_text(program: Program, tensor: int, region: Region) -> str:
    """`arg0` for a whole tensor, `arg0[0:8:2,3]`-style for a box, raw mapping otherwise; a view
    that moves with loop variables shows them (`arg0[L0,0:8]`)."""
    info = program.tensors[tensor]
    name = info.name
    if region.shifts:
        return f"{name}{_moving_region(region)}"
    if region.is_whole(info.shape) and region.shape == info.shape:
        return name
    return f"{name}{region}"


def scalar_text(value: Any) -> str:
    """A scalar argument as the text form shows it (`repr`, or `L0+1` for a loop variable)."""
    return affine_text(value) if isinstance(value, Affine) else repr(value)


def bound_text(program: Program, bound: Any) -> Any:
    """A loop bound or flag: the int itself, or the element read (`arg1[0]`)."""
    if isinstance(bound, Access):
        return region_text(program, bound.tensor, bound.region)
    return bound


def loop_fields(program: Program, loop: Loop) -> dict[str, Any]:
    """What `compiled.loops[id]` says of one loop/cond."""
    out: dict[str, Any] = {"kind": loop.kind, "loc": loop.loc, "parent": loop.parent,
                           "tasks": list(range(loop.first_task, loop.end_task))}
    if loop.kind == "range":
        out.update(start=bound_text(program, loop.start), stop=bound_text(program, loop.stop),
                   step=bound_text(program, loop.step))
    else:
        out["flag"] = bound_text(program, loop.flag)
        if loop.kind == "while":
            out["max_iterations"] = loop.max_iterations
        else:
            out["invert"] = loop.invert
    return out


def _reads_text(pairs: tuple[tuple[int, bool], ...]) -> str:
    return " ".join(f"%{t}" + ("(carried)" if carried else "") for t, carried in pairs)


def loop_header(program: Program, loop: Loop) -> str:
    """The text form's line for a loop or cond (its body's tasks follow, indented)."""
    fields = loop_fields(program, loop)
    if loop.kind == "range":
        parts = [f"range L{loop.id} start={fields['start']} stop={fields['stop']} "
                 f"step={fields['step']}"]
    else:
        parts = [f"{loop.kind} L{loop.id} flag={fields['flag']}"]
        if loop.kind == "while" and loop.max_iterations is not None:
            parts[0] += f" max_iterations={loop.max_iterations}"
        if loop.invert:
            parts[0] += " invert"
    if loop.reads_after:
        parts.append("read after " + _reads_text(loop.reads_after))
    if loop.reads_before:
        parts.append("read before " + _reads_text(loop.reads_before))
    parts.append(f"@ {loop.loc}")
    return "  ".join(parts)


def loop_openings(program: Program) -> dict[int, list[Loop]]:
    """The loops whose header line goes right before task `t` (or at the end, key = task count),
    outermost first: a loop opens before the first task of its body."""
    out: dict[int, list[Loop]] = {}
    for loop in sorted(program.loops.values(), key=lambda lp: lp.id):
        out.setdefault(loop.first_task, []).append(loop)
    return out


def loop_depth(program: Program, loop: Loop) -> int:
    depth, parent = 0, loop.parent
    while parent is not None:
        depth += 1
        parent = program.loops[parent].parent
    return depth
