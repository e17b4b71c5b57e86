"""The dynamic (eager) runtime: the seed's model on the worker pool, and the reference for compiled runs.

Each kernel call is submitted at run time. A tensor map of byte intervals (per base tensor, for the
calls not yet complete) finds the producers a call must wait for: reads wait for overlapping writes,
writes wait for overlapping reads and writes (conservative: intervals, not exact element sets). A call
whose producers have all completed is ready and goes to an idle worker of its kind (respecting a pin);
a group task goes to distinct chips at once (gang-scheduled, so its members may talk to each other)
and completes when all its members complete. One task is posted per hand-off (CMD_RUN_TASK, arguments
pickled on the worker's pipe), so this runtime pays a Python round trip per task: that is the point of
the comparison with the compiled schedule.

Everything here is plain data (`Call`); the IR is converted by `l3c.codegen.eager`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import L3CError
from . import layout, sync
from .plan import StepArg
from .pool import Pool

WINDOW = 64          # calls submitted ahead of the oldest incomplete one (bounds the tensor map)


@dataclass(frozen=True)
class Call:
    """One kernel call as the eager runtime sees it."""

    task: int
    kernel: str                                    # registry key / import path
    args: tuple[StepArg, ...]                      # View for tensors, scalars by value
    worker: str                                    # "chip" | "sub"
    accesses: tuple[tuple[int, int, int, bool], ...]   # (tensor key, byte lo, byte hi (excl.), writes)
    pin: int | None = None                         # chip index (or sub worker index for "sub")
    group: int | None = None                       # calls sharing a group id form one group task
    group_rank: int = 0
    group_size: int = 1
    loc: str = ""


class _Unit:
    """A single call, or all members of a group task."""

    __slots__ = ("index", "calls", "deps", "dependents", "running", "done")

    def __init__(self, index: int, calls: list[Call]) -> None:
        self.index, self.calls = index, calls
        self.deps: set[int] = set()
        self.dependents: list[int] = []
        self.running = 0
        self.done = False


def _units(calls: list[Call]) -> list[_Unit]:
    units, by_group = [], {}
    for call in calls:
        if call.group is not None and call.group in by_group:
            by_group[call.group].calls.append(call)
            continue
        unit = _Unit(len(units), [call])
        units.append(unit)
        if call.group is not None:
            by_group[call.group] = unit
    return units


def _check(units: list[_Unit], chips: int, sub_workers: int) -> None:
    for unit in units:
        for call in unit.calls:
            limit = chips if call.worker == "chip" else sub_workers
            if call.pin is not None and not 0 <= call.pin < limit:
                raise L3CError(f"task {call.task} ({call.kernel}, {call.loc}) is pinned to {call.worker} "
                               f"{call.pin} but the pool has {limit}")
            if limit == 0:
                raise L3CError(f"task {call.task} ({call.kernel}, {call.loc}) needs a {call.worker} "
                               f"worker but there are none")
        if len(unit.calls) > 1 and (len(unit.calls) > chips or unit.calls[0].worker != "chip"):
            raise L3CError(f"group task of {len(unit.calls)} {unit.calls[0].kernel} calls needs as many "
                           f"chips, the pool has {chips}")


def run_calls(pool: Pool, calls: list[Call], chips: int, sub_workers: int,
              timeout: float | None = None) -> None:
    """Run `calls` (in program order) on `pool` with runtime dependency tracking. The caller holds
    `pool.lock` and has staged the inputs. Raises KernelError / WorkerCrashed / Timeout like a
    compiled run, after the pool recovered."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pool.ensure_kernels({c.kernel for c in calls})
    pool.replace_dead()
    units = _units(calls)
    _check(units, chips, sub_workers)
    by_task = {c.task: c for c in calls}

    def describe(task: int) -> tuple[str, str]:
        c = by_task.get(task)
        return (c.kernel, c.loc) if c else ("<unknown>", "")

    tensor_map: dict[int, list[tuple[int, int, bool, int]]] = {}   # key -> [(lo, hi, writes, unit)]
    ready: list[int] = []
    running: dict[int, tuple[int, Call]] = {}    # pool slot -> (unit index, call)
    chip_slots = list(range(chips))
    sub_slots = [pool.chips + j for j in range(sub_workers)]
    idle = set(chip_slots) | set(sub_slots)
    submitted = completed = 0
    status, slots = layout.RUN_OK, []

    def submit(unit: _Unit) -> None:
        for call in unit.calls:
            for key, lo, hi, writes in call.accesses:
                entries = tensor_map.setdefault(key, [])
                for elo, ehi, ewrites, owner in entries:
                    if owner != unit.index and (writes or ewrites) and lo < ehi and elo < hi:
                        if owner not in unit.deps:
                            unit.deps.add(owner)
                            units[owner].dependents.append(unit.index)
                if writes:
                    # Entries of other units inside this write are now ordered before it, and any
                    # later access that overlaps them overlaps this write too: drop them, so a chain
                    # of updates keeps one entry instead of a window's worth.
                    entries[:] = [e for e in entries
                                  if e[3] == unit.index or not (lo <= e[0] and e[1] <= hi)]
                entries.append((lo, hi, writes, unit.index))
        if not unit.deps:
            ready.append(unit.index)

    def complete(unit: _Unit) -> None:
        unit.done = True
        for call in unit.calls:
            for key, *_ in call.accesses:
                entries = tensor_map.get(key)
                if entries:
                    tensor_map[key] = [e for e in entries if e[3] != unit.index]
        for d in unit.dependents:
            other = units[d]
            other.deps.discard(unit.index)
            if not other.deps:
                ready.append(d)

    def placement(unit: _Unit) -> list[tuple[Call, int]] | None:
        """Idle slots for every member of the unit, or None if they are not all free now."""
        free = set(idle)
        chosen = []
        for call in sorted(unit.calls, key=lambda c: c.pin is None):
            pool_slots = chip_slots if call.worker == "chip" else sub_slots
            if call.pin is not None:
                slot = pool_slots[call.pin]
                if slot not in free:
                    return None
            else:
                slot = next((s for s in pool_slots if s in free), None)
                if slot is None:
                    return None
            free.discard(slot)
            chosen.append((call, slot))
        return chosen

    def dispatch() -> None:
        ready.sort()
        for index in list(ready):
            unit = units[index]
            placed = placement(unit)
            if placed is None:
                continue
            ready.remove(index)
            for call, slot in placed:
                idle.discard(slot)
                running[slot] = (index, call)
                unit.running += 1
                pool.send(slot, (call.task, call.kernel, call.args, call.group_rank, call.group_size),
                          layout.CMD_RUN_TASK, call.task & 0xFFFFFFFF, deadline)
            if not idle:
                return

    try:
        while completed < len(units):
            while submitted < len(units) and submitted - completed < WINDOW:
                submit(units[submitted])
                submitted += 1
            dispatch()
            if not running:
                raise L3CError("eager runtime: no task can run (a dependency cycle?)")
            status, slots = pool.wait(sorted(running), deadline, any_done=True, spin=sync.RUN_SPIN)
            if status != layout.RUN_OK:
                break
            for slot in slots:
                index, _ = running.pop(slot)
                idle.add(slot)
                unit = units[index]
                unit.running -= 1
                if unit.running == 0:             # every member of a group has finished
                    completed += 1
                    complete(unit)
    except BaseException:       # Ctrl-C, or any exception a signal handler raised between slices:
        pool.recover(grace=0.2)  # workers may still run this call's tasks; stop them before the next
        raise
    if status != layout.RUN_OK:
        pool.finish(status, slots, describe, timeout)
