"""The state of one several-host run on this rank, its control channel and its MPI requests.

`RunState` holds what one run (one epoch) of this host's part needs: the communicators, the words
of the control block the loop reads, the transfer buffers, and who was heard from when. The loop
that drives a run (`l3c.runtime.hosts.loop`) builds on it. MPI is only a transport here: the plan
is plain data (`l3c.runtime.hostplan`), and the program is read only to name tasks in errors.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ...errors import L3CError, Timeout
from .. import layout, sync
from ..hostplan import DistPlan, Transfer
from . import calls, launcher, peers
from .buffers import Buffers, HostBuffers
from .errors import HostLost, slot_name

_EMPTY = np.empty(0, dtype=np.uint8)
TAG_SPACE = 1 << 20         # data tags per run epoch (at most half the tag range); epochs wrap
TIMEOUT_GRACE = 2.0         # after the run's timeout, how long a host that hangs nothing itself
                            # waits for the hung host's report before blaming whom it waits for


def _describe(compiled: Any, task: int) -> str:
    if task < 0:
        return "?"
    t = compiled.program.task(task)
    return f"task {task} {t.short_kernel} ({t.loc})"


class RunState:
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
