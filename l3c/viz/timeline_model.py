"""What the HTML timeline shows, read from a Chrome trace event dict (`l3c.profile.build_trace`).

The model is taken from the trace's events, not from the IR, so that whatever a profile records is
drawn: one lane per (process, thread) pair (a process per host when a profile has several, a thread
per chip or sub worker), one bar per complete ("X") slice, one arrow per flow ("s" -> "f" pair with the
same category and id: dependencies between workers, transfers between hosts), and the run's
`metadata`. Slices whose `args` name a `group` are tied to the other members of that group; slices
whose `args` carry an `iteration` (a loop's trip, when a profile records one) show it.

Times are microseconds, as in the trace (0 is when the parent posted the run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .palette import colour

# args of a task slice that the tooltip shows in its own words; any other arg is listed as it is
KNOWN_ARGS = ("task", "kernel", "loc", "group", "group_rank", "iteration", "queue_pos", "scope",
              "loops", "iterations")


@dataclass
class Lane:
    """One worker's row: `name` (`chip 0`, `sub 0`, ...) inside `process` (the program or a host)."""

    pid: Any
    tid: Any
    name: str
    process: str
    busy_us: float = 0.0


@dataclass
class Bar:
    """One slice: a task on a worker, from `start` for `dur` microseconds."""

    lane: int
    start: float
    dur: float
    name: str
    kernel: str                         # the colour key: the kernel's import path, or the slice name
    task: int | None
    loc: str
    group: Any = None
    group_rank: Any = None
    iteration: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.dur

    @property
    def label(self) -> str:
        """What the bar says when it is wide enough: `kernel #id`, and the loop trip if any
        (a profile of loops names its slices `kernel #id [L0=3]` already)."""
        if self.iteration is None or f"[{self.iteration}]" in self.name:
            return self.name
        return f"{self.name} i{self.iteration}"


@dataclass
class Arrow:
    """A flow from `src_t` on lane `src_lane` to `dst_t` on lane `dst_lane`."""

    src_lane: int
    src_t: float
    dst_lane: int
    dst_t: float
    kind: str                           # the flow's category: "dependency", "transfer", ...
    name: str
    src_task: Any = None
    dst_task: Any = None


@dataclass
class Kernel:
    """A legend entry."""

    name: str                           # the colour key (import path)
    short: str
    colour: str
    count: int = 0
    total_us: float = 0.0


@dataclass
class Timeline:
    title: str
    loc: str
    lanes: list[Lane]
    bars: list[Bar]
    arrows: list[Arrow]
    kernels: list[Kernel]
    groups: dict[Any, list[int]]        # group -> indices of its member bars, in lane order
    critical: list[int]                 # bar indices of the critical path, in path order
    metadata: dict[str, Any]

    @property
    def t_first(self) -> float:
        return min((b.start for b in self.bars), default=0.0)

    @property
    def t_last(self) -> float:
        return max((b.end for b in self.bars), default=0.0)

    @property
    def makespan(self) -> float:
        """First task start to last task end, measured."""
        return self.t_last - self.t_first

    @property
    def processes(self) -> list[str]:
        return list(dict.fromkeys(lane.process for lane in self.lanes))


