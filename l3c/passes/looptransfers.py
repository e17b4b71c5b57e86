"""What moves between hosts in a program with loops, and each host's own schedule of it.

The analysis of loop-free programs (`transfers.py`) follows every element through one pass over the
tasks; with loops the elements a task touches move with loop variables and the trip counts are
known only at run time, so here a move is per *instance* instead:

- a task w on host a whose writes some read on host h may see (a task of h, a bound or flag of a
  loop h runs, or the final broadcast h makes) gets a *twin* on h: after every instance of w, host
  a sends those written regions (of the tensors such reads touch) as they are in that instance
  (`send`, right after w on a) and host h lands them in its arena (`recv`, right after w in h's
  sequential order). A twin is a write of exactly those regions on h, so h's arena holds, at every point of the sequential order, the value
  the sequential run has there, for every element h reads;
- each host gets its own program (`HostSchedule.program`): its tasks, its sends and its landings,
  numbered in sequential order, inside the loops it runs (those around any of them, with their
  ancestors), on which the deps pass runs as on any program. So every hazard on the host's arena
  (a landing against the host's own reads and writes, a send against later writers of the bytes
  it reads, within an iteration or carried) is an edge or a bound read of that program, exact for
  affine views as the deps pass is, and the lowering turns them into waits like any other;
- every host runs the control of the loops it runs and reads their bounds and flags from its own
  arena, after the landing of their latest writer: a while loop's flag written on host 0 reaches
  host 1 as one small message per decision, and every host takes the same decisions.

Sends and landings run in sequential order on each host (code generation puts them on one more
slot, run by the host's parent process), so the k-th send of a twin meets the k-th landing of it.
Deadlock-free: every wait and every message points back in the sequential order.

At the end, the results and written inputs: a tensor written on one host only is broadcast by that
host; one written on several is read, as the end of the program, by the host of its last writer in
program order (so it receives the others' writes as twins), which broadcasts it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import networkx as nx

from ..errors import L3CError
from ..ir import Access, Loop, Program, Region, Task, TensorInfo
from .results import result_refs
from . import deps
from .arena_layout import tensor_bases
from .regions import overlap

SEND_KERNEL = "l3c.hosts:send"
RECV_KERNEL = "l3c.hosts:recv"


@dataclass(frozen=True)
class LoopTransfer:
    """Every instance of task `producer` (on `src`) sends its written regions (`accesses`) to
    `dst`."""

    id: int
    producer: int
    src: int
    dst: int
    accesses: tuple[Access, ...]


@dataclass
class HostSchedule:
    """One host's program: its tasks, sends and landings in sequential order, inside the loops it
    runs, with the deps pass's edges and bound reads. `origin[new id]` is ("task", task id) or
    ("send" | "recv", transfer id)."""

    host: int
    program: Program
    origin: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class LoopFlow:
    """The transfers, each host's schedule, and the final broadcasts (root, tensor, region)."""

    hosts: int
    bases: dict[int, int]
    transfers: list[LoopTransfer]
    parts: list[HostSchedule]
    final: list[tuple[int, int, Region]]


@dataclass(frozen=True)
class _Read:
    """A read of some host: where it is in program order (`pos`; a loop's bound or flag read counts
    just before its first task) and in which loops it sits (`path`)."""

    pos: float
    path: tuple[int, ...]
    access: Access


def _path(program: Program, lid: int | None) -> tuple[int, ...]:
    out = []
    while lid is not None:
        out.append(lid)
        lid = program.loops[lid].parent
    return tuple(reversed(out))


