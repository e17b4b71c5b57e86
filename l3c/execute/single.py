"""Compiled runs: stage inputs into the arena, drive the native dispatcher, copy results out.

`run(compiled, *args)` is what `Compiled.__call__` (and so every `@l3c.jit` call) does:

1. check the arguments against the compiled signature (shapes, dtypes, static values);
2. lower the program and JIT its dispatcher, once per `Compiled` (cached in `compiled.artifacts`);
3. under the pool's lock (one run at a time per pool; other threads wait their turn): install the
   plan (cached by the pool), copy the inputs into their staging views, call the native
   `l3c_start`, then the native `l3c_wait` in slices until it returns something other than
   RUN_PENDING. Both are ctypes calls, which release the GIL; between slices Python notices Ctrl-C;
4. turn a failure status into its exception (`Pool.finish_run` recovers the pool first), write the
   inputs kernels modified back into the caller's arrays, and copy the results into fresh arrays.

No Python runs in the parent per task: the workers resolve their cross-worker waits themselves and
the parent only sleeps on the doorbell.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any

import numpy as np

from ..codegen.dispatcher import Dispatcher, build
from ..codegen.lower import LoweredProgram, lower
from ..runtime import layout, stamps
from ..runtime.pool import current_pool, get_pool
from .args import checked_args
from .staging import SMALL_STAGE, arena_arrays, copy_arrays, is_view_of, turn

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
    arrays = checked_args(program, args, compiled.artifacts)
    lowered, disp = prepare(compiled)
    plan = lowered.plan
    for i in lowered.written_inputs:         # before any worker runs, not at write-back
        if not arrays[i].flags.writeable:
            from .eager import readonly_error
            raise readonly_error(program, i)
    if timeout is None:
        timeout = getattr(compiled, "timeout", None)
    # The deadline covers the whole call: waiting for a pool busy with another thread's run too.
    deadline = 0 if timeout is None else time.monotonic_ns() + int(timeout * 1e9)
    pool = get_pool(plan.chips, plan.sub_workers, max(plan.arena_bytes, 1))
    with turn(pool, program.name, timeout, deadline):
        plan_id = pool.install(plan)         # may restart the pool: read addresses afterwards
        slot_map = pool.slot_map(plan)
        staging, results = arena_arrays(lowered, pool, plan)
        for staged, array in zip(staging, arrays):
            if staged is not None and (staged.nbytes <= SMALL_STAGE
                                       or not is_view_of(array, staged)):
                np.copyto(staged, array)
        ctrl, pids = pool.control_address, pool.pids_address
        out_slot = ctypes.c_int32(-1)
        if _stamps is not None:               # workers record every step: see layout.RUN_PROFILE
            stamps.clear(pool, plan)
            _stamps["t0"] = time.monotonic_ns()
        try:
            disp.start(ctrl, plan_id | (layout.RUN_PROFILE if _stamps is not None else 0),
                       ctypes.addressof(slot_map))
            status = layout.RUN_PENDING
            while status == layout.RUN_PENDING:
                status = disp.wait(ctrl, pids, ctypes.addressof(slot_map), deadline, SLICE_NS,
                                   ctypes.byref(out_slot))
        except BaseException:                 # Ctrl-C, or whatever a signal handler raised:
            pool.recover(grace=0.2)           # abort, let workers stop, replace hung ones
            raise
        if _stamps is not None:
            _stamps["t1"] = time.monotonic_ns()
        pool.finish_run(status, out_slot.value, plan, timeout)
        if _stamps is not None:
            _stamps["steps"] = stamps.read(pool, plan)
        for i in lowered.written_inputs:
            arrays[i][...] = staging[i]
        return copy_arrays(results)


def profile(compiled: Any, *args: Any, timeout: float | None = None) -> tuple[Any, dict]:
    """Run once like `run`, with every step timed in the workers; return `(results, trace)`.

    `results` is exactly what `compiled(*args)` returns; `trace` is a Chrome trace event dict
    (`{"traceEvents": [...], "metadata": {...}}`, see `l3c.profile.build_trace`) that
    `json.dump` writes to a file Perfetto (ui.perfetto.dev) or chrome://tracing opens.
    """
    if compiled.program.config.hosts > 1:     # one timeline of every host: l3c/execute/profiling.py
        from .hosts import run as run_on_hosts
        from .profiling import hosts_trace
        mine: dict = {}
        results = run_on_hosts(compiled, *args, timeout=timeout, _stamps=mine)
        return results, hosts_trace(compiled, mine)
    if compiled.program.loops:
        from ..errors import L3CError
        raise L3CError(f"{compiled.program.name}: profiling a program with loops or conds "
                       "(l3c.range, l3c.while_loop, l3c.cond) is not supported yet; its runs work")
    from ..profile import build_trace
    timed: dict = {}
    results = run(compiled, *args, timeout=timeout, _stamps=timed)
    lowered, _ = prepare(compiled)
    return results, build_trace(compiled.program, lowered.plan, timed["steps"], timed["t0"],
                                timed["t1"])
