"""The process-wide worker pool: chip and sub-worker processes around one shared arena.

`get_pool` returns the one `Pool` of the process, started (or grown) so that a request fits;
`shutdown()` stops it. The pool's jobs live in one module each, joined here as mixins over the
state `Pool.__init__` lists:

    lifecycle.py   the fork server and the workers: start, grow, re-fork, replace, reap
    mailbox.py     post commands, send messages, wait for states
    installs.py    install plans in the workers, slot mapping, per-installation caches
    failures.py    a run's status -> its exception, after recovery
    reference.py   the Python reference dispatcher (tests)
    bindings.py    plans whose views point into shared memory; unmapping it when freed

Threads: every public method takes `Pool.lock` (re-entrant); a run holds it from staging to reading
results. Ownership of processes and mappings is described in `lifecycle.py` and `forkserver.py`.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import threading

import numpy as np

from .arena import SharedMapping
from .bindings import Bindings
from .failures import Failures
from .forkserver import ForkServer
from .installs import Installs, PlanEntry
from .lifecycle import MAX_WORKERS, Lifecycle, WorkerProc  # noqa: F401 - MAX_WORKERS: aot's bound
from .mailbox import Mailbox
from .plan import Plan
from .reference import Reference

CLOSE_WAIT = 10.0                # how long shutdown() waits for another thread's run before killing it
EXIT_WAIT = 0.2                  # the same at interpreter exit: a daemon thread's run must not delay it


class Pool(Lifecycle, Mailbox, Installs, Failures, Reference, Bindings):
    """Chip and sub-worker processes, the shared arena and the control block. See module docstring."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.chips = 0
        self.sub_workers = 0
        self.slots = 0
        self.generation = 0               # bumped on every (re)start that replaces the mappings
        self.epoch = 0                    # bumped whenever a worker starts, the pool stops, or a
                                          # bound variant is dropped: runs re-check installations
        self.arena: np.ndarray | None = None
        self.arena_capacity = 0
        self.control_address = 0
        self.pids_address = 0             # int32 pid per slot: the native dispatcher's waitid
        self._owner = os.getpid()
        self._server = ForkServer()
        self._ctl: SharedMapping | None = None
        self._arena_map: SharedMapping | None = None
        self._words: memoryview | None = None
        self._pids: np.ndarray | None = None
        self._workers: list[WorkerProc] = []
        self._plans: dict[int, PlanEntry] = {}
        self._forgotten: list[Plan] = []   # plans to drop from _plans: see Installs.forget
        self._next_plan_id = 1
        self._fork_generation = -1         # registry generation when the fork server was forked
        self._fork_key: object = None      # what `fork_for` last forked the workers for
        self._stopping = False             # close() killed the workers under another thread's run
        self._zero = ctypes.c_uint32(0)
        self._zero_address = ctypes.addressof(self._zero)
        self._variant_keys: dict[int, frozenset] = {}   # bound variant id -> shared memories it uses
        self._release_thread: threading.Thread | None = None

    def close(self, wait: float | None = None) -> None:
        """Stop the server and every worker (CMD_EXIT, bounded wait, then SIGKILL), reap them, unmap
        everything. Idempotent. In a forked child of the owner it only forgets the state.

        A run in another thread holds the lock and reads the control block and arena from native
        code: unmapping them under it would crash the whole process (SIGSEGV). So after `wait`
        (CLOSE_WAIT) the workers are SIGKILLed (not reaped, so that run's dead-worker check sees
        them), which ends that run with WorkerCrashed within a wait slice; then the lock is taken
        again. If it still cannot be, the mappings are left to the process: the killed workers are
        gone either way."""
        wait = CLOSE_WAIT if wait is None else wait
        acquired = self.lock.acquire(timeout=wait)
        if not acquired and self._ctl is not None and os.getpid() == self._owner:
            self._stopping = True
            for w in list(self._workers):
                if w.pid:
                    try:
                        os.kill(w.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            acquired = self.lock.acquire(timeout=wait)
            if not acquired:
                return
        self._stopping = False
        try:
            if self._ctl is None:
                return
            if os.getpid() == self._owner:
                self._server.stop()
                self._stop_workers()
            else:
                self._server = ForkServer()    # the parent's server: not ours to stop
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
            self._variant_keys.clear()
            self.epoch += 1
            self.chips = self.sub_workers = self.slots = 0
            self.arena_capacity = 0
        finally:
            if acquired:
                self.lock.release()

    def stop_at_exit(self) -> None:
        """At interpreter exit: stop like `close`, unless a run holds the lock (a daemon thread's).
        Then leave everything to the exit itself: the server and the workers die with this process
        (PR_SET_PDEATHSIG), and the run's thread stops with the interpreter instead of waking to a
        killed worker and printing its WorkerCrashed."""
        if not self.lock.acquire(timeout=EXIT_WAIT):
            return
        try:
            self.close()
        finally:
            self.lock.release()


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


def current_pool() -> Pool | None:
    """The process-wide pool if this process has started one, else None (nothing is started)."""
    with _pool_lock:
        return _pool if _pool is not None and _pool._owner == os.getpid() else None


def shutdown() -> None:
    """Stop the worker pool: the fork server and every worker exit and are reaped, every mapping is
    unmapped. Idempotent; the next run starts a fresh pool. A run in flight in another thread gets
    CLOSE_WAIT seconds to finish, then its workers are killed and it raises WorkerCrashed ("stopped
    by l3c.shutdown() in another thread")."""
    with _pool_lock:
        pool = _pool
    if pool is not None:
        pool.close()


def _at_exit() -> None:
    with _pool_lock:
        pool = _pool
    if pool is not None and pool._owner == os.getpid():
        pool.stop_at_exit()


atexit.register(_at_exit)
