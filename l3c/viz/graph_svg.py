"""The task graph as one self-contained SVG file, drawn in pure Python (`l3c dump-ir --format svg`).

Why not Graphviz: `dot` is a system binary a fresh machine lacks, and the Python layout libraries
that avoid it (grandalf, pydot's bindings) are either unmaintained or call `dot` themselves. The
graphs here are DAGs in program order, so a plain layered drawing does the job in a page of code:

* layers by dependency depth: a task sits one layer below the deepest task it waits for; a group
  task counts as one node, so its members share a layer and stand side by side, boxed (dashed);
* within a layer, nodes are ordered by a few barycenter sweeps (the mean position of their
  neighbours in the layers above and below), which removes most edge crossings; a layer wider than
  `MAX_ROW` nodes wraps onto several rows;
* one fill colour per chip (and per sub worker), with a legend; unplaced tasks (before the
  schedule pass) are grey;
* edges: data dependencies solid, order-only ones (WAR/WAW) dashed, those the memory plan added
  dotted; each node and edge has a `<title>` with its full text line (the text dump's), which SVG
  viewers show on hover;
* loops and conds (programs with `l3c.range` / `while_loop` / `cond`): a labelled frame around
  their body's tasks, and dependencies on an earlier iteration (`carried`, left out of the layering
  since they may point back up) as dashed red arcs on the right of the boxes.
"""
from __future__ import annotations

from typing import Any

import networkx as nx

from ..ir import Program, Task
from ..irprint import loop_header, task_line
from ..passes.graphs import iteration_graph
from .palette import UNPLACED, colour, esc, text_on

NODE_W, NODE_H = 156, 48
GAP_X, GAP_Y = 18, 46
MARGIN, HEADER = 20, 70
MAX_ROW = 16                   # nodes per row before a layer wraps
SWEEPS = 4
EDGE_STYLES = {"data": ("#37474f", ""), "order": ("#78909c", "5 3"), "memory": ("#ef6c00", "2 3")}
CARRIED = ("#b03030", "4 3")
LOOP_STROKE = "#3949ab"


