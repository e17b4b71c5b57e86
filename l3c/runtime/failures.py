"""Pool part 4 of 5: turning a run's status into its exception, after putting the pool right again.

`finish_run` / `finish` recover first (abort, let live workers stop, replace dead and hung ones),
then raise: KernelError with the worker's traceback, WorkerCrashed with the signal or exit code,
Timeout only for a run whose own timeout elapsed.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

from ..errors import KernelError, L3CError, Timeout, WorkerCrashed
from . import layout, sync
from .plan import Plan

RECOVER_GRACE = 1.0              # how long live workers get to reach a terminal state after an abort


class Failures:
    """Run errors and recovery (a mixin of `pool.Pool`)."""

    def finish_run(self, status: int, slot: int, plan: Plan, timeout: float | None = None) -> None:
        """Turn a run status into its exception after recovering the pool; None on RUN_OK.
        `timeout`: the run's, for the Timeout message."""
        def describe(task: int) -> tuple[str, str]:
            for s in plan.active:
                for step in plan.tasks(s):
                    if step.task == task:
                        return step.kernel, step.loc
            return "<loop control>" if plan.loops else "<unknown>", ""
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
                stopping = self._stopping
                self.recover()
                how = (f"killed by signal {signal.Signals(sig).name}" if sig is not None
                       else f"exited with code {code}")
                if stopping:
                    how = "stopped by l3c.shutdown() in another thread"
                raise WorkerCrashed(f"{self.describe_slot(slot)} died during a run ({how}); "
                                    f"it was replaced", worker=slot, signal=sig, exitcode=code)
            if status == layout.RUN_TIMEOUT:
                hung = [s for s in range(self.slots) if self.state(s) == layout.ST_BUSY]
                self.recover(grace=0.2)
                if timeout is None:            # only a run's own deadline is a Timeout
                    raise L3CError(f"a wait without a deadline ended as timed out; workers {hung} "
                                   "were replaced")
                raise Timeout(f"the run exceeded its timeout of {timeout} s; hung workers {hung} "
                              "were replaced")
            self.recover()
            if status == layout.RUN_ABORTED:
                raise L3CError(f"the run was aborted with no failing worker ({self.describe_slot(slot)} "
                               "stopped early); the pool was reset, call again")
            raise L3CError(f"unexpected run status {status} (slot {slot})")

    def describe_slot(self, slot: int) -> str:
        if slot < self.chips:
            return f"chip {slot}"
        return f"sub worker {slot - self.chips}"

    def recover(self, grace: float = RECOVER_GRACE) -> None:
        """After a failed, crashed, timed-out or interrupted run: abort, wake everyone, give live
        workers `grace` seconds to reach a terminal state, replace dead and hung ones, reset states."""
        with self.lock:
            if not self.started:               # closed under this run by shutdown() elsewhere
                return
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
            if not self._stopping:             # shutdown() is about to stop them all anyway
                self._replace([s for s in range(self.slots)
                               if not self._alive(s) or self.state(s) == layout.ST_BUSY])
            sync.store_u32(ctl + layout.H_ABORT, 0)
            for s in range(self.slots):
                self._set(s, layout.S_STATE, layout.ST_IDLE)
                self._set(s, layout.S_DONE, 0)
