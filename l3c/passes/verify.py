"""verify: check the invariants every later stage relies on, independently of how passes work.

Run after every pass in tests (`PassOptions(verify=True)`) and on demand. It checks only what the
passes run so far (`program.passes_run`) promise, by brute force (pairwise, with ancestor bitsets),
so it is meant for tests and debugging, not for 100k-task programs:

- always: edges go from an earlier to a later task (carried edges: between tasks sharing a loop,
  any direction) and carry kinds/tensors/added_by; groups are consistent (`program.groups` vs
  `Task.group`/`group_rank`);
- after deps: every conflicting pair of accesses (may share an element, one writes) is ordered
  (the later task is reachable from the earlier one, through paths `loopnest` deems sound); with
  loops, every conflict with a later iteration is ordered by a carried edge or such a path;
- after scopes: first/last use match the accesses, no use after the creating scope closed,
  `last_use <= dead_after`;
- after schedule: every task placed once on a valid worker of its kind, pins obeyed, queues in
  program order, group members on distinct chips;
- after memory: intermediates aligned inside the arena, `arena_bytes <= naive_bytes`, and two
  intermediates overlapping in the arena only if every access of one happens before every access of
  the other (graph path or same-worker queue order) and, with loops, their lifetimes
  (`loopnest.lifetime`) are disjoint.
"""
from __future__ import annotations

import numpy as np

from ..errors import L3CError
from ..ir import Program, Task
from . import regions
from .deps import _conflicts
from .graphs import task_list
from .loopdeps import WithinPairs, carried_conflicts, missing_reads
from .loopnest import (common_prefix, iteration_preds, lifetime, merged_clock, queue_starts,
                       repeating, structure_bounds, valid_ancestors, vouched)
from .scopes import result_tensors


class InvariantError(L3CError):
    """A pass broke an invariant of the IR (a bug in l3c, not in the user's program)."""


def _fail(message: str, task: Task | None = None) -> None:
    where = f" (task {task.id} {task.short_kernel} at {task.loc})" if task is not None else ""
    raise InvariantError(message + where)


def ancestors(program: Program, queue_order: bool = False) -> dict[int, int]:
    """Bitset of every task's strict ancestors; with `queue_order`, a worker's earlier queue
    entries count as ancestors too (happens-before in the placed schedule)."""
    tasks = task_list(program)
    sources = iteration_preds(program, len(tasks))
    first, end = structure_bounds(program, tasks)
    if not queue_order:
        return dict(enumerate(valid_ancestors(sources, first, end)))
    anc: dict[int, int] = {}
    on_worker: dict[tuple, int] = {}        # every task so far on each worker: its queue order
    for task in tasks:
        key = (task.worker, task.chip)
        earlier = on_worker.get(key, 0)
        bits = earlier
        if earlier:
            sources[task.id].append(earlier.bit_length() - 1)   # the queue predecessor
        for k in sources[task.id]:
            bits |= (1 << k) | vouched(anc[k], k, task.id, first, end)
        anc[task.id] = bits
        on_worker[key] = earlier | (1 << task.id)
    return anc


def _check_structure(program: Program) -> None:
    n = program.graph.number_of_nodes()
    if sorted(program.graph.nodes) != list(range(n)):
        _fail(f"graph nodes are not 0..{n - 1}")
    for u, v, data in program.graph.edges(data=True):
        if data.get("carried"):
            if not repeating(program, common_prefix(program.task(u).loops,
                                                    program.task(v).loops)):
                _fail(f"carried edge {u} -> {v} joins tasks that share no loop", program.task(v))
        elif not u < v:
            _fail(f"edge {u} -> {v} does not go forward in program order", program.task(v))
        if not data.get("kinds") or not data.get("tensors") or data.get("added_by") not in (
                "deps", "memory"):
            _fail(f"edge {u} -> {v} lacks kinds/tensors/added_by: {data}", program.task(v))
    for gid, members in enumerate(program.groups):
        for rank, tid in enumerate(members):
            t = program.task(tid)
            if t.group != gid or t.group_rank != rank:
                _fail(f"group {gid} lists task {tid} at rank {rank}, but the task says group "
                      f"{t.group} rank {t.group_rank}", t)
    for t in program.tasks:
        if t.group is not None and (t.group >= len(program.groups)
                                    or t.id not in program.groups[t.group]):
            _fail(f"task claims group {t.group} which does not list it", t)
        attrs = program.graph.nodes[t.id]
        if attrs.get("chip") != t.chip or attrs.get("group") != t.group:
            _fail("node attributes out of sync with the Task record (call sync_node_attrs)", t)


