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

import contextlib
import ctypes
import time
from typing import Any, Iterator

import numpy as np

from .codegen.dispatcher import Dispatcher, build
from .codegen.lower import LoweredProgram, lower
from .errors import ScheduleError, Timeout
from .ir import Program
from .trace import input_aliases
from .runtime import layout
from .runtime.pool import current_pool, get_pool

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


def describe_signature(program: Program) -> str:
    parts = []
    for p in program.params:
        if p.tensor is None:
            parts.append(f"{p.name}={p.static!r}")
        else:
            info = program.tensors[p.tensor]
            parts.append(f"{p.name}: {info.dtype}{list(info.shape)}")
    return "(" + ", ".join(parts) + ")"


def _describe_given(args: tuple) -> str:
    parts = []
    for a in args:
        if isinstance(a, np.ndarray):
            parts.append(f"{a.dtype}{list(a.shape)}")
        else:
            parts.append(repr(a) if len(repr(a)) < 40 else type(a).__name__)
    return "(" + ", ".join(parts) + ")"


def bind_args(program: Program, args: tuple, kwargs: dict, defaults: dict) -> tuple:
    """The arguments in parameter order, bound as `step.lower(*args, **kwargs)` bound them: keywords
    by name, then `defaults` (the jitted function's; empty for a loaded schedule) for parameters not
    given. What stays wrong (a missing array, a static that differs) is left for `check_args`."""
    params = program.params
    names = {p.name for p in params}
    unknown = [k for k in kwargs if k not in names]
    given = [p.name for p in params[:len(args)] if p.name in kwargs]
    if unknown or given:
        why = (f"got an unexpected keyword argument {unknown[0]!r}" if unknown
               else f"got multiple values for argument {given[0]!r}")
        raise ScheduleError(f"{program.name}: {why}\n  expected {describe_signature(program)}\n"
                            f"  given    {_describe_given(args)} {sorted(kwargs)}")
    bound = list(args)
    for p in params[len(args):]:
        if p.name in kwargs:
            bound.append(kwargs[p.name])
        elif p.name in defaults:
            bound.append(defaults[p.name])
        else:                                              # missing: check_args says so
            break
    return tuple(bound)


def check_args(program: Program, args: tuple) -> list[np.ndarray | None]:
    """The tensor arguments as arrays (None for statics); ScheduleError on any mismatch."""
    def mismatch(why: str) -> ScheduleError:
        return ScheduleError(f"{program.name}: {why}\n  expected {describe_signature(program)}\n"
                             f"  given    {_describe_given(args)}")

    if len(args) != len(program.params):
        raise mismatch(f"takes {len(program.params)} arguments, {len(args)} given")
    arrays: list[np.ndarray | None] = []
    for p, a in zip(program.params, args):
        if p.tensor is None:
            if type(a) is not type(p.static) or a != p.static:
                if not (isinstance(a, float) and isinstance(p.static, float)
                        and np.isnan(a) and np.isnan(p.static)):
                    raise mismatch(f"static argument {p.name!r} was {p.static!r} when compiled, "
                                   f"{a!r} given")
            arrays.append(None)
            continue
        info = program.tensors[p.tensor]
        if not isinstance(a, np.ndarray):
            raise mismatch(f"argument {p.name!r} must be a numpy array {info.dtype}"
                           f"{list(info.shape)}, got {type(a).__name__}")
        if a.shape != tuple(info.shape) or a.dtype.newbyteorder("=") != np.dtype(info.dtype):
            raise mismatch(f"argument {p.name!r} must be {info.dtype}{list(info.shape)}, got "
                           f"{a.dtype}{list(a.shape)}")
        arrays.append(a)
    aliases, overlap = input_aliases(arrays)
    if overlap is not None:
        raise mismatch(f"arguments {program.params[overlap[0]].name!r} and "
                       f"{program.params[overlap[1]].name!r} overlap in memory without being the "
                       "same array")
    first_param = {}
    for i, p in enumerate(program.params):
        if p.tensor is None:
            continue
        want = first_param.setdefault(p.tensor, i)
        if aliases[i] != want:
            a, b = program.params[want].name, p.name
            raise mismatch(f"arguments {a!r} and {b!r} must be the same array (as when compiled)"
                           if want != i else
                           f"argument {p.name!r} must be its own array, not the same as "
                           f"{program.params[aliases[i]].name!r}")
    return arrays


