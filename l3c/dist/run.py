"""One rank's part of a multi-host run: its own native dispatcher plus non-blocking MPI transfers.

Each rank (host) runs the same steps, `run(compiled, *args)`:

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

import numpy as np

from ..errors import L3CError, Timeout
from ..runtime import context, layout, sync
from ..runtime.pool import get_pool
from . import calls, launcher, peers, poll
from .errors import HostLost, error_info, on_host, slot_name
from .buffers import Buffers, HostBuffers, bytes_spec
from ..codegen.hosts import split
from ..runtime.hostplan import DistPlan, Transfer

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
_EMPTY = np.empty(0, dtype=np.uint8)
TAG_SPACE = 1 << 20         # data tags per run epoch (at most half the tag range); epochs wrap
TIMEOUT_GRACE = 2.0         # after the run's timeout, how long a host that hangs nothing itself
                            # waits for the hung host's report before blaming whom it waits for
CTL_TAG = peers.CTL_TAG
# benchmarks/multihost.py --stages sets a list here: (stage, CLOCK_MONOTONIC ns) of each transfer,
# and ("native", transfer id) when the native poll posted its sends
PROBE: list | None = None


@dataclass
class _Prepared:
    dist: DistPlan
    disp: Any               # the native dispatcher of this host's plan
    host: int


def prepare(compiled: Any, host: int | None = None) -> tuple[DistPlan, Any]:
    """The split plan (all hosts) and this host's JIT-compiled dispatcher, built once per Compiled."""
    from ..codegen.dispatcher import build
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


def _describe(compiled: Any, task: int) -> str:
    if task < 0:
        return "?"
    t = compiled.program.task(task)
    return f"task {task} {t.short_kernel} ({t.loc})"


