"""Several-host runs: each rank checks its arguments, stages rank 0's inputs, agrees on the call
with the other ranks, runs its part (`l3c.runtime.hosts.loop`) and copies the results out.

See `l3c.runtime.hosts.loop` for the steps of a run and docs/distributed.md for the design.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..codegen.dispatcher import build
from ..codegen.hosts import split
from ..runtime import context, stamps
from ..runtime.hostplan import DistPlan
from ..runtime.hosts import calls, launcher, peers
from ..runtime.hosts.errors import error_info
from ..runtime.hosts.loop import HostRun
from ..runtime.hosts.looprun import HostLoopRun
from ..runtime.pool import get_pool
from .args import check_args, describe_signature
from .staging import arena_arrays, copy_arrays


def prepare(compiled: Any, host: int | None = None) -> tuple[DistPlan, Any]:
    """The split plan (all hosts) and this host's JIT-compiled dispatcher, built once per Compiled."""
    art = compiled.artifacts
    dist = art.get("dist")
    if dist is None:
        dist = art["dist"] = split(compiled.program)
    if host is None:
        return dist, None
    key = f"dist_dispatcher_{host}"
    if key not in art:
        art[key] = build(dist.parts[host].lowered.plan)
    return dist, art[key]


def run(compiled: Any, *args: Any, timeout: float | None = None,
        _stamps: dict | None = None) -> Any:
    """Run a multi-host compiled schedule on this rank (every rank calls it with its arguments;
    rank 0's inputs are used; every rank returns the same results). Whatever goes wrong here before
    the run starts (arguments that do not match, a pool that cannot start) still takes part in the
    call's agreement (`calls.exchange`), so every rank raises and the next call works.
    `_stamps` (`execute.profile`): a dict that receives this host's step timestamps."""
    program = compiled.program
    host = launcher.check_hosts(program.config.hosts)
    launcher.comms()
    if timeout is None:
        timeout = getattr(compiled, "timeout", None)
    side = calls.CallSide(b"", describe_call(program),
                          program_text=lambda: program_text(compiled))
    try:
        side.digest = calls.call_digest(program_text(compiled), side.description)
        arrays = check_args(program, args)
        dist, disp = prepare(compiled, host)
        lowered, plan = dist.parts[host].lowered, dist.parts[host].lowered.plan
        with launcher.forking():
            pool = get_pool(plan.chips, plan.sub_workers, max(plan.arena_bytes, 1))
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it (raised by exchange)
        side.failure = exc
        calls.exchange(side, timeout)
    with pool.lock:
        try:
            with launcher.forking():
                # workers forked before this process knew its host (or without SIGUSR1 blocked)
                config = compiled.program.config
                context.set_host(host, config.chips, config.sub_workers)
                pool.fork_for(("host", host, config.chips, config.sub_workers))
                plan_id = pool.install(plan)
            slot_map = pool.slot_map(plan)
            staging, results = arena_arrays(lowered, pool, plan)
            side.inputs = _unique(staging)
            if host == 0:
                for staged, array in zip(staging, arrays):
                    if staged is not None:
                        staged[...] = array
        except Exception as exc:  # noqa: BLE001 - as above
            side.failure = exc
        epoch = calls.exchange(side, timeout)
        kind = HostRun if dist.parts[host].comm is None else HostLoopRun
        state = kind(compiled, dist, disp, host, pool, plan_id, slot_map, timeout, epoch, side)
        state.stamps = _stamps
        try:
            if calls.failed_before():
                state.purge_stale_messages()
            try:
                state.loop()
            except BaseException:
                state.cancel_receives()
                with launcher.forking():
                    pool.recover(grace=0.2)
                raise
            if _stamps is not None:
                _stamps.update(t1=time.monotonic_ns(), steps=stamps.read(pool, plan),
                               epoch=epoch, dist=dist)
            state.final_sync()
        except BaseException as exc:
            calls.note_failure()
            if not getattr(exc, "_l3c_told", False):
                try:
                    state.tell(state.peers, ("failed", error_info(exc, host)))
                    peers.drain(0.5)
                except Exception:  # noqa: BLE001 - the other ranks find out by silence then
                    pass
            raise
        peers.drain(0.0)
        for i in lowered.written_inputs:
            arrays[i][...] = staging[i]
        return copy_arrays(results)


def describe_call(program: Any) -> str:
    """The call as the agreement shows it: `step(x: float32[4], alpha=2.0)`."""
    return program.name + describe_signature(program)


def program_text(compiled: Any) -> str:
    """The program's canonical text dump, made once per Compiled (what the ranks compare)."""
    text = compiled.artifacts.get("dist_text")
    if text is None:
        from ..irdump import dump
        text = compiled.artifacts["dist_text"] = dump(compiled.program, "text")
    return text


def _unique(staging: list) -> list[np.ndarray]:
    """The staging arrays to broadcast, each once (arguments that are one array share one)."""
    seen, out = set(), []
    for a in staging:
        if a is not None and (a.ctypes.data, a.nbytes) not in seen:
            seen.add((a.ctypes.data, a.nbytes))
            out.append(a)
    return out