def _check_conflicts(program: Program, anc: dict[int, int]) -> None:
    by_tensor: dict[int, list] = {}
    tasks = task_list(program)
    pairs = WithinPairs(program, tasks) if program.loops else None
    for task in tasks:
        for a in task.accesses:
            by_tensor.setdefault(a.tensor, []).append((task.id, a))
    for tid, items in by_tensor.items():
        for j, (v, b) in enumerate(items):
            for u, a in items[:j]:
                if u == v or not (a.writes or b.writes) or (anc[v] >> u) & 1:
                    continue
                if (regions.overlap(a.region, b.region) if pairs is None
                        else pairs.meet(tid, u, a.region, v, b.region)):
                    _fail(f"conflicting accesses of tensor {program.tensors[tid].name} by tasks "
                          f"{u} and {v} are not ordered", program.task(v))
    if program.loops:
        _check_carried(program, tasks, lambda a, b: a < b and (anc[b] >> a) & 1)
        _check_reads(program, tasks)


def _check_reads(program: Program, tasks: list[Task]) -> None:
    """Every writer a bound/flag read must wait for, or hold back, is listed on its loop."""
    missing = missing_reads(program, tasks)
    if missing:
        _fail("the bound/flag reads are not ordered with their writers: " + "; ".join(missing[:3]))


def _check_carried(program: Program, tasks: list[Task], ordered) -> None:
    """Every conflict of a task's instance with a later iteration's instance of another (or the
    same) task is ordered: by a carried edge, or by `ordered(a, b)` (a within-iteration path)."""
    graph = program.graph
    for (a, b), (_, tensors) in sorted(carried_conflicts(program, tasks, {}).items()):
        if graph.has_edge(a, b) and graph.edges[a, b].get("carried") or ordered(a, b):
            continue
        names = ", ".join(sorted(program.tensors[t].name for t in tensors))
        _fail(f"task {a} conflicts with a later iteration's task {b} on {names}, but no carried "
              f"edge or path orders them", program.task(b))


def _check_scopes(program: Program) -> None:
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for task in program.tasks:
        for a in task.accesses:
            info = program.tensors[a.tensor]
            first.setdefault(a.tensor, task.id)
            last[a.tensor] = task.id
            if info.scope and task.scope[:len(info.scope)] != info.scope:
                _fail(f"tensor {info.name} used after its scope closed", task)
            if info.loops and task.loops[:len(info.loops)] != info.loops:
                _fail(f"tensor {info.name} used outside the loop/cond it was created in", task)
    for info in program.tensors:
        if info.first_use != first.get(info.id) or info.last_use != last.get(info.id):
            _fail(f"tensor {info.name}: first/last use {info.first_use}/{info.last_use} but "
                  f"accesses say {first.get(info.id)}/{last.get(info.id)}")
        if info.dead_after is not None and info.last_use is not None and (
                info.last_use > info.dead_after):
            _fail(f"tensor {info.name} used at task {info.last_use} after it died at "
                  f"{info.dead_after}")


def _check_placement(program: Program) -> None:
    cfg = program.config
    queues: dict[tuple, list[Task]] = {}
    for t in program.tasks:
        count = cfg.units(t.worker)
        if t.chip is None or not 0 <= t.chip < count:
            _fail(f"task placed on {t.worker} {t.chip}, valid 0..{count - 1}", t)
        if t.pin is not None and t.chip != t.pin:
            _fail(f"task pinned to {t.pin} but placed on {t.chip}", t)
        queues.setdefault((t.worker, t.chip), []).append(t)
    for worker, queue in queues.items():
        if [t.queue_pos for t in queue] != list(range(len(queue))):
            _fail(f"queue of {worker} is not in program order: "
                  f"{[(t.id, t.queue_pos) for t in queue][:10]}", queue[0])
    for gid, members in enumerate(program.groups):
        chips = [program.task(m).chip for m in members]
        if len(set(chips)) != len(chips):
            _fail(f"group {gid} has members on the same chip: {chips}", program.task(members[0]))


