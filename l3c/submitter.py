"""The queue of submitted runs (`l3c.inflight`) and the thread that runs the runs nobody runs.

Runs leave the queue in submission order, whoever takes them: a thread waiting in `result()`
(`help_until`), a `submit` past `max_inflight` (`help_once`), or the queue's own thread for runs
nobody waits for. Whoever runs holds `_turn`, so one thread runs runs at a time, and it takes the
runs of one schedule queued right behind the first as one batch (`run_together`).

The queue's thread must cost nothing while a thread submits and waits itself: it is not woken
per run. It looks at the queue every POLL while runs come and takes a run only if it was first
in the queue at its previous look too (nobody took it meanwhile); once no run has come for
LINGER it sleeps until `put` wakes it, once, for the next run.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Callable

POLL = 0.0005                        # s between the thread's looks at the queue while runs come
LINGER = 0.05                        # s without runs after which it sleeps until woken
EXACT_SIZES = 8                      # batches up to this many runs go at their size; larger ones
                                     # in powers of two (each size compiles a dispatcher once)


class Submitter:
    """The queue of submitted runs and the thread that runs those nobody runs first.

    `run_alone(run)` and `run_together(runs)` run what is taken from the queue (they finish the
    runs and give their `max_inflight` slots back)."""

    def __init__(self, run_alone: Callable[[Any], None],
                 run_together: Callable[[list], None]) -> None:
        self._run_alone, self._run_together = run_alone, run_together
        self._reset()
        os.register_at_fork(after_in_child=self._reset)   # the parent's runs and thread stay there

    def _reset(self) -> None:
        self._queue: collections.deque = collections.deque()
        self._wake_lock = threading.Lock()
        self._wake = threading.Condition(self._wake_lock)   # the thread sleeps on it when idle
        self._sleeping = False
        self._puts = 0
        self._turn = threading.Lock()              # held while taking runs and running them
        self._running = 0                          # runs taken from the queue, not finished
        self._thread: threading.Thread | None = None

    def busy(self) -> bool:
        """Runs queued or running. (`_run_next` counts a run as running before it leaves the
        queue, so there is no moment between the two where it is neither.)"""
        return bool(self._queue) or self._running > 0

    def put(self, run: Any) -> None:
        if self._thread is None:
            self._start_thread()
        self._queue.append(run)
        self._puts += 1                 # (not exact under threads: it only tells runs still come)
        if self._sleeping:              # the first run after a quiet spell: see `_loop`
            with self._wake_lock:
                if self._sleeping:
                    self._sleeping = False
                    self._wake.notify()

    def _start_thread(self) -> None:
        """The thread that runs queued runs nobody waits for (one per process)."""
        with self._wake_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="l3c-submitted-runs",
                                                daemon=True)
                self._thread.start()

    def _run_next(self) -> Any:
        """Run the next queued run in this thread (the caller holds `_turn`), with the runs of the
        same schedule queued right behind it as one batch; the first of them, or None."""
        self._running = 1
        queue = self._queue
        try:
            run = queue.popleft()
        except IndexError:
            self._running = 0
            return None
        try:
            if not run.batchable or not queue:
                self._run_alone(run)
                return run
            runs = [run]
            compiled, limiter = run.compiled, run.limiter
            while (queue and len(runs) < limiter.max_inflight and queue[0].batchable
                   and queue[0].compiled is compiled and queue[0].limiter is limiter):
                runs.append(queue.popleft())
            if len(runs) > EXACT_SIZES:
                keep = 1 << (len(runs).bit_length() - 1)
                while len(runs) > keep:
                    queue.appendleft(runs.pop())
            if len(runs) == 1:
                self._run_alone(run)
            else:
                self._run_together(runs)
            return run
        finally:
            self._running = 0

    def _loop(self) -> None:
        """Runs that nobody runs for a whole POLL, in turn. A thread that submits usually goes on
        submitting and then waits in result(), which runs the queue itself (its runs then go as
        one batch in its own thread, not handed between two threads run by run): so this thread
        leaves a run queued for a poll before it takes it, looks every POLL while runs come, and
        sleeps until `put` wakes it once none has come for LINGER."""
        head = None                     # the run first in the queue at the previous look
        quiet_since = None
        puts = -1
        while True:
            queue = self._queue
            first = queue[0] if queue else None
            if first is None:
                head = None
                now = time.monotonic()
                if quiet_since is None or puts != self._puts:
                    quiet_since, puts = now, self._puts
                if now - quiet_since < LINGER:
                    time.sleep(POLL)
                    continue
                with self._wake_lock:
                    self._sleeping = True       # before the look at the queue: see `put`
                    if not self._queue:
                        self._wake.wait()       # woken: runs come again, look every POLL
                    self._sleeping = False
                quiet_since = None
                time.sleep(POLL)
                continue
            quiet_since = None
            if first is not head:
                head = first
                time.sleep(POLL)
                continue
            head = None
            with self._turn:
                if queue and queue[0] is first:
                    self._run_next()

    def help_once(self) -> bool:
        """Run the next queued runs in this thread if no other thread is running runs; False if
        it could not (then a run is running elsewhere, or none is queued)."""
        if not self._turn.acquire(blocking=False):
            return False
        try:
            run = self._run_next()
        finally:
            self._turn.release()
        if run is None:
            return False
        if isinstance(run._error, KeyboardInterrupt):      # Ctrl-C while it ran here
            raise run._error
        return True

    def help_until(self, target: Any) -> None:
        """Run queued runs in this thread, in order, until `target` has finished or none is left
        (it is then finishing in another thread). Ctrl-C stops helping: the run in hand ends with
        KeyboardInterrupt as its error, and it is raised here too."""
        with self._turn:
            while not target._done:
                run = self._run_next()
                if run is None:
                    return
                if isinstance(run._error, KeyboardInterrupt):
                    raise run._error


