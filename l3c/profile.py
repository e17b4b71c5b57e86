"""Turn one profiled run (step timestamps recorded in the workers) plus the IR into a Chrome trace.

The workers write `CLOCK_MONOTONIC` nanoseconds at the end of every step, and at the start of step 0
and of every step that waited on another worker, into the profile area of the control block
(`runtime/layout.py`, `RUN_PROFILE`); a step that did not wait started when its predecessor in the
queue ended (its slice then also holds the worker's ~0.2 us loop overhead). All processes share
that clock, so the stamps of different workers line up without any correction. `build_trace` makes the Chrome
"trace event" JSON object format, which Perfetto (https://ui.perfetto.dev) and chrome://tracing open:

* one process (pid 1) named after the program, one thread row (tid) per worker slot: `chip 0`,
  `chip 1`, ..., `sub 0`, ... (thread_name / thread_sort_index metadata events);
* one complete ("X") slice per task, named `kernel #id` (short kernel name), with args `task`,
  `kernel`, `group`, `group_rank`, `queue_pos`, `loc`, `scope`; time is microseconds since the
  parent posted the run;
* one flow ("s" on the producer's row, "f" with `bp: "e"` on the consumer's row, same `id`) per
  graph edge whose ends run on different workers: exactly the waits a worker resolves in shared
  memory;
* top-level `metadata`: program name, the schedule's estimates (`makespan`, `critical_path` length
  in cost units and the tasks on it), the measured wall time of the run, counts.

The trace is returned as a `Trace`, a dict that also draws itself: `to_html()` is the
self-contained HTML timeline of the run (`l3c/viz/timeline_html.py`), which notebooks show inline,
and `save(path)` writes the JSON or the HTML by the file's suffix (what `l3c profile -o` does).

Why here and not in `runtime`: the runtime knows only plan steps; names, groups, source lines and
edges come from the IR, so the trace is built on the user-layer side from both.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .errors import L3CError
from .ir import Program
from .passes.schedule import task_cost
from .runtime.context import global_worker
from .runtime.plan import Plan

PID = 1
HTML_SUFFIXES = (".html", ".htm")


class Trace(dict):
    """The Chrome trace event dict of one profiled run (`json.dump` writes what Perfetto opens),
    with its picture: `to_html()` returns the self-contained timeline page, `_repr_html_` shows it
    in a notebook, `save(path)` writes HTML for a `.html`/`.htm` path and the JSON otherwise."""

    def to_html(self) -> str:
        """The self-contained HTML timeline (no network, no external script, style or font)."""
        from .viz import timeline_html
        return timeline_html(self)

    def _repr_html_(self) -> str:
        # an iframe keeps the page's ids, styles and script apart from the notebook's own
        import html
        return (f'<iframe srcdoc="{html.escape(self.to_html(), quote=True)}" '
                'style="width:100%;height:520px;border:1px solid #ccc" '
                'sandbox="allow-scripts"></iframe>')

    def save(self, path: str) -> str:
        """Write the trace to `path`: HTML when it ends in .html/.htm, else JSON. Returns the
        format written ("html" or "json"); an unwritable path raises `L3CError` saying why."""
        fmt = "html" if path.lower().endswith(HTML_SUFFIXES) else "json"
        text = self.to_html() if fmt == "html" else json.dumps(self, separators=(",", ":")) + "\n"
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise L3CError(f"cannot write {path}: {exc.strerror or exc}") from None
        return fmt


def report(trace: dict[str, Any], path: str, fmt: str) -> str:
    """What `l3c profile` prints after writing `path` in format `fmt`."""
    from .viz.timeline_model import loops_line
    meta = trace["metadata"]
    loops = loops_line(meta)
    how = ("open it in any web browser (self-contained, works offline)" if fmt == "html" else
           "open it at https://ui.perfetto.dev (or chrome://tracing), or write -o NAME.html "
           "for a self-contained timeline")
    what = "task instances" if meta.get("loops") else "tasks"
    return (f"{meta['program']}: {meta['tasks']} {what} on {len(meta['workers'])} workers, "
            f"{meta['cross_worker_edges']} cross-worker edges, run {meta['measured_wall_us']:.0f} us "
            f"(estimated makespan {meta.get('estimated_makespan')}, critical path "
            f"{meta.get('estimated_critical_path')} cost units)\n"
            + (f"{loops}\n" if loops else "") + f"wrote {path}: {how}\n")


def slot_name(plan: Plan, slot: int) -> str:
    """`chip N` for chip slots, `sub N` for sub-worker slots."""
    return f"chip {slot}" if slot < plan.chips else f"sub {slot - plan.chips}"


def critical_path(program: Program) -> list[int]:
    """Task ids of a longest path of data dependencies under the schedule pass's cost model (what
    `reports["critical_path"]` measures: the ordering edges the memory plan adds later, and the
    carried edges between iterations of a loop, are left out)."""
    costs = program.costs
    graph = program.graph
    best: dict[int, float] = {}
    prev: dict[int, int | None] = {}
    for task in program.tasks:                    # program order is topological
        preds = [u for u in graph.predecessors(task.id)
                 if graph.edges[u, task.id].get("added_by", "deps") == "deps"
                 and not graph.edges[u, task.id].get("carried")]
        p = max(preds, key=lambda u: (best[u], -u), default=None)
        best[task.id] = task_cost(task, costs) + (best[p] if p is not None else 0.0)
        prev[task.id] = p
    if not best:
        return []
    node: int | None = max(best, key=lambda v: (best[v], -v))
    path = []
    while node is not None:
        path.append(node)
        node = prev[node]
    return path[::-1]


def metadata_events(program: Program, plan: Plan) -> list[dict[str, Any]]:
    """The trace's process name and one named, ordered thread per plan slot."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": PID, "name": "process_name", "args": {"name": f"l3c {program.name}"}},
    ]
    for s in range(plan.slots):
        events.append({"ph": "M", "pid": PID, "tid": s, "name": "thread_name",
                       "args": {"name": slot_name(plan, s)}})
        events.append({"ph": "M", "pid": PID, "tid": s, "name": "thread_sort_index",
                       "args": {"sort_index": s}})
    return events


