"""Regression for a race the long stress run found (3 in 4,478 faults): a failing worker published
FAILED before it set H_ABORT. The parent recovers as soon as it sees FAILED and clears H_ABORT at
the end; a worker preempted between its two stores then set H_ABORT *after* that, so every worker
of the next (clean) run stopped as ABORTED and the run ended in a Timeout with no hung worker.

The order is a protocol invariant, checked here deterministically on a real control block: when
H_ABORT is stored, the slot must not look FAILED yet."""
from __future__ import annotations

import numpy as np

from l3c.runtime import layout, sync, worker
from l3c.runtime.arena import SharedMapping


def test_failing_worker_sets_abort_before_it_publishes_failed(monkeypatch):
    sync.ensure()
    slots = 2
    ctl = SharedMapping(layout.control_bytes(slots))
    words = ctl.words()
    try:
        w = worker.Worker(1, slots, 1, ctl.address, words, np.zeros(8, np.uint8), -1, 0, 0)
        state_index = (layout.slot_offset(1) + layout.S_STATE) // 4
        words[state_index] = layout.ST_BUSY
        seen = []
        real_store = sync.store_u32

        def store(addr, value):
            if addr == ctl.address + layout.H_ABORT:
                seen.append(words[state_index])
            real_store(addr, value)

        monkeypatch.setattr(sync, "store_u32", store)
        w.fail(7, "Traceback: boom")
        assert seen == [layout.ST_BUSY], "H_ABORT must be set while the slot is still BUSY"
        assert words[state_index] == layout.ST_FAILED
        assert words[layout.H_ABORT // 4] == 1
        assert words[(layout.slot_offset(1) + layout.S_FAILED_TASK) // 4] == 7
    finally:
        words.release()
        ctl.close()