def build(trace: Mapping[str, Any]) -> Timeline:
    """The timeline model of a Chrome trace event dict (`{"traceEvents": [...], "metadata": ...}`)."""
    events = trace.get("traceEvents") if isinstance(trace, Mapping) else None
    if not isinstance(events, list):
        raise ValueError("not a Chrome trace: expected a dict with a 'traceEvents' list")
    metadata = dict(trace.get("metadata") or {})
    process_names: dict[Any, str] = {}
    thread_names: dict[tuple, str] = {}
    thread_order: dict[tuple, Any] = {}
    for e in events:
        if e.get("ph") != "M":
            continue
        args = e.get("args") or {}
        if e.get("name") == "process_name":
            process_names[e.get("pid")] = str(args.get("name", e.get("pid")))
        elif e.get("name") == "thread_name":
            thread_names[(e.get("pid"), e.get("tid"))] = str(args.get("name", e.get("tid")))
        elif e.get("name") == "thread_sort_index":
            thread_order[(e.get("pid"), e.get("tid"))] = args.get("sort_index", 0)

    slices = [e for e in events if e.get("ph") == "X"]
    keys = set(thread_names) | {(e.get("pid"), e.get("tid")) for e in slices}
    flow_events = [e for e in events if e.get("ph") in ("s", "f")]
    keys |= {(e.get("pid"), e.get("tid")) for e in flow_events}
    ordered = sorted(keys, key=lambda k: (_sortable(k[0]), _sortable(thread_order.get(k, 0)),
                                          _sortable(k[1])))
    lanes = [Lane(pid, tid, thread_names.get((pid, tid), f"thread {tid}"),
                  process_names.get(pid, f"process {pid}")) for pid, tid in ordered]
    lane_of = {(lane.pid, lane.tid): i for i, lane in enumerate(lanes)}

    bars: list[Bar] = []
    kernels: dict[str, Kernel] = {}
    for e in sorted(slices, key=lambda e: (float(e.get("ts", 0.0)), lane_of[(e.get("pid"), e.get("tid"))])):
        args = dict(e.get("args") or {})
        name = str(e.get("name", "?"))
        key = str(args.get("kernel") or name)
        bar = Bar(lane=lane_of[(e.get("pid"), e.get("tid"))], start=float(e.get("ts", 0.0)),
                  dur=max(0.0, float(e.get("dur", 0.0))), name=name, kernel=key,
                  task=args.get("task"), loc=str(args.get("loc") or ""), group=args.get("group"),
                  group_rank=args.get("group_rank"), iteration=args.get("iteration"),
                  extra={k: v for k, v in args.items() if k not in KNOWN_ARGS})
        for k in ("queue_pos", "scope"):
            if args.get(k) is not None:
                bar.extra[k] = args[k]
        bars.append(bar)
        if key not in kernels:
            kernels[key] = Kernel(key, key.rsplit(":", 1)[-1], colour(len(kernels)))
        kernels[key].count += 1
        kernels[key].total_us += bar.dur
        lanes[bar.lane].busy_us += bar.dur

    arrows = _arrows(flow_events, lane_of)
    groups: dict[Any, list[int]] = {}
    for i, bar in enumerate(bars):
        if bar.group is not None:
            groups.setdefault(bar.group, []).append(i)
    for members in groups.values():
        members.sort(key=lambda i: (bars[i].lane, bars[i].start))
    by_task = {bar.task: i for i, bar in enumerate(bars) if bar.task is not None}
    critical = [by_task[t] for t in metadata.get("critical_path_tasks") or () if t in by_task]
    title = str(metadata.get("program") or next(iter(process_names.values()), "l3c run"))
    return Timeline(title=title, loc=str(metadata.get("loc") or ""), lanes=lanes, bars=bars,
                    arrows=arrows, kernels=list(kernels.values()), groups=groups, critical=critical,
                    metadata=metadata)


def _arrows(flow_events: list[dict], lane_of: dict[tuple, int]) -> list[Arrow]:
    """Pair each flow start with the finish of the same category and id (Chrome's binding rule)."""
    starts: dict[tuple, dict] = {}
    arrows = []
    for e in flow_events:
        key = (e.get("cat"), e.get("id"))
        if e.get("ph") == "s":
            starts[key] = e
            continue
        s = starts.pop(key, None)
        if s is None:
            continue
        args = s.get("args") or {}
        arrows.append(Arrow(lane_of[(s.get("pid"), s.get("tid"))], float(s.get("ts", 0.0)),
                            lane_of[(e.get("pid"), e.get("tid"))], float(e.get("ts", 0.0)),
                            kind=str(s.get("cat") or "flow"), name=str(s.get("name") or ""),
                            src_task=args.get("from"), dst_task=args.get("to")))
    return arrows


