"""Compiled runs: stage inputs into the arena, drive the native dispatcher, copy results out.

`run(compiled, *args)` is what `Compiled.__call__` (and so every `@l3c.jit` call) does:

1. check the arguments against the compiled signature (shapes, dtypes, static values);
2. lower the program and JIT its dispatcher, once per `Compiled` (cached in `compiled.artifacts`);
3. under the pool's lock (one run at a time per pool; other threads wait their turn): install the
   plan (cached by the pool; for `l3c.shared` arguments, its variant whose views point into their
   memory: `inplace.py`), copy the other inputs into their staging views, call the native
   `l3c_start`, then the native `l3c_wait` in slices until it returns something other than
   RUN_PENDING. Both are ctypes calls, which release the GIL; between slices Python notices Ctrl-C;
4. turn a failure status into its exception (`Pool.finish_run` recovers the pool first), write the
   inputs kernels modified back into the caller's arrays, and copy the results into fresh arrays.

No Python runs in the parent per task: the workers resolve their cross-worker waits themselves and
the parent only sleeps on the doorbell.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from ..codegen.dispatcher import Dispatcher, build
from ..codegen.lower import LoweredProgram, lower
from ..runtime import layout, stamps
from ..runtime.pool import current_pool, get_pool
from .args import checked_args
from .inplace import in_place
from .inplace import results as inplace_results
from .staging import Ready, arena_arrays, copy_arrays, is_view_of, take_turn

SLICE_NS = 50_000_000      # the native wait returns to Python this often (Ctrl-C, bounded waits)


def prepare(compiled: Any) -> tuple[LoweredProgram, Dispatcher]:
    """The lowered plan and the JIT-compiled dispatcher of `compiled`, built once and cached."""
    art = compiled.artifacts
    lowered = art.get("lowered")
    if lowered is None:
        lowered = art["lowered"] = lower(compiled.program)
    disp = art.get("dispatcher")
    if disp is None:
        disp = art["dispatcher"] = build(lowered.plan)
    return lowered, disp


def release(compiled: Any) -> None:
    """`compiled` was evicted from a jit cache: the pool forgets its plan, and dropping the
    cached artifacts lets its native dispatcher go with the last reference to it."""
    lowered = compiled.artifacts.get("lowered")
    pool = current_pool()
    if lowered is not None and pool is not None:
        pool.forget(lowered.plan)
        for batch, _ in compiled.artifacts.get("batches", {}).values():
            pool.forget(batch.plan)


def run(compiled: Any, *args: Any, timeout: float | None = None,
        _stamps: dict | None = None) -> Any:
    """Run a compiled schedule once with `args` (one per parameter of the jitted function).

    `timeout` (seconds) defaults to `compiled.timeout` (the jit's `timeout=`); None: no deadline,
    though the native wait still returns every SLICE_NS so that Ctrl-C and dead workers are seen.
    `_stamps` (used by `profile`): a dict that receives the run's step timestamps (see `profile`).
    """
    program = compiled.program
    if program.config.hosts > 1:             # one rank per host: l3c/execute/hosts.py
        from .hosts import run as run_on_hosts
        return run_on_hosts(compiled, *args, timeout=timeout)
    art = compiled.artifacts
    arrays = checked_args(program, args, art)
    lowered, disp = art.get("lowered"), art.get("dispatcher")
    if lowered is None or disp is None:
        lowered, disp = prepare(compiled)
    plan = lowered.plan
    bound = in_place(compiled, lowered, arrays)      # l3c.shared arguments: not staged
    for i in lowered.written_inputs:         # before any worker runs, not at write-back
        if not arrays[i].flags.writeable:
            from .eager import readonly_error
            raise readonly_error(program, i)
    if timeout is None:
        timeout = getattr(compiled, "timeout", None)
    # The deadline covers the whole call: waiting for a pool busy with another thread's run too.
    deadline = 0 if timeout is None else time.monotonic_ns() + int(timeout * 1e9)
    layout_key = None if bound is None else bound.layout_key
    ready = art.get("ready", {}).get(layout_key)
    if ready is not None and ready.pool._owner == os.getpid():
        pool = ready.pool
    else:
        pool = get_pool(plan.chips, plan.sub_workers, max(plan.arena_bytes, 1))
    take_turn(pool, program.name, timeout, deadline)
    try:
        if ready is None or ready.pool is not pool or not ready.valid():
            ready = _make_ready(compiled, pool, lowered, bound)   # may restart the pool
        for i, staged, small in ready.stage:
            array = arrays[i]
            if small or not is_view_of(array, staged):
                staged[...] = array           # cheaper than np.copyto; same shape and dtype (checked)
        ctrl, pids, out_slot = pool.control_address, pool.pids_address, ready.out_slot
        plan_id = ready.plan_id
        if _stamps is not None:               # workers record every step: see layout.RUN_PROFILE
            stamps.clear(pool, plan, _stamps.get("capacity", stamps.EVENTS_MAX))
            _stamps["t0"] = time.monotonic_ns()
            plan_id |= layout.RUN_PROFILE
        try:
            disp.start(ctrl, plan_id, ready.slot_map_address)
            status = layout.RUN_PENDING
            while status == layout.RUN_PENDING:
                status = disp.wait(ctrl, pids, ready.slot_map_address, deadline, SLICE_NS,
                                   ready.out_slot_ref)
        except BaseException:                 # Ctrl-C, or whatever a signal handler raised:
            pool.recover(grace=0.2)           # abort, let workers stop, replace hung ones
            raise
        if _stamps is not None:
            _stamps["t1"] = time.monotonic_ns()
        if status != layout.RUN_OK:
            pool.finish_run(status, out_slot.value, plan, timeout)
        if _stamps is not None:
            _stamps["steps"] = stamps.read(pool, plan)
        for i, staged in ready.write_back:
            arrays[i][...] = staged
        results = ready.results
        if bound is not None and bound.result_refs:
            results = inplace_results(bound, program, lowered, results, arrays)
        return copy_arrays(results) if results is not None else None
    finally:
        pool.lock.release()


def _make_ready(compiled: Any, pool: Any, lowered: LoweredProgram, bound: Any) -> Ready:
    """Install the plan (and its bound variant) and gather what its runs need (the lock is
    held); cached on `compiled` until the pool's workers change."""
    plan = lowered.plan
    plan_id = pool.install(plan)              # may restart the pool: read addresses afterwards
    if bound is not None:
        plan_id = pool.install_bound(plan, plan_id, bound.layout_key, bound.rebinding,
                                     bound.memories)
    staging, results = arena_arrays(lowered, pool, plan)
    skip = bound.params if bound is not None else ()
    ready = Ready(pool, plan_id, pool.slot_map(plan), staging, results, skip,
                  lowered.written_inputs)
    cache = compiled.artifacts.setdefault("ready", {})
    if len(cache) >= 16:
        cache.clear()
    cache[None if bound is None else bound.layout_key] = ready
    return ready


def profile(compiled: Any, *args: Any, timeout: float | None = None,
            capacity: int | None = None) -> tuple[Any, dict]:
    """Run once like `run`, with every step timed in the workers; return `(results, trace)`.

    `results` is exactly what `compiled(*args)` returns; `trace` is a Chrome trace event dict
    (`{"traceEvents": [...], "metadata": {...}}`, see `l3c.profile.build_trace`) that
    `json.dump` writes to a file Perfetto (ui.perfetto.dev) or chrome://tracing opens.
    A program with loops gets an event per executed task instance with its iteration numbers
    (`l3c.profile_loops`); each worker keeps its first `capacity` step instances (default and
    maximum `runtime.stamps.EVENTS_MAX`), the metadata counts the dropped ones.
    """
    if compiled.program.config.hosts > 1:     # one timeline of every host: l3c/execute/profiling.py
        from .hosts import run as run_on_hosts
        from .profiling import hosts_trace
        mine: dict = {}
        results = run_on_hosts(compiled, *args, timeout=timeout, _stamps=mine)
        return results, hosts_trace(compiled, mine)
    from ..profile import build_trace
    timed: dict = {} if capacity is None else {"capacity": capacity}
    results = run(compiled, *args, timeout=timeout, _stamps=timed)
    lowered, _ = prepare(compiled)
    if lowered.plan.loops:
        from ..profile_loops import build_loop_trace
        return results, build_loop_trace(compiled.program, lowered.plan, timed["steps"],
                                          timed["t0"], timed["t1"])
    return results, build_trace(compiled.program, lowered.plan, timed["steps"], timed["t0"],
                                timed["t1"])
