"""The profile of one run as one self-contained HTML file: SVG swimlanes, legend, summary.

The page needs nothing outside itself: no network, no external script, stylesheet or font (the
script and style are inlined, the text uses the browser's own fonts). The SVG is drawn here, in
full, so the picture is there even where scripts do not run; the inlined script (`timeline.js`)
adds zoom and pan on the time axis (wheel, drag, buttons, keys, or `#t=START,END` in microseconds
after the file name), hover and click details (`#task=ID` opens with a task's details pinned), and
highlighting of a task's group and arrows. It
redraws from the JSON model embedded in the page, with the same geometry as `LAYOUT` below.
"""
from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any, Mapping

from . import timeline_model
from .palette import esc, text_on
from .timeline_model import Timeline, format_us

LAYOUT = {
    "width": 1200,           # initial SVG width (the script fits it to the window)
    "left": 190,             # lane label column
    "right": 16,
    "axis": 30,              # time axis above the lanes
    "process": 22,           # a process (host) header row, when the profile has several
    "lane": 30,              # lane pitch
    "bar": 20,               # bar height, centred in the lane
    "bottom": 12,
}
LANE_FILL = ("#e8edf4", "#f5f7fa")     # alternating lane backgrounds
FLOW_COLOURS = {"dependency": "#37474f", "transfer": "#c2185b"}
OTHER_FLOW = "#6a1b9a"
CRITICAL = "#d50000"


def to_html(trace: Mapping[str, Any]) -> str:
    """The self-contained HTML page of a Chrome trace event dict (`compiled.profile`'s trace)."""
    model = timeline_model.build(trace)
    data = _data(model)
    page = _PAGE.format(
        title=esc(f"l3c timeline: {model.title}"),
        style=_asset("timeline.css"),
        heading=esc(model.title),
        loc=esc(model.loc),
        summary="".join(f"<div>{esc(line)}</div>" for line in timeline_model.summary(model)),
        legend=_legend(model),
        svg=_svg(model, data),
        data=_script_json(data),
        script=_asset("timeline.js"),
    )
    return page


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element (no `</script>`, no `<!--`)."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _lane_ys(model: Timeline) -> tuple[list[float], list[tuple[str, float]], float]:
    """Top y of each lane, the process headers (name, y) and the SVG height."""
    y = float(LAYOUT["axis"])
    several = len(model.processes) > 1
    tops, headers, current = [], [], None
    for lane in model.lanes:
        if several and lane.process != current:
            headers.append((lane.process, y))
            y += LAYOUT["process"]
        current = lane.process
        tops.append(y)
        y += LAYOUT["lane"]
    return tops, headers, y + LAYOUT["bottom"]


def _data(model: Timeline) -> dict[str, Any]:
    """The model as the script reads it (compact lists; see timeline.js)."""
    tops, headers, height = _lane_ys(model)
    kernel_index = {k.name: i for i, k in enumerate(model.kernels)}
    locs: dict[str, int] = {}
    kinds: dict[str, int] = {}
    span = model.makespan
    pad = max(span, 1.0) * 0.02        # the view: the tasks, with a little room either side
    round3 = lambda v: round(float(v), 3)  # noqa: E731 - ns resolution is what the clock gives
    return {
        "t0": round3(max(0.0, model.t_first - pad)), "t1": round3(model.t_last + pad),
        "layout": LAYOUT, "height": height,
        "lanes": [{"name": lane.name, "process": lane.process, "y": y,
                   "busy": round(lane.busy_us / span, 4) if span > 0 else 0}
                  for lane, y in zip(model.lanes, tops)],
        "headers": [{"name": name, "y": y} for name, y in headers],
        "kernels": [{"name": k.name, "short": k.short, "colour": k.colour} for k in model.kernels],
        "bars": [[b.lane, round3(b.start), round3(b.dur), kernel_index[b.kernel], b.task,
                  locs.setdefault(b.loc, len(locs)), b.group, b.group_rank,
                  len(model.groups.get(b.group, ())) if b.group is not None else 0,
                  b.iteration, b.extra or 0]
                 for b in model.bars],
        "locs": list(locs),
        "arrows": [[a.src_lane, round3(a.src_t), a.dst_lane, round3(a.dst_t),
                    kinds.setdefault(a.kind, len(kinds)), a.src_task, a.dst_task, a.name]
                   for a in model.arrows],
        "kinds": [{"name": k, "colour": FLOW_COLOURS.get(k, OTHER_FLOW)} for k in kinds],
        "groups": [members for members in model.groups.values() if len(members) > 1],
        "critical": model.critical,
        "critical_colour": CRITICAL,
        "lane_fill": LANE_FILL,
    }


