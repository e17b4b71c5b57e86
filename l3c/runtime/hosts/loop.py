"""One rank's part of a multi-host run: its own native dispatcher plus non-blocking MPI transfers.

Each rank (host) runs the same steps (`l3c.execute.hosts.run` drives them; this module holds the
loop of steps 3-5 and the final broadcasts):

1. agree: the first run of a `Compiled` checks that every rank holds the same program (hash of the
   canonical text dump; on a mismatch the first differing line is shown);
2. inputs: rank 0's arrays are broadcast (`Ibcast`) straight into every host's staging area;
3. post an `Irecv` for every inbound transfer not gated (into the arena itself when the piece is
   contiguous, else into a buffer), reset the landing counter, start the dispatcher (`l3c_start`);
4. the parent loop, per *transfer* (never per task): post the `Isend`s of a transfer once its producer's
   S_DONE shows it completed (the native poll posts those of contiguous pieces itself); post gated
   `Irecv`s once their local tasks and earlier landings are done; raise the landing counter over
   the host's sequence in its fixed order (an inbound transfer counts once received and scattered,
   a sent item once its `Isend`s completed), with a futex wake: workers wait on it like on any
   slot; poll the control channel (failures, heartbeats, "done"); while remote work is
   outstanding, wait in the native poll (`poll.py`: due sends, posted there at once when
   contiguous, and the next landing, published there at once), else nap on the doorbell;
5. when the local run finished, every send completed and every transfer landed: tell the others
   "done" and wait for their "done"; then the owners broadcast the results and written inputs
   (`FinalPiece`s); write inputs back and copy results out on every rank.

Failures: a local error (kernel raised, worker crashed, timeout) is sent to every other rank before it
is raised here; a rank receiving it recovers its pool and raises `HostFailed` (or `KernelError` with
the same kernel/task/loc/traceback when a kernel raised). A rank that goes silent (no message, no
heartbeat: every parent loop sends one every HEARTBEAT seconds) for `launcher.REMOTE_SILENCE`
seconds, or past the run's timeout, while this rank waits on it, raises `HostLost` here. Every wait on
a remote message is a `Test` loop with one of those deadlines: nothing blocks in MPI.
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from typing import Any

from ...errors import Timeout
from .. import layout, stamps, sync
from . import launcher, peers, poll
from ..hostplan import Transfer
from .buffers import bytes_spec
from .errors import HostLost, on_host
from .state import TIMEOUT_GRACE, RunState

HEARTBEAT = 0.25            # s between "alive" messages to every other rank while a run waits
SPIN_S = float(os.environ.get("L3C_DIST_SPIN", "0.01"))
                            # after progress, poll (yielding the core each round) this long while
                            # something remote is outstanding
CHECK_S = 0.002             # while spinning, let the native wait check the local run this often
CONTROL_S = 0.0005          # ... and read control messages / check silences this often
POLL_ROUNDS = 32            # rounds of the native poll (each ends with a sched_yield) per loop round
NATIVE_POLL = os.environ.get("L3C_DIST_NATIVE_POLL", "1") != "0"
NAP_NS = 100_000            # then nap in the native poll for 1/NAP_SHARE of the quiet time so
NAP_SHARE = 16              # far, at least NAP_NS and at most LONG_NAP_NS, before a round of this
LONG_NAP_NS = 10_000_000    # loop (control messages, silences, the local run's state), in ticks
TICK_SHARE = 64             # of 1/TICK_SHARE of the quiet time (within NAP_TICK_MIN/MAX_NS): each
NAP_TICK_MIN_NS = 50_000    # a futex wait on the local doorbell, then a test of the next landing,
NAP_TICK_MAX_NS = 1_000_000 # so a message is seen at most ~1.6% (1 ms) after the wait it ends
PYTHON_NAP_NS = 2_000_000   # the longest nap without the native poll (another MPI)
LOCAL_NAP_NS = 2_000_000    # ... and when only the local run is left (crashes and the deadline
                            # are seen after it)
CTL_TAG = peers.CTL_TAG
# benchmarks/multihost.py --stages sets a list here: (stage, CLOCK_MONOTONIC ns) of each transfer,
# and ("native", transfer id) when the native poll posted its sends
PROBE: list | None = None


def poll_rounds(quiet: float) -> tuple[int, int]:
    """(rounds, tick ns) of one native poll after `quiet` s without progress: spin, yielding the
    core every round, for SPIN_S; then nap in ticks on the doorbell between tests, longer as the
    quiet lasts."""
    if quiet < SPIN_S:
        return POLL_ROUNDS, 0
    tick = min(NAP_TICK_MAX_NS, max(NAP_TICK_MIN_NS, int(quiet * 1e9) // TICK_SHARE))
    span = min(LONG_NAP_NS, max(NAP_NS, int(quiet * 1e9) // NAP_SHARE))
    return max(1, span // tick), tick


def python_nap_ns(remote: bool, quiet: float) -> int:
    """A nap without the native poll. While something remote is outstanding a message wakes
    nothing, so nap longer as the quiet lasts (a message is seen only after the nap, at most ~6%
    later than the wait it ends); when only the local run is left its doorbell ends the nap (a
    crashed worker rings nothing: the native wait after the nap sees it)."""
    if remote:
        return min(PYTHON_NAP_NS, max(NAP_NS, int(quiet * 1e9) // NAP_SHARE))
    return LOCAL_NAP_NS


@dataclass(slots=True)
class Landing:
    """One item of the host's landing sequence: an inbound transfer ("recv": its `Irecv`s once
    posted, and the scatters after it arrived) or a sent item ("sent": counted once its `Isend`s
    completed)."""

    kind: str
    tr: Transfer
    reqs: list | None = None
    scatters: list | None = None


@dataclass(slots=True)
class SendHead:
    """The sends one producer slot makes, by completion count: `items[next]` is polled next;
    `posted` holds its requests when the native poll already posted it."""

    word: int
    items: list
    next: int = 0
    posted: list | None = None


class HostRun(RunState):
    """One run on this host: the parent's loop over transfers, then the final broadcasts."""

    def loop(self) -> None:
        """Steps 3-5 up to the exchange of "done" (see the module docstring).

        Waiting: while anything remote is outstanding (an inbound transfer not landed, a send not
        posted or not completed, a peer's "done"), the loop spins for up to `SPIN_S` after the last
        progress, because a message from another host wakes no futex: it is only seen by testing.
        It spins in the native poll (`poll.py`), POLL_ROUNDS rounds per loop round, each ending
        with a `sched_yield` (a worker that needs this core gets it at once); the poll returns on
        a due send, a completed landing (which it publishes itself when nothing needs scattering)
        or the doorbell. After any progress the loop yields once before going on. Past `SPIN_S` it
        naps for 1/NAP_SHARE of the quiet time so far: in the native poll, as ticks of
        1/TICK_SHARE of it, each a futex wait on the local doorbell and then the same tests (a
        message from another host is seen at the end of a tick). A worker rings the doorbell when
        it ends or fails and when it completes a step the loop waits for (a producer of a send,
        the last task a gated receive waits for), so a local event ends the nap at once. The
        native wait (`l3c_wait`: the local run ended, failed, crashed or timed out) runs whenever
        the doorbell moved, every `CHECK_S` while spinning, and after every nap: a crashed worker
        rings nothing, so it is seen within a nap span (at most LONG_NAP_NS)."""
        MPI, disp, pool, plan = self.MPI, self.disp, self.pool, self.plan
        testall, load, yield_ = MPI.Request.Testall, sync.load_u32, os.sched_yield
        monotonic, probe = time.monotonic, PROBE
        # the landing sequence; an inbound transfer's Irecvs are posted before the run unless
        # gated (its bytes are still in use here)
        seq: list[Landing] = []
        for kind, tr in self.part.sequence:
            item = Landing(kind, tr)
            if kind == "recv":
                item.scatters = [(buf, how) for _, buf, how in self.bufs.inbound[tr.id]
                                 if how is not None]
                if not tr.gate_slots and not tr.gate_order:
                    item.reqs = self.post_receive(tr)
            seq.append(item)
        gated = [item for item in seq if item.kind == "recv" and item.reqs is None]
        sent_reqs: dict[int, list] = {}
        n_seq = len(seq)
        sync.store_u32(self.landing_word, 0)
        ctrl, pids = pool.control_address, pool.pids_address
        slot_map = ctypes.addressof(self.slot_map)
        doorbell = ctrl + layout.H_DOORBELL
        doorbell_waiters, abort_word = ctrl + layout.H_DOORBELL_WAITERS, ctrl + layout.H_ABORT
        out_slot = ctypes.c_int32(-1)
        out_ref = ctypes.byref(out_slot)
        # The native wait gets no deadline: past the timeout, this loop decides whether this host
        # hangs (a step of its own runs) or only waits for another host, which is then blamed.
        deadline_ns = 0
        # pending sends per producer slot, by completion count: only each slot's head is polled
        heads = [SendHead(word, items) for word, items in self.bufs.outbound.items()]
        n_sends_left = sum(len(head.items) for head in heads)
        inflight: list = []
        landed = 0
        local_done = not any(plan.queues)
        said_done = False
        now = monotonic()
        last_progress = last_beat = last_check = last_control = now
        bell = load(doorbell)
        poller = poll.native() if NATIVE_POLL else None
        watch = None if poller is None else poll.Watch(
            poller, self.landing_word, self.landing_waiters, doorbell, probe is not None)
        if watch is not None:
            watch.set_control(MPI._handleof(self.ctl), CTL_TAG, MPI.ANY_SOURCE)
        watch_stale = True
        flags = 0
        if self.stamps is not None:          # workers record every step: see layout.RUN_PROFILE
            stamps.clear(pool, plan)
            flags = layout.RUN_PROFILE
            self.stamps["t0"] = time.monotonic_ns()
        disp.start(ctrl, self.plan_id | flags, slot_map)
        while True:
            progressed = False
            if n_sends_left:
                for head in heads:
                    word, items, i, posted = head.word, head.items, head.next, head.posted
                    if i < len(items) and load(word) >= items[i][0]:
                        done = load(word)
                        while i < len(items) and done >= items[i][0]:
                            tr, specs = items[i][1], items[i][2]
                            if posted is not None:      # the native poll sent it already
                                reqs, posted, head.posted = posted, None, None
                                if probe is not None:
                                    probe.append(("native", tr.id))
                                    probe.append(("seen", watch.mpi.noticed))
                                    probe.append(("sent", watch.mpi.sent))
                            else:
                                if probe is not None:
                                    probe.append(("seen", time.monotonic_ns()))
                                reqs = self.post_sends(tr, specs)
                                if probe is not None:
                                    probe.append(("sent", time.monotonic_ns()))
                            if tr.sent_order:
                                sent_reqs[tr.id] = reqs
                            else:
                                inflight.extend(reqs)
                            i += 1
                            n_sends_left -= 1
                        head.next = i
                        progressed = True
            if gated:
                still = []
                for item in gated:
                    tr = item.tr
                    if landed >= tr.gate_order and all(
                            load(self.done_word(sl)) >= c for sl, c in tr.gate_slots):
                        item.reqs = self.post_receive(tr)
                        progressed = True       # (not a nap: its message may be on its way)
                    else:
                        still.append(item)
                gated = still
            while landed < n_seq:
                item = seq[landed]
                kind, tr, reqs = item.kind, item.tr, item.reqs
                if kind == "recv":
                    if reqs is None or not testall(reqs):
                        break
                    for buf, how in item.scatters:
                        self.buffers.scatter(buf, how)
                    if probe is not None:
                        early = watch.stamp.value if watch is not None else 0
                        probe.append(("arrived", early or time.monotonic_ns()))
                    heard_from = tr.src
                else:
                    reqs = sent_reqs.get(tr.id)
                    if reqs is None or not testall(reqs):
                        break
                    del sent_reqs[tr.id]
                    heard_from = -1
                landed += 1
                sync.publish(self.landing_word, landed, self.landing_waiters)
                if heard_from >= 0:
                    self.heard[heard_from] = monotonic()
                progressed = True
            if inflight and testall(inflight):
                inflight = []
                progressed = True
            now = monotonic()
            if progressed:
                last_progress = now
            if not local_done:
                b = load(doorbell)
                if b != bell or now - last_check >= CHECK_S:
                    bell, last_check = b, now
                    self._local(disp.wait(ctrl, pids, slot_map, deadline_ns, 0, out_ref), out_slot)
                    local_done = self._local_done
            remote = n_sends_left or inflight or landed < n_seq
            if local_done and not remote:
                if not said_done:
                    self.tell(self.peers, ("done",))
                    said_done = True
                    last_progress = now
                if len(self.done_peers) == len(self.peers):
                    break
            if now - last_control >= CONTROL_S or not remote and said_done:
                last_control = now
                self.poll_control()
                if now - last_beat >= HEARTBEAT:
                    self.tell(self.peers, ("alive",))
                    last_beat = now
                waiting: dict[int, int] = {}
                if landed < n_seq and seq[landed].kind == "recv":
                    waiting[seq[landed].tr.src] = seq[landed].tr.producer
                elif landed < n_seq:
                    waiting[seq[landed].tr.dst] = seq[landed].tr.producer
                self.check_silences(waiting, said_done)
                if self.deadline is not None and now >= self.deadline:
                    hung = [] if local_done else self.hung_steps()
                    if hung:
                        raise self.timed_out(hung)
                    if now >= self.deadline + TIMEOUT_GRACE:
                        raise Timeout(f"host {self.host}: the run exceeded its timeout of "
                                      f"{self.timeout} s while exchanging transfers")
            if progressed:
                # Hand the core to whoever this progress unblocked before doing anything else: the
                # consumer a landing just woke (the futex puts it on this core as often as not), or
                # the rest of a producer's run. ~1 us when nobody else wants the core.
                yield_()
                watch_stale = True
                continue
            quiet = now - last_progress
            if (remote or said_done) and watch is not None:
                if watch_stale:
                    self._aim(watch, heads, gated, seq, landed, sent_reqs, inflight)
                    watch_stale = False
                rounds, tick = poll_rounds(quiet)
                event = watch.wait(load(doorbell) if local_done else bell, rounds, tick)
                if event != poll.POLL_IDLE:
                    watch_stale = True          # re-aim: an event must not return at once again
                if event == poll.POLL_SEND:
                    posted = watch.take_posted()
                    if posted is not None:
                        k, handles, error = posted
                        self._aimed[k].posted = [MPI.Request.fromhandle(h) for h in handles]
                        if error is not None:           # the pieces before it are in flight
                            inflight.extend(self._aimed[k].posted)
                            raise error
                elif event == poll.POLL_CONTROL:
                    self.poll_control()         # reads it (or raises a peer's failure)
                    last_control = monotonic()
                continue
            if (remote or said_done) and quiet < SPIN_S:    # (no native poll with this MPI)
                yield_()
                continue
            nap = python_nap_ns(remote or said_done, quiet)
            if not local_done:
                # on the doorbell: it rings when a local worker ends or fails, and when a step the
                # loop waits for completes (`Step.ring`). `bell` is the value the last native wait
                # saw: a ring since then ends this nap at once.
                sync.wait_ge(doorbell, (bell + 1) & 0xFFFFFFFF, doorbell_waiters, abort_word, 0, nap)
                bell, last_check = load(doorbell), monotonic()
                self._local(disp.wait(ctrl, pids, slot_map, deadline_ns, 0, out_ref), out_slot)
                local_done = self._local_done
            else:
                time.sleep(nap / 1e9)

    _local_done = False

    def _aim(self, watch: poll.Watch, heads: list[SendHead], gated: list[Landing],
             seq: list[Landing], landed: int, sent_reqs: dict, inflight: list) -> None:
        """Point the native poll at the sends due next (which it posts itself when their pieces lie
        contiguous in the arena: the Isend leaves without a round of this loop), the unmet gates
        of gated receives, and the next landing's requests (it may publish that landing itself
        when nothing needs scattering), else at the sends in flight."""
        pairs, sends, self._aimed = [], [], []
        for head in heads:
            if head.next < len(head.items):
                count, tr, _, native = head.items[head.next]
                pairs.append((head.word, count))
                sends.append(None if native is None or head.posted is not None else
                             [(address, n, tr.dst, self.tag_base + tr.id) for address, n in native])
                self._aimed.append(head)
        for item in gated:
            for slot, count in item.tr.gate_slots:
                word = self.done_word(slot)
                if sync.load_u32(word) < count:
                    pairs.append((word, count))
        watch.set_words(pairs, sends, *self._send_handles)
        if landed < len(seq):
            item = seq[landed]
            reqs, scatters = item.reqs, item.scatters
            if item.kind == "sent":
                reqs, scatters = sent_reqs.get(item.tr.id), None
            if reqs:
                watch.set_requests(reqs, None if scatters else landed + 1)
                return
        watch.set_requests(inflight, None)

    def check_silences(self, waiting: dict[int, int], said_done: bool) -> None:
        """Check the hosts this one waits for (`waiting`: host -> producer, -1 for none) and, once
        it said "done", every peer that has not: a silent one is lost."""
        if said_done:
            for h in self.peers:
                if h not in self.done_peers:
                    waiting.setdefault(h, -1)
        if waiting:
            self.check_remote(waiting)

    def _local(self, status: int, out_slot: Any) -> None:
        """Act on the native wait's verdict about the local run."""
        if status == layout.RUN_OK:
            self._local_done = True
        elif status != layout.RUN_PENDING:
            cfg = self.compiled.program.config
            try:
                with launcher.forking():
                    self.pool.finish_run(status, out_slot.value, self.plan, self.timeout)
            except Exception as exc:     # the pool numbers its workers from 0: say global ids
                raise on_host(exc, self.host, cfg.chips, cfg.sub_workers, out_slot.value) from None

    def final_sync(self) -> None:
        """The owners broadcast the results and written inputs (every rank takes part, in order)."""
        requests, scatters = [], []
        for buf, how, root in self.bufs.final:
            if root == self.host:
                self.buffers.gather(buf, how)
            else:
                scatters.append((buf, how))
            requests.append(self.comm.Ibcast(bytes_spec(buf), root=root))
        limit = launcher.REMOTE_SILENCE
        if self.deadline is not None:
            limit = max(0.5, min(limit, self.deadline - time.monotonic()))
        try:
            launcher.wait_all(requests, time.monotonic() + limit, "the results from the other hosts")
        except HostLost as exc:
            raise peers.mark_gone(exc.host, exc) from None
        for buf, how in scatters:
            self.buffers.scatter(buf, how)
