"""Run a traced Program through the eager runtime: the reference semantics of `Jitted.eager`.

Every tensor (inputs and intermediates) gets its own place in the arena (no reuse: this path must not
depend on the memory plan it is the reference for), inputs are staged, each task becomes a plain-data
`runtime.eager.Call`, and the dynamic runtime runs them. Afterwards input arrays that kernels wrote are
updated and results are copied out into fresh arrays.

A `hosts=H > 1` program (under the MPI launcher) runs as its single-host reference: every rank runs
all the calls on its own pool of H*C chips and H*S sub workers, so global chip pins and groups that
span hosts are valid as they are. Inputs are rank 0's (broadcast, like compiled runs), so every rank
returns the same results and writes the same values back into its written inputs.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import L3CError, ScheduleError
from ..ir import Access, Program, Region, ResultRef
from ..runtime import context
from ..runtime.eager import Call, run_calls
from ..runtime.plan import View
from ..runtime.pool import get_pool

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def layout_tensors(program: Program) -> tuple[dict[int, int], int]:
    """Arena offset of every tensor (in id order, 64-byte aligned, no reuse) and the bytes spanned."""
    offsets, end = {}, 0
    for t in program.tensors:
        end = _align(end)
        offsets[t.id] = end
        end += t.nbytes
    return offsets, max(_align(end), ALIGN)


def region_view(base: int, region: Region, dtype: str) -> View:
    size = np.dtype(dtype).itemsize
    return View(base + region.offset * size, tuple(region.shape),
                tuple(s * size for s in region.strides), dtype)


def region_bytes(base: int, region: Region, itemsize: int) -> tuple[int, int]:
    """Byte interval [lo, hi) spanning the region (conservative for strided views)."""
    if region.size == 0:
        return base, base
    lo = hi = region.offset
    for n, s in zip(region.shape, region.strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return base + lo * itemsize, base + (hi + 1) * itemsize


def to_calls(program: Program, offsets: dict[int, int]) -> list[Call]:
    calls = []
    for task in program.tasks:
        args, accesses = [], []
        for arg in task.args:
            if isinstance(arg, Access):
                info = program.tensors[arg.tensor]
                args.append(region_view(offsets[arg.tensor], arg.region, info.dtype))
                lo, hi = region_bytes(offsets[arg.tensor], arg.region, info.itemsize)
                accesses.append((arg.tensor, lo, hi, arg.writes))
            else:
                args.append(arg.value)
        size = len(program.groups[task.group]) if task.group is not None else 1
        calls.append(Call(task.id, task.kernel, tuple(args), task.worker, tuple(accesses), task.pin,
                          task.group, task.group_rank, size, task.loc))
    return calls


def _result(tree: Any, read) -> Any:
    if tree is None:
        return None
    if isinstance(tree, ResultRef):
        return read(tree)
    kind, items = tree
    if kind == "tuple":
        return tuple(_result(x, read) for x in items)
    if kind == "list":
        return [_result(x, read) for x in items]
    if kind == "dict":
        return {k: _result(x, read) for k, x in items}
    raise L3CError(f"unknown result structure {kind!r}")


def readonly_error(program: Program, param_index: int) -> ScheduleError:
    """The error for a read-only array passed where a kernel writes: raised before any worker runs
    (writing the results back would fail after the run, or be skipped silently)."""
    param = program.params[param_index]
    writer = next((t for t in program.tasks for a in t.accesses
                   if a.writes and a.tensor == param.tensor), None)
    by = f"kernel {writer.kernel} (task {writer.id}, called at {writer.loc})" if writer else "a kernel"
    return ScheduleError(f"{program.name}: argument {param.name!r} is a read-only array, but {by} "
                         f"writes it; pass a writable array (e.g. {param.name}.copy())")


def run_eager(program: Program, args: Sequence[Any], *, timeout: float | None = None) -> Any:
    """Run `program` (straight from the tracer) with `args` (one value per `program.params`).
    For several hosts a bad argument on one rank still takes part in the call's agreement between
    ranks (`l3c.dist.calls`), so that every rank raises."""
    try:
        arrays, offsets, arena_bytes, written, calls = _prepare(program, args)
    except Exception as exc:
        if program.config.hosts > 1:
            from ..dist.calls import local_failure
            local_failure(exc, f"{program.name}.eager(...)", timeout)
        raise
    cfg = program.config
    staged = arrays
    if cfg.hosts > 1:
        staged = _from_rank_0(program, arrays, timeout)
    chips, subs = cfg.chips * cfg.hosts, cfg.sub_workers * cfg.hosts
    with _whole_pool(cfg.hosts, chips, subs, arena_bytes) as pool:
        whole = {t.id: pool.array(region_view(offsets[t.id], Region.whole(t.shape), t.dtype))
                 for t in program.tensors}
        for tid, value in staged.items():
            np.copyto(whole[tid], value)
        run_calls(pool, calls, chips, subs, timeout)
        for tid, value in arrays.items():
            if tid in written:
                np.copyto(value, whole[tid])

        def read(ref: ResultRef) -> np.ndarray:
            view = region_view(offsets[ref.tensor], ref.region, program.tensors[ref.tensor].dtype)
            return np.array(pool.array(view), dtype=ref.dtype, copy=True)
        return _result(program.results, read)


def _prepare(program: Program, args: Sequence[Any]) -> tuple:
    """The checked argument arrays, the tensors' layout, the written tensors and the calls."""
    if len(args) != len(program.params):
        raise L3CError(f"{program.name} takes {len(program.params)} arguments, got {len(args)}")
    arrays: dict[int, np.ndarray] = {}
    for param, value in zip(program.params, args):
        if param.tensor is None:
            continue
        info = program.tensors[param.tensor]
        value = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if (tuple(value.shape) != tuple(info.shape)
                or value.dtype.newbyteorder("=") != np.dtype(info.dtype)):
            raise L3CError(f"argument {param.name}: expected {info.dtype}{list(info.shape)}, "
                           f"got {value.dtype}{list(value.shape)}")
        arrays[param.tensor] = value
    offsets, arena_bytes = layout_tensors(program)
    written = {a.tensor for t in program.tasks for a in t.accesses if a.writes}
    for i, param in enumerate(program.params):
        if param.tensor in written and not arrays[param.tensor].flags.writeable:
            raise readonly_error(program, i)
    return arrays, offsets, arena_bytes, written, to_calls(program, offsets)


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
    from ..dist import launcher
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
    agreement on each call (`l3c.dist.calls`), which carries the inputs: every rank must make this
    same call (the same traced program) at this point, else every rank raises."""
    from ..dist import calls
    from ..irprint import dump
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
    from ..dist import launcher
    return launcher.comms()[0].Get_rank()