class _Scale:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.k = t0, (LAYOUT["width"] - LAYOUT["left"] - LAYOUT["right"]) / (t1 - t0)

    def x(self, t: float) -> float:
        return LAYOUT["left"] + (t - self.t0) * self.k


def _svg(model: Timeline, data: dict[str, Any]) -> str:
    """The picture at the initial zoom (the whole run); the script redraws the same elements."""
    width, height, left = LAYOUT["width"], data["height"], LAYOUT["left"]
    scale = _Scale(data["t0"], data["t1"])
    lane_y = [lane["y"] for lane in data["lanes"]]
    mid = lambda lane: lane_y[lane] + LAYOUT["lane"] / 2  # noqa: E731
    out = [f'<svg id="timeline" width="{width}" '
           f'height="{height:.0f}" font-size="12">',
           '<defs><clipPath id="plot-clip"><rect id="plot-clip-rect" '
           f'x="{left}" y="0" width="{width - left - LAYOUT["right"]}" height="{height:.0f}"/></clipPath>',
           *[f'<marker id="arrowhead-{k}" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
             f'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{kind["colour"]}"/>'
             '</marker>' for k, kind in enumerate(data["kinds"])],
           '</defs><g id="lanes">']
    for i, lane in enumerate(data["lanes"]):
        out.append(f'<rect class="lane" x="0" y="{lane["y"]}" width="{width}" height="{LAYOUT["lane"]}" '
                   f'fill="{LANE_FILL[i % 2]}"/>')
        out.append(f'<text class="lane-name" x="8" y="{mid(i) + 4:.1f}">{esc(lane["name"])}</text>'
                   f'<text class="busy" x="{left - 8}" y="{mid(i) + 4:.1f}" text-anchor="end">'
                   f'{lane["busy"]:.0%}</text>')
    for header in data["headers"]:
        out.append(f'<text class="process" x="4" y="{header["y"] + 15}">{esc(header["name"])}</text>')
    out.append('</g><g id="axis">')
    for t, label in _ticks(data["t0"], data["t1"]):
        x = scale.x(t)
        out.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{LAYOUT["axis"] - 6}" '
                   f'y2="{height:.0f}"/><text class="tick-label" x="{x + 3:.1f}" '
                   f'y="{LAYOUT["axis"] - 10}">{esc(label)}</text>')
    out.append('</g><g id="plot" clip-path="url(#plot-clip)"><g id="bars">')
    pad = (LAYOUT["lane"] - LAYOUT["bar"]) / 2
    on_path = set(model.critical)
    for i, b in enumerate(model.bars):
        fill = data["kernels"][data["bars"][i][3]]["colour"]
        x0, x1 = scale.x(b.start), scale.x(b.end)
        classes = "task crit" if i in on_path else "task"
        out.append(f'<rect class="{classes}" data-i="{i}" x="{x0:.2f}" y="{lane_y[b.lane] + pad}" '
                   f'width="{max(x1 - x0, 1.0):.2f}" height="{LAYOUT["bar"]}" fill="{fill}"/>')
    out.append('</g><g id="labels">')
    for i, b in enumerate(model.bars):
        x0, x1 = scale.x(b.start), scale.x(b.end)
        if x1 - x0 >= 7 * len(b.label) + 6:
            fill = data["kernels"][data["bars"][i][3]]["colour"]
            out.append(f'<text x="{x0 + 3:.1f}" y="{mid(b.lane) + 4:.1f}" fill="{text_on(fill)}">'
                       f'{esc(b.label)}</text>')
    out.append('</g><g id="groups">')
    for members in data["groups"]:
        out.append(f'<path class="group" d="{_group_path(model, members, scale, mid)}"/>')
    out.append('</g><g id="critical">')
    crit = model.critical
    for u, v in zip(crit, crit[1:]):
        bu, bv = model.bars[u], model.bars[v]
        out.append(f'<path class="crit" stroke="{CRITICAL}" d="M{scale.x(bu.end):.1f},{mid(bu.lane):.1f} '
                   f'L{scale.x(bv.start):.1f},{mid(bv.lane):.1f}"/>')
    out.append('</g><g id="arrows">')
    for j, (a, row) in enumerate(zip(model.arrows, data["arrows"])):
        kind = row[4]
        path = _flow_path(scale.x(a.src_t), mid(a.src_lane), scale.x(a.dst_t), mid(a.dst_lane))
        out.append(f'<path class="flow" data-i="{j}" stroke="{data["kinds"][kind]["colour"]}" '
                   f'marker-end="url(#arrowhead-{kind})" d="{path}"/>')
    out.append("</g></g></svg>")
    return "".join(out)


