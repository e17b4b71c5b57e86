"""The Chrome trace of one profiled run of a program with loops: one slice per executed task instance.

In a plan with loops a worker runs a step once per iteration, so its profile area is an event
buffer (`runtime/stamps.py`): (step, start, end) per executed step instance in the order the worker
ran them, control steps included, the first `capacity` of them kept. Each worker runs every loop's
control steps (docs/runtime.md, "Loops in the step loop"), so replaying its own events gives the
iteration of every loop at each instance: a loop's "range" or "while" step starts it at iteration 0,
its "next" or "again" step moves it on. What `l3c.profile.build_trace` makes for a loop-free run,
with these differences:

* a slice per task instance, named `kernel #id [L0=3 L2=1]` (the program's loop ids and the
  0-based iteration of each enclosing loop, outermost first; conds have no iteration), with args
  `loops` and `iterations` (lists) and `iteration` (the `L0=3 L2=1` label, what the HTML
  timeline's tooltip shows) besides the loop-free ones; control steps make no slice;
* a flow per graph edge between instances on different workers: an edge within one iteration joins
  the instances with the same iterations of the common loops (the producer's last instance when it
  sits in loops of its own), a carried edge the producer's instance one iteration earlier of the
  innermost common loop;
* `metadata["loops"]`: per loop, `kind`, `loc`, how often it was entered and its iterations in all
  (conds: how often reached and run), counted from one worker's events; per worker, `instances`
  (task slices), `recorded_steps` (step instances kept, control steps included) and
  `dropped_instances` (step instances past the capacity); `instance_capacity`; `tasks` counts the
  task slices of all workers. The schedule's critical path is per body, not per run: it is
  given as `body_critical_path_tasks`, and no instance is marked on the timeline;
* per range/while loop, what bounds its iteration rate in this run (`profile_loop_paths`): the
  longest chain of measured durations within one iteration and around a carried edge, and the
  measured time per iteration.
"""
from __future__ import annotations

from typing import Any, Sequence

from .ir import Program
from .profile import PID, Trace, critical_path, metadata_events, slot_name
from .profile_loop_paths import loop_paths
from .runtime.plan import ControlStep, Plan
from .runtime.stamps import Events



def build_loop_trace(program: Program, plan: Plan, steps: Sequence[Events], t0: int, t1: int
                     ) -> Trace:
    """The Chrome trace of one run of a plan with loops: `steps[s]` the `Events` of plan slot s,
    `t0`/`t1` the parent's monotonic ns just before posting the run and after it ended."""
    events = metadata_events(program, plan)
    index = {lp.id: i for i, lp in enumerate(plan.loops)}
    # instance (task, iterations of its loops) -> (slot, start us, end us)
    where: dict[tuple[int, tuple[int, ...]], tuple[int, float, float]] = {}
    busy, instances = [0.0] * plan.slots, [0] * plan.slots
    static: dict[int, tuple] = {}                   # task -> what its instances share
    for s, queue in enumerate(plan.queues):
        it = [0] * len(plan.loops)                  # each loop's current iteration on this worker
        for k, start_ns, end_ns in steps[s].events.tolist():
            step = queue[k]
            if isinstance(step, ControlStep):
                if step.kind in ("range", "while"):
                    it[step.loop] = 0
                elif step.kind in ("next", "again"):
                    it[step.loop] += 1
                continue
            if start_ns == 0 or end_ns < start_ns:
                raise ValueError(f"no timestamps for an instance of task {step.task} (step {k} of "
                                 f"{slot_name(plan, s)}): the run did not record it")
            known = static.get(step.task)
            if known is None:
                known = static[step.task] = _static(program, step.task, index)
            task_id, loops, at, name, args = known
            iters = tuple(it[i] for i in at)
            start, end = (start_ns - t0) / 1e3, (end_ns - t0) / 1e3
            where[(task_id, iters)] = (s, start, end)
            busy[s] += end - start
            instances[s] += 1
            label = " ".join(f"L{lid}={i}" for lid, i in zip(loops, iters)) or None
            events.append({"ph": "X", "pid": PID, "tid": s, "ts": start, "dur": end - start,
                           "name": f"{name} [{label}]" if label else name, "cat": args["cat"],
                           "args": {**args["args"], "iterations": list(iters),
                                    "iteration": label}})
    flows = _flows(program, where, events)
    names = [slot_name(plan, s) for s in range(plan.slots)]
    metadata = {
        "program": program.name,
        "loc": program.loc,
        "tasks": len(where),
        "instances": dict(zip(names, instances)),
        "recorded_steps": {n: len(steps[s].events) for s, n in enumerate(names)},
        "dropped_instances": {n: steps[s].dropped for s, n in enumerate(names)},
        "instance_capacity": max((r.capacity for r in steps), default=0),
        "loops": loop_summary(plan, steps, loop_paths(program, where)),
        "workers": names,
        "cross_worker_edges": flows,
        "estimated_makespan": program.reports.get("makespan"),
        "estimated_critical_path": program.reports.get("critical_path"),
        "body_critical_path_tasks": critical_path(program),
        "cost_units": "schedule pass cost model (1.0 per task unless kernel_costs says otherwise)",
        "measured_wall_us": (t1 - t0) / 1e3,
        "measured_busy_us": dict(zip(names, busy)),
        "clock": "CLOCK_MONOTONIC, microseconds since the run was posted",
    }
    return Trace(traceEvents=events, displayTimeUnit="ns", metadata=metadata)


