"""One rank's part of a multi-host run of a plan with loops: the workers run the host's plan, the
parent runs the landing slot's queue (`commloop.CommQueue`: the loops' control, the sends and the
landings, in sequential order), then the final broadcasts as for any plan (`loop.HostRun`).

The loop: advance the queue as far as it goes, test the sends in flight, watch the local run (the
native wait when the doorbell moved, and every CHECK_S), read the control channel (failures,
heartbeats, "done") every CONTROL_S, and when nothing moved wait for what the queue waits for:
in the native poll (`poll.py`), aimed at the local count it needs or the landing's requests,
yielding the core each round for SPIN_S after the last progress, then napping on the doorbell in
ticks; workers ring it after every step of these plans. Past the run's timeout, a host whose
queue waits for a landing leaves the blame to the host it waits for (the same grace as
`loop.HostRun`); otherwise its own unfinished workers are the hung ones (the native wait with a
deadline already passed names them).
"""
from __future__ import annotations

import ctypes
import os
import time

from ...errors import Timeout
from .. import layout, stamps, sync
from . import poll
from .commloop import WAIT_LOCAL, WAIT_RECV, CommQueue
from .loop import (CHECK_S, CONTROL_S, CTL_TAG, HEARTBEAT, NATIVE_POLL, SPIN_S, HostRun, poll_rounds,
                   python_nap_ns)
from .state import TIMEOUT_GRACE


class HostLoopRun(HostRun):
    """One run of a plan with loops on this host (see the module docstring)."""

    def loop(self) -> None:
        MPI, disp, pool, plan = self.MPI, self.disp, self.pool, self.plan
        load, yield_, monotonic = sync.load_u32, os.sched_yield, time.monotonic
        queue = CommQueue(self.part.comm, plan.slots, len(plan.loops), self)
        self.queue = queue
        sync.store_u32(self.landing_word, 0)
        ctrl, pids = pool.control_address, pool.pids_address
        slot_map = ctypes.addressof(self.slot_map)
        doorbell = ctrl + layout.H_DOORBELL
        doorbell_waiters, abort_word = ctrl + layout.H_DOORBELL_WAITERS, ctrl + layout.H_ABORT
        out_slot = ctypes.c_int32(-1)
        out_ref = ctypes.byref(out_slot)
        local_done = not any(plan.queues)
        said_done = False
        now = monotonic()
        last_progress = last_beat = last_check = last_control = now
        bell = load(doorbell)
        poller = poll.native() if NATIVE_POLL else None
        watch = None if poller is None else poll.Watch(
            poller, self.landing_word, self.landing_waiters, doorbell, False)
        if watch is not None:
            watch.set_control(MPI._handleof(self.ctl), CTL_TAG, MPI.ANY_SOURCE)
        flags = 0
        if self.stamps is not None:
            stamps.clear(pool, plan)
            flags = layout.RUN_PROFILE
            self.stamps["t0"] = time.monotonic_ns()
        disp.start(ctrl, self.plan_id | flags, slot_map)
        while True:
            progressed = queue.advance()
            if queue.test_sends():
                progressed = True
            now = monotonic()
            if progressed:
                last_progress = now
            if not local_done:
                # workers ring after every step here: the native wait (which spins ~20 us first)
                # runs on a ring only once the queue is done, else every CHECK_S
                b = load(doorbell)
                rung, bell = b != bell, b
                if rung and queue.finished or now - last_check >= CHECK_S:
                    last_check = now
                    self._local(disp.wait(ctrl, pids, slot_map, 0, 0, out_ref), out_slot)
                    local_done = self._local_done
            remote = not queue.finished or bool(queue.inflight)
            if local_done and not remote:
                if not said_done:
                    self.tell(self.peers, ("done",))
                    said_done = True
                    last_progress = now
                if len(self.done_peers) == len(self.peers):
                    break
            blocked = queue.blocked
            if now - last_control >= CONTROL_S or not remote and said_done:
                last_control = now
                self.poll_control()
                if now - last_beat >= HEARTBEAT:
                    self.tell(self.peers, ("alive",))
                    last_beat = now
                waiting: dict[int, int] = {}
                if blocked[0] == WAIT_RECV:
                    waiting[blocked[2]] = blocked[3]
                self.check_silences(waiting, said_done)
                if self.deadline is not None and now >= self.deadline:
                    if not local_done and blocked[0] != WAIT_RECV:
                        # this host's own workers hang: the native wait past its deadline says who
                        self._local(disp.wait(ctrl, pids, slot_map, 1, 0, out_ref), out_slot)
                        local_done = self._local_done
                    if now >= self.deadline + TIMEOUT_GRACE:
                        raise Timeout(f"host {self.host}: the run exceeded its timeout of "
                                      f"{self.timeout} s while exchanging transfers")
            if queue.stalled is not None and local_done:
                raise Timeout(f"host {self.host}: its transfers stopped ({queue.stalled}) "
                              "although its workers finished")
            if progressed:
                yield_()
                continue
            quiet = now - last_progress
            if (remote or said_done) and watch is not None:
                pairs = [(blocked[1], blocked[2])] if blocked[0] == WAIT_LOCAL else []
                watch.set_words(pairs, [None] * len(pairs), *self._send_handles)
                if blocked[0] == WAIT_RECV:
                    watch.set_requests(blocked[1], None)
                else:
                    watch.set_requests(queue.inflight[0][0] if queue.inflight else [], None)
                rounds, tick = poll_rounds(quiet)
                event = watch.wait(load(doorbell) if local_done else bell, rounds, tick)
                if event == poll.POLL_CONTROL:
                    self.poll_control()
                    last_control = monotonic()
                continue
            if (remote or said_done) and quiet < SPIN_S:
                yield_()
                continue
            nap = python_nap_ns(remote or said_done, quiet)
            if not local_done:
                sync.wait_ge(doorbell, (bell + 1) & 0xFFFFFFFF, doorbell_waiters, abort_word, 0, nap)
                bell, last_check = load(doorbell), monotonic()
                self._local(disp.wait(ctrl, pids, slot_map, 0, 0, out_ref), out_slot)
                local_done = self._local_done
            else:
                time.sleep(nap / 1e9)

    def hung_steps(self) -> list:
        return []
