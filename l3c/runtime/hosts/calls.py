"""Agreement on every call between ranks, folded into the call's first message.

Ranks must make the same calls in the same order. Each call of a several-host function, on every
rank, takes part in exactly one *call header*: a fixed-size `Ibcast` from rank 0 (BLOCK bytes) that
carries rank 0's call number, whether its call failed before starting, a digest of its call (the
compiled program's canonical text, which holds the function, shapes, dtypes and statics, plus the
call's signature), a readable description of the call, and the inputs themselves when they fit
(INLINE_BYTES). Larger inputs follow in one more `Ibcast` whose size the header gives. So agreement
costs no message of its own: the header *is* the input broadcast every call already made.

Because the header has one size whatever the program, every rank can take part in it whatever it
traced, and a rank that disagrees still completes rank 0's follow-up broadcast (into a scratch
buffer): the ranks' collective sequences never drift apart. Then:

- rank 0 failed before the call started (a bad argument, a `TraceError`): every other rank raises
  `HostFailed(host=0)` with rank 0's message; rank 0 raises its own error;
- another rank failed, or its digest or call number differs from rank 0's: it sends "failed" on the
  control channel (with its program's text when the programs differ, for a line-level report) and
  raises; rank 0 and the others are in their run loops by then, read it and raise too. A rank
  whose call number drifted adopts rank 0's, so the next matching call works.

The call number is also the run's epoch: it keys control messages and the data tags (`run.py`).
"""
from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ...errors import L3CError
from . import launcher, peers
from .errors import HostFailed, HostLost, remote_error

HEAD_WORDS = 8
DESCRIPTION_BYTES = 448
INLINE_BYTES = 1536
BLOCK = HEAD_WORDS * 8 + DESCRIPTION_BYTES + INLINE_BYTES     # 2 KiB
MAGIC = 0x6C33635F63616C6C
HEAD = "<5q16s"              # magic, call number, failed, follow-up bytes, description bytes, digest
BYE_GRACE_S = 0.2           # a peer's "bye" ends a wait unless what it sent before arrives by then
REPLY_S = 2.0                # how long a rank that found the programs differ waits for rank 0's text

_calls = [0]                 # this process's call number (every rank counts the same calls)
_failed_once = [False]       # a call failed here: purge stale data messages before runs
_buffer: list = []           # the header block, made once


@dataclass
class CallSide:
    """What this rank brings to one call.

    `digest`: 16 bytes naming the call (equal on every rank for the same call); `description`:
    the call as people read it (`step(x: float32[4], alpha=2.0)`); `inputs`: contiguous arrays,
    read on rank 0 and written on the others (the same list on every rank that agrees);
    `failure`: this rank's error before the call could start, or None; `program_text`: the
    program's canonical text, for a line-level report when the programs differ."""

    digest: bytes
    description: str
    inputs: list[np.ndarray] = field(default_factory=list)
    failure: BaseException | None = None
    program_text: Callable[[], str] | None = None


def local_failure(exc: Exception, description: str, timeout: float | None) -> None:
    """A call that failed on this rank before it could start (tracing, binding its arguments)
    takes part in the call's agreement all the same, then raises `exc` here; every other rank
    raises too. (Without an MPI launcher there is nobody to tell: `exc` is raised at once.)"""
    if launcher.under_launcher():
        exchange(CallSide(b"", description, failure=exc), timeout)
    raise exc


def _block() -> tuple[np.ndarray, np.ndarray]:
    """This process's header buffer and its inline-input part (calls on several hosts are one at a
    time: their collectives must be in the same order on every rank)."""
    if not _buffer:
        block = np.empty(BLOCK, dtype=np.uint8)
        _buffer.extend([block, block[HEAD_WORDS * 8 + DESCRIPTION_BYTES:]])
    return _buffer[0], _buffer[1]


def failed_before() -> bool:
    """Did a call of this process fail (so stale data messages may be waiting)?"""
    return _failed_once[0]


def note_failure() -> None:
    _failed_once[0] = True


def call_digest(program_text: str, description: str) -> bytes:
    return hashlib.blake2b((program_text + "\0" + description).encode(), digest_size=16).digest()


