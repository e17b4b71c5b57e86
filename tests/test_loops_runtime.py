"""Compiled runs of hand-placed programs with loops on the real pool (the tracer's and passes' parts
are tested on their own): results equal a sequential Python loop calling the kernels directly, for
tensor trip counts (zero included), while loops with the flag written in the body and a cap, conds,
nesting, loop variables as scalars and in moving views (Python and native kernels), sub workers and
carried dependencies between chips under random delays; errors inside iteration k."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest

from numba import cfunc, types

import l3c
from l3c.ir import Access, Affine, Config, Loop, Param, Program, Region, ScalarArg, Shift, Task, TensorInfo


@l3c.kernel
def k_step(x: l3c.InOut, i: int, seconds: float):
    if seconds:
        time.sleep(seconds)
    x[0] = x[1] + i                   # reads what the other chip wrote in the previous iteration


@l3c.kernel
def k_double(x: l3c.InOut, hist: l3c.Out, seconds: float):
    if seconds:
        time.sleep(seconds)
    x[1] = 2 * x[0] - 1
    hist[...] = x[1]


@l3c.kernel
def k_below(x: l3c.In, limit: float, flag: l3c.Out):
    flag[0] = int(x[1] < limit)


@l3c.kernel
def k_set(flag: l3c.Out, value: int):
    flag[0] = value


@l3c.kernel
def k_fail_at(x: l3c.InOut, i: int, bad: int):
    if i == bad:
        raise ValueError(f"iteration {i} fails")
    x[0] += 1


@l3c.kernel
def k_die_at(x: l3c.InOut, i: int, bad: int):
    if i == bad:
        os._exit(5)


@l3c.kernel
def k_hang_at(x: l3c.InOut, i: int, bad: int):
    if i == bad:
        time.sleep(30)


@cfunc(types.int32(types.CPointer(types.float64), types.int64, types.int64))
def c_add_scalar(x, n, value):
    for k in range(n):
        x[k] += value
    return 0


@l3c.kernel(native=c_add_scalar)
def native_add_scalar(x: l3c.InOut, value: int):
    x[...] = -1                       # shows which ran


def _elem(tensor: int, e: int, mode: str = "In") -> Access:
    return Access("f", tensor, Region(e, (1,), (1,), ((e, 1, 1),)), mode)


class P:
    """A small builder: tensors, tasks on units, loops, edges."""

    def __init__(self, chips: int = 2, sub: int = 0) -> None:
        self.prog = Program(name="tests:loops_runtime", loc="lr.py:1",
                            config=Config(chips=chips, sub_workers=sub))
        self.stack: list[int] = []
        self.pos: dict = {}

    def tensor(self, name: str, shape, dtype: str) -> int:
        tid = len(self.prog.tensors)
        self.prog.tensors.append(TensorInfo(tid, f"arg{tid}", "input", tuple(shape), dtype, "lr.py:2"))
        self.prog.params.append(Param(name, tensor=tid))
        return tid

    def task(self, kernel, args, worker: str = "chip", unit: int = 0) -> int:
        tid = len(self.prog.graph)
        pos = self.pos.get((worker, unit), 0)
        self.pos[(worker, unit)] = pos + 1
        self.prog.add_task(Task(tid, kernel.name, worker, tuple(args), f"lr.py:{10 + tid}",
                                loops=tuple(self.stack), chip=unit, queue_pos=pos))
        return tid

    def open(self, kind: str, **kw) -> int:
        lid = len(self.prog.loops)
        self.prog.loops[lid] = Loop(lid, kind, f"lr.py:{90 + lid}", self.stack[-1] if self.stack else None,
                                    len(self.prog.graph), len(self.prog.graph), **kw)
        self.stack.append(lid)
        return lid

    def close(self) -> Loop:
        lid = self.stack.pop()
        self.prog.loops[lid].end_task = len(self.prog.graph)
        return self.prog.loops[lid]

    def edge(self, u: int, v: int, carried: bool = False) -> None:
        self.prog.add_dependency(u, v, "RAW", 0, carried=carried)


def _ping_pong(delays: float, native_hist: bool = False) -> tuple[Program, int, int]:
    """for i in range(n[0]): x[0] = x[1] + i (chip 0); x[1] = 2 x[0] - 1, hist[i] = x[1] (chip 1)."""
    p = P()
    x, n, hist = p.tensor("x", (2,), "float64"), p.tensor("n", (1,), "int64"), p.tensor("hist", (8,), "float64")
    lid = p.open("range", stop=_elem(n, 0))
    a = p.task(k_step, [Access("x", x, Region.whole((2,)), "InOut"),
                        ScalarArg("i", Affine(0, ((lid, 1),))), ScalarArg("seconds", delays)], unit=0)
    moving = Region(0, (), (), ((0, 1, 1),), shifts=(Shift(lid, 1, (1,)),))
    b = p.task(k_double, [Access("x", x, Region.whole((2,)), "InOut"), Access("hist", hist, moving, "Out"),
                          ScalarArg("seconds", delays)], unit=1)
    p.close()
    p.edge(a, b)
    p.edge(b, a, carried=True)
    p.edge(a, a, carried=True)
    p.edge(b, b, carried=True)
    return p.prog, a, b


def _ping_pong_reference(x, n):
    hist = np.zeros(8)
    for i in range(n):
        x[0] = x[1] + i
        x[1] = 2 * x[0] - 1
        hist[i] = x[1]
    return x, hist


@pytest.mark.parametrize("trips", [0, 1, 5, 8])
def test_range_with_a_tensor_bound_and_a_carried_dependency_between_chips(trips):
    compiled = l3c.Compiled(_ping_pong(0.0)[0])
    x, n, hist = np.array([0.0, 1.0]), np.array([trips]), np.zeros(8)
    compiled(x, n, hist)
    want_x, want_hist = _ping_pong_reference(np.array([0.0, 1.0]), trips)
    assert x.tolist() == want_x.tolist() and hist.tolist() == want_hist.tolist()


def test_carried_dependencies_hold_under_random_delays():
    rng = random.Random(3)
    compiled = l3c.Compiled(_ping_pong(0.0003)[0])
    for _ in range(3):
        trips = rng.randint(3, 8)
        x, hist = np.array([rng.random(), rng.random()]), np.zeros(8)
        want_x, want_hist = _ping_pong_reference(x.copy(), trips)
        compiled(x, np.array([trips]), hist)
        assert x.tolist() == want_x.tolist() and hist.tolist() == want_hist.tolist()


def test_index_outside_the_tensor_fails_the_run_before_the_loop_starts():
    compiled = l3c.Compiled(_ping_pong(0.0)[0])
    x, hist = np.array([0.0, 1.0]), np.zeros(8)
    with pytest.raises(l3c.KernelError, match=r"leaves the tensor at L0=8 \(range loop at lr.py:90; the loop did not start") as info:
        compiled(x, np.array([9]), hist)
    assert "lr.py:11" in str(info.value)                       # the moving view's call
    assert x.tolist() == [0.0, 1.0]                             # nothing ran, nothing written back
    compiled(x, np.array([2]), hist)                            # the pool is usable again
    assert hist[:2].tolist() == _ping_pong_reference(np.array([0.0, 1.0]), 2)[1][:2].tolist()


def _while_program(cap: int | None, sub: bool) -> Program:
    """go = 1; while go (cap): x += ... (chip 1); go = x[1] < limit (chip 0 or sub 0); cond(go, invert)."""
    p = P(sub=1 if sub else 0)
    x, go = p.tensor("x", (2,), "float64"), p.tensor("go", (1,), "int32")
    first = p.task(k_set, [_elem(go, 0, "Out"), ScalarArg("value", 1)], unit=0)
    lid = p.open("while", flag=_elem(go, 0), max_iterations=cap)
    a = p.task(k_double, [Access("x", x, Region.whole((2,)), "InOut"),
                          Access("hist", x, Region(0, (), (), ((0, 1, 1),)), "Out"),
                          ScalarArg("seconds", 0.0)], unit=1)
    b = p.task(k_below, [Access("x", x, Region.whole((2,)), "In"), ScalarArg("limit", 1000.0),
                         _elem(go, 0, "Out")], worker="sub" if sub else "chip", unit=0)
    loop = p.close()
    loop.reads_after = ((first, False), (b, True))
    loop.reads_before = ((b, False),)
    cid = p.open("cond", flag=_elem(go, 0), invert=True)
    c = p.task(k_set, [_elem(go, 0, "Out"), ScalarArg("value", 7)], unit=1)
    cond = p.close()
    cond.reads_after = ((b, False),)
    cond.reads_before = ((c, False),)
    p.edge(first, b)
    p.edge(a, b)
    p.edge(b, a, carried=True)
    p.edge(a, a, carried=True)
    p.edge(b, b, carried=True)
    p.edge(a, c)
    assert cid == lid + 1
    return p.prog


@pytest.mark.parametrize("cap,sub", [(None, False), (3, False), (None, True)])
def test_while_loop_with_its_flag_written_in_the_body_then_a_cond(cap, sub):
    compiled = l3c.Compiled(_while_program(cap, sub), timeout=60)
    for start in (3.0, 2000.0):
        x, go = np.array([start, 0.0]), np.array([0], np.int32)
        compiled(x, go)
        rx, rgo, it = np.array([start, 0.0]), 1, 0
        while rgo and (cap is None or it < cap):
            rx[1] = 2 * rx[0] - 1
            rx[0] = rx[1]
            rgo = int(rx[1] < 1000.0)
            it += 1
        if not rgo:
            rgo = 7
        assert x.tolist() == rx.tolist() and int(go[0]) == rgo, (start, x, go, rx, rgo)


def _failing(kernel, bad: int) -> Program:
    p = P()
    x = p.tensor("x", (2,), "float64")
    lid = p.open("range", start=0, stop=6)
    a = p.task(k_step, [Access("x", x, Region.whole((2,)), "InOut"),
                        ScalarArg("i", Affine(0, ((lid, 1),))), ScalarArg("seconds", 0.0)], unit=0)
    b = p.task(kernel, [Access("x", x, Region.whole((2,)), "InOut"),
                        ScalarArg("i", Affine(0, ((lid, 1),))), ScalarArg("bad", bad)], unit=1)
    p.close()
    p.edge(a, b)
    p.edge(b, a, carried=True)
    return p.prog


def test_kernel_error_crash_and_timeout_inside_iteration_k_leave_a_usable_pool():
    with pytest.raises(l3c.KernelError, match="iteration 3 fails") as info:
        l3c.Compiled(_failing(k_fail_at, 3))(np.zeros(2))
    assert info.value.loc == "lr.py:11"
    with pytest.raises(l3c.WorkerCrashed):
        l3c.Compiled(_failing(k_die_at, 2))(np.zeros(2))
    with pytest.raises(l3c.Timeout):
        l3c.Compiled(_failing(k_hang_at, 4), timeout=0.5)(np.zeros(2))
    x = np.zeros(2)
    l3c.Compiled(_failing(k_fail_at, -1))(x)                 # the pool is usable again
    assert x.tolist() == [6.0, 0.0]                          # x[0] = x[1] + 5, then += 1


def test_zero_step_read_from_a_tensor_fails_the_run():
    p = P()
    x, st = p.tensor("x", (2,), "float64"), p.tensor("st", (1,), "int32")
    p.open("range", start=0, stop=4, step=_elem(st, 0))
    p.task(k_set, [Access("x", x, Region(0, (1,), (1,), ((0, 1, 1),)), "Out"), ScalarArg("value", 1)])
    p.close()
    compiled = l3c.Compiled(p.prog)
    with pytest.raises(l3c.KernelError, match="step of the range loop at lr.py:90 is 0"):
        compiled(np.zeros(2), np.array([0], np.int32))
    x = np.zeros(2)
    compiled(x, np.array([-1], np.int32))
    assert x.tolist() == [0.0, 0.0]                          # range(0, 4, -1) runs no iteration


def test_nested_loops_with_native_kernels_and_moving_views():
    p = P(chips=2, sub=1)
    grid = p.tensor("grid", (4, 6), "float64")
    outer = p.open("range", start=0, stop=4)
    inner = p.open("range", start=1, stop=6, step=2)
    # grid[i, j] += 10 * i + j on chip (i % 2 is not static: chip 0 for every cell)
    cell = Region(0, (1,), (1,), ((0, 1, 1), (0, 1, 1)), shifts=(Shift(outer, 6, (1, 0)), Shift(inner, 1, (0, 1))))
    p.task(native_add_scalar, [Access("x", grid, cell, "InOut"),
                               ScalarArg("value", Affine(0, ((outer, 10), (inner, 1))))], unit=0)
    p.close()
    row = Region(0, (6,), (1,), ((0, 1, 1), (0, 6, 1)), shifts=(Shift(outer, 6, (1, 0)),))
    p.task(k_add_row, [Access("x", grid, row, "InOut"), ScalarArg("i", Affine(100, ((outer, 1),)))],
           worker="sub", unit=0)
    p.close()
    p.edge(0, 1)
    p.edge(1, 0, carried=True)
    grid_in = np.zeros((4, 6))
    l3c.Compiled(p.prog)(grid_in)
    want = np.zeros((4, 6))
    for i in range(4):
        for j in range(1, 6, 2):
            want[i, j] += 10 * i + j
        want[i, :] += 100 + i
    assert grid_in.tolist() == want.tolist()


@l3c.kernel
def k_add_row(x: l3c.InOut, i: int):
    x += i


def test_reference_dispatcher_runs_a_hand_written_plan_with_loops():
    """The Python reference dispatcher (`runtime/reference.py`) runs a plan with control steps: two
    slots alternate `x += 1` five times (chip 1 waits for chip 0 in the same iteration, chip 0 for
    chip 1 in the previous one), then chip 0 adds once more after the loop."""
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    import _runtime_kernels as K
    from l3c import registry
    from l3c.runtime.plan import HEAD, PREV, ControlStep, Plan, PlanLoop, Step, View, anchor
    from l3c.runtime.pool import get_pool

    add = registry.register(K.add_one, "_runtime_kernels:add_one")
    v = View(0, (4,), (8,), "float64")
    enter = ControlStep("range", 0, 3, (0, 0), start=0, stop=5, step=1)
    q0 = (enter, Step(0, add, (v,), waits=((1, 1, anchor(0, PREV), anchor(0, HEAD)),), signal=True),
          ControlStep("next", 0, 1, (1, 1)), Step(2, add, (v,), waits=((1, 0, anchor(0, 3), -1),)))
    q1 = (ControlStep("range", 0, 3, (0, 0), start=0, stop=5, step=1),
          Step(1, add, (v,), waits=((0, 1, anchor(0, HEAD), -1),), signal=True),
          ControlStep("next", 0, 1, (1, 1)))
    plan = Plan(2, 0, (q0, q1), 64, loops=(PlanLoop("range", "lr.py:1"),))
    pool = get_pool(2, 0, 64)
    with pool.lock:
        pool.array(v)[...] = 0
        pool.run_plan(pool.install(plan), plan, 20.0)
        assert pool.array(v).tolist() == [11.0] * 4
