"""The HTML timeline opened in a real headless Chromium: after its script ran, the DOM holds every
lane and task and answers a zoom; the screenshot shows one coloured band per worker with that
worker's kernels in it. Skipped where no Chromium is installed (`.ci/run` installs it)."""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess

import pytest

from l3c.viz import timeline_html, timeline_model
from l3c.viz.timeline_html import LANE_FILL, LAYOUT

from _html import parse_html
from _png import read_png
from test_timeline import embedded_data, profiled_example

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")
WIDTH, HEIGHT = 1100, 420


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("timeline")
    program, trace = profiled_example()
    path = folder / "run.html"
    trace.save(str(path))
    return program, trace, path


def browse(path, *flags, fragment: str = "", tmp) -> subprocess.CompletedProcess:
    """Chromium, headless, offline as far as flags allow, on `file://path#fragment`."""
    # --disable-dev-shm-usage and TMPDIR: Chromium's shared-memory files go to the test's own
    # folder, not /dev/shm, where a Chromium run can leave one behind after it exits
    argv = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={WIDTH},{HEIGHT}",
            f"--user-data-dir={tmp}", *flags, f"file://{path}{fragment}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, HOME=str(tmp), TMPDIR=str(tmp)))
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_the_script_draws_every_lane_and_task(page, tmp_path):
    program, trace, path = page
    dom = parse_html(browse(path, "--dump-dom", tmp=tmp_path).stdout)
    html = dom.find_all("html")[0]
    tasks = program.graph.number_of_nodes()
    assert html.attrs.get("data-rendered") == str(tasks), "the page's script did not run to its end"
    assert len(dom.find_all("rect", "task")) == tasks
    assert len(dom.find_all("rect", "lane")) == program.config.chips + program.config.sub_workers
    assert dom.by_id("window").text.startswith("showing ")          # written by the script
    ticks = dom.by_id("axis").find_all("text", "tick-label")
    assert len(ticks) >= 3 and ticks[0].text
    svg = dom.by_id("timeline")
    assert int(svg.attrs["width"]) <= WIDTH                        # fitted to the window


def test_a_zoomed_view_moves_later_tasks_out_of_the_plot(page, tmp_path):
    program, trace, path = page
    model = timeline_model.build(trace)
    first, last = model.t_first, model.t_last
    cut = first + (last - first) * 0.4
    dom = parse_html(browse(path, "--dump-dom", fragment=f"#t={first:.3f},{cut:.3f}", tmp=tmp_path).stdout)
    data = embedded_data(dom)
    svg_width = float(dom.by_id("timeline").attrs["width"])
    right = svg_width - LAYOUT["right"]
    inside = outside = 0
    for rect in dom.find_all("rect", "task"):
        bar = data["bars"][int(rect.attrs["data-i"])]
        x = float(rect.attrs["x"])
        if bar[1] > cut + 1e-3:
            assert x > right, f"task {bar[4]} starts after the window but is drawn at x={x}"
            outside += 1
        elif bar[1] >= first:
            assert LAYOUT["left"] - 1 <= x <= right, f"task {bar[4]} at x={x}"
            inside += 1
    assert inside and outside
    assert "showing" in dom.by_id("window").text


def bands(image, fills) -> list[tuple[int, int]]:
    """Row ranges (y0, y1) of the lanes: runs of one lane background colour in column 2
    (neighbouring lanes alternate between the colours)."""
    column = image[:, 2, :].astype(int)
    which = [next((k for k, f in enumerate(fills) if abs(column[y] - f).max() <= 2), None)
             for y in range(image.shape[0])] + [None]
    out, start = [], 0
    for y in range(1, len(which)):
        if which[y] != which[y - 1]:
            if which[y - 1] is not None and y - start >= LAYOUT["lane"] - 2:
                out.append((start, y))
            start = y
    return out


