"""Runs in flight: `step.submit(*args)` returns an `l3c.Run` at once; `run.result()` waits.

Semantics (what callers rely on):

- A submitted run captures its ordinary array arguments when `submit` returns (they are copied),
  so the caller may change them at once; arguments the run writes are copied back into the
  caller's arrays before its `result()` returns.
- `l3c.shared` arrays are not captured: a run uses them in place, so runs that touch one shared
  array take effect in submission order and each sees what earlier runs wrote.
- An error is raised by the failing run's own `result()`; later runs still run.
- At most `max_inflight` runs of one function are in flight: `submit` waits for a slot.

How: one daemon thread per process takes submitted runs from a queue, in submission order, and
runs them through the same path as a direct call. A thread waiting in `result()` without a timeout
(or in `submit` past `max_inflight`) takes its turn at the queue instead of sleeping: it runs the
queued runs itself, in the same order (whoever runs takes the next runs under one lock), so a burst
of submitted runs costs no hand-over between threads per run; the daemon thread leaves new runs to
the submitting thread for HAND_OVER_GRACE first. Consecutive queued runs of one schedule that hold
no shared array go as one batch (`l3c.execute.batch`): the plan repeated in its own arena parts,
so they overlap on the workers. One queue is what makes the shared-array order hold across
functions and threads. A direct call made while runs are queued goes through the queue too
(`step(*args)` is `step.submit(*args).result()`), so it sees their effects. Several-host functions
run at `submit` in the calling thread: every rank must make the same calls in the same order, and
a thread per rank could interleave them differently.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Callable

import numpy as np

from .errors import Timeout
from .shared import is_shared


class _Latch:
    """A one-shot `threading.Event` on one plain lock, held until `set`: made only for a run that
    someone waits for in another thread, so it must cost next to nothing (an Event builds a
    Condition)."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        """Called once, by whoever finishes the run."""
        self._set = True
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._lock.release()                 # let every other waiter through too
            return True
        return self._set


_STATE = threading.Lock()            # a run's start against its cancellation; a latch's making
POLL = 0.0005                        # s between the runs thread's looks at the queue while runs come
LINGER = 0.05                        # s without runs after which it sleeps until woken
QUEUED, STARTED, CANCELLED = 0, 1, 2
EXACT_SIZES = 8                      # batches up to this many runs go at their size; larger ones
                                     # in powers of two (each size compiles a dispatcher once)


class Run:
    """A submitted run: `done()` says whether it finished, `result(timeout)` waits for it and
    returns what the call returns, or raises the run's error.

    It is its own queue entry too (the schedule, the caller's and the captured arguments, its
    `max_inflight` slots): one object per run. Finishing sets `_done`; a latch to sleep on is made
    only when a thread has to wait for another thread to finish it."""

    __slots__ = ("_done", "_value", "_error", "_description", "_state", "_latch", "compiled",
                 "values", "captured", "limiter", "deadline", "batchable", "shares")

    def __init__(self, description: str = "") -> None:
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._description = description
        self._state = QUEUED
        self._latch: _Latch | None = None

    def done(self) -> bool:
        """True once the run has finished, successfully or not."""
        return self._done

    def result(self, timeout: float | None = None) -> Any:
        """The run's results (as the direct call returns them); raises the run's error. With
        `timeout` seconds, raises `l3c.Timeout` if the run has not finished by then (the run goes
        on; call `result` again)."""
        if not self._done:
            if timeout is None:
                _SUBMITTER.help_until(self)
            if not self._done and not self._wait(timeout):
                raise Timeout(f"run {self._description} did not finish within {timeout} s (it "
                              "is still in flight; call result() again to wait longer)")
        if self._error is not None:
            raise self._error
        return self._value

    def _wait(self, timeout: float | None) -> bool:
        """Sleep until another thread finishes the run (or `timeout` s pass); whether it did.
        `_finish` sets `_done` before it reads `_latch`, and this makes `_latch` before it reads
        `_done`: one of the two sees the other's write."""
        with _STATE:
            latch = self._latch
            if latch is None:
                latch = self._latch = _Latch()
        return self._done or latch.wait(timeout)

    def _start_locked(self) -> bool:
        """The submitter takes the run (`_STATE` is held); False if it was cancelled first."""
        if self._state == CANCELLED:
            return False
        self._state = STARTED
        return True

    def _cancel(self, error: BaseException) -> bool:
        """Give the run up if it has not started (it finishes with `error`); False if it has."""
        with _STATE:
            if self._state != QUEUED:
                return False
            self._state = CANCELLED
        self._finish(error=error)
        return True

    def _finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error
        self._done = True
        latch = self._latch
        if latch is not None:
            latch.set()

    def __repr__(self) -> str:
        state = ("failed" if self._error is not None else "done") if self._done else "in flight"
        return f"<l3c.Run {self._description} {state}>"