def to_svg(program: Program) -> str:
    """The SVG text of `program`'s task graph (any stage of the pipeline: placement may be missing)."""
    units, unit_of = _units(program)
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(units)))
    dag.add_edges_from((unit_of[u], unit_of[v]) for u, v in iteration_graph(program).edges
                       if unit_of[u] != unit_of[v])
    layers = _layers(dag, units)
    _order(layers, dag)
    pos, rows_width, height = _place(layers, units)
    slots = _slot_colours(program)

    width = max(rows_width, 520) + 2 * MARGIN
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">',
           "<style>.edge{fill:none;stroke-width:1.3}.node rect{stroke:#263238;stroke-width:0.8}"
           ".group{fill:none;stroke:#263238;stroke-dasharray:6 3}</style><defs>"]
    styles = dict(EDGE_STYLES, **({"carried": CARRIED} if program.has_carried else {}))
    for name, (stroke, _) in styles.items():
        out.append(f'<marker id="head-{name}" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
                   f'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{stroke}"/></marker>')
    out.append("</defs>")
    out.append(f'<rect width="{width}" height="{height}" fill="#fff"/>')
    n_edges = program.graph.number_of_edges()
    out.append(f'<text x="{MARGIN}" y="22" font-size="14" font-weight="bold">{esc(program.name)}'
               f'<tspan font-weight="normal" font-size="11" fill="#5f6b7a"> {esc(program.loc)}</tspan></text>')
    out.append(f'<text x="{MARGIN}" y="40" fill="#5f6b7a">{len(program.tasks)} tasks, {n_edges} edges, '
               f'{len(program.groups)} groups; passes: {esc(" ".join(program.passes_run) or "-")}</text>')
    out.append(_legend(slots, styles))

    edges_svg = []
    for u, v in sorted(program.graph.edges):
        data = program.graph.edges[u, v]
        kinds = set(data.get("kinds", ()))
        style = ("carried" if data.get("carried") else
                 "memory" if data.get("added_by", "deps") != "deps" else
                 "data" if "RAW" in kinds else "order")
        stroke, dash = styles[style]
        (x1, y1), (x2, y2) = pos[u], pos[v]
        if style == "carried":           # right side of u to right side of v: may point upwards
            x1, y1, x2, y2 = x1 + NODE_W, y1 + NODE_H * 0.7, x2 + NODE_W, y2 + NODE_H * 0.3
            reach = 30 + abs(y2 - y1) / 8
            curve = f"C{x1 + reach:.1f},{y1:.1f} {x2 + reach:.1f},{y2:.1f}"
        else:
            x1, y1, x2, y2 = x1 + NODE_W / 2, y1 + NODE_H, x2 + NODE_W / 2, y2
            bend = max((y2 - y1) / 2, 12)
            curve = f"C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f}"
        title = (f"%{u} -> %{v} {'+'.join(sorted(kinds)) or 'order'} {data.get('added_by', 'deps')}"
                 + (" carried" if style == "carried" else ""))
        edges_svg.append(f'<path class="edge" stroke="{stroke}"{_dash(dash)} '
                         f'marker-end="url(#head-{style})" d="M{x1:.1f},{y1:.1f} {curve} '
                         f'{x2:.1f},{y2:.1f}"><title>{esc(title)}</title></path>')
    out.append('<g id="edges">' + "".join(edges_svg) + "</g>")

    if program.loops:
        out.append(_loop_frames(program, pos))
    out.append('<g id="groups">')
    for unit in units:
        if len(unit) > 1:
            task = program.task(unit[0])
            xs = [pos[m][0] for m in unit]
            x0, y0 = min(xs) - 6, pos[unit[0]][1] - 15
            out.append(f'<g class="group-box" data-group="{task.group}"><rect class="group" '
                       f'x="{x0:.1f}" y="{y0:.1f}" rx="6" width="{max(xs) - min(xs) + NODE_W + 12:.1f}" '
                       f'height="{NODE_H + 21}"/><text x="{x0 + 6:.1f}" y="{y0 + 11:.1f}" '
                       f'font-size="10" fill="#263238">group {task.group}</text></g>')
    out.append('</g><g id="nodes">')
    for task in program.tasks:
        x, y = pos[task.id]
        fill = slots.get(_slot(program, task), UNPLACED)
        ink = text_on(fill)
        kernel = task.short_kernel if len(task.short_kernel) <= 16 else task.short_kernel[:15] + "~"
        loc = task.loc.rsplit("/", 1)[-1]
        loc = loc if len(loc) <= 21 else "~" + loc[-20:]
        out.append(f'<g class="node" data-task="{task.id}"><title>{esc(task_line(program, task))}</title>'
                   f'<rect x="{x:.1f}" y="{y:.1f}" rx="4" width="{NODE_W}" height="{NODE_H}" fill="{fill}"/>'
                   f'<text x="{x + 6:.1f}" y="{y + 14:.1f}" fill="{ink}" font-weight="bold">'
                   f'%{task.id} {esc(kernel)}</text>'
                   f'<text x="{x + 6:.1f}" y="{y + 28:.1f}" fill="{ink}">{esc(_where(program, task))}</text>'
                   f'<text x="{x + 6:.1f}" y="{y + 41:.1f}" fill="{ink}">{esc(loc)}</text></g>')
    out.append("</g></svg>")
    text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + "\n".join(out) + "\n"
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")   # any locale writes it


def _dash(pattern: str) -> str:
    return f' stroke-dasharray="{pattern}"' if pattern else ""


def _units(program: Program) -> tuple[list[list[int]], dict[int, int]]:
    """Group tasks as one unit (members in rank order), every other task alone; program order."""
    units: list[list[int]] = []
    unit_of: dict[int, int] = {}
    for task in program.tasks:
        if task.id in unit_of:
            continue
        members = program.groups[task.group] if task.group is not None else [task.id]
        for m in members:
            unit_of[m] = len(units)
        units.append(list(members))
    return units, unit_of


def _layers(dag: nx.DiGraph, units: list[list[int]]) -> list[list[int]]:
    """Units by longest-path depth from the sources, each layer in program order."""
    depth: dict[int, int] = {}
    for u in nx.topological_sort(dag):
        depth[u] = max((depth[p] + 1 for p in dag.predecessors(u)), default=0)
    layers: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for u in sorted(depth, key=lambda u: units[u][0]):
        layers[depth[u]].append(u)
    return layers


def _order(layers: list[list[int]], dag: nx.DiGraph) -> None:
    """Barycenter sweeps, down then up: each unit moves to the mean position of its neighbours in
    the previous layer of the sweep (units without such neighbours keep their place)."""
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        sequence = range(1, len(layers)) if down else range(len(layers) - 2, -1, -1)
        for i in sequence:
            ref = {u: k for k, u in enumerate(layers[i - 1 if down else i + 1])}
            def key(item: tuple[int, int]) -> float:
                k, u = item
                near = dag.predecessors(u) if down else dag.successors(u)
                places = [ref[n] for n in near if n in ref]
                return sum(places) / len(places) if places else float(k) * len(ref) / max(len(layers[i]), 1)
            layers[i] = [u for _, u in sorted(enumerate(layers[i]), key=key)]