def exchange(side: CallSide, timeout: float | None) -> int:
    """Take part in this call's header on this rank; return the call number (the run's epoch) when
    every rank may start, else raise (see the module docstring). Bounded by `timeout` or the
    silence limit: a rank that never arrives raises `HostLost`."""
    MPI = launcher.mpi()
    comm, ctl = launcher.comms()
    here, size = comm.Get_rank(), comm.Get_size()
    peers.register_exit(ctl, [h for h in range(size) if h != here], launcher.pids())
    peers.check_none_gone(here)
    _calls[0] += 1
    call = _calls[0]
    limit = launcher.REMOTE_SILENCE if timeout is None else timeout
    deadline = time.monotonic() + limit
    block, inline = _block()            # (every field read is written first: no zeroing)
    total = sum(a.nbytes for a in side.inputs)
    if here == 0:
        text = (side.description if side.failure is None
                else f"{type(side.failure).__name__}: {side.failure}").encode()[:DESCRIPTION_BYTES]
        block[HEAD_WORDS * 8:HEAD_WORDS * 8 + len(text)] = np.frombuffer(text, np.uint8)
        follow = 0
        if side.failure is None:
            if total <= INLINE_BYTES:
                at = 0
                for a in side.inputs:
                    inline[at:at + a.nbytes] = a.reshape(-1).view(np.uint8)
                    at += a.nbytes
            else:
                follow = total
        struct.pack_into(HEAD, block, 0, MAGIC, call, int(side.failure is not None), follow,
                         len(text), side.digest or bytes(16))
    requests = [comm.Ibcast([block, MPI.BYTE], root=0)]
    if here == 0:
        if side.failure is not None:
            wait(requests, deadline, "the call's header", ctl, MPI, call, here)
            raise side.failure
        if follow:
            requests.append(comm.Ibcast(_follow_spec(MPI, side.inputs), root=0))
        wait(requests, deadline, "the inputs' broadcast", ctl, MPI, call, here, side=side)
        return call
    wait(requests, deadline, "host 0's call", ctl, MPI, call, here, host=0)
    magic, root_call, root_failed, follow, text_len, root_digest = struct.unpack_from(HEAD, block)
    if magic != MAGIC:
        raise L3CError(f"host {here} got a corrupt call header from host 0 (not an l3c call?)")
    root_text = bytes(block[HEAD_WORDS * 8:HEAD_WORDS * 8 + text_len]).decode("utf-8", "replace")
    if root_failed:
        _calls[0] = root_call
        if side.failure is not None:
            raise side.failure
        raise HostFailed(f"host 0's call failed before it started ({root_text}); host {here} "
                         f"stopped its call {side.description} too", host=0,
                         kind=root_text.split(":")[0])
    same = (side.failure is None and root_call == call
            and root_digest == side.digest and follow == (
                total if total > INLINE_BYTES else 0))
    if same:
        if follow:
            requests = [comm.Ibcast(_follow_spec(MPI, side.inputs), root=0)]
            wait(requests, deadline, "the inputs from host 0", ctl, MPI, call, here, host=0,
                 side=side)
        else:
            at = 0
            for a in side.inputs:
                a.reshape(-1).view(np.uint8)[...] = inline[at:at + a.nbytes]
                at += a.nbytes
        return call
    # This rank cannot run the call: finish rank 0's broadcast anyway (collectives stay aligned),
    # tell everyone, and raise.
    if follow:
        scratch = np.empty(follow, dtype=np.uint8)
        wait([comm.Ibcast([scratch, MPI.BYTE], root=0)], deadline, "the inputs from host 0",
             ctl, MPI, call, here, host=0)
    _failed_once[0] = True
    others = [h for h in range(size) if h != here]
    if root_call != call:
        _calls[0] = root_call
    if side.failure is not None:
        info = {"host": here, "kind": type(side.failure).__name__,
                "message": str(side.failure).split("\n\n")[0], "task": -1, "kernel": "",
                "loc": "", "traceback": ""}
        peers.tell(ctl, others, root_call, "failed", info)
        peers.drain(0.5)
        raise side.failure
    if root_call != call:
        why = (f"the ranks' calls drifted apart: host {here} was at call {call} and host 0 at call "
               f"{root_call} (a call one rank made and the others did not); counting from host "
               f"0's again")
    elif root_text != side.description:
        why = (f"host 0 called {root_text} but host {here} called {side.description}")
    else:
        why = f"host 0 and host {here} traced different programs for {side.description}"
    text = side.program_text() if side.program_text is not None and root_text == side.description \
        else None
    info = {"host": here, "kind": "CallsDiffer", "message": why, "task": -1, "kernel": "",
            "loc": "", "traceback": "", "program_text": text, "description": side.description}
    peers.tell(ctl, others, root_call, "failed", info)
    detail = ""
    if text is not None:                # rank 0 answers with its text: show the first difference
        theirs = _await_text(ctl, MPI, root_call, here)
        if theirs is not None:
            detail = "\n" + first_difference(theirs, text, 0, here)
    peers.drain(0.5)
    raise L3CError(f"the hosts' calls differ (every rank must make the same calls in the same "
                   f"order: same function, shapes, dtypes, statics): {why}{detail}")