def _check_memory(program: Program) -> None:
    report = program.memory
    align = report.alignment          # 0: packed, each at a multiple of its own item size
    if report.arena_bytes > report.naive_bytes:
        _fail(f"arena {report.arena_bytes} B exceeds the naive plan {report.naive_bytes} B")
    if report.lower_bound_bytes > report.arena_bytes:
        _fail(f"arena {report.arena_bytes} B is below its lower bound {report.lower_bound_bytes} B")
    returned = result_tensors(program)
    tasks_of: dict[int, list[int]] = {}
    for task in program.tasks:
        for a in task.accesses:
            tasks_of.setdefault(a.tensor, []).append(task.id)
    placed = []
    for info in program.tensors:
        if info.kind == "input":
            if info.arena_offset is not None:
                _fail(f"input {info.name} was given an arena offset")
            continue
        if info.arena_offset is None:
            _fail(f"intermediate {info.name} has no arena offset")
        need = align or np.dtype(info.dtype).itemsize
        if info.arena_offset % need:
            _fail(f"intermediate {info.name} at {info.arena_offset} is not {need}-byte aligned")
        if info.nbytes and (info.id in tasks_of or info.id in returned):
            if info.arena_offset + info.nbytes > report.arena_bytes:
                _fail(f"intermediate {info.name} ends past the arena ({report.arena_bytes} B)")
            placed.append(info)
    hb = ancestors(program, queue_order=True)

    hosts_of = None
    if program.config.hosts > 1:
        from .memory import tensor_hosts
        hosts_of = tensor_hosts(program, tasks_of, returned)

    tasks = task_list(program)
    life = {tid: lifetime(program, tasks, ids, program.tensors[tid].loops, tid)
            for tid, ids in tasks_of.items()}

    def before(x: int, y: int) -> bool:
        """Every access of tensor x happens before every access of tensor y."""
        if x in returned:
            return False
        if program.loops and x in life and y in life and life[x][1] >= life[y][0]:
            return False                # both used during one loop: every iteration uses them
        ys = tasks_of.get(y, [])
        return all((hb[b] >> a) & 1 for a in tasks_of.get(x, []) for b in ys)

    placed.sort(key=lambda i: i.arena_offset)
    for i, x in enumerate(placed):
        for y in placed[i + 1:]:
            if y.arena_offset >= x.arena_offset + x.nbytes:
                break
            if hosts_of is not None and not hosts_of[x.id] & hosts_of[y.id]:
                continue                        # on different hosts: separate arenas
            if not (before(x.id, y.id) or before(y.id, x.id)):
                _fail(f"intermediates {x.name} and {y.name} share arena bytes but may be live "
                      f"at once")


def verify(program: Program) -> None:
    """Raise `InvariantError` if the program breaks an invariant of the passes run so far."""
    ran = set(program.passes_run)
    _check_structure(program)
    if "deps" in ran:
        _check_conflicts(program, ancestors(program))
    if "scopes" in ran:
        _check_scopes(program)
    if "schedule" in ran:
        _check_placement(program)
    if "memory" in ran:
        _check_memory(program)


# ---- what a loaded schedule must satisfy, whatever its file says --------------------------------
class _Clocks:
    """Happens-before in the placed schedule (graph edges and each worker's queue order) as vector
    clocks, one counter per worker: `before(u, v)` costs O(1) once the clocks are built (O(tasks x
    workers)), where `ancestors` bitsets grow with the square of the task count.

    With loops an entry claims every queue position up to it (`loopnest.merged_clock`), which
    leaves out what a path through a body vouches for above a gap; where the clock does not
    vouch, `before` searches the sound paths back from v (`loopnest.vouched`'s rule per hop)."""

    def __init__(self, program: Program) -> None:
        slot_of_worker: dict[tuple, int] = {}
        n = program.graph.number_of_nodes()
        self.sources = sources = iteration_preds(program, n)
        self.slot = [0] * n
        self.pos = [0] * n
        last_on: dict[int, int] = {}
        queues: list[list[int]] = []
        for t in program.tasks:
            s = slot_of_worker.setdefault((t.worker, t.chip), len(slot_of_worker))
            if s == len(queues):
                queues.append([])
            queues[s].append(t.id)
            self.slot[t.id], self.pos[t.id] = s, t.queue_pos
            if s in last_on:
                sources[t.id].append(last_on[s])
            last_on[s] = t.id
        width = max(1, len(slot_of_worker))
        self.clock = np.full((n, width), -1, dtype=np.int64)
        bounds = structure_bounds(program, task_list(program)) if program.loops else None
        self.bounds = bounds
        starts = queue_starts(queues, bounds[0]) if bounds else {}
        for t in range(n):
            if bounds is None:
                for p in sources[t]:
                    np.maximum(self.clock[t], self.clock[p], out=self.clock[t])
            else:
                self.clock[t] = merged_clock(self.clock, sources[t], t, *bounds, starts, width)
            self.clock[t, self.slot[t]] = self.pos[t]

    def before(self, u: int, v: int) -> bool:
        """Does task u complete before task v starts in every run?"""
        if u >= v:
            return False
        if self.slot[u] == self.slot[v]:
            return True                 # one queue, in program order (checked by placement)
        if int(self.clock[v, self.slot[u]]) >= self.pos[u]:
            return True
        return self.bounds is not None and self._sound_path(u, v)

    def _sound_path(self, u: int, v: int) -> bool:
        """Is u among v's ancestors through hops k -> w that vouch for it (w inside k's body, k
        outside any body, or u inside k's body), a task of u's worker after u standing for u?"""
        first, end = self.bounds
        seen, stack = {v}, [v]
        while stack:
            w = stack.pop()
            for k in self.sources[w]:
                if k == u:
                    return True
                if k < u or k in seen or not (w < end[k] or not first[k] or u >= first[k]):
                    continue
                if self.slot[k] == self.slot[u]:
                    return True
                seen.add(k)
                stack.append(k)
        return False


