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
    """A one-shot `threading.Event` on one plain lock, held until `set`: a run makes one, so it
    must cost next to nothing (an Event builds a Condition)."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def is_set(self) -> bool:
        return self._set

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


_STATE = threading.Lock()            # a run's start against its cancellation
HAND_OVER_GRACE = 0.0002             # s the runs thread leaves new runs to the submitting thread


class Run:
    """A submitted run: `done()` says whether it finished, `result(timeout)` waits for it and
    returns what the call returns, or raises the run's error."""

    __slots__ = ("_finished", "_value", "_error", "_description", "_started", "_cancelled")

    def __init__(self, description: str = "") -> None:
        self._finished = _Latch()
        self._value: Any = None
        self._error: BaseException | None = None
        self._description = description
        self._started = False           # taken by the submitter thread
        self._cancelled = False         # given up before it started: it never runs

    def done(self) -> bool:
        """True once the run has finished, successfully or not."""
        return self._finished.is_set()

    def result(self, timeout: float | None = None) -> Any:
        """The run's results (as the direct call returns them); raises the run's error. With
        `timeout` seconds, raises `l3c.Timeout` if the run has not finished by then (the run goes
        on; call `result` again)."""
        if timeout is None and not self._finished.is_set():
            _SUBMITTER.help_until(self._finished)
        if not self._finished.wait(timeout):
            raise Timeout(f"run {self._description} did not finish within {timeout} s (it is "
                          "still in flight; call result() again to wait longer)")
        if self._error is not None:
            raise self._error
        return self._value

    def _start(self) -> bool:
        """The submitter takes the run; False if it was cancelled first."""
        with _STATE:
            return self._start_locked()

    def _start_locked(self) -> bool:
        self._started = not self._cancelled
        return self._started

    def _cancel(self, error: BaseException) -> bool:
        """Give the run up if it has not started (it finishes with `error`); False if it has."""
        with _STATE:
            if self._started:
                return False
            self._cancelled = True
        self._finish(error=error)
        return True

    def _finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error
        self._finished.set()

    def __repr__(self) -> str:
        state = ("failed" if self._error is not None else "done") if self.done() else "in flight"
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
    """The thread that runs submitted runs in submission order."""

    def __init__(self) -> None:
        self._queue: collections.deque = collections.deque()
        self._wake_lock = threading.Lock()
        self._wake = threading.Condition(self._wake_lock)   # the thread sleeps on it when idle
        self._idle = False
        self._turn = threading.Lock()              # held while taking a run and running it
        self._lock = threading.Lock()
        self._pending = 0               # queued or running
        self._thread: threading.Thread | None = None
        self._pid = 0                   # the process the thread runs in (none survives a fork)

    def pending(self) -> int:
        return self._pending

    def put(self, work: Callable[[], None]) -> None:
        if self._pid != os.getpid():
            self._start_thread()
        with self._wake_lock:
            self._pending += 1
            self._queue.append(work)
            if self._idle:                # wake the thread only when it sleeps
                self._wake.notify()

    def _start_thread(self) -> None:
        """The thread that runs queued runs nobody waits for (one per process: after a fork the
        child starts its own)."""
        with self._lock:
            if self._pid != os.getpid():
                self._wake_lock = threading.Lock()
                self._wake = threading.Condition(self._wake_lock)
                self._idle = False
                self._thread = threading.Thread(target=self._loop, name="l3c-submitted-runs",
                                                daemon=True)
                self._thread.start()
                self._pid = os.getpid()

    def _run_next(self) -> bool:
        """Run the next queued run in this thread (the caller holds `_turn`), with the runs of the
        same schedule queued right behind it as one batch; False if none was queued."""
        try:
            job = self._queue.popleft()
        except IndexError:
            return False
        jobs = [job]
        if job.batchable:
            queue = self._queue
            while (len(jobs) < job.limiter.max_inflight and queue and queue[0].batchable
                   and queue[0].compiled is job.compiled and queue[0].limiter is job.limiter):
                jobs.append(queue.popleft())
            # batches of 2, 4, 8, ... runs: each size compiles a dispatcher once
            keep = 1 << (len(jobs).bit_length() - 1)
            while len(jobs) > keep:
                queue.appendleft(jobs.pop())
        try:
            if len(jobs) == 1:
                job()
            else:
                _run_together(jobs)
        finally:
            with self._wake_lock:
                self._pending -= len(jobs)
        return True

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue:
                    self._idle = True
                    self._wake.wait()
                self._idle = False
            # A thread that submits usually goes on submitting and then waits in result(), which
            # runs the queue itself: leave it the queue for a moment, so that its runs go as one
            # batch in its own thread rather than one by one, handed between two threads.
            time.sleep(HAND_OVER_GRACE)
            with self._turn:
                self._run_next()

    def help_once(self) -> bool:
        """Run the next queued runs in this thread if no other thread is running runs; False if
        it could not (then a run is running elsewhere, or none is queued)."""
        if not self._turn.acquire(blocking=False):
            return False
        try:
            work = self._queue[0] if self._queue else None
            if work is None or not self._run_next():
                return False
        finally:
            self._turn.release()
        if isinstance(work.error(), KeyboardInterrupt):     # Ctrl-C while it ran here
            raise work.error()
        return True

    def help_until(self, finished: threading.Event) -> None:
        """Run queued runs in this thread, in order, until `finished` is set or none is left (the
        run is then running in another thread). Ctrl-C stops helping: the run in hand ends with
        KeyboardInterrupt as its error, and it is raised here too."""
        with self._turn:
            while not finished.is_set():
                work = self._queue[0] if self._queue else None
                if work is None or not self._run_next():
                    return
                error = getattr(work, "error", lambda: None)()
                if isinstance(error, KeyboardInterrupt):
                    raise error