def failure_of(info: dict, here: int, side: CallSide | None, ctl: Any, epoch: int) -> L3CError:
    """The error this rank raises for a peer's "failed" report of this call. For "calls differ"
    it answers the peer with this rank's program text when it sent its own (rank 0 only: the peer
    compared with rank 0's), and shows the first differing line."""
    if info["kind"] != "CallsDiffer":
        return remote_error(info, here)
    detail = ""
    theirs = info.get("program_text")
    if theirs is not None and side is not None and side.program_text is not None:
        mine = side.program_text()
        if here == 0:
            peers.tell(ctl, [info["host"]], epoch, "program_text", mine)
        detail = "\n" + first_difference(mine, theirs, here, info["host"])
    exc = L3CError(f"the hosts' calls differ (every rank must make the same calls in the same "
                   f"order: same function, shapes, dtypes, statics): {info['message']}{detail}")
    exc.host = info["host"]
    return exc


def first_difference(a_text: str, b_text: str, a: int, b: int) -> str:
    """The first line where two ranks' program texts differ, both sides shown."""
    x, y = a_text.splitlines(), b_text.splitlines()
    line = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]), min(len(x), len(y)))
    show = lambda lines: lines[line] if line < len(lines) else "<end>"  # noqa: E731
    return (f"host {a} and host {b} first differ at line {line + 1}:\n"
            f"  {f'host {a}:':<9}{show(x)}\n  {f'host {b}:':<9}{show(y)}")


def _await_text(ctl: Any, MPI: Any, epoch: int, here: int) -> str | None:
    end = time.monotonic() + min(REPLY_S, launcher.REMOTE_SILENCE)
    while time.monotonic() < end:
        for src, message in peers.receive(ctl, MPI, epoch):
            if src == 0 and message[1] == "program_text":
                return message[2]
            peers.keep([(src, message)])
        time.sleep(0.001)
    return None


def _follow_spec(MPI: Any, inputs: list[np.ndarray]) -> Any:
    """One MPI buffer spec over every input, in place (no packing): an hindexed datatype of their
    absolute addresses, or the array itself when there is one."""
    if len(inputs) == 1:
        return [inputs[0].reshape(-1).view(np.uint8), MPI.BYTE]
    dtype = MPI.BYTE.Create_hindexed([a.nbytes for a in inputs],
                                     [MPI.Get_address(a) for a in inputs]).Commit()
    return _Spec(MPI, dtype)


class _Spec(list):
    """`[MPI.BOTTOM, 1, datatype]` that frees its datatype when collected."""

    def __init__(self, MPI: Any, dtype: Any) -> None:
        super().__init__([MPI.BOTTOM, 1, dtype])
        self._dtype = dtype

    def __del__(self) -> None:
        try:
            self._dtype.Free()
        except Exception:  # noqa: BLE001 - MPI may be finalized
            pass


def wait(requests: list, deadline: float, what: str, ctl: Any, MPI: Any, call: int, here: int,
         host: int = -1, side: CallSide | None = None) -> None:
    """Complete `requests` by `deadline`, reading the control channel meanwhile: a peer's "bye" or
    its failure report for this call raises at once; silence until the deadline is `HostLost`."""
    spin_until = time.monotonic() + launcher.WAIT_SPIN_S
    pause, next_control, bye = 0.0, 0.0, None
    while not MPI.Request.Testall(requests):
        now = time.monotonic()
        if now < spin_until:
            os.sched_yield()
            continue
        if now >= next_control:
            next_control = now + 0.001
            later = []
            for src, message in peers.receive(ctl, MPI, call):
                if message[1] == "failed":
                    raise failure_of(message[2], here, side, ctl, call)
                if message[1] == "bye" and bye is None:
                    bye = (src, now)
                later.append((src, message))    # for the run loop: a peer already in the run
            peers.keep(later)                   # sent its "done", a "bye" may follow it...
        if bye is not None and now >= bye[1] + BYE_GRACE_S:
            raise peers.exited(bye[0], here, call)
        if now >= deadline:
            who = f"host {host}" if host >= 0 else "another host"
            raise peers.mark_gone(host, HostLost(
                f"{who} did not answer while host {here} waited for {what} at call {call} (it "
                f"died, stalled, or is not making this call)", host=host))
        time.sleep(pause)
        pause = min(0.001, pause + 0.00002)
