"""The process-wide worker pool: forked chip and sub-worker processes around one shared arena.

Ownership (who creates and frees what):
- The `Pool` object is a process-wide singleton (`get_pool`). It owns two anonymous shared mappings
  (`arena.SharedMapping`: the tensor arena and the control block of `layout.py`), one pipe write end
  per worker (install messages and eager tasks), and the worker processes. Everything is created by
  `_start` (mappings before any fork) and released by `close` (`shutdown()`, also run at exit).
- Workers are children of the pool's process. `close` asks them to exit, waits a bounded time, then
  SIGKILLs and reaps every one. Each worker also has PR_SET_PDEATHSIG(SIGKILL), so it dies with us.

Restarts: the pool grows (restarts with more chips, sub workers or arena) when a request does not fit
(`get_pool`/`ensure`). A restart keeps this `Pool` object (so callers holding it stay valid) but
replaces the mappings (arena contents are NOT carried over), workers, `control_address` and
`pids_address`; call `get_pool` with the run's needs first, then under `Pool.lock` stage inputs and
read the addresses. When a plan needs a kernel registered after the workers were forked (`registry`),
`install` re-forks the workers only ("refork"): a fork carries only the functions that existed at fork
time. A refork keeps the mappings, their contents and addresses; only the pids change.

Slots: chips are pool slots 0..chips-1, sub workers chips..chips+sub_workers-1. A plan made for fewer
chips than the pool has is mapped with `pool_slot(plan, s)` (sub workers shift up).
"""
from __future__ import annotations

import atexit
import ctypes
import dataclasses
import fcntl
import os
import pickle
import queue
import select
import signal
import struct
import threading
import time
from typing import Callable

import numpy as np

from .. import registry
from ..errors import KernelError, L3CError, Timeout, WorkerCrashed
from . import context, layout, steploop, sync, worker
from .arena import SharedMapping
from .plan import Plan, View

MIN_ARENA = 64 << 20             # sparse: untouched pages cost nothing
SLICE = 0.05                     # parent's doorbell sleep slice (s): bounds crash detection and Ctrl-C
INSTALL_TIMEOUT = 60.0
RECOVER_GRACE = 1.0              # how long live workers get to reach a terminal state after an abort
EXIT_GRACE = 1.0                 # how long workers get to exit on CMD_EXIT before SIGKILL
CLOSE_WAIT = 10.0                # how long close waits for another thread's run before killing it
TERMINAL = (layout.ST_FINISHED, layout.ST_FAILED, layout.ST_ABORTED)
MAX_WORKERS = 1024               # chips + sub workers of one pool (a bound for hostile schedule files)


class _ResolveError(Exception):
    def __init__(self, kernel: str, text: str) -> None:
        super().__init__(text)
        self.kernel, self.text = kernel, text


@dataclasses.dataclass
class _WorkerProc:
    pid: int                      # 0 once reaped
    pipe: int                     # write end of the worker's message pipe (-1 once closed)
    installed: set                # plan ids installed in this process
    exit_status: int | None = None
    stat_fd: int = -1             # /proc/<pid>/stat, open while the process is ours (see _alive)


@dataclasses.dataclass
class _PlanEntry:
    plan: Plan
    plan_id: int
    cache: dict = dataclasses.field(default_factory=dict)   # see Pool.plan_cache


def _memory_limit() -> int:
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


