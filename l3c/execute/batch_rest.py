"""A batch of runs in flight in which a run failed: the failed run gets its error, every other run
still runs, and no step runs twice.

When a kernel fails the workers stop at their next step (the failing worker raises the abort).
Once every worker has stopped, its completion counter says exactly which of its steps ran: the
runs whose steps all ran are finished; the runs with a failing step (a kernel that raised, a
worker that died in it) failed, and their steps not yet run never will, as in a failed call;
what is left of the other runs runs on as a plan of its own (`codegen.batch.select`), which may
fail in turn. So a kernel's effects outside its arrays happen once, as they would one run at a
time, and a run never starts over on arrays an earlier attempt already changed.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any

from ..codegen.batch import select
from ..codegen.dispatcher import build
from ..errors import L3CError
from ..runtime import layout, sync
from ..runtime.plan import Plan

SETTLE_WAIT = 30.0               # workers finishing the kernel in hand after the abort: bounded
SLICE_NS = 50_000_000


def finish_failed(pool: Any, plan: Plan, rebinding: Any, k: int, status: int, out_slot: int,
                  memories: dict[int, tuple[int, int]]) -> dict[int, BaseException]:
    """After `plan` (`k` instances) ended with `status` (`out_slot`: the pool slot involved): run
    what is left of the runs that did not fail; {instance: error} of those that did. The pool's
    lock is held."""
    lengths = [len(q) // k for q in plan.queues]     # one instance's steps per slot
    current, bound = plan, rebinding
    original = [list(range(len(q))) for q in plan.queues]   # current step -> batch plan step
    errors: dict[int, BaseException] = {}
    while True:
        done, stopped = _settle(pool, current)
        failing = {}                          # pool slot -> (the instance it failed in, how)
        for s, ps, how in stopped:
            if done[s] < len(current.queues[s]):
                failing[ps] = (original[s][done[s]] // lengths[s], how)
        first = _error(pool, plan, status, out_slot)   # recovers the pool
        if not failing:                                # no step to blame: nothing more runs
            for i in _unfinished(original, done, lengths, k):
                errors.setdefault(i, first)
            break
        for ps, (instance, how) in failing.items():
            if ps == out_slot:
                error = first
            elif how is None:
                error = L3CError(f"{pool.describe_slot(ps)} did not stop within {SETTLE_WAIT} s "
                                 "after another run of its batch failed; it was replaced")
            else:
                error = _error(pool, plan, how, ps)
            errors.setdefault(instance, error)
        keep = [[p for p in range(done[s], len(q)) if original[s][p] // lengths[s] not in errors]
                for s, q in enumerate(current.queues)]
        if not any(keep):
            break
        if current is not plan:
            pool.forget(current)
        current, bound = select(current, keep, bound)
        original = [[original[s][p] for p in kept] for s, kept in enumerate(keep)]
        try:
            status, out_slot = _run(pool, current, bound, memories)
        except L3CError as exc:            # the rest could not be installed: those runs fail
            for s, kept in enumerate(original):
                for p in kept:
                    errors.setdefault(p // lengths[s], exc)
            break
        if status == layout.RUN_OK:
            break
    if current is not plan:
        pool.forget(current)
    return errors


def _settle(pool: Any, plan: Plan) -> tuple[list[int], list[tuple[int, int, int | None]]]:
    """Stop every worker of the run (abort) and wait until each has; (steps each plan slot
    completed, [(plan slot, pool slot, RUN_FAILED | RUN_CRASHED | None: did not stop) of the
    workers that failed, died or did not stop])."""
    ctl = pool.control_address
    slots = [(s, pool.pool_slot(plan, s)) for s in plan.active]
    sync.store_u32(ctl + layout.H_ABORT, 1)
    for _, ps in slots:
        sync.futex_wake(ctl + layout.slot_offset(ps) + layout.S_DONE, sync.WAKE_ALL)
    deadline = time.monotonic() + SETTLE_WAIT
    while True:
        pending = [ps for _, ps in slots
                   if pool.state(ps) == layout.ST_BUSY and pool._alive(ps)]
        if not pending or time.monotonic() >= deadline:
            break
        pool.wait(pending, min(deadline, time.monotonic() + 0.05), any_done=True)
    done = [0] * plan.slots
    stopped = []
    for s, ps in slots:
        done[s] = pool._word(ps, layout.S_DONE)
        state = pool.state(ps)
        if state == layout.ST_FAILED:
            stopped.append((s, ps, layout.RUN_FAILED))
        elif not pool._alive(ps):
            stopped.append((s, ps, layout.RUN_CRASHED))
        elif state == layout.ST_BUSY:
            stopped.append((s, ps, None))
    return done, stopped


def _error(pool: Any, plan: Plan, status: int, ps: int) -> BaseException:
    """The exception a run ending with `status` at pool slot `ps` raises (the pool recovers)."""
    try:
        pool.finish_run(status, ps, plan, None)
    except L3CError as exc:
        return exc
    return L3CError(f"a batch of runs ended with status {status} (slot {ps})")


def _unfinished(original: list[list[int]], done: list[int], lengths: list[int], k: int) -> set:
    return {original[s][p] // lengths[s] for s in range(len(original))
            for p in range(done[s], len(original[s]))} & set(range(k))


def _run(pool: Any, plan: Plan, rebinding: Any, memories: dict[int, tuple[int, int]]
         ) -> tuple[int, int]:
    """Run `plan` (the rest of a batch) on the arena as it stands; (status, pool slot)."""
    plan_id = pool.install(plan)
    if rebinding is not None:
        plan_id = pool.install_bound(plan, plan_id, ("rest", id(plan)), rebinding, memories)
    disp = build(plan)
    slot_map = pool.slot_map(plan)
    address = ctypes.addressof(slot_map)
    out = ctypes.c_int32(-1)
    try:
        disp.start(pool.control_address, plan_id, address)
        status = layout.RUN_PENDING
        while status == layout.RUN_PENDING:
            status = disp.wait(pool.control_address, pool.pids_address, address, 0, SLICE_NS,
                               ctypes.byref(out))
    except BaseException:
        pool.recover(grace=0.2)
        raise
    return status, out.value
