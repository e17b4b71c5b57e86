"""Several runs in flight of one compiled schedule as one run of its repeated plan
(`l3c.codegen.batch`): staged together, posted once, overlapping on the workers.

`run_batch(compiled, runs)` returns each run's results, or None when the runs cannot go together
(arguments used in place, a plan with groups, a repeated plan larger than the arena, a failure):
the caller then runs them one by one, which gives every run its own error. Their inputs were
captured when they were submitted and nothing is written back before the whole batch succeeded,
so running them again one by one is a clean start (a kernel's effects outside its arrays, a
print, happen again).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..codegen.batch import Batch, batchable, repeat
from ..codegen.dispatcher import build
from ..errors import L3CError
from ..ir import map_results
from ..runtime import layout
from ..runtime.pool import get_pool
from .args import checked_args
from .single import SLICE_NS, prepare
from .staging import Ready, copy_arrays, is_view_of, take_turn

MAX_BATCH_BYTES = 64 << 20       # a repeated plan's arena: never a reason to grow the pool
MAX_BATCH_STEPS = 4096           # its steps, installed in the workers beside the plan's own: a
                                 # long plan gains little from batching and would cost memory there


def run_batch(compiled: Any, runs: list[list[Any]], into: list[Any] | None = None
              ) -> list[Any] | None:
    """The results of `runs` (argument lists in parameter order, no `l3c.shared` array among
    them: those order runs) run as one batch, or None. The parameters kernels write are copied
    back into `runs`, or into `into` (per run, the caller's own arguments) when given."""
    program = compiled.program
    if program.config.hosts > 1 or getattr(compiled, "timeout", None) is not None:
        return None
    lowered, disp = prepare(compiled)
    k = len(runs)
    if (not batchable(lowered.plan)
            or k * sum(len(q) for q in lowered.plan.queues) > MAX_BATCH_STEPS):
        return None
    art = compiled.artifacts
    try:
        arrays = [checked_args(program, tuple(values), art) for values in runs]
    except L3CError:
        return None
    for a in arrays if into is None else into:   # no shared array among them (see inflight)
        if any(not a[i].flags.writeable for i in lowered.written_inputs):
            return None                       # each run's own error, from its own run
    batches = art.setdefault("batches", {})
    found = batches.get(k)
    if found is None:
        batch = repeat(lowered, k)
        if batch.plan.arena_bytes > MAX_BATCH_BYTES:
            return None
        found = batches[k] = (batch, build(batch.plan))
    batch, bdisp = found
    plan = batch.plan
    pool = get_pool(plan.chips, plan.sub_workers, 1)
    if plan.arena_bytes > pool.arena_capacity:
        return None
    take_turn(pool, program.name, None, 0)
    try:
        parts = _ready(compiled, pool, batch, lowered.written_inputs)
        for part, values in zip(parts, arrays):
            for i, staged, small in part.stage:
                if small or not is_view_of(values[i], staged):
                    np.copyto(staged, values[i])
        first = parts[0]
        try:
            bdisp.start(pool.control_address, first.plan_id, first.slot_map_address)
            status = layout.RUN_PENDING
            while status == layout.RUN_PENDING:
                status = bdisp.wait(pool.control_address, pool.pids_address,
                                    first.slot_map_address, 0, SLICE_NS, first.out_slot_ref)
        except BaseException:
            pool.recover(grace=0.2)
            raise
        if status != layout.RUN_OK:
            try:
                pool.finish_run(status, first.out_slot.value, plan, None)
            except L3CError:
                pass                          # each run again on its own: its own error
            return None
        out = []
        for part, values in zip(parts, into if into is not None else arrays):
            for i, staged in part.write_back:
                np.copyto(values[i], staged)
            out.append(copy_arrays(part.results) if part.results is not None else None)
        return out
    finally:
        pool.lock.release()


def _ready(compiled: Any, pool: Any, batch: Batch, written: tuple[int, ...]) -> list[Ready]:
    """Per instance, what its part of the batch needs (one plan id and slot map for all)."""
    cache = compiled.artifacts.setdefault("batch_ready", {})
    parts = cache.get(len(batch.input_views))
    if parts is not None and parts[0].pool is pool and parts[0].valid():
        return parts
    plan = batch.plan
    plan_id = pool.install(plan)
    slot_map = pool.slot_map(plan)
    parts = []
    for views, results in zip(batch.input_views, batch.results):
        staging = [None if v is None else pool.array(v) for v in views]
        parts.append(Ready(pool, plan_id, slot_map, staging, map_results(results, pool.array),
                           (), written))
    cache[len(batch.input_views)] = parts
    return parts
