"""Pool part 5 of 5: the reference dispatcher, in Python. Only tests call it: it runs a plan the way
the generated native dispatcher (`l3c/codegen/dispatcher.py`) does, so the runtime can be tested
without code generation."""
from __future__ import annotations

import time

from . import layout
from .plan import Plan


class Reference:
    """`run_plan` (a mixin of `pool.Pool`)."""

    def run_plan(self, plan_id: int, plan: Plan, timeout: float | None) -> None:
        """Run an installed plan once and raise the run's error, if any."""
        with self.lock:
            plan_id = self.install(plan)       # cheap when installed; re-installs replaced workers
            used = [(self.pool_slot(plan, s), plan.expected[s]) for s in plan.active]
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
