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

from collections.abc import Sequence
from array import array
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
    slot_array: np.ndarray                   # `slot_of` and `pos` as arrays
    pos_array: np.ndarray


@dataclass
class Uses:
    """Per tensor id (lists indexed by id; -1 / () for a tensor no task accesses or not asked for):
    `first`/`last` accessing task; `heads` [(slot, task)], slots in order of their first access;
    `lasts` [(slot, last queue position, last task)] in the same slot order; `last_head` the
    latest task among its heads; `tasks_of` the ascending accessing tasks (only with loops, else
    None)."""

    first: list[int]
    last: list[int]
    heads: list[Sequence[tuple[int, int]]]
    last_head: list[int]
    lasts: list[Sequence[tuple[int, int, int]]]
    tasks_of: dict[int, list[int]] | None


def read_tasks(program: Program, tasks: list[Task]) -> tuple[Slots, Sequence[int], Sequence[int]]:
    """Where each task runs, and the (tensor, task) pair of every access, in one walk over the
    tasks (reading a large program's task records is slow enough to do it once)."""
    cfg = program.config
    chips = cfg.units("chip")
    workers = [("chip", i) for i in range(chips)] + [("sub", i) for i in range(cfg.units("sub"))]
    n = len(tasks)
    slot_of, pos = [0] * n, [0] * n
    tensors, owners = array("q"), array("q")   # machine ints: numpy reads them without a copy
    add_tensor, add_owner = tensors.append, owners.append
    for v, t in enumerate(tasks):              # ids are positions (`graphs.task_list`)
        chip, at = t.chip, t.queue_pos
        if chip is None or at is None:
            raise L3CError(f"{t.loc}: task {t.id} is not placed; the memory pass runs after the "
                           f"schedule pass")
        slot_of[v] = chip if t.worker == "chip" else chips + chip
        pos[v] = at
        for a in t.args:
            if a.__class__ is Access:
                add_tensor(a.tensor)
                add_owner(v)
    slot_array = np.array(slot_of, dtype=np.int64)
    queues = [np.flatnonzero(slot_array == s).tolist() for s in range(len(workers))]
    return (Slots(workers, slot_of, pos, queues, slot_array, np.array(pos, dtype=np.int64)),
            tensors, owners)


def scan_uses(slots: Slots, tensors: Sequence[int], owners: Sequence[int], wanted: list[bool],
              bounds: tuple[list[int], list[int]] | None) -> Uses:
    """The uses of the tensors with `wanted[id]` by the accesses (`tensors[i]` by task
    `owners[i]`, in program order) of tasks placed as `slots`; `bounds` with loops."""
    n_tensors, width = len(wanted), len(slots.workers)
    tensor = np.asarray(tensors, dtype=np.int64)
    task = np.asarray(owners, dtype=np.int64)
    keep = np.asarray(wanted, dtype=bool)[tensor]
    tensor, task = tensor[keep], task[keep]
    key = tensor * width + slots.slot_array[task]
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
    order = np.argsort(group_tensor * len(slots.pos) + head, kind="stable")

    # every group, in that order: its slot, head (first task) and tail (last task)
    g_tensor, g_slot = group_tensor[order], group_slot[order]
    g_head, g_tail = head[order], tail[order]
    # head entries: each group's first access, then (with loops) the later accesses there the one
    # before may not order; by group in `order`, then program order within the group
    if bounds is None:
        e_tensor, e_slot, e_task = g_tensor, g_slot, g_head
    else:
        is_head = new.copy()
        is_head[_unvouched(task_by_key, new, bounds)] = True
        at = np.flatnonzero(is_head)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        group_of = np.cumsum(new) - 1
        by_rank = at[np.argsort(rank[group_of[at]], kind="stable")]
        group_of_entry = group_of[by_rank]
        e_tensor, e_slot, e_task = (group_tensor[group_of_entry], group_slot[group_of_entry],
                                    task_by_key[by_rank])
    first, last, last_head = (np.full(n_tensors, -1, dtype=np.int64) for _ in range(3))
    g_runs = _runs(g_tensor)
    e_runs = _runs(e_tensor)
    used = g_tensor[g_runs].tolist()
    if len(g_tensor):
        first[g_tensor[g_runs]] = g_head[g_runs]     # groups of a tensor come by head
        last[g_tensor[g_runs]] = np.maximum.reduceat(g_tail, g_runs)
        last_head[e_tensor[e_runs]] = np.maximum.reduceat(e_task, e_runs)
    heads = _slices(n_tensors, used, e_runs, list(zip(e_slot.tolist(), e_task.tolist())))
    lasts = _slices(n_tensors, used, g_runs, list(zip(
        g_slot.tolist(), slots.pos_array[g_tail].tolist(), g_tail.tolist())))
    tasks_of = None
    if bounds is not None:
        tasks_of = {}
        by_tensor = np.argsort(tensor, kind="stable")
        for tid, t in zip(tensor[by_tensor].tolist(), task[by_tensor].tolist()):
            ids = tasks_of.setdefault(tid, [])
            if not ids or ids[-1] != t:
                ids.append(t)
    return Uses(first=first.tolist(), last=last.tolist(), heads=heads,
                last_head=last_head.tolist(), lasts=lasts, tasks_of=tasks_of)


def _runs(values: np.ndarray) -> np.ndarray:
    """Start index of each run of equal neighbours in `values`."""
    change = np.ones(len(values), dtype=bool)
    change[1:] = values[1:] != values[:-1]
    return np.flatnonzero(change)


def _slices(n: int, ids: list[int], starts: np.ndarray, entries: list) -> list[Sequence]:
    """Per id 0..n-1: its run of `entries` (runs begin at `starts`, one per id of `ids` in
    order), () for ids not listed."""
    out: list[Sequence] = [()] * n
    bounds = starts.tolist() + [len(entries)]
    for i, lo, hi in zip(ids, bounds, bounds[1:]):
        out[i] = entries[lo:hi]
    return out


def _unvouched(task: np.ndarray, new: np.ndarray, bounds: tuple[list[int], list[int]]
               ) -> list[int]:
    """Indices i of the accesses (grouped by (tensor, slot), `new` marking each group's first)
    whose task the access before in the group may not order (`loopnest.unvouched`)."""
    tasks, news = task.tolist(), new.tolist()
    return [i for i in range(1, len(tasks))
            if not news[i] and unvouched(tasks[i - 1], tasks[i], *bounds)]
