"""MPI detection, rank checks and the private communicators.

One MPI rank is one host. `check_hosts(H)` runs before anything is traced: it needs an MPI launcher
(`mpiexec -n H ...`) and mpi4py, and exactly H ranks. mpi4py is imported here only, and only for
`hosts > 1`, so single-host l3c never loads MPI. Agreement on each call is `calls.py`.

Every wait on another rank is bounded: collectives are the non-blocking kind (`Ibcast`, `Idup`)
completed by `wait_all`, a `Test` loop with a deadline that raises `HostLost`.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import time
from typing import Any, Iterator

from ...errors import L3CError
from .errors import HostLost

LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS",
                 "HYDRA_CONTROL_FD", "PMI_RANK")
# How long a rank may stay silent (no heartbeat, no message) while another waits on it, and the bound
# of waits outside a run (a call's agreement, communicator set-up) when the call has no timeout.
REMOTE_SILENCE = float(os.environ.get("L3C_REMOTE_SILENCE", "10"))
# ... and once the launcher said that a process of the job ended (SIGUSR1 from hydra): a rank alive
# sends a heartbeat every 0.25 s during a run, so this much silence then means it is gone
TERMINATED_SILENCE = 1.0
WAIT_SPIN_S = 0.002          # wait_all: test with a yield this long before sleeping between tests

_state: dict[str, Any] = {}


def under_launcher() -> bool:
    return any(v in os.environ for v in LAUNCHER_VARS)


def mpi() -> Any:
    """The mpi4py MPI module (importing it initialises MPI)."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise L3CError("several hosts need mpi4py: pip install 'l3c[dist]' "
                       "(mpi4py and the mpich wheel)") from None
    return MPI


def libmpi_paths() -> list[str]:
    """Paths of the MPI libraries mapped into this process (the one mpi4py loaded), for the native
    code that calls MPI directly (`poll.py`, `peers.py`)."""
    import re
    paths: list[str] = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            m = re.search(r"(/\S*/libmpi[^/\s]*\.so[^/\s]*)$", line.strip())
            if m and m.group(1) not in paths:
                paths.append(m.group(1))
    return paths


def check_hosts(hosts: int) -> int:
    """Before tracing a `hosts > 1` function: an MPI launcher with `hosts` ranks. Returns this rank
    and makes it the `l3c.host_id()` of the kernels this process's workers run."""
    if hosts == 1:
        return 0
    if not under_launcher():
        raise L3CError(f"l3c.jit(hosts={hosts}) needs an MPI launcher with {hosts} ranks, and this "
                       f"process was not started by one; run `mpiexec -n {hosts} {_this_command()}`")
    MPI = mpi()
    size = MPI.COMM_WORLD.Get_size()
    if size != hosts:
        raise L3CError(f"l3c.jit(hosts={hosts}) but the MPI launcher started {size} "
                       f"rank{'' if size == 1 else 's'}; run `mpiexec -n {hosts} ...`")
    rank = MPI.COMM_WORLD.Get_rank()
    from .. import context
    context.set_host(rank)
    _listen_for_terminations()
    return rank


def _this_command() -> str:
    """How this process was started, as the launcher hint shows it: `l3c run s.l3c`, `python
    app.py` (`python app.py` when it cannot tell, e.g. `python -c`)."""
    import shlex
    import sys
    argv = list(sys.argv)
    if not argv or not argv[0] or argv[0] == "-c":
        return "python app.py"
    name = os.path.basename(argv[0])
    if name == "l3c":
        return shlex.join(["l3c", *argv[1:]])
    if argv[0].endswith(os.path.join("l3c", "__main__.py")):
        return shlex.join(["l3c", *argv[1:]])
    return shlex.join(["python", *argv])