class Limiter:
    """`max_inflight` slots of one function; `submit` takes one, the run's end gives it back."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self._free = max_inflight
        self._waiting = 0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def acquire(self) -> None:
        with self._lock:
            while self._free == 0:
                self._waiting += 1
                try:
                    self._freed.wait()
                finally:
                    self._waiting -= 1
            self._free -= 1

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free:
                self._free -= 1
                return True
            return False

    def release(self, n: int = 1) -> None:
        with self._lock:
            if self._free + n > self.max_inflight:
                raise ValueError("Limiter released too many times")
            self._free += n
            if self._waiting:
                self._freed.notify(n)


class _Submitter:
    """The queue of submitted runs and the thread that runs those nobody runs first."""

    def __init__(self) -> None:
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

    def put(self, run: Run) -> None:
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

    def _run_next(self) -> Run | None:
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
                _run_alone(run)
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
                _run_alone(run)
            else:
                _run_together(runs)
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

    def help_until(self, target: Run) -> None:
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


_SUBMITTER = _Submitter()


def busy() -> bool:
    """Are submitted runs queued or running? (Then a direct call must queue behind them.)"""
    return _SUBMITTER.busy()


def written_params(compiled: Any) -> tuple[int, ...]:
    """Indices of the parameters some kernel of `compiled` writes (cached on it)."""
    found = compiled.artifacts.get("written_params")
    if found is None:
        program = compiled.program
        written = {a.tensor for t in program.tasks for a in t.accesses if a.writes}
        found = compiled.artifacts["written_params"] = tuple(
            i for i, p in enumerate(program.params) if p.tensor is not None and p.tensor in written)
    return found


def _capture(values: list[Any]) -> tuple[list[Any], bool]:
    """Copies of the ordinary arrays among `values` (one copy per distinct array, so an array
    passed twice stays one array); shared arrays and statics as they are. And whether some
    argument is a shared array."""
    captured = list(values)
    copies: dict[int, np.ndarray] | None = None
    shares = False
    for n, v in enumerate(captured):
        if isinstance(v, np.ndarray):
            if v.base is not None and is_shared(v):
                shares = True
                continue
            if copies is None:
                copies = {}
            copy = copies.get(id(v))
            if copy is None:
                copy = copies[id(v)] = np.array(v, copy=True)
            captured[n] = copy
    return captured, shares


def _run_alone(run: Run) -> None:
    try:
        with _STATE:
            started = run._start_locked()
        if started:
            _execute(run)
    finally:
        run.limiter.release()


def _execute(run: Run) -> None:
    """Run it now in this thread (it was started) and finish it."""
    compiled, values = run.compiled, run.values
    try:
        timeout = compiled.timeout
        if run.deadline is not None:
            timeout = run.deadline - time.monotonic()
            if timeout <= 0:
                raise Timeout(f"{compiled.program.name}: the timeout ran out while waiting for the "
                              "runs in flight ahead of it; this run did not start")
        written = written_params(compiled)
        for i in written:                  # before it runs, as a direct call checks it
            if isinstance(values[i], np.ndarray) and not values[i].flags.writeable:
                from .execute.args import readonly_error
                raise readonly_error(compiled.program, i)
        value = compiled._run_now(run.captured, timeout=timeout)
        for i in written:
            if run.captured[i] is not values[i]:
                np.copyto(values[i], run.captured[i])
        run._finish(value)
    except BaseException as exc:   # noqa: BLE001 - the run's own error, raised by result()
        run._finish(error=exc)


def _run_together(runs: list[Run]) -> None:
    """Consecutive queued runs of one schedule as one batch (`l3c.execute.batch`); one by one
    when they cannot go together (then none of them has run yet)."""
    try:
        with _STATE:
            started = [run for run in runs if run._start_locked()]
        outcomes = None
        if len(started) > 1:
            from .execute.batch import run_batch
            try:
                outcomes = run_batch(started[0].compiled, [run.captured for run in started],
                                     [run.values for run in started],
                                     shares=any(run.shares for run in started))
            except BaseException as exc:   # noqa: BLE001 - Ctrl-C: every run of the batch ends so
                for run in started:
                    run._finish(error=exc)
                return
        if outcomes is None:
            for run in started:
                _execute(run)
            return
        for run, (value, error) in zip(started, outcomes):   # written arguments are back already
            run._finish(value, error)
    finally:
        runs[0].limiter.release(len(runs))


def submit(compiled: Any, values: list[Any], limiter: Limiter,
           deadline: float | None = None) -> Run:
    """Queue one run of `compiled` with `values` (bound, in parameter order). With `deadline`
    (time.monotonic()), the run gets what is left of it as its timeout when it starts."""
    program = compiled.program
    run = Run(program.name)
    if program.config.hosts > 1:
        _run_now(run, compiled, values)
        return run
    run.captured, run.shares = _capture(values)
    while not limiter.try_acquire():          # max_inflight in flight: run some here, or wait
        if not _SUBMITTER.help_once():
            limiter.acquire()
            break
    run.compiled, run.values, run.limiter, run.deadline = compiled, values, limiter, deadline
    run.batchable = deadline is None and compiled.timeout is None
    _SUBMITTER.put(run)
    return run


def call_queued(compiled: Any, values: list[Any], limiter: Limiter) -> Any:
    """A direct call made while runs are in flight: queued behind them (so it sees their effects
    on shared arrays), its `timeout` covering the wait in the queue as well as the run."""
    timeout = compiled.timeout
    if timeout is None:
        return submit(compiled, values, limiter).result()
    run = submit(compiled, values, limiter, deadline=time.monotonic() + timeout)
    if not run._wait(timeout):
        run._cancel(Timeout(f"{compiled.program.name}: waited for the runs in flight ahead of it "
                            f"for the whole timeout ({timeout} s); this run did not start"))
    return run.result()


def _run_now(run: Run, compiled: Any, values: list[Any]) -> None:
    """A several-host run, made in the calling thread before `submit` returns."""
    try:
        run._finish(compiled._run_now(values))
    except Exception as exc:           # noqa: BLE001 - raised by result(), as for queued runs
        run._finish(error=exc)


def failed(error: BaseException, description: str = "") -> Run:
    """A run that failed before it could be queued (binding, tracing): `result()` raises it."""
    run = Run(description)
    run._finish(error=error)
    return run