_SUBMITTER = _Submitter()


def busy() -> bool:
    """Are submitted runs queued or running? (Then a direct call must queue behind them.)"""
    return _SUBMITTER._pending > 0


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


class _Job:
    """One submitted run, queued: runs alone (`__call__`) or with the runs of its schedule queued
    right behind it (`_run_together`)."""

    __slots__ = ("run", "compiled", "values", "captured", "written", "limiter", "deadline",
                 "batchable")

    def __init__(self, run: Run, compiled: Any, values: Any, captured: list, limiter: Limiter,
                 deadline: float | None, batchable: bool) -> None:
        self.run, self.compiled, self.values, self.captured = run, compiled, values, captured
        self.written = written_params(compiled)
        self.limiter, self.deadline, self.batchable = limiter, deadline, batchable

    def error(self) -> BaseException | None:
        return self.run._error

    def __call__(self) -> None:
        try:
            if self.run._start():
                self.execute()
        finally:
            self.limiter.release()

    def execute(self) -> None:
        """Run it now in this thread (it was started) and finish its `Run`."""
        run, compiled = self.run, self.compiled
        try:
            timeout = compiled.timeout
            if self.deadline is not None:
                timeout = self.deadline - time.monotonic()
                if timeout <= 0:
                    raise Timeout(f"{compiled.program.name}: the timeout ran out while waiting "
                                  "for the runs in flight ahead of it; this run did not start")
            for i in self.written:             # before it runs, as a direct call checks it
                if isinstance(self.values[i], np.ndarray) and not self.values[i].flags.writeable:
                    from .execute.args import readonly_error
                    raise readonly_error(compiled.program, i)
            value = compiled._run_now(self.captured, timeout=timeout)
            self.write_back()
            run._finish(value)
        except BaseException as exc:   # noqa: BLE001 - the run's own error, raised by result()
            run._finish(error=exc)

    def write_back(self) -> None:
        for i in self.written:
            if self.captured[i] is not self.values[i]:
                np.copyto(self.values[i], self.captured[i])


def _run_together(jobs: list[_Job]) -> None:
    """Consecutive queued runs of one schedule as one batch (`l3c.execute.batch`); one by one
    when they cannot go together."""
    try:
        with _STATE:
            started = [job for job in jobs if job.run._start_locked()]
        outcomes = None
        if len(started) > 1:
            from .execute.batch import run_batch
            try:
                outcomes = run_batch(started[0].compiled, [job.captured for job in started],
                                     [job.values for job in started])
            except BaseException as exc:   # noqa: BLE001 - Ctrl-C: every run of the batch ends so
                for job in started:
                    job.run._finish(error=exc)
                return
        if outcomes is None:                  # nothing ran: each on its own
            for job in started:
                job.execute()
            return
        for job, (value, error) in zip(started, outcomes):   # written arguments are back already
            job.run._finish(value, error)
    finally:
        jobs[0].limiter.release(len(jobs))


def submit(compiled: Any, values: list[Any], limiter: Limiter,
           deadline: float | None = None) -> Run:
    """Queue one run of `compiled` with `values` (bound, in parameter order). With `deadline`
    (time.monotonic()), the run gets what is left of it as its timeout when it starts."""
    run = Run(compiled.program.name)
    if compiled.program.config.hosts > 1:
        _run_now(run, compiled, values)
        return run
    captured, shares = _capture(values)
    while not limiter.try_acquire():          # max_inflight in flight: run some here, or wait
        if not _SUBMITTER.help_once():
            limiter.acquire()
            break
    batchable = deadline is None and compiled.timeout is None
    _SUBMITTER.put(_Job(run, compiled, values, captured, limiter, deadline, batchable))
    return run


def call_queued(compiled: Any, values: list[Any], limiter: Limiter) -> Any:
    """A direct call made while runs are in flight: queued behind them (so it sees their effects
    on shared arrays), its `timeout` covering the wait in the queue as well as the run."""
    timeout = compiled.timeout
    if timeout is None:
        return submit(compiled, values, limiter).result()
    run = submit(compiled, values, limiter, deadline=time.monotonic() + timeout)
    if not run._finished.wait(timeout):
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