def build_trace(program: Program, plan: Plan, steps: Sequence[np.ndarray], t0: int, t1: int
                ) -> Trace:
    """The Chrome trace of one run: `steps[s][k] = (start_ns, end_ns)` of step k on plan slot s,
    `t0`/`t1` the parent's monotonic ns just before posting the run and after it ended."""
    events = metadata_events(program, plan)

    where: dict[int, tuple[int, float, float]] = {}     # task -> (slot, start us, end us)
    for s, queue in enumerate(plan.queues):
        stamps = np.asarray(steps[s]).tolist()
        for k, step in enumerate(queue):
            start_ns, end_ns = stamps[k]
            if start_ns == 0 and k:            # no waits: it started when step k-1 ended
                start_ns = stamps[k - 1][1]
            if start_ns == 0 or end_ns < start_ns:
                raise ValueError(f"no timestamps for task {step.task} (step {k} of "
                                 f"{slot_name(plan, s)}): the run did not record it")
            start, end = (start_ns - t0) / 1e3, (end_ns - t0) / 1e3
            where[step.task] = (s, start, end)
            task = program.task(step.task)
            events.append({
                "ph": "X", "pid": PID, "tid": s, "ts": start, "dur": end - start,
                "name": f"{task.short_kernel} #{task.id}", "cat": task.worker,
                "args": {"task": task.id, "kernel": task.kernel, "group": task.group,
                         "group_rank": task.group_rank if task.group is not None else None,
                         "queue_pos": task.queue_pos, "loc": task.loc,
                         "scope": "/" + "/".join(map(str, task.scope))},
            })

    flows = 0
    for u, v in sorted(program.graph.edges):
        su, start_u, end_u = where[u]
        sv, start_v, _ = where[v]
        if su == sv:
            continue
        flows += 1
        kinds = "+".join(sorted(program.graph.edges[u, v].get("kinds", ()))) or "order"
        common = {"pid": PID, "cat": "dependency", "name": kinds, "id": flows}
        events.append({**common, "ph": "s", "tid": su, "ts": (start_u + end_u) / 2,
                       "args": {"from": u, "to": v}})
        events.append({**common, "ph": "f", "bp": "e", "tid": sv, "ts": start_v,
                       "args": {"from": u, "to": v}})

    reports = program.reports
    path = critical_path(program)
    metadata = {
        "program": program.name,
        "loc": program.loc,
        "tasks": len(where),
        "workers": [slot_name(plan, s) for s in range(plan.slots)],
        "cross_worker_edges": flows,
        "estimated_makespan": reports.get("makespan"),
        "estimated_critical_path": reports.get("critical_path"),
        "critical_path_tasks": path,
        "cost_units": "schedule pass cost model (1.0 per task unless kernel_costs says otherwise)",
        "measured_wall_us": (t1 - t0) / 1e3,
        "measured_busy_us": {slot_name(plan, s): sum(e - b for (ss, b, e) in where.values() if ss == s)
                             for s in range(plan.slots)},
        "clock": "CLOCK_MONOTONIC, microseconds since the run was posted",
    }
    return Trace(traceEvents=events, displayTimeUnit="ns", metadata=metadata)