def _place(layers: list[list[int]], units: list[list[int]]
           ) -> tuple[dict[int, tuple[float, float]], float, float]:
    """Top-left corner of every task's box; the widest row's width; the picture's height."""
    pos: dict[int, tuple[float, float]] = {}
    rows: list[list[int]] = []
    for layer in layers:
        row: list[int] = []
        for u in layer:
            if row and sum(len(units[r]) for r in row) + len(units[u]) > MAX_ROW:
                rows.append(row)
                row = []
            row.append(u)
        rows.append(row)
    widths = [sum(len(units[u]) for u in row) * (NODE_W + GAP_X) + (len(row) - 1) * GAP_X
              for row in rows]
    widest = max(widths, default=0)
    y = MARGIN + HEADER
    for row, w in zip(rows, widths):
        x = MARGIN + (widest - w) / 2
        for u in row:
            for m in units[u]:
                pos[m] = (x, y + 15)
                x += NODE_W + GAP_X
            x += GAP_X
        y += NODE_H + GAP_Y
    return pos, widest, y + MARGIN


def _slot(program: Program, task: Task) -> tuple | None:
    if task.chip is None:
        return None
    host = program.host_of(task) if program.config.hosts > 1 else 0
    return ("chip", 0, task.chip) if task.worker == "chip" else ("sub", host, task.chip)


def _where(program: Program, task: Task) -> str:
    if task.chip is None:
        return f"{task.worker} (unplaced)"
    text = f"{task.worker} {task.chip}"
    if program.config.hosts > 1:
        text = f"host {program.host_of(task)} {text}"
    return text + (f"  g{task.group}.{task.group_rank}" if task.group is not None else "")


def _slot_colours(program: Program) -> dict[tuple, str]:
    used = sorted({s for s in (_slot(program, t) for t in program.tasks) if s is not None})
    return {slot: colour(i) for i, slot in enumerate(used)}


def _loop_frames(program: Program, pos: dict[int, tuple[float, float]]) -> str:
    """A labelled frame around the boxes of each loop's body (nested frames a little wider)."""
    items = []
    for loop in sorted(program.loops.values(), key=lambda lp: lp.id):
        body = range(loop.first_task, loop.end_task)
        if not body:
            continue
        depth, parent = 0, loop.parent
        while parent is not None:
            depth, parent = depth + 1, program.loops[parent].parent
        pad = 14 - 4 * min(depth, 3)
        xs, ys = [pos[t][0] for t in body], [pos[t][1] for t in body]
        x0, y0 = min(xs) - pad, min(ys) - pad - 12
        x1, y1 = max(xs) + NODE_W + pad, max(ys) + NODE_H + pad
        header = loop_header(program, loop)
        items.append(f'<g class="loop" data-loop="{loop.id}"><title>{esc(header)}</title>'
                     f'<rect x="{x0:.1f}" y="{y0:.1f}" rx="8" width="{x1 - x0:.1f}" '
                     f'height="{y1 - y0:.1f}" fill="none" stroke="{LOOP_STROKE}" stroke-width="1.2"/>'
                     f'<text x="{x0 + 6:.1f}" y="{y0 + 11:.1f}" font-size="10" fill="{LOOP_STROKE}">'
                     f'{esc(header.split("  @ ")[0][:60])}</text></g>')
    return '<g id="loops">' + "".join(items) + "</g>"


def _legend(slots: dict[tuple, Any], styles: dict[str, tuple[str, str]]) -> str:
    items, x = [], MARGIN
    for (worker, host, index), fill in slots.items():
        label = f"{worker} {index}" if worker == "chip" or not host else f"host {host} sub {index}"
        items.append(f'<rect x="{x}" y="50" width="12" height="12" fill="{fill}" stroke="#263238" '
                     f'stroke-width="0.5"/><text x="{x + 16}" y="60">{esc(label)}</text>')
        x += 24 + 7 * len(label)
    for name, (stroke, dash) in styles.items():
        label = {"data": "data (RAW)", "order": "order (WAR/WAW)", "memory": "memory reuse",
                 "carried": "earlier iteration"}[name]
        items.append(f'<line x1="{x}" y1="56" x2="{x + 22}" y2="56" stroke="{stroke}" stroke-width="1.5"'
                     f'{_dash(dash)}/>'
                     f'<text x="{x + 26}" y="60">{esc(label)}</text>')
        x += 34 + 7 * len(label)
    return "<g id=\"legend\">" + "".join(items) + "</g>"
