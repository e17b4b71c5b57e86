"""Where each intermediate is used, in the summary the memory pass plans with.

The memory pass asks of a tensor only: its first and last accessing task (its lifetime), and, per
worker slot it touches, its first accessing task there (its *heads*: every later access on that
slot follows one of them in the queue) and its last queue position there. Collecting every
tensor's full list of accessing tasks just to read those back costs more than the placement on
large programs, so `scan_uses` reads the (task, tensor) pairs of all accesses into flat numpy
arrays and groups them by (tensor, slot) in one sort.

With loops a later access on a slot is a head too when an earlier one there may not order it
(`loopnest.unvouched`: the earlier sits in a body that may run no iteration), and lifetimes span
the outermost loop around every access (`loopnest.lifetime`), which needs each tensor's whole
list of tasks: `Uses.tasks_of` (only then).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import L3CError
from ..ir import Access, Program, Task
from .loopnest import unvouched


@dataclass
class Slots:
    """Every worker (chips, then sub workers, global numbering), each task's slot among them and
    queue position (lists by task id), and each slot's queue (task ids in program order)."""

    workers: list[tuple[str, int]]
    slot_of: list[int]
    pos: list[int]
    queues: list[list[int]]


@dataclass
class Uses:
    """Per tensor id (lists indexed by id; -1 / [] for a tensor no task accesses or not asked for):
    `first`/`last` accessing task; `heads` [(slot, task)], slots in order of their first access;
    `lasts` [(slot, last queue position, last task)] in the same slot order; `last_head` the
    latest task among its heads; `tasks_of` the ascending accessing tasks (only with loops, else
    None)."""

    first: list[int]
    last: list[int]
    heads: list[list[tuple[int, int]]]
    last_head: list[int]
    lasts: list[list[tuple[int, int, int]]]
    tasks_of: dict[int, list[int]] | None


def read_tasks(program: Program, tasks: list[Task]) -> tuple[Slots, list[int], list[int]]:
    """Where each task runs, and the (tensor, task) pair of every access, in one walk over the
    tasks (reading a large program's task records is slow enough to do it once)."""
    cfg = program.config
    chips = cfg.units("chip")
    workers = [("chip", i) for i in range(chips)] + [("sub", i) for i in range(cfg.units("sub"))]
    n = len(tasks)
    slot_of, pos = [0] * n, [0] * n
    queues: list[list[int]] = [[] for _ in workers]
    tensors: list[int] = []
    owners: list[int] = []
    add_tensor, add_owner = tensors.append, owners.append
    for t in tasks:
        v, chip = t.id, t.chip
        if chip is None or t.queue_pos is None:
            raise L3CError(f"{t.loc}: task {v} is not placed; the memory pass runs after the "
                           f"schedule pass")
        s = chip if t.worker == "chip" else chips + chip
        slot_of[v], pos[v] = s, t.queue_pos
        queues[s].append(v)
        for a in t.args:
            if a.__class__ is Access:
                add_tensor(a.tensor)
                add_owner(v)
    return Slots(workers, slot_of, pos, queues), tensors, owners


def scan_uses(slots: Slots, tensors: list[int], owners: list[int], wanted: list[bool],
              bounds: tuple[list[int], list[int]] | None) -> Uses:
    """The uses of the tensors with `wanted[id]` by the accesses (`tensors[i]` by task
    `owners[i]`, in program order) of tasks placed as `slots`; `bounds` with loops."""
    n_tensors, width, pos = len(wanted), len(slots.workers), slots.pos
    tensor = np.array(tensors, dtype=np.int64)
    task = np.array(owners, dtype=np.int64)
    keep = np.asarray(wanted, dtype=bool)[tensor]
    tensor, task = tensor[keep], task[keep]
    key = tensor * width + np.asarray(slots.slot_of, dtype=np.int64)[task]
    by_key = np.argsort(key, kind="stable")           # tasks stay ascending within a key
    key, task_by_key = key[by_key], task[by_key]
    new = np.ones(len(key), dtype=bool)
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    ends = np.empty_like(starts)                      # last index of each group
    ends[:-1] = starts[1:] - 1
    ends[-1:] = len(key) - 1
    group_tensor, group_slot = np.divmod(key[starts], width)
    head, tail = task_by_key[starts], task_by_key[ends]
    # groups by tensor, then by the slot's first access (the order the slots are first touched)
    order = np.lexsort((head, group_tensor))

    first, last, last_head = [-1] * n_tensors, [-1] * n_tensors, [-1] * n_tensors
    heads: list[list[tuple[int, int]]] = [[] for _ in range(n_tensors)]
    lasts: list[list[tuple[int, int, int]]] = [[] for _ in range(n_tensors)]
    extra: dict[int, list[int]] = {}
    if bounds is not None:
        extra = _unvouched_heads(task_by_key, new, bounds)
    for g, tid, s, y, x in zip(order.tolist(), group_tensor[order].tolist(),
                               group_slot[order].tolist(), head[order].tolist(),
                               tail[order].tolist()):
        if first[tid] < 0 or y < first[tid]:
            first[tid] = y
        if x > last[tid]:
            last[tid] = x
        heads[tid].append((s, y))
        if y > last_head[tid]:
            last_head[tid] = y
        for later in extra.get(g, ()):
            heads[tid].append((s, later))
            if later > last_head[tid]:
                last_head[tid] = later
        lasts[tid].append((s, pos[x], x))
    tasks_of = None
    if bounds is not None:
        tasks_of = {}
        by_tensor = np.argsort(tensor, kind="stable")
        for tid, t in zip(tensor[by_tensor].tolist(), task[by_tensor].tolist()):
            ids = tasks_of.setdefault(tid, [])
            if not ids or ids[-1] != t:
                ids.append(t)
    return Uses(first=first, last=last, heads=heads, last_head=last_head, lasts=lasts,
                tasks_of=tasks_of)


def _unvouched_heads(task: np.ndarray, new: np.ndarray,
                     bounds: tuple[list[int], list[int]]) -> dict[int, list[int]]:
    """Per (tensor, slot) group number: the later accesses there that the one before may not
    order (`loopnest.unvouched`)."""
    extra: dict[int, list[int]] = {}
    group = np.cumsum(new) - 1
    tasks, groups = task.tolist(), group.tolist()
    for i in range(1, len(tasks)):
        if groups[i] == groups[i - 1] and unvouched(tasks[i - 1], tasks[i], *bounds):
            extra.setdefault(groups[i], []).append(tasks[i])
    return extra
