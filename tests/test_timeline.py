"""The HTML timeline of a profiled run (`trace.to_html()`, `l3c profile -o run.html`): what it draws,
checked against the compiled program and the trace, and that it needs nothing outside itself.
The same page in a real browser: test_timeline_browser.py."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

import l3c
from l3c.codegen.lower import slot_of
from l3c.viz import timeline_html, timeline_model
from l3c.viz.timeline_html import FLOW_COLOURS, LAYOUT

from _html import parse_html
from test_profile import l3c_cli


def profiled_example():
    from examples.tiled_matmul import tiled_matmul
    a, b = np.ones((64, 32), np.float32), np.ones((32, 64), np.float32)
    compiled = tiled_matmul.lower(a, b)
    _, trace = compiled.profile(a, b)
    return compiled.program, trace


@pytest.fixture(scope="module")
def example():
    return profiled_example()


def embedded_data(page) -> dict:
    return json.loads(page.by_id("timeline-data").text)


def lane_of_rect(rect, data) -> int:
    y = float(rect.attrs["y"])
    lanes = [i for i, lane in enumerate(data["lanes"]) if lane["y"] <= y < lane["y"] + LAYOUT["lane"]]
    assert len(lanes) == 1, f"bar at y={y} is in {len(lanes)} lanes"
    return lanes[0]


def check_page(html: str, program, trace) -> None:
    """Every lane, task, arrow, group and the critical path of the trace are drawn where they belong."""
    page = parse_html(html)
    data = embedded_data(page)
    chips, subs = program.config.chips, program.config.sub_workers
    lanes = page.by_id("lanes").find_all("rect", "lane")
    names = [t.text for t in page.find_all("text", "lane-name")]
    assert len(lanes) == chips + subs
    assert names == [f"chip {c}" for c in range(chips)] + [f"sub {s}" for s in range(subs)]

    rects = page.by_id("bars").find_all("rect", "task")
    assert len(rects) == len(data["bars"]) == program.graph.number_of_nodes()
    kernels = {k["short"]: k["colour"] for k in data["kernels"]}
    seen = set()
    for rect in rects:
        bar = data["bars"][int(rect.attrs["data-i"])]
        task = program.task(bar[4])
        seen.add(task.id)
        assert lane_of_rect(rect, data) == slot_of(program, task.id), f"task {task.id} in the wrong lane"
        assert rect.attrs["fill"] == kernels[task.short_kernel]
        assert data["locs"][bar[5]] == task.loc
        assert float(rect.attrs["width"]) >= 1.0
    assert seen == set(range(program.graph.number_of_nodes()))

    cross = [(u, v) for u, v in program.graph.edges if slot_of(program, u) != slot_of(program, v)]
    flows = page.by_id("arrows").find_all("path", "flow")
    assert len(flows) == len(cross) == len(data["arrows"]) > 0
    assert {(a[5], a[6]) for a in data["arrows"]} == set(cross)
    assert all(f.attrs["stroke"] == FLOW_COLOURS["dependency"] for f in flows)

    groups = [g for g in program.groups if len(g) > 1]
    assert len(page.by_id("groups").find_all("path", "group")) == len(groups) > 0
    by_index = {i: bar[4] for i, bar in enumerate(data["bars"])}
    assert sorted(sorted(by_index[i] for i in g) for g in data["groups"]) == sorted(map(sorted, groups))

    path = trace["metadata"]["critical_path_tasks"]
    assert [by_index[i] for i in data["critical"]] == path
    assert len(page.by_id("critical").find_all("path", "crit")) == len(path) - 1
    assert len(page.find_all("rect", "crit")) == len(path)

    summary = page.by_id("summary").text
    assert f"{program.graph.number_of_nodes()} tasks on {chips + subs} workers" in summary
    assert "makespan" in summary and f"critical path: {len(path)} tasks" in summary
    legend = page.by_id("legend").text
    for task in program.tasks:
        assert task.short_kernel in legend


def test_the_page_draws_every_lane_task_arrow_and_group(example):
    program, trace = example
    check_page(trace.to_html(), program, trace)


def test_summary_figures_are_the_traces(example):
    _, trace = example
    model = timeline_model.build(trace)
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    first = min(e["ts"] for e in slices)
    last = max(e["ts"] + e["dur"] for e in slices)
    assert model.makespan == pytest.approx(last - first)
    lines = timeline_model.summary(model)
    busy = dict(re.findall(r"(\w+ \d+) (\d+)%", lines[1]))
    for tid, name in enumerate(trace["metadata"]["workers"]):
        total = sum(e["dur"] for e in slices if e["tid"] == tid)
        assert int(busy[name]) == round(100 * total / (last - first)), name


def test_check_page_catches_a_bar_in_the_wrong_lane(example):
    program, trace = example
    moved = copy.deepcopy(trace)
    first = next(e for e in moved["traceEvents"] if e["ph"] == "X")
    first["tid"] = (first["tid"] + 1) % 3
    with pytest.raises(AssertionError):
        check_page(timeline_html(moved), program, trace)


def several_hosts(trace: dict) -> dict:
    """The trace as two hosts would record it: a process per host, the same workers on each, a
    transfer flow from host 0 to host 1, and a loop iteration on every task slice."""
    out = copy.deepcopy(trace)
    events = []
    for e in out["traceEvents"]:
        if e["ph"] == "M" and e["name"] == "process_name":
            continue
        e["pid"] = 1
        twin = copy.deepcopy(e)
        twin["pid"] = 2
        if twin["ph"] == "M" and twin["name"] == "thread_name":      # chips numbered globally
            kind, number = twin["args"]["name"].split()
            count = sum(1 for w in trace["metadata"]["workers"] if w.startswith(kind))
            twin["args"]["name"] = f"{kind} {int(number) + count}"
        for ev in (e, twin):
            if ev["ph"] == "X":
                ev["args"]["iteration"] = ev["args"]["task"] % 3
            if ev["ph"] in "sf":
                ev["id"] = ev["id"] * 2 + ev["pid"]
        events += [e, twin]
    events += [{"ph": "M", "pid": p, "name": "process_name", "args": {"name": f"host {p - 1}"}}
               for p in (1, 2)]
    last = max((e for e in events if e["ph"] == "X" and e["pid"] == 1), key=lambda e: e["ts"])
    events.append({"ph": "s", "pid": 1, "tid": last["tid"], "ts": last["ts"], "cat": "transfer",
                   "name": "x0", "id": 1})
    events.append({"ph": "f", "bp": "e", "pid": 2, "tid": 0, "ts": last["ts"] + last["dur"],
                   "cat": "transfer", "name": "x0", "id": 1})
    out["traceEvents"] = events
    return out


def test_several_hosts_transfers_and_iterations_are_drawn(example):
    _, trace = example
    two = several_hosts(trace)
    page = parse_html(timeline_html(two))
    data = embedded_data(page)
    workers = len(trace["metadata"]["workers"])
    assert [h["name"] for h in data["headers"]] == ["host 0", "host 1"]
    assert [lane["process"] for lane in data["lanes"]] == ["host 0"] * workers + ["host 1"] * workers
    assert len(page.find_all("rect", "lane")) == 2 * workers
    assert [t.text for t in page.find_all("text", "process")] == ["host 0", "host 1"]
    tasks = sum(1 for e in trace["traceEvents"] if e["ph"] == "X")
    assert len(page.find_all("rect", "task")) == 2 * tasks
    assert sorted({bar[9] for bar in data["bars"]}) == [0, 1, 2]     # iterations kept
    transfers = [f for f in page.find_all("path", "flow") if f.attrs["stroke"] == FLOW_COLOURS["transfer"]]
    assert len(transfers) == 1
    assert "transfer between workers" in page.by_id("legend").text
    chips = sum(1 for w in trace["metadata"]["workers"] if w.startswith("chip"))
    summary = page.by_id("summary").text
    assert f"host 0 chip 0 " in summary and f"host 1 chip {chips} " in summary


# ---- nothing outside the file ------------------------------------------------------------------
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "poster", "data", "srcset",
                  "background", "manifest", "ping"}
FETCHING_TAGS = {"link", "iframe", "img", "object", "embed", "audio", "video", "source", "base",
                 "frame", "track", "image", "use", "feimage", "portal"}


def external_references(html: str) -> list[str]:
    """Everything in the page that could make a browser load something from elsewhere."""
    found = []
    page = parse_html(html)
    for element in page.iter():
        if element.tag in FETCHING_TAGS:
            found.append(f"<{element.tag}>")
        for name, value in element.attrs.items():
            if name in URL_ATTRIBUTES and not (value or "").startswith("#"):
                found.append(f"{name}={value!r}")
            if value and re.search(r"url\(\s*['\"]?(?!#|data:)", value):
                found.append(f"{name}={value!r}")
    css = " ".join(e.text for e in page.find_all("style"))
    if "@import" in css:
        found.append("@import")
    found += [f"css {m}" for m in re.findall(r"url\(\s*['\"]?(?!#|data:)[^)]*\)", css)]
    found += re.findall(r"(?:https?|ftp|wss?):", html, re.I)
    found += [f"protocol-relative {m}" for m in re.findall(r"[\"'(=]\s*//[^\s\"')]*", html)]
    found += [f"fetch {m}" for m in re.findall(r"\b(?:fetch|XMLHttpRequest|importScripts|WebSocket|"
                                                r"EventSource|sendBeacon)\b", html)]
    return found


def test_the_page_references_nothing_outside_itself(example):
    _, trace = example
    for html in (trace.to_html(), timeline_html(several_hosts(trace))):
        assert html.startswith("<!DOCTYPE html>")
        assert external_references(html) == []


def test_the_reference_check_finds_what_a_page_could_load(example):
    _, trace = example
    page = trace.to_html()
    for bad in ('<script src="https://cdn.example/x.js"></script>', '<link rel="stylesheet" href="s.css">',
                '<img src="data:image/png;base64,AA">', '<style>@import "font.css";</style>',
                '<div style="background: url(//cdn.example/bg.png)"></div>',
                '<style>body { background: url(bg.png) }</style>', '<script>fetch("x")</script>'):
        assert external_references(page.replace("<main", bad + "<main", 1)), bad


# ---- the Python API and the command line --------------------------------------------------------
def test_trace_save_picks_the_format_by_suffix(example, tmp_path):
    _, trace = example
    assert trace.save(str(tmp_path / "t.json")) == "json"
    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(json.dumps(trace))
    for name in ("t.html", "T.HTM"):
        assert trace.save(str(tmp_path / name)) == "html"
        assert (tmp_path / name).read_text(encoding="utf-8") == trace.to_html()
    with pytest.raises(l3c.L3CError, match="cannot write"):
        trace.save(str(tmp_path / "no-such-folder" / "t.html"))
    loaded = json.loads((tmp_path / "t.json").read_text())      # a trace file from disk draws too
    assert timeline_html(loaded) == trace.to_html()
    frame = trace._repr_html_()                                # what a notebook shows
    assert frame.startswith("<iframe srcdoc=") and "&lt;svg id=&quot;timeline&quot;" in frame
    with pytest.raises(ValueError, match="traceEvents"):
        timeline_html({"not": "a trace"})


def test_cli_profile_writes_the_html_timeline(tmp_path):
    out = tmp_path / "run.html"
    result = l3c_cli("profile", "examples/tiled_matmul.py:tiled_matmul", "--arg", "f32[64,32]",
                     "--arg", "f32[32,64]", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "browser" in result.stdout and str(out) in result.stdout
    html = out.read_text(encoding="utf-8")
    assert external_references(html) == []
    from examples.tiled_matmul import tiled_matmul
    program = tiled_matmul.lower(np.zeros((64, 32), np.float32), np.zeros((32, 64), np.float32)).program
    data = embedded_data(parse_html(html))
    assert sorted(bar[4] for bar in data["bars"]) == list(range(program.graph.number_of_nodes()))
