"""The control channel between ranks, which peers are gone, and how a rank ends when one is.

Control messages are pickled tuples `(epoch, kind, ...)` on the private control communicator
(`launcher.comms()`), tag CTL_TAG: "alive", "done" and "failed" carry the call's epoch (its
sequence number, `calls.py`); "bye" carries BYE_EPOCH and means the sender's interpreter is exiting.

A peer is *gone* once this rank raised `HostLost` for it (it died or stalled) or read its "bye" (it
exited normally, perhaps having made fewer calls). Later calls fail at once instead of waiting a
silence window each: their collectives could never complete. And at exit a rank with a lost peer
switches
MPICH's `MPI_Finalize` to its non-collective form (the `MPIR_CVAR_NO_COLLECTIVE_FINALIZE` control
variable, written through the MPI tool interface) before mpi4py finalizes: the collective form waits
for every rank of the job, a dead one included, so the survivor would never exit.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import time
from typing import Any

from .errors import HostFailed, HostLost

CTL_TAG = 7
BYE_EPOCH = -1
BYE_DRAIN_S = 0.5            # how long a rank at exit lets its "bye" messages leave

_gone: dict[int, HostFailed] = {}   # host -> the error that made it gone
_pending: list = []                 # control sends not known complete yet
_kept: list = []                    # messages read early, for the next `receive`
_registered: list = []              # pid the exit handler was registered in


def tell(ctl: Any, peers: list[int], epoch: int, *message: Any) -> None:
    """Send `(epoch, *message)` to each peer (non-blocking; completed by later calls or at exit)."""
    for h in peers:
        if h not in _gone:
            _pending.append(ctl.isend((epoch,) + message, dest=h, tag=CTL_TAG))
    _pending[:] = [r for r in _pending if not r.Test()]


def drain(limit: float) -> None:
    """Let the control messages sent so far leave, for at most `limit` seconds."""
    end = time.monotonic() + limit
    while _pending and time.monotonic() < end:
        _pending[:] = [r for r in _pending if not r.Test()]
        time.sleep(0.0005)


def receive(ctl: Any, MPI: Any, epoch: int) -> list[tuple[int, tuple]]:
    """Every control message waiting, in order, as `(source, message)`: those of this `epoch` (older
    ones are left over from a failed call: dropped) and "bye"s, which also mark their sender gone.
    Whether a "bye" ends the caller's wait is the caller's call: a peer may exit right after
    finishing the very call this rank is still completing."""
    status = MPI.Status()
    out = [(src, m) for src, m in _kept if m[0] in (epoch, BYE_EPOCH)]
    _kept.clear()
    while ctl.iprobe(source=MPI.ANY_SOURCE, tag=CTL_TAG, status=status):
        src = status.Get_source()
        message = ctl.recv(source=src, tag=CTL_TAG)
        if message[0] == BYE_EPOCH:
            _gone.setdefault(src, HostFailed(f"host {src} exited", host=src, kind="exited"))
            out.append((src, message))
        elif message[0] == epoch:
            out.append((src, message))
    return out


def keep(messages: list[tuple[int, tuple]]) -> None:
    """Give back messages a wait read but does not act on (a peer's "done" read while this rank
    still waits for its call's header): the next `receive` returns them first."""
    _kept.extend(messages)


def exited(host: int, here: int, call: int) -> HostFailed:
    """The error for a peer that exited while this rank still needed it in call `call`."""
    return HostFailed(f"host {host} exited (it made fewer calls than host {here}, which is at call "
                      f"{call}); host {here} stopped its call", host=host, kind="exited")


def mark_gone(host: int, exc: HostFailed) -> HostFailed:
    """Remember that `host` is lost (dead or stalled); returns `exc` for raising. From now on this
    process's MPI_Finalize does not wait for the other ranks."""
    if host not in _gone:
        _gone[host] = exc               # (host -1: some peer, not known which)
        _finalize_without_waiting()
    return exc


def check_none_gone(here: int) -> None:
    """Before a call: a gone peer makes it fail at once (its collectives could never complete)."""
    if not _gone:
        return
    host, why = next(iter(_gone.items()))
    cls = HostLost if isinstance(why, HostLost) else HostFailed
    what = "exited" if why.kind == "exited" else "was lost (it died or stalled)"
    who = f"host {host}" if host >= 0 else "another host"
    raise cls(f"{who} {what} during an earlier call, so host {here} cannot run calls of "
              f"several hosts any more: {str(why).splitlines()[0]}", host=host, kind=why.kind)


def register_exit(ctl: Any, peers: list[int], pids: list[int]) -> None:
    """Once per process: at interpreter exit, tell every peer still there "bye", so that one still
    waiting for this rank in a call raises at once ("exited") instead of after a silence window.
    With a lost peer, also remove MPICH's shared-memory files that the dead rank can no longer
    remove (`pids`: every rank's process id)."""
    if _registered == [os.getpid()]:
        return
    _registered[:] = [os.getpid()]

    def bye() -> None:
        try:
            tell(ctl, peers, BYE_EPOCH, "bye")
            drain(BYE_DRAIN_S)
        except Exception:  # noqa: BLE001 - MPI may be unusable at exit; the peers see silence then
            pass
        lost = [h for h, exc in _gone.items() if isinstance(exc, HostLost)]
        if lost:
            remove_mpich_files([pids[h] for h in lost if 0 <= h < len(pids)])
    atexit.register(bye)


def remove_mpich_files(dead_pids: list[int]) -> list[str]:
    """Unlink MPICH's /dev/shm files that would outlive the job after a rank died: the node's
    segment this process maps (each rank unlinks it in MPI_Finalize, which the dead one never
    reaches; mapped memory stays valid after the unlink) and the dead ranks' own files
    (`mpich_shm_<pid in hex>_*`). Returns the paths removed."""
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if path.startswith("/dev/shm/mpich_shm_"):
                paths.add(path)
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        names = []
    prefixes = tuple(f"mpich_shm_{pid:x}_" for pid in dead_pids)
    paths.update(f"/dev/shm/{n}" for n in names if prefixes and n.startswith(prefixes))
    removed = []
    for path in sorted(paths):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _finalize_without_waiting() -> None:
    """Make MPICH's MPI_Finalize non-collective for this process (it would wait for a dead peer
    forever). Through the MPI tool interface (`MPI_T_cvar_write`), which sets the control variable
    at run time; a no-op where the library has no such variable (another MPI)."""
    lib = _libmpi()
    if lib is None:
        return
    provided, index = ctypes.c_int(), ctypes.c_int()
    handle, count = ctypes.c_void_p(), ctypes.c_int()
    if lib.MPI_T_init_thread(0, ctypes.byref(provided)) != 0:
        return
    try:
        if lib.MPI_T_cvar_get_index(b"MPIR_CVAR_NO_COLLECTIVE_FINALIZE", ctypes.byref(index)) != 0:
            return
        if lib.MPI_T_cvar_handle_alloc(index, None, ctypes.byref(handle), ctypes.byref(count)) != 0:
            return
        lib.MPI_T_cvar_write(handle, ctypes.byref(ctypes.c_int(1)))
        lib.MPI_T_cvar_handle_free(ctypes.byref(handle))
    finally:
        lib.MPI_T_finalize()


def _libmpi() -> Any:
    """The MPI library mpi4py loaded (ctypes), if it has the MPICH control-variable interface."""
    from .launcher import libmpi_paths
    for path in libmpi_paths():
        try:
            lib = ctypes.CDLL(path)
            lib.MPI_T_cvar_get_index        # noqa: B018 - present?
            return lib
        except (OSError, AttributeError):
            continue
    return None