def _group_path(model: Timeline, members: list[int], scale: _Scale, mid: Any) -> str:
    """Lines joining the members' bars, lane by lane downwards, from the bottom edge of one bar to
    the top edge of the next (so they cross no bar's label)."""
    half = LAYOUT["bar"] / 2
    points = [(scale.x(model.bars[i].start + model.bars[i].dur / 2), mid(model.bars[i].lane))
              for i in members]
    return " ".join(f"M{xa:.1f},{ya + half:.1f} L{xb:.1f},{yb - half:.1f}"
                    for (xa, ya), (xb, yb) in zip(points, points[1:]))


def _flow_path(x1: float, y1: float, x2: float, y2: float) -> str:
    """A curve from the producer's bar to the start of the consumer's, leaving and entering the
    bars at their edges facing each other."""
    towards = 1 if y2 > y1 else -1
    y1, y2 = y1 + towards * LAYOUT["bar"] / 2, y2 - towards * LAYOUT["bar"] / 2
    bend = (y2 - y1) / 2
    return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"


def _ticks(t0: float, t1: float, target: int = 8) -> list[tuple[float, str]]:
    """Round tick positions (1, 2, 5 x 10^k microseconds) across [t0, t1]."""
    raw = (t1 - t0) / target
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(t0 / step) * step
    count = int((t1 - first) / step) + 1
    return [(first + k * step, format_us(first + k * step) if first + k * step else "0")
            for k in range(max(count, 0))]


def _legend(model: Timeline) -> str:
    items = [f'<span class="key" title="{esc(k.name)}"><span class="swatch" style="background:{k.colour}">'
             f'</span>{esc(k.short)} <span class="dim">×{k.count}, {esc(format_us(k.total_us))}</span></span>'
             for k in model.kernels]
    kinds = dict.fromkeys(a.kind for a in model.arrows)
    items += [f'<span class="key"><span class="line" style="border-color:{FLOW_COLOURS.get(k, OTHER_FLOW)}">'
              f'</span>{esc(k)} between workers</span>' for k in kinds]
    if model.groups:
        items.append('<span class="key"><span class="line dashed"></span>group members</span>')
    if model.critical:
        items.append(f'<span class="key"><span class="line" style="border-color:{CRITICAL}"></span>'
                     'critical path</span>')
    return "".join(items)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head><body>
<header><h1>{heading} <span class="dim">{loc}</span></h1>
<div id="summary">{summary}</div>
<div id="legend">{legend}</div>
<div id="controls"><button id="zoom-in" title="zoom in (+)">+</button><button id="zoom-out"
title="zoom out (-)">&minus;</button><button id="zoom-reset" title="whole run (0)">whole run</button>
<label><input type="checkbox" id="show-arrows" checked> arrows</label>
<label><input type="checkbox" id="show-groups" checked> groups</label>
<label><input type="checkbox" id="show-critical" checked> critical path</label>
<span id="window" class="dim"></span>
<span class="dim">wheel: zoom, drag: pan, hover or click a task for details</span></div>
</header>
<main id="chart">{svg}</main>
<div id="tooltip" hidden></div>
<script type="application/json" id="timeline-data">{data}</script>
<script>{script}</script>
</body></html>
"""
