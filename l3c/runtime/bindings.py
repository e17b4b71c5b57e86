"""Pool part 6: arguments used in place. Bound variants of installed plans, and unmapping shared
memory from the workers once it is freed.

A *bound variant* of an installed plan is the same queues with some steps' views moved into shared
memory (`l3c.codegen.rebind`): one per plan and layout of the call's shared arguments, installed in
each worker that runs the plan (`CMD_BIND`: the worker maps the memory it does not have yet,
through `/proc/<parent>/fd/<fd>`, and builds a step table whose views point into it). It has its own
plan id, so a run posts it like any plan, and a call with the same layout as an earlier one costs
nothing more. The last `MAX_VARIANTS` layouts of a plan are kept.

Freeing: when the last array over a shared memory is gone in the parent, its key arrives on
`sharedmem.released`; a daemon thread (blocked on that queue, so it costs nothing while idle)
takes the pool's lock, so never in the middle of a run, and tells the workers that mapped it to
drop it and the variants that point into it (`CMD_RELEASE`). Workers that die or are replaced take
their mappings with them; a new worker maps again on first use.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any

from ..errors import L3CError
from . import layout, sharedmem
from .plan import Plan

MAX_VARIANTS = 8                 # bound variants kept per installed plan
BIND_WAIT = 60.0                 # mapping memory and building a step table: bounded, not short
RELEASE_WAIT = 5.0               # an idle worker unmaps at once; one that does not is replaced


class Bindings:
    """Bound variants and shared-memory release (a mixin of `pool.Pool`)."""

    def install_bound(self, plan: Plan, plan_id: int, layout_key: Any, rebinding: Any,
                      memories: dict[int, tuple[int, int]]) -> int:
        """The plan id of `plan`'s variant for `layout_key`, installed in every worker running the
        plan (`plan_id`, installed already). `rebinding`: its per-slot patches and keys;
        `memories[key] = (fd, nbytes)` of each shared memory they point into."""
        with self.lock:
            cache = self.plan_cache(plan)
            variants = cache.get("variants")
            if variants is None:
                variants = cache["variants"] = collections.OrderedDict()
            vid = variants.get(layout_key)
            if vid is None:
                vid = self._next_plan_id
                self._next_plan_id += 1
                variants[layout_key] = vid
                self._variant_keys[vid] = rebinding.keys
                while len(variants) > MAX_VARIANTS:
                    self._release(set(), {variants.popitem(last=False)[1]})
            else:
                variants.move_to_end(layout_key)
            self._bind_missing(plan, plan_id, vid, rebinding, memories)
            return vid

    def _bind_missing(self, plan: Plan, plan_id: int, vid: int, rebinding: Any,
                      memories: dict[int, tuple[int, int]]) -> None:
        todo = []
        for s, queue in enumerate(plan.queues):
            ps = self.pool_slot(plan, s)
            w = self._workers[ps]
            if queue and vid not in w.installed:
                patches = rebinding.patches[s]
                new = sorted({key for _, _, key, _ in patches} - w.mapped)
                maps = tuple((key,) + memories[key] for key in new)
                todo.append((ps, (vid, plan_id, self._owner, maps, patches), new))
        if not todo:
            return
        self._ensure_release_thread()
        sharedmem.handed_out.update(rebinding.keys)
        for ps, message, _ in todo:
            self.send(ps, message, layout.CMD_BIND, vid)
        status, slot = self.wait([ps for ps, _, _ in todo], time.monotonic() + BIND_WAIT)
        if status != layout.RUN_OK:
            text = self._error_text(slot) if status == layout.RUN_FAILED else ""
            self.recover(grace=0.2)
            if text:
                raise L3CError(f"mapping shared memory in {self.describe_slot(slot)} failed:\n{text}")
            self.finish(status, slot, lambda task: ("<bind>", ""), None)
            raise L3CError(f"mapping shared memory in {self.describe_slot(slot)}: status {status}")
        for ps, _, new in todo:
            self._workers[ps].installed.add(vid)
            self._workers[ps].mapped.update(new)

    # ---- freeing ----------------------------------------------------------------------------
    def _ensure_release_thread(self) -> None:
        thread = self._release_thread
        if thread is None or not thread.is_alive():
            thread = threading.Thread(target=_release_loop, args=(self,), daemon=True,
                                      name="l3c-shared-release")
            self._release_thread = thread
            thread.start()

    def release_memories(self, keys: set[int]) -> None:
        """The parent freed these shared memories: the workers drop their mappings of them and
        every variant pointing into them."""
        with self.lock:
            vids = {vid for vid, used in self._variant_keys.items() if used & keys}
            for entry in self._plans.values():
                variants = entry.cache.get("variants")
                if variants:
                    for layout_key in [k for k, vid in variants.items() if vid in vids]:
                        del variants[layout_key]
            self._release(keys, vids)

    def _release(self, keys: set[int], vids: set[int]) -> None:
        """Tell the workers holding any of `keys` or `vids` to drop them (the lock is held)."""
        for vid in vids:
            self._variant_keys.pop(vid, None)
        self.epoch += 1                        # runs that cached a dropped variant install again
        if not self.started:
            return
        slots = [s for s, w in enumerate(self._workers)
                 if w.pid and (w.mapped & keys or w.installed & vids) and self._alive(s)]
        for s in slots:
            self.send(s, (sorted(vids), sorted(keys)), layout.CMD_RELEASE, 0)
        if slots:
            status, _ = self.wait(slots, time.monotonic() + RELEASE_WAIT)
            if status != layout.RUN_OK:        # a worker that cannot unmap goes, with its mappings
                self.recover(grace=0.2)
        for s in slots:
            self._workers[s].mapped -= keys
            self._workers[s].installed -= vids


def _release_loop(pool: Any) -> None:
    """The release thread: sleeps on the queue of freed memories, hands them to the pool."""
    while True:
        keys = {sharedmem.released.get()}
        while True:
            try:
                keys.add(sharedmem.released.get_nowait())
            except Exception:          # noqa: BLE001 - queue.Empty: the batch is complete
                break
        try:
            pool.release_memories(keys)
        except Exception:              # noqa: BLE001 - a dead or stopped pool holds no mapping
            pass
