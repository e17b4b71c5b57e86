"""Several runs in flight of one compiled schedule as one run of its repeated plan
(`l3c.codegen.batch`): staged together, posted once, overlapping on the workers.

`run_batch(compiled, runs)` returns each run's outcome `(value, error)`, or None when the runs
cannot go together (a plan with loops or groups, a shared argument that would be staged, a
repeated plan larger than the arena, an argument the checks refuse): then nothing has run and the
caller runs them one by one. Runs that share `l3c.shared` arrays go together too: the repeated
plan orders them on those arrays. Every run of a batch runs exactly once: when one fails, the runs
that finished keep their results, the failed one gets its error and what is left of the others
runs on (`batch_rest`), so a kernel's effects outside its arrays never happen twice.
"""
from __future__ import annotations

import collections
import os
from typing import Any

import numpy as np

from ..codegen.batch import Batch, batchable, repeat
from ..codegen.dispatcher import build
from ..errors import L3CError
from ..passes.results import map_results
from ..runtime import layout, sharedmem
from ..runtime.pool import current_pool, get_pool
from .args import checked_args
from .batch_rest import finish_failed
from .inplace import in_place
from .inplace import results as inplace_results
from .single import SLICE_NS, prepare
from .staging import Ready, copy_arrays, is_view_of, take_turn

MAX_BATCH_BYTES = 64 << 20       # a repeated plan's arena: never a reason to grow the pool
MAX_BATCH_STEPS = 4096           # its steps, installed in the workers beside the plan's own: a
                                 # long plan gains little from batching and would cost memory there
MAX_BATCH_PLANS = 16             # repeated plans kept per compiled schedule (sizes x layouts)

Outcome = tuple[Any, BaseException | None]


def run_batch(compiled: Any, runs: list[list[Any]], into: list[Any] | None = None,
              shares: bool = True) -> list[Outcome] | None:
    """The outcomes of `runs` (argument lists in parameter order) run as one batch, or None. The
    parameters kernels write are copied back into `runs`, or into `into` (per run, the caller's
    own arguments) when given. `shares=False`: no argument is an `l3c.shared` array (the caller
    looked already)."""
    program = compiled.program
    if program.config.hosts > 1 or getattr(compiled, "timeout", None) is not None:
        return None
    art = compiled.artifacts
    lowered = art.get("lowered")
    if lowered is None:
        lowered, _ = prepare(compiled)
    k = len(runs)
    steps = art.get("batch_steps")
    if steps is None:                         # its steps per run, or 0: not batchable
        plan = lowered.plan
        steps = art["batch_steps"] = sum(len(q) for q in plan.queues) if batchable(plan) else 0
    if not steps or k * steps > MAX_BATCH_STEPS:
        return None
    arrays = _checked(program, runs, art)
    if arrays is None:
        return None
    written = lowered.written_inputs
    if shares:
        bounds = []
        for values in arrays:
            bound = _bound(compiled, lowered, values)
            if bound is False:
                return None
            bounds.append(bound)
        if any(b is not None and b.result_refs for b in bounds[:-1]):
            return None         # a result read from a shared array after later runs wrote it
        key = tuple(None if b is None else b.layout_key for b in bounds)
    else:
        bounds = [None] * k
        key = (None,) * k
    if written:
        for a, bound in zip(arrays if into is None else into, bounds):
            for i in written:
                if not a[i].flags.writeable and (bound is None or i not in bound.params):
                    return None               # each run's own error, from its own run
    batch, bdisp = _batch(compiled, lowered, key, bounds)
    plan = batch.plan
    if plan.arena_bytes > MAX_BATCH_BYTES:
        return None
    found = art.get("batch_ready", {}).get(key)
    if found is not None and found[0] is plan and found[1][0].pool._owner == os.getpid():
        pool = found[1][0].pool
    else:
        pool = get_pool(plan.chips, plan.sub_workers, 1)
    if plan.arena_bytes > pool.arena_capacity:
        return None
    take_turn(pool, program.name, None, 0)
    try:
        parts = _ready(compiled, pool, batch, key, bounds, written)
        for part, values in zip(parts, arrays):
            for i, staged, small in part.stage:
                if small or not is_view_of(values[i], staged):
                    staged[...] = values[i]       # same shape and dtype (checked)
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
        errors: dict[int, BaseException] = {}
        if status != layout.RUN_OK:
            errors = finish_failed(pool, plan, batch.rebinding, k, status, first.out_slot.value,
                                   _memories(bounds))
        out: list[Outcome] = []
        for n, (part, values, bound) in enumerate(zip(parts, arrays, bounds)):
            if n in errors:
                out.append((None, errors[n]))
                continue
            for i, staged in part.write_back:
                (into[n] if into is not None else values)[i][...] = staged
            results = part.results
            if bound is not None and bound.result_refs:
                results = inplace_results(bound, program, lowered, results, values)
            out.append((copy_arrays(results) if results is not None else None, None))
        return out
    finally:
        pool.lock.release()


