"""Pool part 2 of 5: the parent's side of the mailboxes (layout.py): post, send, wait.

The parent is the only writer of S_COMMAND_SEQ, S_COMMAND, S_ARG, S_EXPECTED and the S_DONE reset;
workers write S_DONE during a run, the terminal state, S_PID when ready, and the error area. The
state machine is in `docs/runtime.md`.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import select
import struct
import time

from ..errors import L3CError, Timeout
from . import layout, sync

SLICE = 0.05                     # parent's doorbell sleep slice (s): bounds crash detection and Ctrl-C
MESSAGE_WAIT = 60.0              # how long a worker may take to read a message (no run timeout set)
TERMINAL = (layout.ST_FINISHED, layout.ST_FAILED, layout.ST_ABORTED)


class Mailbox:
    """Commands to workers and waits for their states (a mixin of `pool.Pool`)."""

    def _word(self, slot: int, field: int) -> int:
        return self._words[(layout.slot_offset(slot) + field) // 4]

    def _set(self, slot: int, field: int, value: int) -> None:
        self._words[(layout.slot_offset(slot) + field) // 4] = value

    def state(self, slot: int) -> int:
        return self._word(slot, layout.S_STATE)

    def post(self, slot: int, command: int, arg: int = 0) -> None:
        """Post a command to a worker's mailbox: state BUSY, command and arg, bump the sequence, wake."""
        self._set(slot, layout.S_STATE, layout.ST_BUSY)
        self._set(slot, layout.S_COMMAND, command)
        self._set(slot, layout.S_ARG, arg)
        base = self.control_address + layout.slot_offset(slot)
        sync.add_u32(base + layout.S_COMMAND_SEQ, 1)           # seq_cst: orders the stores above
        if sync.load_u32(base + layout.S_COMMAND_WAITERS):
            sync.futex_wake(base + layout.S_COMMAND_SEQ, 1)

    def send(self, slot: int, message: object, command: int, arg: int,
             deadline: float | None = None) -> None:
        """Hand the worker one length-prefixed pickle through its pipe, then post `command`.

        What fits in the pipe is written before the post, so a small message is there when the worker
        takes the command; a message larger than the pipe's buffer is posted first and the rest
        written while the worker reads (waiting on the pipe, bounded by `deadline`: the run's, which
        raises Timeout; without one MESSAGE_WAIT, which raises L3CError)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = struct.pack("<Q", len(data)) + data
        fd = self._workers[slot].pipe
        limit = deadline if deadline is not None else time.monotonic() + MESSAGE_WAIT
        view = memoryview(data)
        posted = False
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                break                              # the worker died; the caller's wait reports it
            if not posted:
                self.post(slot, command, arg)
                posted = True
            remaining = limit - time.monotonic()
            if remaining <= 0:
                if deadline is None:
                    raise L3CError(f"{self.describe_slot(slot)} did not read its message within "
                                   f"{MESSAGE_WAIT} s")
                raise Timeout(f"{self.describe_slot(slot)} did not read its message in time")
            select.select([], [fd], [], min(remaining, SLICE))
            if not self._alive(slot):
                return
        if not posted:
            self.post(slot, command, arg)

    def wait(self, busy: list[int], deadline: float | None, any_done: bool = False,
             spin: int = sync.IDLE_SPIN) -> tuple[int, int | list[int]]:
        """Wait until every slot in `busy` is terminal (or, with `any_done`, at least one).

        Returns (layout.RUN_OK, [terminal slots]) or (RUN_FAILED | RUN_CRASHED | RUN_TIMEOUT |
        RUN_ABORTED, slot).
        Spins `spin` reads on the doorbell, then sleeps on it in slices of SLICE seconds; each slice
        checks for dead workers and the deadline, and lets KeyboardInterrupt in."""
        doorbell = self.control_address + layout.H_DOORBELL
        waiters = self.control_address + layout.H_DOORBELL_WAITERS
        woken = False                    # a dead worker never rings: check pids after a quiet slice
        while True:
            seen = sync.load_u32(doorbell)   # read before the states: a later ring changes it
            done, aborted = [], []
            for s in busy:
                st = self.state(s)
                if st == layout.ST_FAILED:
                    return layout.RUN_FAILED, s
                if st in TERMINAL:
                    done.append(s)
                    if st == layout.ST_ABORTED:
                        aborted.append(s)
            if len(done) == len(busy) or (any_done and done):
                return (layout.RUN_ABORTED, aborted[0]) if aborted else (layout.RUN_OK, done)
            if not woken:
                for s in busy:
                    if s not in done and not self._alive(s):
                        return layout.RUN_CRASHED, s
            slice_s = SLICE
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return layout.RUN_TIMEOUT, next(s for s in busy if s not in done)
                slice_s = min(slice_s, remaining)
            woken = sync.wait_ge(doorbell, (seen + 1) & 0xFFFFFFFF, waiters, self._zero_address,
                                 spin, max(1000, int(slice_s * 1e9))) == sync.WAIT_OK

    def _error_text(self, slot: int) -> str:
        n = min(self._word(slot, layout.S_ERROR_LEN), layout.ERROR_BYTES)
        start = layout.error_offset(self.slots, slot)
        return ctypes.string_at(self.control_address + start, n).decode("utf-8", "replace")