def _sortable(value: Any) -> tuple:
    """Sort keys of mixed types (ints before strings) without comparing int with str."""
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def format_us(us: float) -> str:
    """`850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`."""
    if us < 1:
        return f"{us * 1e3:.0f} ns"
    if us < 1e3:
        return f"{us:.3g} µs" if us < 100 else f"{us:.0f} µs"
    if us < 1e6:
        return f"{us / 1e3:.3g} ms"
    return f"{us / 1e6:.3g} s"


def loops_line(metadata: Mapping[str, Any]) -> str | None:
    """What a profile of a program with loops says about them (`l3c.profile_loops`): per loop its
    kind, entries and iterations (a cond: how often reached and run), and the dropped instances."""
    loops = metadata.get("loops")
    if not loops:
        return None
    parts = []
    for lid, lp in loops.items():
        if lp.get("kind") == "cond":
            parts.append(f"L{lid} cond reached {lp.get('reached', '?')}, ran {lp.get('ran', '?')}")
        else:
            entered = lp.get("entered", "?")
            parts.append(f"L{lid} {lp.get('kind')} {lp.get('iterations', '?')} iterations"
                         + (f" over {entered} entries" if entered != 1 else "") + _rate(lp))
    line = "loops: " + "; ".join(parts)
    dropped = sum((metadata.get("dropped_instances") or {}).values())
    if dropped:
        line += (f" (counted on the recorded events; {dropped} step instances past the first "
                 f"{metadata.get('instance_capacity')} per worker were not recorded)")
    return line


def _rate(loop: Mapping[str, Any]) -> str:
    """`, 1.2 ms each (one iteration's chain 0.9 ms: #2 #3; carried cycle 0.4 ms: #3)`: a loop's
    measured time per iteration and the chains that bound it (`l3c.profile_loop_paths`)."""
    if "us_per_iteration" not in loop:
        return ""

    def tasks(ids: list[int]) -> str:
        return " ".join(f"#{t}" for t in ids)
    text = (f", {format_us(loop['us_per_iteration'])} each (one iteration's chain "
            f"{format_us(loop['iteration_path_us'])}: {tasks(loop['iteration_path_tasks'])}")
    if loop.get("recurrence_tasks"):
        text += (f"; carried cycle {format_us(loop['recurrence_us'])}: "
                 f"{tasks(loop['recurrence_tasks'])}")
    return text + ")"


def summary(model: Timeline) -> list[str]:
    """The summary lines above the picture: makespan, busy fraction per worker, the critical path,
    the loops' iterations."""
    span = model.makespan
    what = "task instances" if model.metadata.get("loops") else "tasks"
    lines = [f"{len(model.bars)} {what} on {len(model.lanes)} workers; makespan {format_us(span)} "
             f"(first task start to last task end)"
             + (f"; the first task started {format_us(model.t_first)} after the run was posted, the "
                f"call returned after {format_us(float(model.metadata['measured_wall_us']))}"
                if model.metadata.get("measured_wall_us") is not None else "")]
    busy = [f"{_lane_label(model, lane)} {lane.busy_us / span:.0%}" if span > 0 else
            f"{_lane_label(model, lane)} -" for lane in model.lanes]
    lines.append("busy: " + ", ".join(busy))
    if model.critical:
        path = [model.bars[i] for i in model.critical]
        ids = [f"#{b.task}" for b in path]
        shown = " → ".join(ids if len(ids) <= 8 else ids[:4] + ["…"] + ids[-3:])
        estimate = model.metadata.get("estimated_critical_path")
        lines.append(f"critical path: {len(path)} tasks ({shown}), {format_us(path[-1].end - path[0].start)}"
                     f" measured along it, {format_us(sum(b.dur for b in path))} of it in the tasks"
                     + (f"; the schedule estimated {estimate} cost units" if estimate is not None else ""))
    loops = loops_line(model.metadata)
    if loops:
        lines.append(loops)
    return lines


def _lane_label(model: Timeline, lane: Lane) -> str:
    return f"{lane.process} {lane.name}" if len(model.processes) > 1 else lane.name
