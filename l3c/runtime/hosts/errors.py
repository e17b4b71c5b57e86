"""Errors of multi-host runs. All subclass `l3c.L3CError`; each names the host and the task involved."""
from __future__ import annotations

from ...errors import L3CError
from ..context import global_worker


class HostFailed(L3CError):
    """Another host's run failed (a kernel raised there, a worker crashed, it timed out), so this
    host stopped its own run. `host`: the failing host; `task`/`kernel`/`loc`: what failed there
    (-1 / "" when unknown); `kind`: the failing host's error class name."""

    def __init__(self, message: str, *, host: int = -1, task: int = -1, kernel: str = "",
                 loc: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.host, self.task, self.kernel, self.loc, self.kind = host, task, kernel, loc, kind


class HostLost(HostFailed):
    """A host stopped answering during a run (its process died or stalled): nothing came from it
    within the silence limit or the run's timeout. `task` is what this host was waiting for from it."""


def error_info(exc: BaseException, host: int) -> dict:
    """What a rank tells the others about its failure (a picklable dict)."""
    from ...errors import KernelError
    info = {"host": host, "kind": type(exc).__name__, "message": str(exc).split("\n\n")[0],
            "task": -1, "kernel": "", "loc": "", "traceback": ""}
    if isinstance(exc, KernelError):
        info.update(task=exc.task, kernel=exc.kernel, loc=exc.loc, traceback=exc.remote_traceback)
    elif isinstance(exc, HostFailed):
        info.update(task=exc.task, kernel=exc.kernel, loc=exc.loc)
    if isinstance(exc, HostFailed) and exc.host >= 0:
        info["origin"] = exc.host
    return info


def remote_error(info: dict, here: int) -> L3CError:
    """The exception a rank raises when another rank reports `info` about its failure: a
    `KernelError` like the origin's when a kernel raised there, else `HostFailed` (`HostLost` when
    the reporter lost a host) naming the failing host."""
    from ...errors import KernelError
    host = info["host"]
    if info["kind"] in ("HostFailed", "HostLost") and info.get("origin") is not None:
        host = info["origin"]
    if info["kind"] == "KernelError":
        exc: L3CError = KernelError(
            f"on host {host}: {info['message']}\n\nRemote traceback (host {host}):\n"
            f"{info['traceback']}", kernel=info["kernel"], task=info["task"], loc=info["loc"],
            remote_traceback=info["traceback"])
        exc.host = host
    else:
        cls = HostLost if info["kind"] == "HostLost" else HostFailed
        exc = cls(f"host {host} failed ({info['kind']}): {info['message']}; host {here} stopped "
                  f"its call too", host=host, task=info["task"], kernel=info["kernel"],
                  loc=info["loc"], kind=info["kind"])
    exc._l3c_told = True             # the origin told every rank already
    return exc


def slot_name(slot: int, host: int, chips: int, sub_workers: int) -> str:
    """A host's pool slot by its global id: "chip 5" (host * chips + slot), "sub worker 1"."""
    kind, glob = global_worker(slot, host, chips, sub_workers)
    return f"chip {glob}" if kind == "chip" else f"sub worker {glob}"


def on_host(exc: BaseException, host: int, chips: int, sub_workers: int,
            slot: int | None = None) -> BaseException:
    """A local pool's error as this host reports it: chips and sub workers by their global ids
    (the pool numbers its own from 0; `slot`: the pool slot that failed) and `exc.host` set."""
    from ...errors import KernelError, Timeout, WorkerCrashed

    def name(slot: int) -> str:
        return slot_name(slot, host, chips, sub_workers)
    if isinstance(exc, KernelError):
        text = exc.remote_traceback
        last = text.strip().splitlines()[-1] if text.strip() else "?"
        where = f"{name(slot)} on host {host}" if slot is not None and slot >= 0 else f"host {host}"
        new: BaseException = KernelError(
            f"kernel {exc.kernel} (task {exc.task}, called at {exc.loc}) raised in {where}: "
            f"{last}\n\nRemote traceback:\n{text}", kernel=exc.kernel, task=exc.task, loc=exc.loc,
            remote_traceback=text)
    elif isinstance(exc, WorkerCrashed):
        how = str(exc).split(" died during a run ", 1)[-1]
        slot = exc.worker
        glob = global_worker(slot, host, chips, sub_workers)[1]
        new = WorkerCrashed(f"{name(slot)} on host {host} died during a run {how}",
                            worker=glob, signal=exc.signal, exitcode=exc.exitcode)
    elif isinstance(exc, Timeout):
        new = exc
    else:
        return exc
    new.host = host
    return new