def _static(program: Program, task_id: int, index: dict[int, int]) -> tuple:
    """(task id, its loop ids, their plan indices, slice name, shared args) of a task's slices."""
    task = program.task(task_id)
    loops = iterating(program, task.loops)
    args = {"task": task.id, "kernel": task.kernel, "group": task.group,
            "group_rank": task.group_rank if task.group is not None else None,
            "queue_pos": task.queue_pos, "loc": task.loc,
            "scope": "/" + "/".join(map(str, task.scope)), "loops": list(loops)}
    return (task.id, loops, tuple(index[lid] for lid in loops),
            f"{task.short_kernel} #{task.id}", {"cat": task.worker, "args": args})


def iterating(program: Program, loops: tuple[int, ...]) -> tuple[int, ...]:
    """The loops (not conds) among `loops`, outermost first."""
    return tuple(lid for lid in loops if program.loops[lid].kind != "cond")


def loop_summary(plan: Plan, steps: Sequence[Events],
                 paths: dict[int, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Per loop id (a str: JSON keys), its kind and line and, counted on the worker that dropped
    the fewest events (every worker runs every control step): a range or while loop's `entered`
    count and `iterations` in all (each iteration ends with one "next" / "again" step), a cond's
    `reached` and `ran` counts; `complete` False when that worker dropped events; and the loop's
    entry of `paths` (`profile_loop_paths.loop_paths`: what bounds its iteration rate)."""
    active = [s for s, r in enumerate(steps) if r.count]
    out: dict[str, dict[str, Any]] = {str(lp.id): {"kind": lp.kind, "loc": lp.loc}
                                      for lp in plan.loops}
    if not active:
        return out
    s = min(active, key=lambda s: steps[s].dropped)
    counts = {kind: [0] * len(plan.loops) for kind in ControlKinds}
    for k in steps[s].events[:, 0].tolist():
        step = plan.queues[s][k]
        if isinstance(step, ControlStep) and step.kind in counts:
            counts[step.kind][step.loop] += 1
    for i, lp in enumerate(plan.loops):
        entry = out[str(lp.id)]
        if lp.kind == "cond":
            entry.update(reached=counts["cond"][i], ran=counts["endcond"][i])
        else:
            entry.update(entered=counts[lp.kind][i],
                         iterations=counts["next" if lp.kind == "range" else "again"][i])
        entry["complete"] = steps[s].dropped == 0
    for lid, found in (paths or {}).items():
        out[str(lid)].update(found)
    return out


ControlKinds = ("range", "next", "while", "again", "cond", "endcond")


def _flows(program: Program, where: dict, events: list[dict[str, Any]]) -> int:
    """Flow events for the graph edges between instances on different workers (module docstring);
    returns how many."""
    by_task: dict[int, list[tuple[int, ...]]] = {}
    for task_id, iters in where:
        by_task.setdefault(task_id, []).append(iters)
    flows = 0
    for u, v in sorted(program.graph.edges):
        if u not in by_task or v not in by_task:
            continue
        data = program.graph.edges[u, v]
        lu = iterating(program, program.task(u).loops)
        lv = iterating(program, program.task(v).loops)
        common = 0
        while common < min(len(lu), len(lv)) and lu[common] == lv[common]:
            common += 1
        carried = bool(data.get("carried"))
        if carried and not common:
            continue
        latest: dict[tuple[int, ...], tuple[int, ...]] = {}     # u's last instance per prefix
        for iters in by_task[u]:
            prefix = iters[:common]
            if prefix not in latest or iters > latest[prefix]:
                latest[prefix] = iters
        kinds = "+".join(sorted(data.get("kinds", ()))) or "order"
        for iv in by_task[v]:
            prefix = iv[:common]
            if carried:
                prefix = prefix[:-1] + (prefix[-1] - 1,)
            iu = latest.get(prefix)
            if iu is None:
                continue
            su, start_u, end_u = where[(u, iu)]
            sv, start_v, _ = where[(v, iv)]
            if su == sv:
                continue
            flows += 1
            base = {"pid": PID, "cat": "dependency", "name": kinds, "id": flows,
                    "args": {"from": u, "to": v, "from_iterations": list(iu),
                             "to_iterations": list(iv)}}
            events.append({**base, "ph": "s", "tid": su, "ts": (start_u + end_u) / 2})
            events.append({**base, "ph": "f", "bp": "e", "tid": sv, "ts": start_v})
    return flows


def build_hosts_loop_trace(program: Program, plans: Sequence[Plan], stamps: Sequence[dict]
                           ) -> Trace:
    """The trace of one run of a several-host program with loops: each host's `build_loop_trace`
    as one process (pid host + 1, `l3c NAME host h`) of one timeline. `stamps[h]`: host h's
    `steps` (Events per plan slot), `t0`/`t1` and `same_clock` (as `profile.build_hosts_trace`).
    Its sends and landings, run by the host's parent, are not recorded."""
    base = stamps[0]["t0"]
    events: list[dict[str, Any]] = []
    per_host = []
    for h, (plan, st) in enumerate(zip(plans, stamps)):
        zero = base if st["same_clock"] else st["t0"]
        trace = build_loop_trace(program, plan, st["steps"], zero, st["t1"])
        for e in trace["traceEvents"]:
            e = dict(e, pid=h + 1)
            if e.get("name") == "process_name":
                e["args"] = {"name": f"l3c {program.name} host {h}"}
            events.append(e)
        per_host.append(trace["metadata"])
    metadata = {"program": program.name, "loc": program.loc, "hosts": len(plans),
                "per_host": per_host,
                "measured_wall_us": max((st["t1"] - st["t0"]) / 1e3 for st in stamps),
                "clock": "CLOCK_MONOTONIC, microseconds since host 0 posted the run"}
    return Trace(traceEvents=events, displayTimeUnit="ns", metadata=metadata)
