"""Pool part 1 of 5: worker processes and their fork server, from start to reaping.

Ownership (who creates and frees what):
- `_start` maps the arena and the control block (`arena.SharedMapping`), then starts the fork server
  (`forkserver.py`), which inherits both mappings, then has it fork every worker. `Pool.close`
  releases all of it (`shutdown()`, also run at exit).
- Workers are forked by the server but are children of this process (clone CLONE_PARENT): this
  process holds one pipe write end and one /proc/<pid>/stat fd per worker, checks them with waitid
  and pread, and reaps them. The server is a child of this process too.

A new worker reports ready by storing its pid in its slot's S_PID and ringing the doorbell. One that
does not within START_BOUNDS[attempt] seconds (dead, or stuck) is killed and forked again; after the
last attempt the pool raises L3CError. So no wait for a new worker holds the pool lock for long.

Restarts: the pool grows (new mappings, a new server, new workers) when a request does not fit
(`ensure`). A restart keeps the `Pool` object but replaces the mappings (arena contents are NOT
carried over), `control_address` and `pids_address`. When workers must see state this process gained
after the server was forked (a kernel registered later, a several-host rank's numbering), `_refork`
starts a new server and new workers on the same mappings: contents and addresses stay, pids change.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import time

import numpy as np

from .. import registry
from ..errors import L3CError
from . import context, layout, serve, steploop, sync
from .arena import SharedMapping
from . import forkserver
from .forkserver import ServerLost

MIN_ARENA = 64 << 20             # sparse: untouched pages cost nothing
EXIT_GRACE = 1.0                 # how long workers get to exit on CMD_EXIT before SIGKILL
START_BOUNDS = (1.0, 2.0, 4.0)   # per attempt: how long a new worker gets to report ready
READY_SLICE_NS = 10_000_000      # doorbell sleep slice while waiting for new workers
MAX_WORKERS = 1024               # chips + sub workers of one pool (a bound for hostile schedule files)


@dataclasses.dataclass
class WorkerProc:
    pid: int                      # 0 once reaped
    pipe: int                     # write end of the worker's message pipe (-1 once closed)
    installed: set                # plan ids installed in this process (bound variants too)
    exit_status: int | None = None
    stat_fd: int = -1             # /proc/<pid>/stat, open while the process is ours (see _alive)
    mapped: set = dataclasses.field(default_factory=set)   # shared memory keys it has mapped


def memory_limit() -> int:
    """MemTotal + SwapTotal in bytes (0 if unknown): no arena can usefully be larger."""
    total = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(("MemTotal:", "SwapTotal:")):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return total


_warm = False


def _warm_threadpoolctl() -> None:
    """Import threadpoolctl and scan the loaded libraries once in this process, so that each fork
    server (which limits native threads: `worker.limit_native_threads`) inherits the warm state: the
    first scan in a process costs ~13 ms, later ones ~0.5 ms. Nothing is limited here: this process
    keeps its own thread counts."""
    global _warm
    if not _warm:
        from threadpoolctl import ThreadpoolController
        ThreadpoolController()
        _warm = True


class Lifecycle:
    """Start, grow, re-fork, replace and reap workers (a mixin of `pool.Pool`, which holds the state)."""

    @property
    def started(self) -> bool:
        return self._ctl is not None

    @property
    def server_pid(self) -> int:
        """The fork server's pid (0 when the pool is stopped)."""
        return self._server.pid

    def ensure(self, chips: int, sub_workers: int, arena_bytes: int) -> None:
        """Start the pool, or restart it bigger, so that the request fits. A request that fits
        takes no lock: another thread's run holds it, and this call's timeout starts now."""
        if self._fits(chips, sub_workers, arena_bytes):
            return
        with self.lock:
            if self._fits(chips, sub_workers, arena_bytes):
                return
            capacity = max(MIN_ARENA, arena_bytes, self.arena_capacity)
            if self.started and arena_bytes > self.arena_capacity:
                capacity = max(capacity, 2 * self.arena_capacity)
            chips, sub_workers = max(chips, self.chips), max(sub_workers, self.sub_workers)
            self._check_request(chips, sub_workers, capacity)   # refuse before stopping a good pool
            self.close()
            self._start(chips, sub_workers, capacity)

    def _fits(self, chips: int, sub_workers: int, arena_bytes: int) -> bool:
        return (self.started and chips <= self.chips and sub_workers <= self.sub_workers
                and arena_bytes <= self.arena_capacity)

    @staticmethod
    def _check_request(chips: int, sub_workers: int, capacity: int) -> None:
        if chips < 0 or sub_workers < 0 or chips + sub_workers == 0:
            raise L3CError(f"a pool needs at least one worker (chips={chips}, sub_workers={sub_workers})")
        if chips + sub_workers > MAX_WORKERS:
            raise L3CError(f"a pool of {chips} chips + {sub_workers} sub workers exceeds the limit of "
                           f"{MAX_WORKERS} workers")
        limit = memory_limit()
        if limit and capacity > limit:         # would map (overcommit) and then die touching it
            raise L3CError(f"the shared arena would need {capacity} bytes, more than this machine's "
                           f"memory and swap ({limit} bytes); plan a smaller program")

    def _start(self, chips: int, sub_workers: int, capacity: int) -> None:
        self._check_request(chips, sub_workers, capacity)
        sync.ensure()                          # compile before forking: the server inherits the code
        steploop.ensure()
        serve.ensure()
        forkserver.ensure()
        _warm_threadpoolctl()
        try:
            ctl = SharedMapping(layout.control_bytes(chips + sub_workers))
            arena_map = SharedMapping(capacity)
        except (OSError, OverflowError, ValueError, MemoryError) as exc:
            raise L3CError(f"cannot map a shared arena of {capacity} bytes for the pool "
                           f"(plan a smaller program or free memory): {exc}") from None
        self.chips, self.sub_workers, self.slots = chips, sub_workers, chips + sub_workers
        self._ctl = ctl
        self._words = self._ctl.words()
        self.control_address = self._ctl.address
        self._arena_map = arena_map
        self.arena = self._arena_map.u8
        self.arena_capacity = self._arena_map.nbytes
        self._pids = np.zeros(self.slots, dtype=np.int32)
        self.pids_address = self._pids.ctypes.data
        self._workers = [WorkerProc(0, -1, set()) for _ in range(self.slots)]
        self._plans.clear()
        self._owner = os.getpid()
        self.generation += 1
        try:
            self._start_server()
            self._fork_workers(list(range(self.slots)))
        except BaseException:
            self.close()
            raise

    def _start_server(self) -> None:
        """A new fork server, forked from this process now: it knows every kernel registered so far."""
        self._server.stop()
        self._fork_generation = registry.generation()
        self._server.start(self.control_address, self._words, self.arena,
                           [fd for w in self._workers for fd in (w.pipe, w.stat_fd) if fd >= 0])

    # ----------------------------------------------------------------------------- forking
    def _fork_workers(self, slots: list[int]) -> None:
        """Fork the workers of `slots` and wait until each reports ready; kill and fork again any
        that does not within its bound. Raises L3CError when one never starts."""
        pending = list(slots)
        for bound in START_BOUNDS:
            for slot in pending:
                self._fork_one(slot)
            pending = self._wait_ready(pending, time.monotonic() + bound)
            if not pending:
                return
            for slot in pending:
                self._forget(slot, time.monotonic())          # SIGKILL and reap
        names = ", ".join(self.describe_slot(s) for s in pending)
        raise L3CError(f"{names} did not start: forked {len(START_BOUNDS)} times, never ready within "
                       f"{START_BOUNDS[-1]} s (the machine may be overloaded, or a worker hangs "
                       "while starting)")

    def _fork_one(self, slot: int) -> None:
        """Have the server fork the worker of `slot` (its mailbox words are left as they are)."""
        base = layout.slot_offset(slot)
        words = self._words
        seq = words[(base + layout.S_COMMAND_SEQ) // 4]
        words[(base + layout.S_STATE) // 4] = layout.ST_IDLE
        words[(base + layout.S_PID) // 4] = 0
        sub = slot >= self.chips
        chip = context.global_index(slot - self.chips if sub else slot, sub)
        read_fd, write_fd = os.pipe()
        try:
            try:
                pid = self._server.spawn(slot, self.slots, chip, seq, read_fd)
            except ServerLost:                 # killed from outside: fork a new server, once
                self._start_server()
                pid = self._server.spawn(slot, self.slots, chip, seq, read_fd)
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)                  # the server got its own copy, and the worker its
        fcntl.fcntl(write_fd, fcntl.F_SETFL, fcntl.fcntl(write_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        try:                                   # our child: nobody else can reap it, no pid reuse race
            stat_fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            stat_fd = -1                       # already gone: _alive reports it dead
        self._workers[slot] = WorkerProc(pid, write_fd, set(), stat_fd=stat_fd)
        self._pids[slot] = pid
        self.epoch += 1

    def _wait_ready(self, slots: list[int], deadline: float) -> list[int]:
        """Wait until every worker of `slots` stored its pid in S_PID, or is dead, or `deadline`
        passed; the slots not ready."""
        doorbell = self.control_address + layout.H_DOORBELL
        waiters = self.control_address + layout.H_DOORBELL_WAITERS
        while True:
            seen = sync.load_u32(doorbell)
            slots = [s for s in slots if self._word(s, layout.S_PID) != self._workers[s].pid]
            if not slots or time.monotonic() >= deadline:
                return slots
            if not any(self._alive(s) for s in slots):
                return slots
            sync.wait_ge(doorbell, (seen + 1) & 0xFFFFFFFF, waiters, self._zero_address,
                         sync.IDLE_SPIN, READY_SLICE_NS)

    # ----------------------------------------------------------------------------- processes
    def _alive(self, slot: int) -> bool:
        """Is the worker process still running? (Does not reap it, so its status stays readable.)"""
        w = self._workers[slot]
        if not w.pid or w.stat_fd < 0:
            return False
        # One pread of /proc/<pid>/stat, kept open since the fork (checked before every run, so it
        # must be cheap: opening the file costs ~4x more). The main thread's state is "Z" both for
        # an exited, unreaped process and for a killed one whose other native threads (a kernel's
        # own, or OpenBLAS's with L3C_WORKER_THREADS > 1) have not exited yet, when waitid does not
        # report it yet. Dead either way; a process that is gone altogether fails the read.
        try:
            stat = os.pread(w.stat_fd, 256, 0)
        except OSError:
            return False
        return stat.rsplit(b")", 1)[-1].split()[:1] not in ([b"Z"], [b"X"], [])

    def _reap(self, slot: int, deadline: float) -> int | None:
        """Wait (until `deadline`) for the worker to exit, SIGKILL it after that; return its status."""
        w = self._workers[slot]
        if not w.pid:
            return w.exit_status
        status = None
        while True:
            try:
                pid, st = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                status = st
                break
            if time.monotonic() >= deadline:
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    status = os.waitpid(w.pid, 0)[1]
                except ChildProcessError:
                    pass
                break
            time.sleep(0.002)
        w.pid = 0
        w.exit_status = status
        if w.stat_fd >= 0:
            os.close(w.stat_fd)
            w.stat_fd = -1
        if self._pids is not None:
            self._pids[slot] = 0
        return status

    def _forget(self, slot: int, deadline: float) -> None:
        """Reap the worker of `slot` (SIGKILL after `deadline`) and close its pipe."""
        self._reap(slot, deadline)
        w = self._workers[slot]
        if w.pipe >= 0:
            os.close(w.pipe)
            w.pipe = -1

    def _stop_workers(self) -> None:
        """CMD_EXIT to every live worker, close the pipes, reap all (SIGKILL after EXIT_GRACE)."""
        for slot, w in enumerate(self._workers):
            if w.pid and self._alive(slot):
                try:
                    self.post(slot, layout.CMD_EXIT, 0)
                except Exception:  # noqa: BLE001
                    pass
        deadline = time.monotonic() + EXIT_GRACE
        for slot in range(len(self._workers)):
            self._forget(slot, deadline)

    def fork_for(self, key: object) -> bool:
        """Fork the workers anew unless this pool generation's workers were forked for `key`: for a
        caller that changed process state the workers must inherit first (a several-host run sets the rank's
        host before its workers run). True if it forked."""
        with self.lock:
            if self._fork_key == (key, self.generation):
                return False
            self._refork()
            self._fork_key = (key, self.generation)
            return True

    def _refork(self) -> None:
        """Replace the server by a fresh fork of this process (which knows every kernel registered so
        far) and every worker by a fork of it. The arena, its contents and the control block stay."""
        self._stop_workers()
        self._start_server()
        self._fork_workers(list(range(self.slots)))

    def replace_dead(self) -> None:
        """Before a run: replace workers that died while idle (an OOM kill, a stray signal), so the
        run does not report a crash that did not happen during it. One pread per slot."""
        with self.lock:
            self._replace([s for s in range(self.slots) if not self._alive(s)])

    def _replace(self, slots: list[int]) -> None:
        """Kill (if needed), reap and fork again the workers of `slots`; their plans re-install
        lazily."""
        if not slots:
            return
        for slot in slots:
            self._forget(slot, time.monotonic())
        self._fork_workers(slots)