def _listen_for_terminations() -> None:
    """Hydra (mpiexec -disable-auto-cleanup) tells every rank that some process of the job ended by
    sending SIGUSR1, whose default action kills the process: MPICH installs no handler. Take it as a
    hint instead: `run` then declares a peer lost after a short silence (`TERMINATED_SILENCE`). An
    application's own SIGUSR1 handler is left in place."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
        def note(signum: int, frame: Any) -> None:
            _state["terminated"] = time.monotonic()
        signal.signal(signal.SIGUSR1, note)


def terminated_hint() -> float | None:
    """When the launcher last said that a process of the job ended (time.monotonic()), or None."""
    return _state.get("terminated")


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Wrap every pool call that may fork workers. Hydra (mpiexec) tells the survivors of a dead rank
    with SIGUSR1 sent to each rank's process group, which holds our worker processes too, and they
    die of it (workers reset SIGUSR1 to its default). SIGUSR1 blocked while forking is blocked in the
    child for good (the mask is inherited), while the rank itself gets it (MPICH's handler) as soon
    as it is unblocked again. A lost host is found by its silence anyway (`REMOTE_SILENCE`)."""
    import signal
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def wait_all(requests: list, deadline: float, what: str, host: int = -1, task: int = -1) -> None:
    """Complete non-blocking MPI requests by `deadline` (time.monotonic()), else `HostLost`.
    Tests with a sched_yield between tests for the first WAIT_SPIN_S (the other side is usually
    about to answer: the final broadcasts of a run wait for the last host to finish), then with
    sleeps growing to 1 ms."""
    MPI = mpi()
    pause = 0.0
    spin_until = time.monotonic() + WAIT_SPIN_S
    while not MPI.Request.Testall(requests):
        now = time.monotonic()
        if now < spin_until:
            os.sched_yield()
            continue
        if now >= deadline:
            for r in requests:
                try:
                    r.Cancel()
                except Exception:  # noqa: BLE001 - best effort
                    pass
            who = f"host {host}" if host >= 0 else "another host"
            raise HostLost(f"{who} did not answer while this host waited for {what} "
                           f"(it died or stalled)", host=host, task=task)
        time.sleep(pause)
        pause = min(0.001, pause + 0.00002)


def comms() -> tuple[Any, Any]:
    """(data, control) communicators: private duplicates of COMM_WORLD, made once per process, so
    l3c's messages never meet the application's own MPI traffic."""
    if _state.get("pid") != os.getpid():
        MPI = mpi()
        world = MPI.COMM_WORLD
        deadline = time.monotonic() + REMOTE_SILENCE
        data, data_req = world.Idup()
        wait_all([data_req], deadline, "MPI communicator set-up")
        ctl, ctl_req = world.Idup()
        wait_all([ctl_req], deadline, "MPI communicator set-up")
        import numpy as np
        pids = np.zeros(world.Get_size(), dtype=np.int64)
        wait_all([ctl.Iallgather(np.array([os.getpid()], dtype=np.int64), pids)], deadline,
                 "the other ranks' process ids")
        _state.update(pid=os.getpid(), data=data, ctl=ctl, pids=[int(p) for p in pids])
    return _state["data"], _state["ctl"]


def pids() -> list[int]:
    """Every rank's process id (swapped when the communicators were made)."""
    comms()
    return _state["pids"]


def cached(name: str) -> Any:
    """A value computed once per process from the communicators (e.g. their tag window)."""
    return _state.get(name) if _state.get("pid") == os.getpid() else None


def cache(name: str, value: Any) -> Any:
    _state[name] = value
    return value


def mpi_entries() -> tuple[int, int, int] | None:
    """Addresses of MPI_Request_get_status, MPI_Isend and MPI_Iprobe in the MPI library mpi4py
    loaded, if its handles are 32-bit integers (MPICH ABI); else None."""
    MPI = mpi()
    if any(MPI._sizeof(kind) != 4 for kind in (MPI.Request, MPI.Comm, MPI.Datatype)):
        return None
    for path in libmpi_paths():
        try:
            lib = ctypes.CDLL(path)
            return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                         for name in ("MPI_Request_get_status", "MPI_Isend", "MPI_Iprobe"))
        except (OSError, AttributeError):
            continue
    return None
