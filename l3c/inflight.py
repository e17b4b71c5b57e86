"""Runs in flight: `step.submit(*args)` returns an `l3c.Run` at once; `run.result()` waits.

Semantics (what callers rely on):

- A submitted run captures its ordinary array arguments when `submit` returns (they are copied),
  so the caller may change them at once; arguments the run writes are copied back into the
  caller's arrays before its `result()` returns.
- `l3c.shared` arrays are not captured: a run uses them in place, so runs that touch one shared
  array take effect in submission order and each sees what earlier runs wrote.
- An error is raised by the failing run's own `result()`; later runs still run.
- At most `max_inflight` runs of one function are in flight: `submit` waits for a slot.

How: submitted runs wait in one queue (`l3c.submitter`), in submission order. A thread waiting in
`result()` without a timeout (or in `submit` past `max_inflight`) runs the queued runs itself, in
order, so a burst of submitted runs costs no hand-over between threads; the queue's own thread
runs those nobody runs. Consecutive queued runs of one schedule go as one batch
(`l3c.execute.batch`): the plan repeated in its own arena parts, so they overlap on the workers,
ordered on the `l3c.shared` arrays they share by waits between them, and each runs exactly once
even when one of them fails. One queue is what makes the shared-array order hold across
functions and threads: runs of different schedules run one after another. A direct call made
while runs are queued goes through the queue too (`step(*args)` is `step.submit(*args).result()`),
so it sees their effects. Several-host functions run at `submit` in the calling thread: every rank
must make the same calls in the same order, and a thread per rank could interleave them
differently.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any

import numpy as np

from .errors import Timeout
from .shared import is_shared
from .submitter import Submitter


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
QUEUED, STARTED, CANCELLED = 0, 1, 2


class Run:
    """A submitted run: `done()` says whether it finished, `result(timeout)` waits for it and
    returns what the call returns, or raises the run's error.

    It is its own queue entry too (the schedule, the caller's and the captured arguments, its
    `max_inflight` slots): one object per run. Finishing sets `_done`; a latch to sleep on is made
    only when a thread has to wait for another thread to finish it."""

    __slots__ = ("_done", "_value", "_error", "_description", "_state", "_latch", "compiled",
                 "values", "captured", "limiter", "deadline", "batchable", "shares")

    def __init__(self, description: str = "", compiled: Any = None, values: Any = None,
                 captured: Any = None, shares: bool = False, limiter: Any = None,
                 deadline: float | None = None, batchable: bool = False) -> None:
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._description = description
        self._state = QUEUED
        self._latch: _Latch | None = None
        self.compiled, self.values, self.captured, self.shares = compiled, values, captured, shares
        self.limiter, self.deadline, self.batchable = limiter, deadline, batchable

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
        error = self._error
        if error is not None:
            try:
                raise error
            finally:        # the traceback holds this frame: no cycle through the run's arrays
                self = None  # noqa: PLW0642
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
    """`max_inflight` slots of one function; `submit` takes one, the run's end gives it back.

    The free slots are tokens in a deque: taking one is a `pop`, which needs no lock. A thread
    that finds none sleeps on `_freed`; `release` puts the tokens back before it looks for
    sleepers, and a sleeper counts itself before it looks for a token, so one of the two sees
    the other."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self._tokens = collections.deque([None] * max_inflight)
        self._waiting = 0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def acquire(self) -> None:
        with self._lock:
            self._waiting += 1
            try:
                while True:
                    try:
                        self._tokens.pop()
                        return
                    except IndexError:
                        self._freed.wait()
            finally:
                self._waiting -= 1

    def try_acquire(self) -> bool:
        try:
            self._tokens.pop()
            return True
        except IndexError:
            return False

    def release(self, n: int = 1) -> None:
        if len(self._tokens) + n > self.max_inflight:
            raise ValueError("Limiter released too many times")
        self._tokens.extend([None] * n)
        if self._waiting:
            with self._lock:
                self._freed.notify(n)




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
        if type(v) is np.ndarray or isinstance(v, np.ndarray):
            if v.base is not None and is_shared(v):
                shares = True
                continue
            if copies is None:
                copies = {}
            copy = copies.get(id(v))
            if copy is None:
                copy = copies[id(v)] = v.copy()
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
            try:
                outcomes = (_run_batch or _batch_runner())(started[0].compiled, [run.captured for run in started],
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


_run_batch: Any = None         # l3c.execute.batch.run_batch, imported with the first batch


def _batch_runner() -> Any:
    global _run_batch
    from .execute.batch import run_batch
    _run_batch = run_batch
    return run_batch


def submit(compiled: Any, values: list[Any], limiter: Limiter,
           deadline: float | None = None) -> Run:
    """Queue one run of `compiled` with `values` (bound, in parameter order). With `deadline`
    (time.monotonic()), the run gets what is left of it as its timeout when it starts."""
    program = compiled.program
    if program.config.hosts > 1:
        run = Run(program.name)
        _run_now(run, compiled, values)
        return run
    captured, shares = _capture(values)
    run = Run(program.name, compiled, values, captured, shares, limiter, deadline,
              deadline is None and compiled.timeout is None)
    while not limiter.try_acquire():          # max_inflight in flight: run some here, or wait
        if not _SUBMITTER.help_once():
            limiter.acquire()
            break
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


_SUBMITTER = Submitter(_run_alone, _run_together)
