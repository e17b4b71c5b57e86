"""When the step loop stores a slot's count of completed steps (S_DONE): in a loop-free table only
after the steps another slot or the parent waits for and after the last, in a table with loops
after every step, and exactly on every other way out of the loop (a failed run's rest is chosen by
it); and every step some wait counts up to is one of those, whatever made the plan."""
from __future__ import annotations

import ctypes
import time

import numpy as np
import pytest

import l3c
from l3c.runtime import steploop


def _table_run(table, ctl, first=0, slice_ns=10**6):
    base, ctx = ctypes.addressof(ctl), (ctypes.c_int64 * 2)()
    out_k = ctypes.c_int64(-1)
    status = table.run(first, base + 8, base, base + 4, ctypes.addressof(ctx), 0, 10, slice_ns,
                       out_k)
    return status, out_k.value


def test_done_is_stored_after_awaited_steps_only_in_a_loop_free_table():
    ctl = (ctypes.c_uint32 * 32)()                # [0] S_DONE, [1] its waiters, [2] abort
    seen = []

    def kernel():
        seen.append(ctl[0])

    awaited = {1, 3}
    entries = [(kernel, (), (), k in awaited, 0, 1, 0) for k in range(6)]
    assert _table_run(steploop.StepTable(entries), ctl) == (steploop.STEPS_DONE, -1)
    assert seen == [0, 0, 2, 2, 4, 4] and ctl[0] == 6     # and after the last step
    seen.clear()
    ctl[0] = 0
    assert _table_run(steploop.StepTable(entries, loops=1), ctl)[0] == steploop.STEPS_DONE
    assert seen == [0, 1, 2, 3, 4, 5] and ctl[0] == 6     # with loops: after every step


def test_done_is_exact_on_every_way_out_of_the_loop():
    pytest.importorskip("numba")
    import numba

    from l3c.registry import NativeFunction, NativeStatusError

    @numba.cfunc(numba.types.int32(numba.types.int64))
    def c_status(code):
        return code

    ctl = (ctypes.c_uint32 * 32)()
    native = NativeFunction(c_status.address, "tests:c_status", c_status)
    gate = (ctypes.c_uint32 * 16)()                 # a word a wait counts on, its waiters after
    gate_wait = (ctypes.addressof(gate), ctypes.addressof(gate) + 4, 1)

    def fine():
        pass

    def raising():
        raise KeyError("from step 3")

    def aborting():
        ctl[2] = 1                                    # H_ABORT: the next step's check stops

    def table(k_special, special, waits=()):
        return steploop.StepTable([(special, args, waits, False, 0, 1, 0) if k == k_special
                                   else (fine, (), (), False, 0, 1, 0) for k in range(6)
                                   for args in [(7,) if special is native else ()]])

    with pytest.raises(KeyError, match="from step 3"):
        _table_run(table(3, raising), ctl)
    assert ctl[0] == 3                                # steps 0..2 completed
    ctl[0] = 0
    with pytest.raises(NativeStatusError, match="returned status 7"):
        _table_run(table(4, native), ctl)
    assert ctl[0] == 4
    ctl[0] = 0
    assert _table_run(table(2, aborting), ctl) == (steploop.STEPS_ABORTED, -1)
    assert ctl[0] == 3                                # step 2 ran, step 3 saw the abort
    ctl[0] = ctl[2] = 0
    waiting = table(5, fine, (gate_wait,))
    assert _table_run(waiting, ctl, slice_ns=10**5) == (steploop.STEPS_AGAIN, 5)
    assert ctl[0] == 5                                # a slice elapsed waiting at step 5
    gate[0] = 1
    assert _table_run(waiting, ctl, first=5) == (steploop.STEPS_DONE, -1)
    assert ctl[0] == 6


@l3c.kernel
def k_mark(x: l3c.InOut, value: float, seconds: float):
    time.sleep(seconds)
    x[...] = value


@l3c.kernel
def k_add_from(src: l3c.In, dst: l3c.InOut):
    dst += src


def test_a_step_another_slot_waits_for_publishes_even_if_not_marked_signal():
    """Slot 1's c waits for slot 0's a, which is not marked `signal` (as in a plan whose waits were
    renumbered); slot 0 then runs b, which sleeps and overwrites a's output. The install marks a,
    so c reads a's output while b sleeps, not b's once slot 0's queue ends."""
    from l3c.codegen.dispatcher import build
    from l3c.runtime import install_steps, layout
    from l3c.runtime.plan import Plan, Step, View
    from l3c.runtime.pool import get_pool

    cell = [View(8 * i, (1,), (8,), "float64") for i in range(2)]
    module = k_mark.name.rsplit(":", 1)[0]
    a = Step(task=0, kernel=f"{module}:k_mark", args=(cell[0], 5.0, 0.0))
    b = Step(task=1, kernel=f"{module}:k_mark", args=(cell[0], 100.0, 1.5))
    c = Step(task=2, kernel=f"{module}:k_add_from", args=(cell[0], cell[1]), waits=((0, 1),))
    plan = Plan(chips=2, sub_workers=0, queues=((a, b), (c,)), arena_bytes=16)
    marked = install_steps.signalled(plan)
    assert [s.signal for s in marked[0]] == [True, False] and marked[1] == plan.queues[1]

    pool = get_pool(2, 0, 16)
    both = View(0, (2,), (8,), "float64")
    pool.array(both)[:] = (0.0, 1.0)
    plan_id = pool.install(plan)
    slot_map = pool.slot_map(plan)
    out = ctypes.c_int32(-1)
    disp = build(plan)
    disp.start(pool.control_address, plan_id, ctypes.addressof(slot_map))
    deadline = time.monotonic() + 20
    status = layout.RUN_PENDING
    while status == layout.RUN_PENDING and time.monotonic() < deadline:
        status = disp.wait(pool.control_address, pool.pids_address, ctypes.addressof(slot_map), 0,
                           100_000_000, ctypes.byref(out))
    if status != layout.RUN_OK:
        pool.recover(grace=0.2)
    assert status == layout.RUN_OK
    assert pool.array(both).tolist() == [100.0, 6.0]      # c added a's 5, not b's 100
    pool.forget(plan)