# ---- several hosts -------------------------------------------------------------------------------
def build_hosts_trace(program: Program, plans: Sequence[Plan], transfers: Sequence[Any],
                      stamps: Sequence[dict[str, Any]]) -> Trace:
    """The Chrome trace of one run of a several-host program, as one timeline: a process per host
    (pid host + 1, `l3c step host h`), a thread per worker slot named by its global id (`chip 5`,
    `sub 1`), a slice per task; flows for the dependencies between two workers of one host (as
    `build_trace`) and, in the `transfer` category, one flow per transfer between hosts from its
    producer's slice to each consumer's. `stamps[h]`: host h's `steps` (as for `build_trace`),
    `t0`/`t1` and whether its clock is the one host 0's stamps use (`same_clock`: the same
    machine; otherwise its times count from its own t0, which the call's agreement makes nearly
    simultaneous with the others')."""
    base = stamps[0]["t0"]
    chips, subs = program.config.chips, program.config.sub_workers
    events: list[dict[str, Any]] = []
    where: dict[int, tuple[int, int, float, float]] = {}   # task -> (host, slot, start, end) us
    for h, (plan, st) in enumerate(zip(plans, stamps)):
        pid, zero = h + 1, base if st["same_clock"] else st["t0"]
        events.append({"ph": "M", "pid": pid, "name": "process_name",
                       "args": {"name": f"l3c {program.name} host {h}"}})
        events.append({"ph": "M", "pid": pid, "name": "process_sort_index", "args": {"sort_index": h}})
        for s, queue in enumerate(plan.queues):
            if not queue:
                continue
            name = "{} {}".format(*global_worker(s, h, chips, subs))
            events.append({"ph": "M", "pid": pid, "tid": s, "name": "thread_name",
                           "args": {"name": name}})
            times = np.asarray(st["steps"][s]).tolist()
            for k, step in enumerate(queue):
                start_ns, end_ns = times[k]
                if start_ns == 0 and k:
                    start_ns = times[k - 1][1]
                start, end = (start_ns - zero) / 1e3, (end_ns - zero) / 1e3
                where[step.task] = (h, s, start, end)
                task = program.task(step.task)
                events.append({"ph": "X", "pid": pid, "tid": s, "ts": start, "dur": end - start,
                               "name": f"{task.short_kernel} #{task.id}", "cat": task.worker,
                               "args": {"task": task.id, "kernel": task.kernel, "host": h,
                                        "group": task.group, "loc": task.loc}})
    flows = 0

    def flow(u: int, v: int, name: str, cat: str) -> None:
        nonlocal flows
        hu, su, start_u, end_u = where[u]
        hv, sv, start_v, _ = where[v]
        flows += 1
        common = {"cat": cat, "name": name, "id": flows, "args": {"from": u, "to": v}}
        events.append({**common, "ph": "s", "pid": hu + 1, "tid": su, "ts": (start_u + end_u) / 2})
        events.append({**common, "ph": "f", "bp": "e", "pid": hv + 1, "tid": sv, "ts": start_v})
    for u, v in sorted(program.graph.edges):
        if u in where and v in where and where[u][0] == where[v][0] and where[u][1] != where[v][1]:
            flow(u, v, "+".join(sorted(program.graph.edges[u, v].get("kinds", ()))) or "order",
                 "dependency")
    for tr in transfers:
        for c in tr.consumers:
            if tr.producer in where and c in where:
                flow(tr.producer, c, f"x{tr.id} host {tr.src} -> host {tr.dst} ({tr.nbytes} B)",
                     "transfer")
    metadata = {
        "program": program.name,
        "loc": program.loc,
        "hosts": len(plans),
        "tasks": len(where),
        "workers": [e["args"]["name"] for e in events if e.get("name") == "thread_name"],
        "cross_worker_edges": flows,
        "transfers": len(transfers),
        "estimated_makespan": program.reports.get("makespan"),
        "critical_path_tasks": critical_path(program),
        "measured_wall_us": max((st["t1"] - st["t0"]) / 1e3 for st in stamps),
        "measured_wall_us_per_host": [(st["t1"] - st["t0"]) / 1e3 for st in stamps],
        "clock": "CLOCK_MONOTONIC, microseconds since host 0 posted the run"
                 + ("" if all(st["same_clock"] for st in stamps) else
                    " (hosts on other machines: since their own run started)"),
    }
    return Trace(traceEvents=events, displayTimeUnit="ns", metadata=metadata)