class _Run:
    """State of one run on this host (one epoch)."""

    def __init__(self, compiled: Any, dist: DistPlan, disp: Any, host: int, pool: Any,
                 plan_id: int, slot_map: Any, timeout: float | None, epoch: int,
                 side: calls.CallSide) -> None:
        MPI = launcher.mpi()
        self.MPI = MPI
        self.compiled, self.dist, self.disp, self.host, self.pool = compiled, dist, disp, host, pool
        self.part = dist.parts[host]
        self.plan = self.part.lowered.plan
        self.plan_id, self.slot_map = plan_id, slot_map
        self.comm, self.ctl = launcher.comms()
        self.hosts = dist.hosts
        self.peers = [h for h in range(self.hosts) if h != host]
        self.epoch, self.side = epoch, side
        space, epochs = tag_window(self.comm)
        self.tag_base = (epoch % epochs) * space
        if len(dist.transfers) >= space:
            raise L3CError(f"{len(dist.transfers)} transfers between hosts: this MPI's tags allow "
                           f"at most {space - 1}")
        self.recv_reqs: list = []       # every Irecv posted, cancelled if the run fails
        self.stamps: dict | None = None  # profiling: receives t0, t1 and the steps' stamps
        now = time.monotonic()
        self.deadline = None if timeout is None else now + timeout
        self.timeout = timeout
        self.heard = {h: now for h in self.peers}
        self.done_peers: set[int] = set()
        self._aimed: list = []          # the heads the native poll watches, by word index
        self._send_handles = (MPI._handleof(self.comm), MPI._handleof(MPI.BYTE))  # for the poll
        self.buffers = Buffers(pool)
        ctrl = pool.control_address
        self.ctrl = ctrl

        def done_word(slot: int) -> int:
            return ctrl + layout.slot_offset(pool.pool_slot(self.plan, slot)) + layout.S_DONE
        self.done_word = done_word
        landing = pool.pool_slot(self.plan, self.plan.slots - 1)
        self.landing_word = ctrl + layout.slot_offset(landing) + layout.S_DONE
        self.landing_waiters = ctrl + layout.slot_offset(landing) + layout.S_DONE_WAITERS
        key = f"dist_buffers_{host}"
        cached = compiled.artifacts.get(key)
        if cached is None or cached.generation != (pool.generation, ctrl):
            cached = compiled.artifacts[key] = HostBuffers(self)
        self.bufs = cached

    # ---------------------------------------------------------------------------- control channel
    def tell(self, to: list[int], message: tuple) -> None:
        peers.tell(self.ctl, to, self.epoch, *message)

    def poll_control(self) -> None:
        """Read every control message that arrived; raise on a peer's failure or exit."""
        for src, message in peers.receive(self.ctl, self.MPI, self.epoch):
            self.heard[src] = time.monotonic()
            if message[1] == "bye" and src not in self.done_peers:
                raise peers.exited(src, self.host, self.epoch)
            if message[1] == "done":
                self.done_peers.add(src)
            elif message[1] == "failed":
                info = message[2]
                info.setdefault("origin", info["host"])
                raise calls.failure_of(info, self.host, self.side, self.ctl, self.epoch)

    def check_remote(self, waiting_for: dict[int, int]) -> None:
        """Raise HostLost for a peer we wait on that stayed silent too long (or past the timeout).
        `waiting_for`: host -> task we wait for from it (-1: its "done"; the error then names the
        last task of its part)."""
        now = time.monotonic()
        limit = launcher.REMOTE_SILENCE
        if launcher.terminated_hint() is not None:      # the launcher said a process ended
            limit = min(limit, launcher.TERMINATED_SILENCE)
        # Past the timeout, the host whose task hangs reports it (`timed_out`): wait a grace for
        # that report before blaming the host this one waits for, which may only wait in turn.
        late = self.deadline is not None and now >= self.deadline + TIMEOUT_GRACE
        for h, task in waiting_for.items():
            silent = now - self.heard[h]
            if silent >= limit or late:
                why = (f"the run's timeout of {self.timeout} s passed" if late
                       else f"it sent nothing for {silent:.1f} s")
                if task >= 0:
                    what = f"the transfer of {_describe(self.compiled, task)}"
                else:                   # its "done": name the task its part ends with
                    task = max((st.task for q in self.dist.parts[h].lowered.plan.queues
                                for st in q), default=-1)
                    what = "it to finish its part of the run" + (
                        f" (which ends with {_describe(self.compiled, task)})" if task >= 0 else "")
                t = self.compiled.program.task(task) if task >= 0 else None
                exc = HostLost(f"host {h} stopped answering ({why}) while host {self.host} waited "
                               f"for {what}; it died or stalled", host=h, task=task,
                               kernel=t.kernel if t else "", loc=t.loc if t else "")
                raise exc if late else peers.mark_gone(h, exc)

    def hung_steps(self) -> list[tuple[int, Any]]:
        """The local slots whose next step has every wait met, so it runs (past the timeout: hangs)
        a kernel; slots waiting for a landing or for one of these are not among them."""
        load = sync.load_u32
        hung = []
        for s, queue in enumerate(self.plan.queues):
            done = load(self.done_word(s))
            if done < len(queue) and all(load(self.done_word(w)) >= c for w, c in queue[done].waits):
                hung.append((s, queue[done]))
        return hung

    def timed_out(self, hung: list[tuple[int, Any]]) -> Timeout:
        """This host's own Timeout: its steps that hang, by global chip id."""
        cfg = self.compiled.program.config
        names = "; ".join(f"{slot_name(s, self.host, cfg.chips, cfg.sub_workers)} ran "
                          f"{_describe(self.compiled, st.task)}" for s, st in hung)
        exc = Timeout(f"host {self.host}: the run exceeded its timeout of {self.timeout} s: {names} "
                      f"(hung workers are replaced)")
        exc.host = self.host
        return exc

    # ---------------------------------------------------------------------------- phases
    def post_receive(self, tr: Transfer) -> list:
        """The `Irecv`s of one inbound transfer (straight into the arena when a piece is contiguous)."""
        irecv, tag = self.comm.Irecv, self.tag_base + tr.id
        specs = self.bufs.inbound[tr.id]
        reqs = [irecv(spec, source=tr.src, tag=tag) for spec, _, _ in specs]
        if not specs:
            reqs.append(irecv([_EMPTY, self.MPI.BYTE], source=tr.src, tag=tag))
        self.recv_reqs.extend(reqs)
        return reqs

    def purge_stale_messages(self) -> None:
        """After a failed call: receive and drop data messages of earlier runs (a send whose
        receiver gave up), so that none is taken for this run's once the tags wrap around."""
        MPI, status = self.MPI, self.MPI.Status()
        space = tag_window(self.comm)[0]
        while self.comm.iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
            tag = status.Get_tag()
            if self.tag_base <= tag < self.tag_base + space:
                break                   # this run's: a peer that started first
            junk = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
            self.comm.Recv([junk, MPI.BYTE], source=status.Get_source(), tag=tag)

    def cancel_receives(self) -> None:
        """After a failed run: cancel the receives still posted, so that none of them takes a
        message of a later run once the tags wrap around."""
        for r in self.recv_reqs:
            try:
                if not r.Test():
                    r.Cancel()
                    r.Wait()
            except Exception:  # noqa: BLE001 - best effort: the tag window also moves on
                pass
        self.recv_reqs = []

    def post_sends(self, tr: Transfer, specs: list) -> list:
        tag = self.tag_base + tr.id
        isend = self.comm.Isend
        if not specs:
            return [isend([_EMPTY, self.MPI.BYTE], dest=tr.dst, tag=tag)]
        reqs = []
        for spec, buf, how in specs:
            if how is not None:
                self.buffers.gather(buf, how)
            reqs.append(isend(spec, dest=tr.dst, tag=tag))
        return reqs

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
        # the landing sequence: [kind, transfer, requests or None, scatters]; an inbound transfer's
        # Irecvs are posted before the run unless gated (its bytes are still in use here)
        seq = []
        for kind, tr in self.part.sequence:
            reqs = scatters = None
            if kind == "recv":
                scatters = [(buf, how) for _, buf, how in self.bufs.inbound[tr.id] if how is not None]
                if not tr.gate_slots and not tr.gate_order:
                    reqs = self.post_receive(tr)
            seq.append([kind, tr, reqs, scatters])
        gated = [item for item in seq if item[0] == "recv" and item[2] is None]
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
        # pending sends per producer slot, by completion count: only each slot's head is polled;
        # [word, items, next item, its requests when the native poll already posted it]
        heads: list[list] = []
        for word, items in self.bufs.outbound.items():
            heads.append([word, items, 0, None])
        n_sends_left = sum(len(head[1]) for head in heads)
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
            from ..execute import _clear_stamps
            _clear_stamps(pool, plan)
            flags = layout.RUN_PROFILE
            self.stamps["t0"] = time.monotonic_ns()
        disp.start(ctrl, self.plan_id | flags, slot_map)
        while True:
            progressed = False
            if n_sends_left:
                for head in heads:
                    word, items, i, posted = head
                    if i < len(items) and load(word) >= items[i][0]:
                        done = load(word)
                        while i < len(items) and done >= items[i][0]:
                            tr, specs = items[i][1], items[i][2]
                            if posted is not None:      # the native poll sent it already
                                reqs, posted, head[3] = posted, None, None
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
                        head[2] = i
                        progressed = True
            if gated:
                still = []
                for item in gated:
                    tr = item[1]
                    if landed >= tr.gate_order and all(
                            load(self.done_word(sl)) >= c for sl, c in tr.gate_slots):
                        item[2] = self.post_receive(tr)
                        progressed = True       # (not a nap: its message may be on its way)
                    else:
                        still.append(item)
                gated = still
            while landed < n_seq:
                kind, tr, reqs, scatters = seq[landed]
                if kind == "recv":
                    if reqs is None or not testall(reqs):
                        break
                    for buf, how in scatters:
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
                if landed < n_seq and seq[landed][0] == "recv":
                    waiting[seq[landed][1].src] = seq[landed][1].producer
                elif landed < n_seq:
                    waiting[seq[landed][1].dst] = seq[landed][1].producer
                if said_done:
                    for h in self.peers:
                        if h not in self.done_peers:
                            waiting.setdefault(h, -1)
                if waiting:
                    self.check_remote(waiting)
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
                if quiet < SPIN_S:                  # spin, yielding the core every round
                    rounds, tick = POLL_ROUNDS, 0
                else:                               # nap in ticks on the doorbell between tests
                    tick = min(NAP_TICK_MAX_NS, max(NAP_TICK_MIN_NS, int(quiet * 1e9) // TICK_SHARE))
                    span = min(LONG_NAP_NS, max(NAP_NS, int(quiet * 1e9) // NAP_SHARE))
                    rounds = max(1, span // tick)
                event = watch.wait(load(doorbell) if local_done else bell, rounds, tick)
                if event != poll.POLL_IDLE:
                    watch_stale = True          # re-aim: an event must not return at once again
                if event == poll.POLL_SEND:
                    posted = watch.take_posted()
                    if posted is not None:
                        k, handles, error = posted
                        self._aimed[k][3] = [MPI.Request.fromhandle(h) for h in handles]
                        if error is not None:           # the pieces before it are in flight
                            inflight.extend(self._aimed[k][3])
                            raise error
                elif event == poll.POLL_CONTROL:
                    self.poll_control()         # reads it (or raises a peer's failure)
                    last_control = monotonic()
                continue
            if (remote or said_done) and quiet < SPIN_S:    # (no native poll with this MPI)
                yield_()
                continue
            if remote or said_done:
                # a message wakes nothing: nap longer as the quiet lasts (here a message is seen
                # only after the nap, so at most ~6% later than the wait it ends)
                nap = min(PYTHON_NAP_NS, max(NAP_NS, int(quiet * 1e9) // NAP_SHARE))
            else:
                # only the local run is left, and its doorbell ends the nap (a crashed worker
                # rings nothing: the native wait after the nap sees it)
                nap = LOCAL_NAP_NS
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

    def _aim(self, watch: poll.Watch, heads: list, gated: list, seq: list, landed: int,
             sent_reqs: dict, inflight: list) -> None:
        """Point the native poll at the sends due next (which it posts itself when their pieces lie
        contiguous in the arena: the Isend leaves without a round of this loop), the unmet gates
        of gated receives, and the next landing's requests (it may publish that landing itself
        when nothing needs scattering), else at the sends in flight."""
        pairs, sends, self._aimed = [], [], []
        for head in heads:
            word, items, i, posted = head
            if i < len(items):
                count, tr, _, native = items[i]
                pairs.append((word, count))
                sends.append(None if native is None or posted is not None else
                             [(address, n, tr.dst, self.tag_base + tr.id) for address, n in native])
                self._aimed.append(head)
        for item in gated:
            for slot, count in item[1].gate_slots:
                word = self.done_word(slot)
                if sync.load_u32(word) < count:
                    pairs.append((word, count))
        watch.set_words(pairs, sends, *self._send_handles)
        if landed < len(seq):
            kind, tr, reqs, scatters = seq[landed]
            if kind == "sent":
                reqs, scatters = sent_reqs.get(tr.id), None
            if reqs:
                watch.set_requests(reqs, None if scatters else landed + 1)
                return
        watch.set_requests(inflight, None)

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


def run(compiled: Any, *args: Any, timeout: float | None = None,
        _stamps: dict | None = None) -> Any:
    """Run a multi-host compiled schedule on this rank (every rank calls it with its arguments;
    rank 0's inputs are used; every rank returns the same results). Whatever goes wrong here before
    the run starts (arguments that do not match, a pool that cannot start) still takes part in the
    call's agreement (`calls.exchange`), so every rank raises and the next call works.
    `_stamps` (`execute.profile`): a dict that receives this host's step timestamps."""
    from ..execute import _arena_arrays, _copy_arrays, check_args
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
            staging, results = _arena_arrays(lowered, pool, plan)
            side.inputs = _unique(staging)
            if host == 0:
                for staged, array in zip(staging, arrays):
                    if staged is not None:
                        staged[...] = array
        except Exception as exc:  # noqa: BLE001 - as above
            side.failure = exc
        epoch = calls.exchange(side, timeout)
        state = _Run(compiled, dist, disp, host, pool, plan_id, slot_map, timeout, epoch, side)
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
                from ..execute import _read_stamps
                _stamps.update(t1=time.monotonic_ns(), steps=_read_stamps(pool, plan),
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
        return _copy_arrays(results)


def describe_call(program: Any) -> str:
    """The call as the agreement shows it: `step(x: float32[4], alpha=2.0)`."""
    from ..execute import describe_signature
    return program.name + describe_signature(program)


def program_text(compiled: Any) -> str:
    """The program's canonical text dump, made once per Compiled (what the ranks compare)."""
    text = compiled.artifacts.get("dist_text")
    if text is None:
        from ..irprint import dump
        text = compiled.artifacts["dist_text"] = dump(compiled.program, "text")
    return text


def tag_window(comm: Any) -> tuple[int, int]:
    """(tags per run epoch, epochs before the tags wrap around) for this communicator: its tag
    limit is the `MPI.TAG_UB` attribute's value (at least 32767 by the standard)."""
    cached = launcher.cached("tag_window")
    if cached is None:
        MPI = launcher.mpi()
        tag_ub = comm.Get_attr(MPI.TAG_UB)
        space = min(TAG_SPACE, (tag_ub + 1) // 2)
        cached = launcher.cache("tag_window", (space, (tag_ub + 1) // space))
    return cached


def _unique(staging: list) -> list[np.ndarray]:
    """The staging arrays to broadcast, each once (arguments that are one array share one)."""
    seen, out = set(), []
    for a in staging:
        if a is not None and (a.ctypes.data, a.nbytes) not in seen:
            seen.add((a.ctypes.data, a.nbytes))
            out.append(a)
    return out
