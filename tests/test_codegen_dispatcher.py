"""The llvmlite dispatcher against forked processes that follow the control-block protocol.

The stand-in worker below is deliberately minimal (it plays `layout.py`'s state machine with
futexes through libc) so that the generated code is tested on its own: posting, every status it
returns, and the lost-wake-up rule. The real pool is exercised by tests/test_compiled*.py.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import time

import numpy as np
import pytest

from l3c.codegen.dispatcher import build, generate_ir
from l3c.runtime import layout as L
from l3c.runtime.plan import Plan, Step

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def futex_wake(mm_addr: int, offset: int) -> None:
    libc.syscall(ctypes.c_long(202), ctypes.c_void_p(mm_addr + offset), ctypes.c_long(1),
                 ctypes.c_long(2**31 - 1))


def make_plan(expected: list[int]) -> Plan:
    return Plan(chips=len(expected), sub_workers=0, arena_bytes=0,
                queues=tuple(tuple(Step(i, "m:k", ()) for i in range(n)) for n in expected))


class Block:
    """A shared anonymous mapping with the control block, plus forked stand-in workers."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.mm = mmap.mmap(-1, L.control_bytes(slots))
        self.words = np.frombuffer(self.mm, dtype=np.uint32)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        self.pids = (ctypes.c_int32 * slots)()
        self.slot_map = (ctypes.c_int32 * slots)(*range(slots))
        self.children: list[int] = []
        self.active: list[int] = []

    def word(self, offset: int) -> int:
        return int(self.words[offset // 4])

    def spawn(self, slot: int, behaviour: str, delay: float = 0.0) -> None:
        seq0 = int(self.words[(L.slot_offset(slot) + L.S_COMMAND_SEQ) // 4])
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            code = 0
            try:
                self._worker(slot, behaviour, delay, seq0)
                time.sleep(10)            # a real worker stays alive after a run
            except BaseException:
                code = 3
            os._exit(code)
        self.pids[slot] = pid
        self.children.append(pid)

    def _worker(self, slot: int, behaviour: str, delay: float, seq0: int) -> None:
        base = L.slot_offset(slot) // 4
        end = time.monotonic() + 10
        self.words[base + L.S_COMMAND_WAITERS // 4] = 1
        while self.words[base + L.S_COMMAND_SEQ // 4] == seq0:
            if time.monotonic() > end:
                return
            libc.syscall(ctypes.c_long(202), ctypes.c_void_p(self.addr + L.slot_offset(slot)),
                         ctypes.c_long(0), ctypes.c_long(seq0), None)     # FUTEX_WAIT, woken by start
        self.words[base + L.S_COMMAND_WAITERS // 4] = 0
        assert self.words[base + L.S_COMMAND // 4] == L.CMD_RUN_PLAN
        assert self.words[base + L.S_STATE // 4] == L.ST_BUSY
        # every active slot's counter was reset before anyone was posted (99 = previous run's)
        for other in self.active:
            assert self.words[(L.slot_offset(other) + L.S_DONE) // 4] != 99
        time.sleep(delay)
        if behaviour == "die":
            os._exit(7)
        if behaviour == "hang":
            time.sleep(5)
            return
        expected = int(self.words[base + L.S_EXPECTED // 4])
        for k in range(expected):
            self.words[base + L.S_DONE // 4] = k + 1
        # the plan id is echoed into S_FAILED_TASK so the test can check S_ARG arrived
        self.words[base + L.S_FAILED_TASK // 4] = self.words[base + L.S_ARG // 4]
        self.words[base + L.S_STATE // 4] = {"fail": L.ST_FAILED, "abort": L.ST_ABORTED}.get(
            behaviour, L.ST_FINISHED)
        self.words[L.H_DOORBELL // 4] += 1
        futex_wake(self.addr, L.H_DOORBELL)

    def reap(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        self.children.clear()


@pytest.fixture
def block():
    blocks = []

    def make(slots):
        blocks.append(Block(slots))
        return blocks[-1]
    yield make
    for b in blocks:
        b.reap()


def run(disp, blk: Block, plan_id: int = 5, timeout: float | None = 10.0, slice_s: float = 0.05):
    disp.start(blk.addr, plan_id, ctypes.addressof(blk.slot_map))
    out = ctypes.c_int32(-9)
    deadline = time.monotonic_ns() + int(timeout * 1e9) if timeout else 0
    pending = 0
    while True:
        status = disp.wait(blk.addr, ctypes.addressof(blk.pids), ctypes.addressof(blk.slot_map),
                           deadline, int(slice_s * 1e9), ctypes.byref(out))
        if status != L.RUN_PENDING:
            return status, out.value, pending
        pending += 1
        assert pending < 1000


def test_ir_is_deterministic_and_bakes_in_the_plan():
    plan = make_plan([3, 0, 2])
    text = generate_ir(plan)
    assert text == generate_ir(make_plan([3, 0, 2]))
    assert "[2 x i32] [i32 0, i32 2]" in text and "[2 x i32] [i32 3, i32 2]" in text
    assert text != generate_ir(make_plan([3, 0, 1]))
    assert "define i32 @\"l3c_wait\"" in text and "define void @\"l3c_start\"" in text


def test_all_finished_posts_every_active_slot(block):
    blk = block(3)
    blk.active = [0, 2]
    for s in blk.active:                  # stale counts from a "previous run"
        blk.words[(L.slot_offset(s) + L.S_DONE) // 4] = 99
    disp = build(make_plan([3, 0, 2]))
    blk.spawn(2, "ok", delay=0.03)
    blk.spawn(0, "ok", delay=0.01)        # slower than the spin: exercises the futex sleep
    status, _, _ = run(disp, blk, plan_id=5)
    assert status == L.RUN_OK
    s0, s1, s2 = (L.slot_offset(s) for s in range(3))
    assert blk.word(s0 + L.S_EXPECTED) == 3 and blk.word(s2 + L.S_EXPECTED) == 2
    assert blk.word(s0 + L.S_DONE) == 3 and blk.word(s2 + L.S_DONE) == 2
    assert blk.word(s0 + L.S_FAILED_TASK) == 5 and blk.word(s2 + L.S_FAILED_TASK) == 5
    assert blk.word(s1 + L.S_COMMAND_SEQ) == 0 and blk.word(s1 + L.S_STATE) == L.ST_IDLE
    assert blk.word(L.H_RUN) == 1 and blk.word(L.H_DOORBELL_WAITERS) == 0


def test_failed_slot_is_reported(block):
    blk = block(2)
    disp = build(make_plan([1, 1]))
    blk.spawn(0, "hang")
    blk.spawn(1, "fail", delay=0.01)
    status, slot, _ = run(disp, blk)
    assert (status, slot) == (L.RUN_FAILED, 1)


def test_slots_that_all_stop_aborted_end_the_run_instead_of_waiting_forever(block):
    blk = block(3)
    disp = build(make_plan([1, 1, 1]))
    blk.spawn(0, "ok")
    blk.spawn(1, "abort", delay=0.01)
    blk.spawn(2, "abort", delay=0.02)
    status, slot, _ = run(disp, blk, timeout=None)
    assert status == L.RUN_ABORTED and slot in (1, 2)


def test_dead_worker_is_reported_and_not_reaped(block):
    blk = block(2)
    disp = build(make_plan([1, 1]))
    blk.spawn(0, "hang")
    blk.spawn(1, "die", delay=0.01)
    status, slot, _ = run(disp, blk)
    assert (status, slot) == (L.RUN_CRASHED, 1)
    pid, code = os.waitpid(blk.pids[1], os.WNOHANG)    # still a zombie for the pool to reap
    assert pid == blk.pids[1] and os.waitstatus_to_exitcode(code) == 7
    blk.children.remove(pid)


def test_deadline_gives_timeout_and_slices_give_pending(block):
    blk = block(1)
    disp = build(make_plan([1]))
    blk.spawn(0, "hang")
    t0 = time.monotonic()
    status, _, pending = run(disp, blk, timeout=0.3, slice_s=0.05)
    assert status == L.RUN_TIMEOUT
    assert pending >= 3                       # returned to Python between slices
    assert time.monotonic() - t0 >= 0.29


def test_empty_plan_is_immediately_ok(block):
    blk = block(2)
    disp = build(make_plan([0, 0]))
    assert run(disp, blk)[0] == L.RUN_OK


def test_many_runs_no_lost_wakeups(block):
    """Workers finish at every moment relative to the parent's spin and sleep."""
    blk = block(2)
    disp = build(make_plan([1, 1]))
    for i in range(40):
        blk.spawn(0, "ok", delay=(i % 7) * 0.0007)
        blk.spawn(1, "ok", delay=(i % 5) * 0.0011)
        status, _, _ = run(disp, blk, plan_id=i)
        assert status == L.RUN_OK
        blk.reap()