def _checked(program: Any, runs: list[list[Any]], art: dict) -> list[list[Any]] | None:
    """The runs' arrays (`checked_args` of each), or None if one is refused. Runs that look like
    the compiled signature (the common case: `checked_args`'s own quick test, for all at once)
    are their own arrays (statics are never staged)."""
    expected = art.get("expected_args")
    if expected is not None and art["one_array"]:
        n = len(expected)
        for values in runs:
            if len(values) != n:
                break
            for a, (shape, want) in zip(values, expected):
                if shape is None:
                    if type(a) is not type(want) or a != want:
                        break
                elif type(a) is not np.ndarray or a.shape != shape or a.dtype != want:
                    break
            else:
                continue
            break
        else:
            return runs
    try:
        return [checked_args(program, values, art) for values in runs]
    except L3CError:
        return None


def _bound(compiled: Any, lowered: Any, values: list) -> Any:
    """The run's in-place use of its shared arguments (None: it has none), or False when one of
    them would be staged (copied in and out, which does not follow earlier runs' writes)."""
    bound = in_place(compiled, lowered, values)
    used = bound.params if bound is not None else ()
    for i, a in enumerate(values):
        if (i not in used and isinstance(a, np.ndarray) and a.base is not None
                and sharedmem.owner(a) is not None):
            return False
    return bound


def _memories(bounds: list) -> dict[int, tuple[int, int]]:
    memories: dict[int, tuple[int, int]] = {}
    for bound in bounds:
        if bound is not None:
            memories.update(bound.memories)
    return memories


def _batch(compiled: Any, lowered: Any, key: tuple, bounds: list) -> tuple[Batch, Any]:
    """The repeated plan for runs with these layouts of shared arguments, and its dispatcher,
    cached on `compiled` (the least recently used go, and the pool forgets their plans)."""
    batches = compiled.artifacts.get("batches")
    if batches is None:
        batches = compiled.artifacts["batches"] = collections.OrderedDict()
    found = batches.get(key)
    if found is None:
        batch = repeat(compiled.program, lowered,
                       [None if b is None else b.rebinding for b in bounds])
        found = batches[key] = (batch, build(batch.plan))
        while len(batches) > MAX_BATCH_PLANS:
            old, _ = batches.popitem(last=False)[1]
            pool = current_pool()
            if pool is not None:
                pool.forget(old.plan)
    else:
        batches.move_to_end(key)
    return found


def _ready(compiled: Any, pool: Any, batch: Batch, key: tuple, bounds: list,
           written: tuple[int, ...]) -> list[Ready]:
    """Per instance, what its part of the batch needs (one plan id and slot map for all)."""
    cache = compiled.artifacts.setdefault("batch_ready", {})
    plan = batch.plan
    found = cache.get(key)
    if found is not None and found[0] is plan and found[1][0].pool is pool and found[1][0].valid():
        return found[1]
    plan_id = pool.install(plan)              # may restart the pool: read addresses afterwards
    if batch.rebinding is not None:
        plan_id = pool.install_bound(plan, plan_id, key, batch.rebinding, _memories(bounds))
    slot_map = pool.slot_map(plan)
    parts = []
    for views, results, bound in zip(batch.input_views, batch.results, bounds):
        staging = [None if v is None else pool.array(v) for v in views]
        parts.append(Ready(pool, plan_id, slot_map, staging, map_results(results, pool.array),
                           bound.params if bound is not None else (), written))
    if len(cache) >= MAX_BATCH_PLANS:
        cache.clear()
    cache[key] = (plan, parts)
    return parts