def regular_times(trace: dict) -> dict:
    """The same run with every task 8 us long and starting 10 us after the one that started before
    it (so the order, and every dependency, is kept): on a loaded machine one preempted task can
    last 1000x the others and squeeze them below a pixel; the screenshot checks the drawing."""
    out = copy.deepcopy(trace)
    slices = sorted((e for e in out["traceEvents"] if e["ph"] == "X"), key=lambda e: e["ts"])
    new_start = {}
    for k, e in enumerate(slices):
        e["ts"], e["dur"] = 10.0 * k, 8.0
        new_start[e["args"]["task"]] = e["ts"]
    for e in out["traceEvents"]:
        if e["ph"] == "s":
            e["ts"] = new_start[e["args"]["from"]] + 4.0
        elif e["ph"] == "f":
            e["ts"] = new_start[e["args"]["to"]]
    return out


def test_the_screenshot_shows_each_workers_kernels_in_its_lane(page, tmp_path):
    program, trace, _ = page
    trace = regular_times(trace)
    path = tmp_path / "regular.html"
    path.write_text(timeline_html(trace), encoding="utf-8")
    shot = tmp_path / "shot.png"
    browse(path, f"--screenshot={shot}", tmp=tmp_path)
    image = read_png(str(shot))
    assert image.shape[:2] == (HEIGHT, WIDTH)
    fills = [tuple(int(f[i:i + 2], 16) for i in (1, 3, 5)) for f in LANE_FILL]
    lanes = bands(image, [list(f) for f in fills])
    model = timeline_model.build(trace)
    assert len(lanes) == len(model.lanes), lanes           # consecutive lanes alternate colours
    colours = {k.name: k.colour for k in model.kernels}
    for lane_index, (y0, y1) in enumerate(lanes):
        strip = image[y0:y1, LAYOUT["left"]:, :].astype(int)
        main_kernel = max((b for b in model.bars if b.lane == lane_index), key=lambda b: b.dur).kernel
        hits = solid_pixels(strip, colours[main_kernel])
        assert hits >= 20, f"lane {lane_index}: {hits} pixels of {main_kernel}'s colour"
        others = [k for k in colours if all(b.kernel != k for b in model.bars if b.lane == lane_index)]
        for kernel in others:                               # no other lane's kernel drawn here
            assert solid_pixels(strip, colours[kernel]) == 0, f"{kernel} in lane {lane_index}"


def solid_pixels(strip, colour: str) -> int:
    """Pixels of `colour` whose 2x2 block is all that colour: a filled bar, not the odd
    anti-aliased pixel of a line that happens to blend to the same shade."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    match = abs(strip - rgb).max(axis=2) <= 3
    return int((match[:-1, :-1] & match[1:, :-1] & match[:-1, 1:] & match[1:, 1:]).sum())


def test_a_task_link_pins_its_details_and_highlights_its_group(page, tmp_path):
    program, trace, path = page
    task = next(t for t in program.tasks if t.group is not None)
    members = program.groups[task.group]
    dom = parse_html(browse(path, "--dump-dom", fragment=f"#task={task.id}", tmp=tmp_path).stdout)
    tooltip = dom.by_id("tooltip")
    assert "hidden" not in tooltip.attrs, "the details were not shown"
    rows = {div.find_all("b")[0].text.strip(): div.text.split(" ", 1)[1] if " " in div.text else ""
            for div in tooltip.find_all("div")}
    slice_ = next(e for e in trace["traceEvents"] if e["ph"] == "X" and e["args"]["task"] == task.id)
    assert rows["task"].endswith(f"#{task.id}") and rows["kernel"].endswith(task.kernel)
    assert rows["called at"].endswith(task.loc)
    assert rows["worker"].endswith(f"chip {task.chip}")
    assert rows["group"].endswith(f"{task.group}, member {task.group_rank} of {len(members)}")
    for key, value in (("start", slice_["ts"]), ("duration", slice_["dur"])):
        assert re.search(r"[\d.]+ (ns|µs|ms|s)$", rows[key]), rows[key]
        assert float(rows[key].split()[-2]) == pytest.approx(
            _in_unit(value, rows[key].split()[-1]), rel=0.01, abs=0.5)
    data = embedded_data(dom)
    hot = {data["bars"][int(r.attrs["data-i"])][4] for r in dom.find_all("rect", "hot")}
    assert hot == set(members)


def _in_unit(us: float, unit: str) -> float:
    return us * {"ns": 1e3, "µs": 1.0, "ms": 1e-3, "s": 1e-6}[unit]