def _repeats_together(program: Program, a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Do two places share a loop that iterates (a later iteration may reach the earlier place)?"""
    for x, y in zip(a, b):
        if x != y:
            return False
        if program.loops[x].kind != "cond":
            return True
    return False


def _may_see(program: Program, read: _Read, w: Task, write: Access) -> bool:
    """May `read` see a value that `write` of w stored (same tensor, overlapping, and after it)?"""
    if read.access.tensor != write.tensor:
        return False
    if not (read.access.region.shifts or write.region.shifts
            or overlap(read.access.region, write.region)):
        return False
    return read.pos > w.id or _repeats_together(program, read.path, w.loops)


def _loop_reads(program: Program, lid: int) -> list[_Read]:
    loop = program.loops[lid]
    inside = _path(program, lid) if loop.kind == "while" else _path(program, loop.parent)
    return [_Read(loop.first_task - 0.5, inside, a) for a in loop.accesses]


def analyse_loops(program: Program) -> LoopFlow:
    """Transfers and per-host schedules of a placed, memory-planned program with loops."""
    hosts = program.config.hosts
    tasks = program.tasks
    host_of = {t.id: program.host_of(t) for t in tasks}
    writes = {t.id: tuple(a for a in t.accesses if a.writes and a.region.size) for t in tasks}
    final, final_reads = _final(program, tasks, host_of, writes)

    kept: list[set[int]] = [set() for _ in range(hosts)]
    task_reads: list[list[_Read]] = [[] for _ in range(hosts)]
    for t in tasks:
        h = host_of[t.id]
        kept[h].update(t.loops)
        task_reads[h].extend(_Read(t.id, t.loops, a) for a in t.accesses if a.reads)
    twins: dict[tuple[int, int], tuple[Access, ...]] = {}     # (w, h) -> writes h may see
    seen_loops: list[set[int]] = [set() for _ in range(hosts)]
    reads: list[dict[int, list[_Read]]] = [{} for _ in range(hosts)]
    for h in range(hosts):
        for r in task_reads[h] + final_reads.get(h, []):
            reads[h].setdefault(r.access.tensor, []).append(r)
    changed = True
    while changed:                       # a twin inside a loop makes its host read that loop's flag
        changed = False
        for h in range(hosts):
            for lid in kept[h] - seen_loops[h]:
                seen_loops[h].add(lid)
                for r in _loop_reads(program, lid):
                    reads[h].setdefault(r.access.tensor, []).append(r)
            for w in tasks:
                if host_of[w.id] == h or (w.id, h) in twins:
                    continue
                seen = tuple(a for a in writes[w.id]
                             if any(_may_see(program, r, w, a) for r in reads[h].get(a.tensor, ())))
                if seen:
                    twins[w.id, h] = seen
                    if not set(w.loops) <= kept[h]:
                        kept[h].update(w.loops)
                        changed = True

    transfers = [LoopTransfer(i, w, host_of[w], h, twins[w, h])
                 for i, (w, h) in enumerate(sorted(twins))]
    by_producer: dict[int, list[LoopTransfer]] = {}
    for tr in transfers:
        by_producer.setdefault(tr.producer, []).append(tr)
    bases = tensor_bases(program)[0]
    parts = [_host_schedule(program, h, tasks, host_of, kept[h], by_producer, bases)
             for h in range(hosts)]
    return LoopFlow(hosts, bases, transfers, parts, final)


def _final(program: Program, tasks: list[Task], host_of: dict[int, int],
           writes: dict[int, tuple[Access, ...]]
           ) -> tuple[list[tuple[int, int, Region]], dict[int, list[_Read]]]:
    """The final broadcasts, and the reads at the end of the program that make their roots hold
    the latest values of tensors written on several hosts."""
    wanted: dict[int, list[Region]] = {}
    for ref in result_refs(program.results):
        wanted.setdefault(ref.tensor, []).append(ref.region)
    written_by: dict[int, list[int]] = {}
    for t in tasks:
        for a in writes[t.id]:
            written_by.setdefault(a.tensor, []).append(t.id)
    for p in program.params:
        if p.tensor is not None and p.tensor in written_by:
            wanted[p.tensor] = [Region.whole(program.tensors[p.tensor].shape)]
    final: list[tuple[int, int, Region]] = []
    reads: dict[int, list[_Read]] = {}
    end = float(len(tasks))
    for tensor in sorted(wanted):
        writers = written_by.get(tensor)
        if not writers:
            continue                       # never written: the same everywhere
        root = host_of[writers[-1]]
        for region in dict.fromkeys(wanted[tensor]):
            final.append((root, tensor, region))
            if len({host_of[w] for w in writers}) > 1:
                reads.setdefault(root, []).append(
                    _Read(end, (), Access("result", tensor, region, "In")))
    return final, reads


def _host_schedule(program: Program, h: int, tasks: list[Task], host_of: dict[int, int],
                   kept: set[int], by_producer: dict[int, list[LoopTransfer]],
                   bases: dict[int, int]) -> HostSchedule:
    """Host h's program in sequential order (tasks, sends right after their producer, landings
    right after theirs), its loops renumbered over it, with the deps pass run on it."""
    events: list[tuple[str, LoopTransfer | None, Task]] = []
    for t in tasks:
        if host_of[t.id] == h:
            events.append(("task", None, t))
        for tr in by_producer.get(t.id, ()):
            if tr.src == h:
                events.append(("send", tr, t))
            elif tr.dst == h:
                events.append(("recv", tr, t))
    sub = Program(program.name, program.loc, program.config, graph=nx.DiGraph(),
                  tensors=list(program.tensors), params=program.params, results=program.results,
                  groups=program.groups, scopes=program.scopes, costs=program.costs)
    origin: list[tuple[str, int]] = []
    span: dict[int, list[int]] = {}
    for new, (kind, tr, t) in enumerate(events):
        if tr is None:
            args = t.args
            kernel, worker = t.kernel, t.worker
            origin.append((kind, t.id))
        else:
            mode = "In" if kind == "send" else "Out"
            args = tuple(Access(a.param, a.tensor, a.region, mode) for a in tr.accesses)
            kernel, worker = (SEND_KERNEL if kind == "send" else RECV_KERNEL), "sub"
            origin.append((kind, tr.id))
        task = Task(new, kernel, worker, args, t.loc, t.scope, t.loops, group=None)
        sub.graph.add_node(new, task=task)
        for lid in t.loops:
            span.setdefault(lid, []).append(new)
    if set(span) != kept:
        raise L3CError(f"{program.name}: host {h} runs loops {sorted(kept)} but has steps in "
                       f"{sorted(span)} (an internal inconsistency of the several-host split)")
    sub.loops = {lid: _renumbered(program.loops[lid], min(ids), max(ids) + 1)
                 for lid, ids in sorted(span.items())}
    originals = _separate_shared_bytes(sub, bases)
    deps.run(sub)
    for lid, (start, stop, step, flag) in originals.items():
        loop = sub.loops[lid]
        loop.start, loop.stop, loop.step, loop.flag = start, stop, step, flag
    return HostSchedule(h, sub, origin)


def _renumbered(loop: Loop, first: int, end: int) -> Loop:
    return replace(loop, first_task=first, end_task=end, reads_after=(), reads_before=())


def _separate_shared_bytes(sub: Program, bases: dict[int, int]) -> dict[int, tuple]:
    """Tensors of `sub` whose arena bytes overlap (only tensors no task touches share: several
    hosts with loops reuse no memory) are ordered as one: their accesses become whole accesses of
    one stand-in tensor, for the deps pass only. Returns the loops' original bounds and flag, to
    restore after the pass (the task records of `sub` only feed the pass)."""
    used: set[int] = set()
    for v in sub.graph.nodes:
        used.update(a.tensor for a in sub.graph.nodes[v]["task"].accesses)
    for loop in sub.loops.values():
        used.update(a.tensor for a in loop.accesses)
    spans = sorted((bases[t], bases[t] + max(1, sub.tensors[t].nbytes), t) for t in used)
    groups: list[list[int]] = []
    reach = -1
    for lo, hi, t in spans:
        if groups and lo < reach:
            groups[-1].append(t)
        else:
            groups.append([t])
        reach = max(reach, hi)
    stand_in: dict[int, Access] = {}
    for members in groups:
        if len(members) < 2:
            continue
        lo = min(bases[t] for t in members)
        hi = max(bases[t] + max(1, sub.tensors[t].nbytes) for t in members)
        info = TensorInfo(len(sub.tensors), f"shared{len(sub.tensors)}", "intermediate",
                          (hi - lo,), "uint8", sub.loc)
        sub.tensors.append(info)
        for t in members:
            stand_in[t] = Access("shared", info.id, Region.whole(info.shape), "In")
    if not stand_in:
        return {}

    def swap(a: object) -> object:
        if isinstance(a, Access) and a.tensor in stand_in:
            return replace(stand_in[a.tensor], param=a.param, mode=a.mode)
        return a
    for v in sub.graph.nodes:
        task = sub.graph.nodes[v]["task"]
        task.args = tuple(swap(a) for a in task.args)
    originals = {}
    for lid, loop in sub.loops.items():
        if any(a.tensor in stand_in for a in loop.accesses):
            originals[lid] = (loop.start, loop.stop, loop.step, loop.flag)
            loop.start, loop.stop, loop.step, loop.flag = (swap(loop.start), swap(loop.stop),
                                                           swap(loop.step), swap(loop.flag))
    return originals