class _LastingThread:
    """Runs every fork of a worker on a thread that lives as long as the process.

    Why: PR_SET_PDEATHSIG fires when the *thread* that forked the worker exits, not the process. A
    pool first used from a short-lived thread (a request handler, a test's worker thread) would
    otherwise lose every worker the moment that thread ended, and a run on another thread would see
    them die under it. The main thread lasts as long as the process, so it forks directly; any other
    thread hands the fork to one daemon thread started on first need (and again in a forked child,
    where threads do not survive)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue | None = None
        self._pid = 0

    def call(self, fn: Callable[[], int]) -> int:
        if threading.current_thread() is threading.main_thread():
            return fn()
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._queue, self._pid = queue.SimpleQueue(), os.getpid()
                threading.Thread(target=self._serve, args=(self._queue,), name="l3c-forker",
                                 daemon=True).start()
            requests = self._queue
        done = threading.Event()
        box: list = []
        requests.put((fn, box, done))
        if not done.wait(INSTALL_TIMEOUT):
            raise Timeout("the l3c fork thread did not answer in time")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    @staticmethod
    def _serve(requests: queue.SimpleQueue) -> None:
        while True:
            fn, box, done = requests.get()
            try:
                box.append(fn())
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box.append(exc)
            done.set()


_on_lasting_thread = _LastingThread().call


class Pool:
    """Chip and sub-worker processes, the shared arena and the control block. See module docstring."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.chips = 0
        self.sub_workers = 0
        self.slots = 0
        self.generation = 0               # bumped on every (re)start that replaces the mappings
        self.arena: np.ndarray | None = None
        self.arena_capacity = 0
        self.control_address = 0
        self.pids_address = 0
        self._owner = os.getpid()
        self._ctl: SharedMapping | None = None
        self._arena_map: SharedMapping | None = None
        self._words: memoryview | None = None
        self._pids: np.ndarray | None = None
        self._workers: list[_WorkerProc] = []
        self._plans: dict[int, _PlanEntry] = {}
        self._next_plan_id = 1
        self._fork_generation = -1
        self._fork_key: object = None      # what `fork_for` last forked the workers for
        self._stopping = False             # close() killed the workers under another thread's run
        self._zero = ctypes.c_uint32(0)
        self._zero_address = ctypes.addressof(self._zero)

    # ----------------------------------------------------------------------------- start and stop
    @property
    def started(self) -> bool:
        return self._ctl is not None

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
            self._restart(max(chips, self.chips), max(sub_workers, self.sub_workers), capacity)

    def _fits(self, chips: int, sub_workers: int, arena_bytes: int) -> bool:
        return (self.started and chips <= self.chips and sub_workers <= self.sub_workers
                and arena_bytes <= self.arena_capacity)

    def _restart(self, chips: int, sub_workers: int, capacity: int) -> None:
        self._check_request(chips, sub_workers, capacity)   # refuse before stopping a good pool
        self.close()
        self._start(chips, sub_workers, capacity)

    @staticmethod
    def _check_request(chips: int, sub_workers: int, capacity: int) -> None:
        if chips < 0 or sub_workers < 0 or chips + sub_workers == 0:
            raise L3CError(f"a pool needs at least one worker (chips={chips}, sub_workers={sub_workers})")
        if chips + sub_workers > MAX_WORKERS:
            raise L3CError(f"a pool of {chips} chips + {sub_workers} sub workers exceeds the limit of "
                           f"{MAX_WORKERS} workers")
        limit = _memory_limit()
        if limit and capacity > limit:         # would map (overcommit) and then die touching it
            raise L3CError(f"the shared arena would need {capacity} bytes, more than this machine's "
                           f"memory and swap ({limit} bytes); plan a smaller program")

    def _start(self, chips: int, sub_workers: int, capacity: int) -> None:
        self._check_request(chips, sub_workers, capacity)
        sync.ensure()                          # compile before forking: children inherit the code
        steploop.ensure()
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
        self._workers = [_WorkerProc(0, -1, set()) for _ in range(self.slots)]
        self._plans.clear()
        self._owner = os.getpid()
        self._fork_generation = registry.generation()
        self.generation += 1
        try:
            for slot in range(self.slots):
                self._spawn(slot)
        except BaseException:
            self.close()
            raise

    def _spawn(self, slot: int) -> None:
        """Fork a fresh worker for `slot` (the slot's mailbox words are left as they are)."""
        base = layout.slot_offset(slot)
        words = self._words
        seq = words[(base + layout.S_COMMAND_SEQ) // 4]
        words[(base + layout.S_STATE) // 4] = layout.ST_IDLE
        read_fd, write_fd = os.pipe()
        others = [fd for w in self._workers for fd in (w.pipe, w.stat_fd) if fd >= 0]
        parent = os.getpid()
        sub = slot >= self.chips
        chip = context.global_index(slot - self.chips if sub else slot, sub)

        def fork_worker() -> int:
            pid = os.fork()
            if pid == 0:  # child: never returns
                worker.main(slot, self.slots, chip, self.control_address, words, self.arena, read_fd,
                            parent, seq, [write_fd] + others)
            return pid

        try:
            pid = _on_lasting_thread(fork_worker)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        os.close(read_fd)
        fcntl.fcntl(write_fd, fcntl.F_SETFL, fcntl.fcntl(write_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        try:
            stat_fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:                        # already gone: _alive reports it dead
            stat_fd = -1
        self._workers[slot] = _WorkerProc(pid, write_fd, set(), stat_fd=stat_fd)
        words[(base + layout.S_PID) // 4] = pid
        self._pids[slot] = pid

    def close(self) -> None:
        """Stop every worker (CMD_EXIT, bounded wait, then SIGKILL), reap them, unmap everything.
        Idempotent. In a forked child of the owner it only forgets the state (the workers are not ours).

        A run in another thread (a daemon thread at interpreter exit, or a `shutdown()` from a second
        thread) holds the lock and reads the control block and arena from native code: unmapping
        them under it would crash the whole process (SIGSEGV). So after CLOSE_WAIT the workers are
        SIGKILLed (not reaped, so that run's dead-worker check sees them), which ends that run with
        WorkerCrashed within a wait slice; then the lock is taken again. If it still cannot be, the
        mappings are left to the process: the killed workers are gone either way."""
        acquired = self.lock.acquire(timeout=CLOSE_WAIT)
        if not acquired and self._ctl is not None and os.getpid() == self._owner:
            self._stopping = True
            for w in list(self._workers):
                if w.pid:
                    try:
                        os.kill(w.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            acquired = self.lock.acquire(timeout=CLOSE_WAIT)
            if not acquired:
                return
        self._stopping = False
        try:
            if self._ctl is None:
                return
            if os.getpid() == self._owner:
                for slot, w in enumerate(self._workers):
                    if w.pid and self._alive(slot):
                        try:
                            self.post(slot, layout.CMD_EXIT, 0)
                        except Exception:  # noqa: BLE001
                            pass
                for w in self._workers:
                    if w.pipe >= 0:
                        os.close(w.pipe)
                        w.pipe = -1
                deadline = time.monotonic() + EXIT_GRACE
                for slot in range(len(self._workers)):
                    self._reap(slot, deadline)
            self._words.release()
            self._words = None
            self._ctl.close()
            self._arena_map.close()
            self._ctl = self._arena_map = None
            self.arena = None
            self._pids = None
            self.control_address = self.pids_address = 0
            self._workers = []
            self._plans.clear()
            self.chips = self.sub_workers = self.slots = 0
            self.arena_capacity = 0
        finally:
            if acquired:
                self.lock.release()

    # ----------------------------------------------------------------------------- processes
    def _alive(self, slot: int) -> bool:
        """Is the worker process still running? (Does not reap it, so its status stays readable.)"""
        w = self._workers[slot]
        if not w.pid or w.stat_fd < 0:
            return False
        # One pread of /proc/<pid>/stat, kept open since the fork (checked before every run, so it
        # must be cheap: opening the file cost ~16 us, this ~4). The main thread's state is "Z" both
        # for an exited, unreaped process and for a killed one whose other native threads (a
        # kernel's own, or OpenBLAS's with L3C_WORKER_THREADS > 1) have not exited yet, when
        # waitid does not report it yet. Dead either way; a
        # process that is gone altogether (reaped by someone else) fails the read.
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

    def fork_for(self, key: object) -> bool:
        """Fork the workers anew unless this pool generation's workers were forked for `key`: for a
        caller that changed process state the workers must inherit first (l3c.dist sets the rank's
        host before its workers run). True if it forked."""
        with self.lock:
            if self._fork_key == (key, self.generation):
                return False
            self._refork()
            self._fork_key = (key, self.generation)
            return True

    def _refork(self) -> None:
        """Replace every worker by a fresh fork of this process (which now knows every kernel
        registered so far). The arena, its contents and the control block stay as they are."""
        for slot, w in enumerate(self._workers):
            if w.pid and self._alive(slot):
                self.post(slot, layout.CMD_EXIT, 0)
        deadline = time.monotonic() + EXIT_GRACE
        for slot in range(self.slots):
            self._reap(slot, deadline)
            w = self._workers[slot]
            if w.pipe >= 0:
                os.close(w.pipe)
                w.pipe = -1
        self._fork_generation = registry.generation()
        for slot in range(self.slots):
            self._spawn(slot)

    def replace_dead(self) -> None:
        """Before a run: replace workers that died while idle (an OOM kill, a stray signal), so the
        run does not report a crash that did not happen during it. One waitid per slot."""
        with self.lock:
            for slot in range(self.slots):
                if not self._alive(slot):
                    self._replace(slot)

    def _replace(self, slot: int) -> None:
        """Kill (if needed), reap and re-fork the worker of `slot`; its plans re-install lazily."""
        self._reap(slot, time.monotonic())
        w = self._workers[slot]
        if w.pipe >= 0:
            os.close(w.pipe)
            w.pipe = -1
        self._spawn(slot)

    # ----------------------------------------------------------------------------- mailbox
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
        written while the worker reads (waiting on the pipe, bounded by `deadline`)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = struct.pack("<Q", len(data)) + data
        fd = self._workers[slot].pipe
        limit = deadline if deadline is not None else time.monotonic() + INSTALL_TIMEOUT
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
                raise Timeout(f"worker {slot} did not read its message in time")
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

    # ----------------------------------------------------------------------------- plans
    def pool_slot(self, plan: Plan, slot: int) -> int:
        """The pool slot that runs the plan's slot `slot` (sub workers follow the pool's chips)."""
        return slot if slot < plan.chips else self.chips + (slot - plan.chips)

    def array(self, view: View) -> np.ndarray:
        """A numpy view of the arena in the parent (valid until the pool restarts)."""
        return self._arena_map.array(view)

    def plan_cache(self, plan: Plan) -> dict:
        """A dict that lives as long as `plan`'s installation in this pool's mappings: callers keep
        numpy views of the arena there (building them cost ~10 us each per run). It is dropped
        when the pool restarts or closes, so no view outlives its mapping through it."""
        entry = self._plans.get(id(plan))
        if entry is None or entry.plan is not plan:
            raise L3CError("plan_cache: the plan is not installed in this pool")
        return entry.cache

    def slot_map(self, plan: Plan) -> ctypes.Array:
        """`slot_map[plan slot]` = the pool slot running it, as the int32 array the generated
        dispatcher reads (built once per installation; the map changes only when the pool
        restarts with other chips, which drops the installation)."""
        cache = self.plan_cache(plan)
        slots = cache.get("slot_map")
        if slots is None:
            slots = cache["slot_map"] = (ctypes.c_int32 * max(1, plan.slots))(
                *[self.pool_slot(plan, s) for s in range(plan.slots)])
        return slots

    def ensure_kernels(self, kernels: set[str]) -> None:
        """Fork the workers anew if any of `kernels` was registered after they were forked, so that
        they inherit it (kernels defined late, or inside functions, cannot be found by import)."""
        with self.lock:
            if any((registry.generation_of(k) or 0) > self._fork_generation for k in kernels):
                self._refork()

    def install(self, plan: Plan) -> int:
        """Install `plan` in every worker that has steps (views and kernels prepared once there).
        Cached per plan object per pool generation; re-installs lazily in replaced workers."""
        with self.lock:
            self.ensure(plan.chips, plan.sub_workers, plan.arena_bytes)
            entry = self._plans.get(id(plan))
            if entry is None or entry.plan is not plan:
                self.ensure_kernels({step.kernel for q in plan.queues for step in q})
                entry = _PlanEntry(plan, self._next_plan_id)
                self._next_plan_id += 1
                self._plans[id(plan)] = entry
            self.replace_dead()
            for attempt in range(2):
                try:
                    self._install_missing(entry)
                    return entry.plan_id
                except _ResolveError as exc:
                    if attempt == 1:
                        raise L3CError(f"kernel {exc.kernel!r} cannot be resolved in the worker "
                                       f"processes (define it at module level of an importable module, "
                                       f"or before the first run):\n{exc.text}") from None
                    self._refork()
            raise AssertionError("unreachable")

    def _install_missing(self, entry: _PlanEntry) -> None:
        plan, plan_id = entry.plan, entry.plan_id
        todo = []
        for s, queue in enumerate(plan.queues):
            ps = self.pool_slot(plan, s)
            if queue and plan_id not in self._workers[ps].installed:
                todo.append((ps, queue))
        if not todo:
            return
        deadline = time.monotonic() + INSTALL_TIMEOUT
        for ps, queue in todo:
            steps = queue
            if self.chips != plan.chips:
                steps = tuple(dataclasses.replace(
                    st, waits=tuple((self.pool_slot(plan, s), c) for s, c in st.waits)) for st in queue)
            self.send(ps, (plan_id, steps), layout.CMD_INSTALL, plan_id, deadline)
        status, slot = self.wait([ps for ps, _ in todo], deadline)
        if status == layout.RUN_FAILED:
            text = self._error_text(slot)
            self.recover()
            if text.startswith("L3C-RESOLVE "):
                kernel = text.split("\n", 1)[0][len("L3C-RESOLVE "):]
                raise _ResolveError(kernel, text.split("\n", 1)[1])
            raise L3CError(f"installing a plan failed in worker {slot}:\n{text}")
        if status != layout.RUN_OK:
            self.finish(status, slot, lambda task: ("<install>", ""), None)
        for ps, _ in todo:
            self._workers[ps].installed.add(plan_id)

    def run_plan(self, plan_id: int, plan: Plan, timeout: float | None) -> None:
        """Reference dispatcher: run an installed plan once and raise the run's error, if any."""
        with self.lock:
            plan_id = self.install(plan)       # cheap when installed; re-installs replaced workers
            used = [(self.pool_slot(plan, s), len(q)) for s, q in enumerate(plan.queues) if q]
            deadline = None if timeout is None else time.monotonic() + timeout
            for ps, n in used:
                self._set(ps, layout.S_DONE, 0)
                self._set(ps, layout.S_EXPECTED, n)
            self._words[layout.H_RUN // 4] = (self._words[layout.H_RUN // 4] + 1) & 0xFFFFFFFF
            try:
                for ps, _ in used:
                    self.post(ps, layout.CMD_RUN_PLAN, plan_id)
                status, slot = self.wait([ps for ps, _ in used], deadline)
            except BaseException:       # Ctrl-C or an exception from any signal handler
                self.recover(grace=0.2)
                raise
            self.finish_run(status, slot if isinstance(slot, int) else -1, plan, timeout)

    def finish_run(self, status: int, slot: int, plan: Plan, timeout: float | None = None) -> None:
        """Turn a run status into its exception after recovering the pool; None on RUN_OK.
        `timeout`: the run's, for the Timeout message."""
        def describe(task: int) -> tuple[str, str]:
            for queue in plan.queues:
                for step in queue:
                    if step.task == task:
                        return step.kernel, step.loc
            return "<unknown>", ""
        self.finish(status, slot, describe, timeout)

    def finish(self, status: int, slot: int, describe: Callable[[int], tuple[str, str]],
               timeout: float | None) -> None:
        """Like `finish_run`, with `describe(task) -> (kernel, loc)` instead of a plan."""
        if status == layout.RUN_OK:
            return
        with self.lock:
            if status == layout.RUN_FAILED:
                task = self._word(slot, layout.S_FAILED_TASK)
                text = self._error_text(slot)
                kernel, loc = describe(task)
                self.recover()
                last = text.strip().splitlines()[-1] if text.strip() else "?"
                raise KernelError(f"kernel {kernel} (task {task}, called at {loc}) raised in "
                                  f"{self.describe_slot(slot)}: {last}\n\nRemote traceback:\n{text}",
                                  kernel=kernel, task=task, loc=loc, remote_traceback=text)
            if status == layout.RUN_CRASHED:
                st = self._reap(slot, time.monotonic() + RECOVER_GRACE)
                sig = os.WTERMSIG(st) if st is not None and os.WIFSIGNALED(st) else None
                code = os.WEXITSTATUS(st) if st is not None and os.WIFEXITED(st) else None
                self.recover()
                how = (f"killed by signal {signal.Signals(sig).name}" if sig is not None
                       else f"exited with code {code}")
                if self._stopping:
                    how = "stopped by l3c.shutdown() in another thread"
                raise WorkerCrashed(f"{self.describe_slot(slot)} died during a run ({how}); "
                                    f"it was replaced", worker=slot, signal=sig, exitcode=code)
            if status == layout.RUN_TIMEOUT:
                hung = [s for s in range(self.slots) if self.state(s) == layout.ST_BUSY]
                self.recover(grace=0.2)
                limit = f" of {timeout} s" if timeout is not None else ""
                raise Timeout(f"the run exceeded its timeout{limit}; hung workers {hung} were replaced")
            self.recover()
            if status == layout.RUN_ABORTED:
                raise L3CError(f"the run was aborted with no failing worker ({self.describe_slot(slot)} "
                               "stopped early); the pool was reset, call again")
            raise L3CError(f"unexpected run status {status} (slot {slot})")

    def describe_slot(self, slot: int) -> str:
        if slot < self.chips:
            return f"chip {slot}"
        return f"sub worker {slot - self.chips}"

    def _error_text(self, slot: int) -> str:
        n = min(self._word(slot, layout.S_ERROR_LEN), layout.ERROR_BYTES)
        start = layout.error_offset(self.slots, slot)
        return ctypes.string_at(self.control_address + start, n).decode("utf-8", "replace")

    def recover(self, grace: float = RECOVER_GRACE) -> None:
        """After a failed, crashed, timed-out or interrupted run: abort, wake everyone, give live
        workers `grace` seconds to reach a terminal state, replace dead and hung ones, reset states."""
        with self.lock:
            ctl = self.control_address
            sync.store_u32(ctl + layout.H_ABORT, 1)
            for s in range(self.slots):
                sync.futex_wake(ctl + layout.slot_offset(s) + layout.S_DONE, sync.WAKE_ALL)
            deadline = time.monotonic() + grace
            while True:
                pending = [s for s in range(self.slots)
                           if self.state(s) == layout.ST_BUSY and self._alive(s)]
                if not pending or time.monotonic() >= deadline:
                    break
                self.wait(pending, min(deadline, time.monotonic() + 0.01), any_done=True)
            for s in range(self.slots):
                if not self._alive(s) or self.state(s) == layout.ST_BUSY:
                    self._replace(s)
            sync.store_u32(ctl + layout.H_ABORT, 0)
            for s in range(self.slots):
                self._set(s, layout.S_STATE, layout.ST_IDLE)
                self._set(s, layout.S_DONE, 0)


_pool: Pool | None = None
_pool_lock = threading.Lock()


def get_pool(chips: int, sub_workers: int, arena_bytes: int) -> Pool:
    """The process-wide pool, started (or grown) so that the request fits. Thread-safe."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._owner != os.getpid():
            _pool = Pool()
        pool = _pool
    pool.ensure(chips, sub_workers, arena_bytes)
    return pool


def shutdown() -> None:
    """Stop the worker pool: every worker exits and is reaped, every mapping is unmapped. Idempotent;
    also registered to run at interpreter exit. The next run starts a fresh pool."""
    with _pool_lock:
        pool = _pool
    if pool is not None:
        pool.close()


atexit.register(shutdown)