def _result_arrays(tree: Any, pool: Any) -> Any:
    """The results tree with each View replaced by its arena array (built once per installation)."""
    if tree is None:
        return None
    if not isinstance(tree, tuple) or tree[0] not in ("tuple", "list", "dict"):
        return pool.array(tree)
    kind, items = tree
    if kind == "dict":
        return (kind, [(key, _result_arrays(sub, pool)) for key, sub in items])
    return (kind, [_result_arrays(sub, pool) for sub in items])


def _copy_arrays(tree: Any) -> Any:
    """Fresh arrays (and the tuple/list/dict around them) from a `_result_arrays` tree."""
    if tree is None:
        return None
    if isinstance(tree, np.ndarray):
        return np.array(tree, copy=True, order="C")
    kind, items = tree
    if kind == "dict":
        return {key: _copy_arrays(sub) for key, sub in items}
    out = [_copy_arrays(sub) for sub in items]
    return tuple(out) if kind == "tuple" else out


SMALL_STAGE = 1 << 16      # inputs up to this many bytes are copied without checking _is_view_of


def _is_view_of(array: np.ndarray, staged: np.ndarray) -> bool:
    """Is `array` exactly the staging view (an input that already lives in the arena)? Then
    staging it is a copy onto itself, skipped (for small inputs the check costs more than the
    copy, which is harmless onto itself)."""
    return (array.__array_interface__["data"][0] == staged.__array_interface__["data"][0]
            and array.strides == staged.strides and array.dtype == staged.dtype)


def _checked(program: Program, args: tuple, art: dict) -> list[np.ndarray | None]:
    """`check_args`, answered by comparisons only when the call looks like the compiled signature
    (the statics equal, each array of the right type, shape and dtype, at most one array so that
    nothing can alias); anything else goes through `check_args` and its messages."""
    expected = art.get("expected_args")
    if expected is None:
        expected = art["expected_args"] = [
            (None, p.static) if p.tensor is None else
            (tuple(program.tensors[p.tensor].shape), np.dtype(program.tensors[p.tensor].dtype))
            for p in program.params]
        art["one_array"] = sum(p.tensor is not None for p in program.params) <= 1
    if art["one_array"] and len(args) == len(expected):
        arrays: list[np.ndarray | None] = []
        for a, (shape, want) in zip(args, expected):
            if shape is None:
                if type(a) is not type(want) or a != want:
                    break
                arrays.append(None)
            elif type(a) is np.ndarray and a.shape == shape and a.dtype == want:
                arrays.append(a)
            else:
                break
        else:
            return arrays
    return check_args(program, args)


def _arena_arrays(lowered: LoweredProgram, pool: Any, plan: Any) -> tuple[list, Any]:
    """(input staging arrays, results tree of arrays) in the arena, cached with the installation."""
    cache = pool.plan_cache(plan)
    arrays = cache.get("io")
    if arrays is None:
        inputs = [None if v is None else pool.array(v) for v in lowered.input_views]
        arrays = cache["io"] = (inputs, _result_arrays(lowered.results, pool))
    return arrays


def _busy(name: str, timeout: float | None) -> Timeout:
    return Timeout(f"{name}: the workers were busy with another thread's run for the whole "
                   f"timeout ({timeout} s); this run did not start")


@contextlib.contextmanager
def _turn(pool: Any, name: str, timeout: float | None) -> Iterator[None]:
    """The pool's lock (one run at a time), waited for at most `timeout` seconds."""
    if not pool.lock.acquire(timeout=-1 if timeout is None else timeout):
        raise _busy(name, timeout)
    try:
        yield
    finally:
        pool.lock.release()


