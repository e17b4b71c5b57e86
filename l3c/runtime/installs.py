"""Pool part 3 of 5: plans installed in the workers, and what the parent keeps per installation.

An installation is per plan object per pool generation: workers resolve each step's kernel and build
its numpy views once (`worker.Worker.install`); a replaced worker re-installs lazily on the next
`install`. A plan made for fewer chips than the pool has is mapped with `pool_slot` (sub workers
shift up).
"""
from __future__ import annotations

import ctypes
import dataclasses
import time

import numpy as np

from .. import registry
from ..errors import L3CError
from . import layout
from .install_steps import signalled
from .plan import Plan, View

INSTALL_WAIT = 60.0              # resolving kernels may import the user's modules: bounded, not short


class ResolveError(Exception):
    def __init__(self, kernel: str, text: str) -> None:
        super().__init__(text)
        self.kernel, self.text = kernel, text


@dataclasses.dataclass
class PlanEntry:
    plan: Plan
    plan_id: int
    cache: dict = dataclasses.field(default_factory=dict)   # see Installs.plan_cache


class Installs:
    """Install plans and map their slots (a mixin of `pool.Pool`)."""

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
        """Fork the server and workers anew if any of `kernels` was registered after the server was
        forked, so that they inherit it (kernels defined late, or inside functions, cannot be
        found by import)."""
        with self.lock:
            if any((registry.generation_of(k) or 0) > self._fork_generation for k in kernels):
                self._refork()

    def forget(self, plan: Plan) -> None:
        """Drop the parent's installation record of `plan` (its compiled program was evicted from
        a jit cache); a later run of it installs it again. Never waits: while another thread
        runs, the record is dropped by the next install."""
        self._forgotten.append(plan)
        if self.lock.acquire(blocking=False):
            try:
                self._drop_forgotten()
            finally:
                self.lock.release()

    def _drop_forgotten(self) -> None:
        """Drop forgotten plans here and in the workers (their installed queues, views and bound
        variants would otherwise stay in every worker for the pool's life). The lock is held."""
        dropped: set[int] = set()
        while self._forgotten:
            plan = self._forgotten.pop()
            entry = self._plans.get(id(plan))
            if entry is not None and entry.plan is plan:
                del self._plans[id(plan)]
                dropped.add(entry.plan_id)
                dropped.update((entry.cache.get("variants") or {}).values())
        if dropped:
            self._release(set(), dropped)

    def install(self, plan: Plan) -> int:
        """Install `plan` in every worker that has steps (views and kernels prepared once there).
        Cached per plan object per pool generation; re-installs lazily in replaced workers."""
        with self.lock:
            self._drop_forgotten()
            self.ensure(plan.chips, plan.sub_workers, plan.arena_bytes)
            entry = self._plans.get(id(plan))
            if entry is None or entry.plan is not plan:
                self.ensure_kernels({step.kernel for s in plan.active for step in plan.tasks(s)})
                entry = PlanEntry(plan, self._next_plan_id)
                self._next_plan_id += 1
                self._plans[id(plan)] = entry
            self.replace_dead()
            for attempt in range(2):
                try:
                    self._install_missing(entry)
                    return entry.plan_id
                except ResolveError as exc:
                    if attempt == 1:
                        raise L3CError(f"kernel {exc.kernel!r} cannot be resolved in the worker "
                                       f"processes (define it at module level of an importable module, "
                                       f"or before the first run):\n{exc.text}") from None
                    self._refork()
            raise AssertionError("unreachable")

    def _install_missing(self, entry: PlanEntry) -> None:
        plan, plan_id = entry.plan, entry.plan_id
        todo = []
        for s, queue in enumerate(plan.queues):
            ps = self.pool_slot(plan, s)
            if queue and plan_id not in self._workers[ps].installed:
                todo.append((ps, s))
        if not todo:
            return
        queues = signalled(plan)             # the steps other slots wait for store their count
        todo = [(ps, queues[s]) for ps, s in todo]
        pool_slots = tuple(self.pool_slot(plan, s) for s in range(plan.slots))
        for ps, queue in todo:
            self.send(ps, (plan_id, queue, pool_slots, plan.loops), layout.CMD_INSTALL, plan_id)
        status, slot = self.wait([ps for ps, _ in todo], time.monotonic() + INSTALL_WAIT)
        if status == layout.RUN_FAILED:
            text = self._error_text(slot)
            self.recover()
            if text.startswith("L3C-RESOLVE "):
                kernel = text.split("\n", 1)[0][len("L3C-RESOLVE "):]
                raise ResolveError(kernel, text.split("\n", 1)[1])
            raise L3CError(f"installing a plan failed in worker {slot}:\n{text}")
        if status == layout.RUN_TIMEOUT:       # not the call's timeout: never a Timeout
            self.recover(grace=0.2)
            raise L3CError(f"installing a plan: {self.describe_slot(slot)} did not finish within "
                           f"{INSTALL_WAIT} s (does importing a kernel's module hang?); the worker "
                           "was replaced")
        if status != layout.RUN_OK:
            self.finish(status, slot, lambda task: ("<install>", ""), None)
        for ps, _ in todo:
            self._workers[ps].installed.add(plan_id)
