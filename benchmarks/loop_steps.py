"""What loops cost in the step loop: hand-placed programs with loops (no tracer needed), run compiled.

    python benchmarks/loop_steps.py [--iterations 100000] [--repeats 5]

1. `for i in range(n)` with two tasks on two chips, native and Python no-op kernels, microseconds
   per task:
   chain     a -> b within the iteration and b -> a carried to the next: a strict alternation,
             every task waits for the other chip (one cross-process hand-off per task);
   pipeline  a (chip 0) writes x[i + 1], b (chip 1) reads x[i]: b waits for a's previous
             iteration (a carried edge with an exact offset), so chip 0 runs ahead.
2. decision: a while loop whose body (one native task on chip 0) writes the flag, against a range
   loop of the same body and trip count; the difference per iteration is what the while loop's
   decision costs. With a second active chip (a task of it outside the loop), that chip runs the
   tests too, and the flag's writer waits for its read every iteration.
Medians of `--repeats` runs after a warm-up run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from numba import cfunc, types

import l3c
from l3c.ir import Access, Config, Loop, Param, Program, Region, ScalarArg, Shift, Task, TensorInfo

i32p, f64p, i64 = types.CPointer(types.int32), types.CPointer(types.float64), types.int64


@cfunc(types.int32(f64p, i64))
def c_touch(x, n):
    x[0] += 1.0
    return 0


@l3c.kernel(native=c_touch)
def n_touch(x: l3c.InOut):
    x += 1.0


@l3c.kernel
def p_touch(x: l3c.InOut):
    pass


@cfunc(types.int32(i32p, i64, i32p, i64, i64))
def c_count(counter, nc, flag, nf, limit):
    counter[0] += 1
    flag[0] = 1 if counter[0] < limit else 0
    return 0


@l3c.kernel(native=c_count)
def n_count(counter: l3c.InOut, flag: l3c.Out, limit: int):
    pass


def _elem(tensor: int, e: int, mode: str) -> Access:
    return Access("x", tensor, Region(e, (1,), (1,), ((e, 1, 1),)), mode)


def _program(tensors: list[tuple[str, tuple, str]]) -> Program:
    prog = Program(name="bench:loops", loc="loop_steps.py:1", config=Config(chips=2))
    for i, (name, shape, dtype) in enumerate(tensors):
        prog.tensors.append(TensorInfo(i, f"arg{i}", "input", shape, dtype, "loop_steps.py:1"))
        prog.params.append(Param(name, tensor=i))
    return prog


def carried(kernel, n: int) -> Program:
    prog = _program([("x", (2,), "float64")])
    prog.loops[0] = Loop(0, "range", "loop_steps.py:2", None, 0, 2, stop=n)
    for tid, chip in ((0, 0), (1, 1)):
        prog.add_task(Task(tid, kernel.name, "chip", (_elem(0, tid, "InOut"),), "loop_steps.py:3",
                           loops=(0,), chip=chip, queue_pos=0))
    prog.add_dependency(0, 1, "RAW", 0)
    prog.add_dependency(1, 0, "WAR", 0, carried=True)
    return prog


def pipeline(kernel, n: int) -> Program:
    prog = _program([("x", (n + 1,), "float64")])
    prog.loops[0] = Loop(0, "range", "loop_steps.py:2", None, 0, 2, stop=n)
    for tid, (chip, e) in enumerate(((0, 1), (1, 0))):
        region = Region(e, (1,), (1,), ((e, 1, 1),), shifts=(Shift(0, 1, (1,)),))
        prog.add_task(Task(tid, kernel.name, "chip", (Access("x", 0, region, "InOut"),),
                           "loop_steps.py:3", loops=(0,), chip=chip, queue_pos=0))
    prog.add_dependency(0, 1, "RAW", 0, carried=True)
    return prog


def decision(kind: str, n: int, second_chip: bool = True) -> Program:
    prog = _program([("counter", (1,), "int32"), ("flag", (1,), "int32"), ("pad", (1,), "float64")])
    if kind == "while":
        prog.loops[0] = Loop(0, "while", "loop_steps.py:4", None, 0, 1, flag=_elem(1, 0, "In"))
    else:
        prog.loops[0] = Loop(0, "range", "loop_steps.py:4", None, 0, 1, stop=n)
    prog.add_task(Task(0, n_count.name, "chip", (_elem(0, 0, "InOut"), _elem(1, 0, "Out"),
                                                 ScalarArg("limit", n)), "loop_steps.py:5",
                       loops=(0,), chip=0, queue_pos=0))
    if second_chip:                                 # chip 1 is active: it runs the control steps
        prog.add_task(Task(1, n_touch.name, "chip", (_elem(2, 0, "InOut"),), "loop_steps.py:6",
                           chip=1, queue_pos=0))
    if kind == "while":
        prog.loops[0].reads_after = ((0, True),)
        prog.loops[0].reads_before = ((0, False),)
    prog.add_dependency(0, 0, "RAW", 0, carried=True)
    return prog


def timed(compiled: l3c.Compiled, make_args, repeats: int) -> float:
    compiled(*make_args())
    times = []
    for _ in range(repeats):
        args = make_args()
        t0 = time.perf_counter()
        compiled(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    n = a.iterations
    for shape, build, size in (("chain", carried, 2), ("pipeline", pipeline, n + 1)):
        for name, kernel in (("native", n_touch), ("python", p_touch)):
            t = timed(l3c.Compiled(build(kernel, n)), lambda: (np.zeros(size),), a.repeats)
            print(f"{shape}, 2 chips, {name} kernels: {t / (2 * n) * 1e6:.3f} us per task "
                  f"({n} iterations, {t * 1e3:.1f} ms a run)")
    args = lambda: (np.zeros(1, np.int32), np.ones(1, np.int32), np.zeros(1))   # noqa: E731
    for second in (False, True):
        t_while = timed(l3c.Compiled(decision("while", n, second)), args, a.repeats)
        t_range = timed(l3c.Compiled(decision("range", n, second)), args, a.repeats)
        print(f"while loop, {2 if second else 1} active chip(s): {t_while / n * 1e6:.3f} us per "
              f"iteration, a range loop of the same body {t_range / n * 1e6:.3f}: the decision "
              f"costs {(t_while - t_range) / n * 1e6:.3f} us")
    l3c.shutdown()


if __name__ == "__main__":
    main()