def run(compiled: Any, *args: Any, timeout: float | None = None,
        _stamps: dict | None = None) -> Any:
    """Run a compiled schedule once with `args` (one per parameter of the jitted function).

    `timeout` (seconds) defaults to `compiled.timeout` (the jit's `timeout=`); None: no deadline,
    though the native wait still returns every SLICE_NS so that Ctrl-C and dead workers are seen.
    `_stamps` (used by `profile`): a dict that receives the run's step timestamps (see `profile`).
    """
    program = compiled.program
    if program.config.hosts > 1:             # one rank per host: l3c/dist/run.py
        from .dist.run import run as run_on_hosts
        return run_on_hosts(compiled, *args, timeout=timeout)
    arrays = _checked(program, args, compiled.artifacts)
    lowered, disp = prepare(compiled)
    plan = lowered.plan
    for i in lowered.written_inputs:         # before any worker runs, not at write-back
        if not arrays[i].flags.writeable:
            from .codegen.eager import readonly_error
            raise readonly_error(program, i)
    if timeout is None:
        timeout = getattr(compiled, "timeout", None)
    # The deadline covers the whole call: waiting for a pool busy with another thread's run too.
    deadline = 0 if timeout is None else time.monotonic_ns() + int(timeout * 1e9)
    pool = get_pool(plan.chips, plan.sub_workers, max(plan.arena_bytes, 1))
    with _turn(pool, program.name, timeout):
        if deadline and time.monotonic_ns() >= deadline:
            raise _busy(program.name, timeout)
        plan_id = pool.install(plan)         # may restart the pool: read addresses afterwards
        slot_map = pool.slot_map(plan)
        staging, results = _arena_arrays(lowered, pool, plan)
        for staged, array in zip(staging, arrays):
            if staged is not None and (staged.nbytes <= SMALL_STAGE
                                       or not _is_view_of(array, staged)):
                np.copyto(staged, array)
        ctrl, pids = pool.control_address, pool.pids_address
        out_slot = ctypes.c_int32(-1)
        if _stamps is not None:               # workers record every step: see layout.RUN_PROFILE
            _clear_stamps(pool, plan)
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
            _stamps["steps"] = _read_stamps(pool, plan)
        for i in lowered.written_inputs:
            arrays[i][...] = staging[i]
        return _copy_arrays(results)


# ---- profiling (`compiled.profile`, `l3c profile`) --------------------------------------------
def _stamp_area(pool: Any, plan: Any, s: int) -> np.ndarray:
    """The profile area of the plan's slot `s` in the control block, as u64 (start, end) pairs."""
    n = len(plan.queues[s])
    address = pool.control_address + layout.profile_offset(pool.slots, pool.pool_slot(plan, s))
    return np.ctypeslib.as_array((ctypes.c_uint64 * (2 * n)).from_address(address)).reshape(n, 2)


def _clear_stamps(pool: Any, plan: Any) -> None:
    for s, queue in enumerate(plan.queues):
        if len(queue) > layout.PROFILE_STEPS:
            raise ScheduleError(f"cannot profile: worker slot {s} runs {len(queue)} steps, more than "
                                f"the {layout.PROFILE_STEPS} a profile records per worker")
        if queue:
            _stamp_area(pool, plan, s)[...] = 0


def _read_stamps(pool: Any, plan: Any) -> list[np.ndarray]:
    return [np.array(_stamp_area(pool, plan, s), copy=True) if q else np.zeros((0, 2), np.uint64)
            for s, q in enumerate(plan.queues)]


def profile(compiled: Any, *args: Any, timeout: float | None = None) -> tuple[Any, dict]:
    """Run once like `run`, with every step timed in the workers; return `(results, trace)`.

    `results` is exactly what `compiled(*args)` returns; `trace` is a Chrome trace event dict
    (`{"traceEvents": [...], "metadata": {...}}`, see `l3c.profile.build_trace`) that
    `json.dump` writes to a file Perfetto (ui.perfetto.dev) or chrome://tracing opens.
    """
    if compiled.program.config.hosts > 1:     # one timeline of every host: l3c/dist/profiling.py
        from .dist.profiling import hosts_trace
        from .dist.run import run as run_on_hosts
        mine: dict = {}
        results = run_on_hosts(compiled, *args, timeout=timeout, _stamps=mine)
        return results, hosts_trace(compiled, mine)
    from .profile import build_trace
    stamps: dict = {}
    results = run(compiled, *args, timeout=timeout, _stamps=stamps)
    lowered, _ = prepare(compiled)
    return results, build_trace(compiled.program, lowered.plan, stamps["steps"], stamps["t0"],
                                stamps["t1"])