def _check_arena(program: Program, clocks: _Clocks) -> None:
    """Intermediates that share arena bytes (on one host) have disjoint lifetimes: every access of
    the earlier happens before every access of the later, and no returned tensor is reused.

    Sweeping the arena's elementary byte segments, it is enough to check the tensors of each segment
    in order of first use, each against the next: happens-before is transitive."""
    returned = result_tensors(program)
    firsts: dict[int, dict[int, int]] = {}          # tensor -> slot -> first accessing task
    lasts: dict[int, dict[int, int]] = {}           # tensor -> slot -> last accessing task
    uses: dict[int, list[int]] = {}                 # tensor -> every accessing task
    for task in program.tasks:
        for a in task.accesses:
            s = clocks.slot[task.id]
            firsts.setdefault(a.tensor, {}).setdefault(s, task.id)
            lasts.setdefault(a.tensor, {})[s] = task.id
            uses.setdefault(a.tensor, []).append(task.id)
    if program.config.hosts > 1:
        from .memory import tensor_hosts
        hosts = tensor_hosts(program, {t: sorted(set(f.values()) | set(lasts[t].values()))
                                       for t, f in firsts.items()}, returned)
    per_host: dict[int, list[tuple[int, int, int]]] = {}
    for info in program.tensors:
        if info.kind != "intermediate" or not info.nbytes or info.arena_offset is None:
            continue
        if info.id not in firsts and info.id not in returned:
            continue
        for h in (hosts[info.id] if program.config.hosts > 1 else (0,)):
            per_host.setdefault(h, []).append((info.arena_offset, info.arena_offset + info.nbytes,
                                               info.id))
    end = program.graph.number_of_nodes()

    def first_use(tid: int) -> int:
        return min(firsts[tid].values()) if tid in firsts else end

    pairs: set[tuple[int, int]] = set()
    for items in per_host.values():
        points = sorted({p for lo, hi, _ in items for p in (lo, hi)})
        starts = sorted(items)
        active: list[tuple[int, int]] = []          # (end, tensor)
        k = 0
        for point in points[:-1]:
            active = [(hi, t) for hi, t in active if hi > point]
            while k < len(starts) and starts[k][0] == point:
                active.append((starts[k][1], starts[k][2]))
                k += 1
            order = sorted((first_use(t), t) for _, t in active)
            pairs.update((order[i][1], order[i + 1][1]) for i in range(len(order) - 1))
    names = program.tensors
    tasks = task_list(program)
    for x, y in sorted(pairs):
        if x in returned:
            _fail(f"intermediate {names[y].name} shares arena bytes with the returned "
                  f"{names[x].name}")
        if program.loops:
            ids = [sorted(set(firsts[t].values()) | set(lasts[t].values())) if t in firsts else []
                   for t in (x, y)]
            lx, ly = (lifetime(program, tasks, i, names[t].loops, t) for i, t in zip(ids, (x, y)))
            if lx is not None and ly is not None and lx[1] >= ly[0]:
                _fail(f"intermediates {names[x].name} and {names[y].name} share arena bytes but "
                      f"are both used during one loop")
        # With loops a task's last use on a worker may sit in a body that ran no iteration and
        # then vouches for none before it: every use is checked.
        for u in (uses.get(x, ()) if program.loops else lasts.get(x, {}).values()):
            for v in firsts.get(y, {}).values():
                if not clocks.before(u, v):
                    _fail(f"intermediates {names[x].name} and {names[y].name} share arena bytes "
                          f"but task {u} may still use the first while task {v} uses the second",
                          program.task(v))


def check_schedule(program: Program) -> None:
    """Raise `InvariantError` unless the placed, memory-planned `program` is safe to run: its
    structure and placement are sound, every conflicting pair of its accesses (found by the deps
    pass's own search) is ordered by its edges or a worker's queue, and intermediates sharing arena
    bytes never live at once. Unlike `verify`, its cost stays near linear in the program's size,
    so the loader of a schedule file runs it on every load."""
    _check_structure(program)
    _check_placement(program)
    clocks = _Clocks(program)
    for (u, v), (_, tensors) in sorted(_conflicts(program).items()):
        if not clocks.before(u, v):
            names = ", ".join(sorted(program.tensors[t].name for t in tensors))
            _fail(f"tasks {u} and {v} both access {names} (one writes) but nothing orders "
                  f"them", program.task(v))
    if program.loops:                   # one worker runs its iterations one after another
        _check_carried(program, task_list(program),
                       lambda a, b: clocks.slot[a] == clocks.slot[b] or clocks.before(a, b))
        _check_reads(program, task_list(program))
    _check_arena(program, clocks)
