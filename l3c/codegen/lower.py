"""Lower a placed, memory-planned `l3c.ir.Program` to the plain-data `l3c.runtime.plan.Plan`.

This is where the IR's vocabulary (tasks, tensors, regions, edges) becomes the runtime's (worker
slots, ordered queues, byte views into one arena, `(slot, count)` waits). After this step nothing
downstream needs the graph.

Arena layout (one shared mapping, offsets in bytes):

    [0, staging_bytes)                        inputs, one 64-aligned block per tensor parameter,
                                              in parameter order (the caller's arrays are copied in)
    [staging_bytes, staging_bytes + M)        intermediates at `TensorInfo.arena_offset`
                                              (M = program.memory.arena_bytes, planned by the
                                              memory pass)
    [.., arena_bytes)                         intermediates the memory pass left unplaced (only ones
                                              no task touches, e.g. a returned `l3c.empty`)

Cross-worker dependencies become waits on completion counters: a step on slot s that must follow
task u on slot t waits until `done[t] >= queue_pos(u) + 1`. Waits already implied by an earlier step
of the same queue, or by another wait of the same step, are dropped (a vector clock per step knows
what has certainly completed), so a chain that stays on one worker costs no waiting at all.

Several hosts (`lower(program, host=h, inbound=...)`, called by `l3c.codegen.hosts.split`): only host h's
tasks are lowered, into local slots (global chip g is local chip g % chips). The plan gets one extra
sub-worker slot, `landing_slot(program)`, with an empty queue: its S_DONE word is the *landing
counter* that the host's parent process raises, in a fixed order, as inbound transfers land in the
arena. A task that consumes the k-th landing waits `(landing_slot, k)` like any other wait.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir import Access, Program, Region, ResultRef, ScalarArg, Task, TensorInfo
from ..passes.arena_layout import tensor_bases
from ..passes.results import map_results
from ..runtime.plan import Plan, Step, View
from . import lower_loops


# A result structure with Views in place of ResultRefs: View, or ("tuple" | "list", [...]),
# or ("dict", [(key, ...)]).
ViewTree = Any


@dataclass(frozen=True)
class LoweredProgram:
    """What a compiled run needs besides the native dispatcher: the plan and where data lives."""

    plan: Plan
    input_views: tuple[View | None, ...]   # per jitted-function parameter; None for static ones
    written_inputs: tuple[int, ...]        # indices of parameters some kernel writes (written back)
    results: ViewTree                      # the result structure, in arena views
    staging_bytes: int
    arena_bytes: int                       # == plan.arena_bytes


def slot_of(program: Program, task_id: int) -> int:
    """Worker slot of a placed task on its own host (`Program.slot_of`)."""
    return program.slot_of(program.task(task_id))


def landing_slot(program: Program) -> int:
    """The plan slot whose S_DONE counts the inbound transfers landed on a host (several hosts)."""
    return program.config.chips + program.config.sub_workers


def _tensor_bases(program: Program, host: int | None = None
                  ) -> tuple[dict[int, int], dict[int, View], int, int]:
    """`tensor_bases` plus the input staging views."""
    bases, staging, end = tensor_bases(program, host)
    staging_views = {p.tensor: _whole_view(bases[p.tensor], program.tensors[p.tensor])
                     for p in program.params if p.tensor is not None}
    return bases, staging_views, staging, end


def _whole_view(base: int, info: TensorInfo) -> View:
    region = Region.whole(info.shape)
    return View(base, info.shape, tuple(s * info.itemsize for s in region.strides), info.dtype)


def region_view(base: int, info: TensorInfo, region: Region, dtype: str | None = None) -> View:
    """The arena view of `region` of a tensor whose first byte is at `base`."""
    item = info.itemsize
    return View(base + region.offset * item, tuple(region.shape),
                tuple(s * item for s in region.strides), dtype or info.dtype)


def _compute_waits(program: Program, slots: int, slot: dict[int, int],
                   inbound: dict[int, tuple[int, int]] | None = None,
                   local_after: dict[int, dict[int, int]] | None = None
                   ) -> dict[int, tuple[tuple[int, int], ...]]:
    """Minimal cross-slot waits per task, by vector clocks over the placed queues.

    `after[(s, k)]` is the vector of per-slot counts certainly complete once step k of slot s has
    completed. Tasks are visited in program order, which is a topological order (edges go u < v,
    queues are in program order). `slot` holds only the tasks being lowered (one host's, with
    several hosts); predecessors elsewhere are reached through `inbound[v] = (landing slot, count)`,
    which implies nothing about local slots, and `local_after[v] = {slot: count}` (local steps the
    whole graph orders before v through other hosts).
    """
    after: dict[tuple[int, int], list[int]] = {}
    last_known: list[list[int]] = [[0] * slots for _ in range(slots)]
    waits: dict[int, tuple[tuple[int, int], ...]] = {}
    inbound = inbound or {}

    def implied(t: int, c: int) -> list[int]:
        vec = after.get((t, c - 1))
        if vec is None:                      # a landing counter: only itself is known
            vec = [0] * slots
            vec[t] = c
        return vec

    for v in sorted(slot):
        s, k = slot[v], program.task(v).queue_pos
        known = list(last_known[s])
        need: dict[int, int] = {}
        for u in program.graph.predecessors(v):
            t = slot.get(u)
            if t is not None and t != s:
                need[t] = max(need.get(t, 0), program.task(u).queue_pos + 1)
        if v in inbound:
            t, c = inbound[v]
            need[t] = max(need.get(t, 0), c)
        for t, c in (local_after or {}).get(v, {}).items():
            if t != s:
                need[t] = max(need.get(t, 0), c)
        cands = [(t, c) for t, c in need.items() if known[t] < c]
        kept = [(t, c) for t, c in cands
                if not any(implied(t2, c2)[t] >= c for t2, c2 in cands if (t2, c2) != (t, c))]
        for t, c in kept:
            known = [max(a, b) for a, b in zip(known, implied(t, c))]
        known[s] = k + 1
        after[(s, k)] = known
        last_known[s] = known
        waits[v] = tuple(sorted(kept))
    return waits


def _views_tree(tree: Any, program: Program, bases: dict[int, int]) -> ViewTree:
    def view(ref: ResultRef) -> View:
        return region_view(bases[ref.tensor], program.tensors[ref.tensor], ref.region, ref.dtype)
    return map_results(tree, view)


def _task_args(program: Program, task: Task, bases: dict[int, int], index: dict[int, int],
               checks: list | None = None) -> tuple:
    """A task's step arguments: views and scalars, or in loops `MovingView`s and `LoopValue`s (and
    the index checks of its moving views appended to `checks`)."""
    args = []
    for arg in task.args:
        if isinstance(arg, Access):
            info = program.tensors[arg.tensor]
            view = region_view(bases[arg.tensor], info, arg.region)
            if arg.region.shifts:
                view = lower_loops.moving_arg(view, arg.region, info.itemsize, index)
                checks.extend(lower_loops.view_checks(task, arg, info, index))
            args.append(view)
        elif isinstance(arg, ScalarArg):
            args.append(lower_loops.scalar_value(arg, index))
        else:
            raise TypeError(f"task {task.id}: unknown argument {arg!r}")
    return tuple(args)


def _step(program: Program, v: int, args: tuple, waits: tuple, signal: bool, ring: bool) -> Step:
    task = program.task(v)
    group_size = len(program.groups[task.group]) if task.group is not None else 1
    return Step(task=v, kernel=task.kernel, args=args, waits=waits,
                group_rank=task.group_rank if task.group is not None else 0,
                group_size=group_size, signal=signal, ring=ring, loc=task.loc)


def _lower_plain(program: Program, queues: list[list[int]], slot: dict[int, int],
                 bases: dict[int, int], landing: dict, local_after: dict | None,
                 signal_tasks: frozenset[int], every_step: bool = False) -> list[list[Step]]:
    """A loop-free program: absolute waits reduced by vector clocks. `every_step`: every step
    publishes its slot's count (a host's parent names a hung step by the counts at a timeout)."""
    waits = _compute_waits(program, len(queues), slot, landing, local_after)
    signalled = {queues[t][c - 1] for ws in waits.values() for t, c in ws if queues[t]}
    signalled |= signal_tasks
    if every_step:
        signalled = {v for queue in queues for v in queue}
    return [[_step(program, v, _task_args(program, program.task(v), bases, {}), waits[v],
                   v in signalled, v in signal_tasks) for v in queue] for queue in queues]


def _lower_loops(program: Program, slots: int, slot: dict[int, int], bases: dict[int, int]
                 ) -> tuple[list[list], tuple]:
    """A program with loops: control steps and relative waits (`lower_loops.py`)."""
    index = {lid: i for i, lid in enumerate(sorted(program.loops))}
    args: dict[int, tuple] = {}
    checks: dict[tuple[int, int], list] = {}
    for v in slot:
        found: list = []
        args[v] = _task_args(program, program.task(v), bases, index, found)
        for lid, check in found:
            checks.setdefault((slot[v], lid), []).append(check)
    lowering = lower_loops.LoopLowering(
        program, slots, slot, lambda v, waits: _step(program, v, args[v], waits, False, False))

    def element(access: Access) -> View:
        return region_view(bases[access.tensor], program.tensors[access.tensor], access.region)
    lowering.element_view = element
    return lowering.queues(checks), lower_loops.plan_loops(program, index)


def lower(program: Program, host: int | None = None,
          inbound: dict[int, int] | None = None, signal_tasks: frozenset[int] = frozenset(),
          local_after: dict[int, dict[int, int]] | None = None,
          host_tasks: list[int] | None = None, written: frozenset[int] | None = None
          ) -> LoweredProgram:
    """Turn a placed program (after every pass) into a `Plan` plus the staging and result views.

    With several hosts, `host` selects the tasks to lower; `inbound[v] = k` makes task v wait until
    k transfers have landed (the landing slot's counter), and `signal_tasks` (producers of outbound
    transfers, and the last local tasks a gated inbound transfer waits for) publish with a wake
    and ring the doorbell: the host's parent may be napping on it, and their completion makes a
    send due or lets it post a receive.
    """
    config = program.config
    if config.hosts > 1 and (host is None or program.loops):
        raise ValueError(f"{program.name} spans {config.hosts} hosts: lower it per host "
                         "(l3c.codegen.hosts.split)")
    slots = config.chips + config.sub_workers + (1 if host is not None else 0)
    nodes = host_tasks if host_tasks is not None else [
        v for v in program.graph.nodes if host is None or program.host_of(program.task(v)) == host]
    slot = {v: slot_of(program, v) for v in nodes}
    landing = {v: (landing_slot(program), k) for v, k in (inbound or {}).items()}
    bases, staging_views, staging, arena_bytes = _tensor_bases(program, host)

    queues: list[list[int]] = [[] for _ in range(slots)]
    for v in sorted(nodes, key=lambda v: (slot[v], program.task(v).queue_pos)):
        queues[slot[v]].append(v)
    for s, queue in enumerate(queues):
        for k, v in enumerate(queue):
            if program.task(v).queue_pos != k:
                raise ValueError(f"slot {s}: queue positions are not 0..n-1 ({queue})")

    if program.loops:
        steps, loops = _lower_loops(program, slots, slot, bases)
    else:
        steps, loops = _lower_plain(program, queues, slot, bases, landing, local_after,
                                    signal_tasks, every_step=host is not None), ()
    plan = Plan(chips=config.chips, sub_workers=slots - config.chips,
                queues=tuple(tuple(q) for q in steps), arena_bytes=arena_bytes, loops=loops)

    if written is None:
        written = frozenset(a.tensor for t in program.tasks for a in t.accesses if a.writes)
    input_views = tuple(staging_views[p.tensor] if p.tensor is not None else None
                        for p in program.params)
    written_inputs = tuple(i for i, p in enumerate(program.params)
                           if p.tensor is not None and p.tensor in written)
    return LoweredProgram(plan=plan, input_views=input_views, written_inputs=written_inputs,
                          results=_views_tree(program.results, program, bases),
                          staging_bytes=staging, arena_bytes=arena_bytes)
