"""Eager runs (`Jitted.eager`): the reference semantics, through the dynamic eager runtime.

Code generation (`l3c.codegen.eager`) lays every tensor out without reuse and turns each task into
a plain-data call; this stage checks the arguments, stages the inputs, runs the calls on the pool,
writes written inputs back and copies the results out.

A `hosts=H > 1` program (under the MPI launcher) runs as its single-host reference: every rank runs
all the calls on its own pool of H*C chips and H*S sub workers, so global chip pins and groups that
span hosts are valid as they are. Inputs are rank 0's (broadcast, like compiled runs), so every rank
returns the same results and writes the same values back into its written inputs.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

from ..codegen.eager import layout_tensors, region_view, results, to_calls, to_loop_items
from ..errors import ScheduleError
from ..ir import Program, Region, ResultRef
from ..runtime import context
from ..runtime.eager import run_calls
from ..runtime.eager_loops import run_loop_items
from ..runtime.pool import get_pool
from .args import readonly_error


def run_eager(program: Program, args: Sequence[Any], *, timeout: float | None = None) -> Any:
    """Run `program` (straight from the tracer) with `args` (one value per `program.params`).
    For several hosts a bad argument on one rank still takes part in the call's agreement between
    ranks (`l3c.runtime.hosts.calls`), so that every rank raises."""
    try:
        arrays, offsets, arena_bytes, written, calls = _prepare(program, args)
    except Exception as exc:
        if program.config.hosts > 1:
            from ..runtime.hosts.calls import local_failure
            local_failure(exc, f"{program.name}.eager(...)", timeout)
        raise
    cfg = program.config
    staged = arrays
    if cfg.hosts > 1:
        staged = _from_rank_0(program, arrays, timeout)
    chips, subs = cfg.units("chip"), cfg.units("sub")
    with _whole_pool(cfg.hosts, chips, subs, arena_bytes) as pool:
        whole = {t.id: pool.array(region_view(offsets[t.id], Region.whole(t.shape), t.dtype))
                 for t in program.tensors}
        for tid, value in staged.items():
            np.copyto(whole[tid], value)
        if program.loops:               # iterated in Python, exactly sequentially
            run_loop_items(pool, calls, chips, subs, timeout)
        else:
            run_calls(pool, calls, chips, subs, timeout)
        for tid, value in arrays.items():
            if tid in written:
                np.copyto(value, whole[tid])

        def read(ref: ResultRef) -> np.ndarray:
            view = region_view(offsets[ref.tensor], ref.region, program.tensors[ref.tensor].dtype)
            return np.array(pool.array(view), dtype=ref.dtype, copy=True)
        return results(program.results, read)


def _prepare(program: Program, args: Sequence[Any]) -> tuple:
    """The checked argument arrays, the tensors' layout, the written tensors and the calls (the
    loop tree of `to_loop_items` for a program with loops)."""
    if len(args) != len(program.params):
        raise ScheduleError(f"{program.name} takes {len(program.params)} arguments, got {len(args)}")
    arrays: dict[int, np.ndarray] = {}
    for param, value in zip(program.params, args):
        if param.tensor is None:
            continue
        info = program.tensors[param.tensor]
        if not isinstance(value, np.ndarray):
            given, value = value, np.asarray(value)
            if value.dtype == object:       # an l3c.ArraySpec, say: no numbers to run on
                raise ScheduleError(
                    f"{program.name}.eager: argument {param.name!r} must be a numpy array "
                    f"{info.dtype}{list(info.shape)}, got {type(given).__name__}"
                    " (an l3c.ArraySpec describes an argument for lower, dump-ir and compile; "
                    "runs need arrays)")
        if (tuple(value.shape) != tuple(info.shape)
                or value.dtype.newbyteorder("=") != np.dtype(info.dtype)):
            raise ScheduleError(f"argument {param.name}: expected {info.dtype}{list(info.shape)}, "
                           f"got {value.dtype}{list(value.shape)}")
        arrays[param.tensor] = value
    offsets, arena_bytes = layout_tensors(program)
    written = {a.tensor for t in program.tasks for a in t.accesses if a.writes}
    for i, param in enumerate(program.params):
        if param.tensor in written and not arrays[param.tensor].flags.writeable:
            raise readonly_error(program, i)
    calls = to_loop_items(program, offsets) if program.loops else to_calls(program, offsets)
    return arrays, offsets, arena_bytes, written, calls


@contextlib.contextmanager
def _whole_pool(hosts: int, chips: int, subs: int, arena_bytes: int) -> Iterator[Any]:
    """The process's pool, locked, with `chips` chips and `subs` sub workers. For hosts > 1 its
    workers are forked as one host's (chip_id() is the global chip, host_id() 0): a compiled run of
    the same function left them numbering chips from this rank's first one (and sets its numbering
    again before its next run). The whole run keeps that context and SIGUSR1 blocked
    (`launcher.forking`), because the eager runtime may re-fork or replace workers mid-run."""
    if hosts == 1:
        pool = get_pool(chips, subs, arena_bytes)
        with pool.lock:
            pool.ensure(chips, subs, arena_bytes)
            yield pool
        return
    from ..runtime.hosts import launcher
    with context.as_host(0):
        with launcher.forking():
            pool = get_pool(chips, subs, arena_bytes)
        with pool.lock:
            with launcher.forking():
                pool.ensure(chips, subs, arena_bytes)
                pool.fork_for(("eager", chips, subs))
                yield pool


def _from_rank_0(program: Program, arrays: dict[int, np.ndarray],
                 timeout: float | None) -> dict[int, np.ndarray]:
    """Rank 0's input arrays on every rank (tensor id -> array). The call takes part in the ranks'
    agreement on each call (`l3c.runtime.hosts.calls`), which carries the inputs: every rank must make this
    same call (the same traced program) at this point, else every rank raises."""
    from ..runtime.hosts import calls
    from ..irdump import dump
    root = _rank() == 0
    out = {tid: (np.ascontiguousarray(value, dtype=program.tensors[tid].dtype) if root
                 else np.empty(program.tensors[tid].shape, dtype=program.tensors[tid].dtype))
           for tid, value in arrays.items()}
    text = dump(program, "text")
    description = f"{program.name}.eager(...)"
    calls.exchange(calls.CallSide(calls.call_digest(text, description), description,
                                  list(out.values()), program_text=lambda: text), timeout)
    return out


def _rank() -> int:
    from ..runtime.hosts import launcher
    return launcher.comms()[0].Get_rank()
