"""Loops of the schedule (`l3c.range`, `l3c.while_loop`): what an iteration costs, beside the same
program unrolled by a plain Python `for` and beside a Python loop calling a jitted step.

    python benchmarks/loops.py [--iterations 100000] [--unrolled 10000] [--python-loop 2000]
                               [--compile-sizes 10 1000000] [--kernels native python]
                               [--repeats 3] [--quick] [--json PATH]

Three figures, the targets of issue 15:

(a) per task inside a loop on 2 chips: the body is two tasks, one pinned to each chip, each
    updating its own buffer, so each carries a dependency from one iteration to the next (each
    iteration's task waits for its previous instance). `loop`: `for i in l3c.range(N)`, N =
    `--iterations`; `unrolled`: the same body in a plain Python `for` of `--unrolled` iterations
    (tracing 2 tasks per iteration, so fewer by default); `python loop`: a jitted step of one
    iteration (the same two tasks) called `--python-loop` times from Python. Target: loop <= 1 us
    per task. Microseconds per task = median wall time of a run / tasks run.
    `pipeline`: the dependency crosses chips: chip 0 puts x[i + 1], chip 1 takes x[i], so each
    take waits for the previous iteration's put on the other chip (a carried edge; chip 0 runs
    ahead), loop and unrolled.
(b) compile time against the trip count: `Jitted.lower()` (trace and passes) plus code
    generation (`l3c.execute.prepare`: the plan and its native dispatcher, built by the first
    call before it installs them on the workers), CPU seconds of this process, for a static trip
    count of each of `--compile-sizes` (loop) and of the smallest size and `--unrolled`
    (unrolled). Target: the loop's largest size within 1.5x of its smallest.
(c) a `while_loop`'s decision per iteration: `for _ in l3c.while_loop(go): countdown(left, go)`
    against `for _ in l3c.range(n): countdown(left, go)` with the same n iterations (the same
    task, which also writes the flag), in us per iteration: the difference is what testing the
    flag before each iteration costs. Beside it, the Python loop that tests the flag between
    calls of a jitted `countdown`. Target: <= 2 us per iteration.

Kernels: `native` (numba cfuncs, the worker's step loop calls C with no Python; skipped without
numba) and `python` (plain `@l3c.kernel`s, each call a Python call in the worker). `--quick`: a
smoke run of every section with small sizes (the test suite runs it). Wall-clock figures on the
shared 2-core VM are noisy (+-30%): compare columns of one run, not runs of different days.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

if "PYTHONPATH" not in os.environ:     # else the l3c the caller chose (a "before" tree, say)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import l3c  # noqa: E402


# ---------------------------------------------------------------------------------------- kernels
@l3c.kernel
def tick(x: l3c.InOut):
    x[0] += 1.0


@l3c.kernel
def countdown(left: l3c.InOut, go: l3c.Out):
    left[0] -= 1
    go[0] = left[0] > 0


@l3c.kernel
def put(x: l3c.Out):
    x[0] = 1.0


@l3c.kernel
def take(x: l3c.In, y: l3c.InOut):
    y[0] += x[0]


PYTHON = SimpleNamespace(tick=tick, countdown=countdown, put=put, take=take)


def native_kernels() -> SimpleNamespace | None:
    """The same kernels as numba cfuncs (the Python bodies run only outside a trace), or None
    without numba."""
    try:
        from numba import cfunc, types
    except ImportError:
        return None
    f64p, i64p, i64, i32 = (types.CPointer(types.float64), types.CPointer(types.int64),
                            types.int64, types.int32)

    @cfunc(i32(f64p, i64))
    def c_tick(x, n):
        x[0] += 1.0
        return 0

    @cfunc(i32(i64p, i64, i64p, i64))
    def c_countdown(left, nl, go, ng):
        left[0] -= 1
        go[0] = 1 if left[0] > 0 else 0
        return 0

    @cfunc(i32(f64p, i64))
    def c_put(x, n):
        x[0] = 1.0
        return 0

    @cfunc(i32(f64p, i64, f64p, i64))
    def c_take(x, nx, y, ny):
        y[0] += x[0]
        return 0

    @l3c.kernel(native=c_put)
    def native_put(x: l3c.Out):
        x[0] = 1.0

    @l3c.kernel(native=c_take)
    def native_take(x: l3c.In, y: l3c.InOut):
        y[0] += x[0]

    @l3c.kernel(native=c_tick)
    def native_tick(x: l3c.InOut):
        x[0] += 1.0

    @l3c.kernel(native=c_countdown)
    def native_countdown(left: l3c.InOut, go: l3c.Out):
        left[0] -= 1
        go[0] = left[0] > 0

    return SimpleNamespace(tick=native_tick, countdown=native_countdown, put=native_put,
                           take=native_take)


# ---------------------------------------------------------------------------------------- programs
def programs(k: SimpleNamespace) -> SimpleNamespace:
    @l3c.jit(chips=2)
    def looped(a, b, n: int):
        for _ in l3c.range(n):
            k.tick.on(0)(a)
            k.tick.on(1)(b)
        return a, b

    @l3c.jit(chips=2)
    def unrolled(a, b, n: int):
        for _ in range(n):
            k.tick.on(0)(a)
            k.tick.on(1)(b)
        return a, b

    @l3c.jit(chips=2)
    def piped(x, y, n: int):
        for i in l3c.range(n):
            k.put.on(0)(x[i + 1:i + 2])
            k.take.on(1)(x[i:i + 1], y)
        return y

    @l3c.jit(chips=2)
    def piped_unrolled(x, y, n: int):
        for i in range(n):
            k.put.on(0)(x[i + 1:i + 2])
            k.take.on(1)(x[i:i + 1], y)
        return y

    @l3c.jit(chips=2)
    def step(a, b):
        k.tick.on(0)(a)
        k.tick.on(1)(b)
        return a, b

    @l3c.jit(chips=1)
    def while_countdown(left, go):
        for _ in l3c.while_loop(go):
            k.countdown(left, go)
        return left

    @l3c.jit(chips=1)
    def range_countdown(left, go, n):
        for _ in l3c.range(n):
            k.countdown(left, go)
        return left

    @l3c.jit(chips=1)
    def one_countdown(left, go):
        k.countdown(left, go)
        return go

    return SimpleNamespace(looped=looped, unrolled=unrolled, piped=piped,
                           piped_unrolled=piped_unrolled, step=step,
                           while_countdown=while_countdown, range_countdown=range_countdown,
                           one_countdown=one_countdown)


def median_wall(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def buffers():
    return np.zeros(1), np.zeros(1)


# ---------------------------------------------------------------------------------------- (a)
def per_task(p: SimpleNamespace, args: argparse.Namespace) -> dict:
    n, u, m = args.iterations, min(args.unrolled, args.iterations), args.python_loop
    a, b = buffers()
    looped = p.looped.lower(a, b, n)
    out, _ = looped(*buffers(), n)                 # warm: lowered, installed
    assert out[0] == n, (out, n)
    loop_s = median_wall(lambda: looped(*buffers(), n), args.repeats)
    unrolled = p.unrolled.lower(a, b, u)
    unrolled(a, b, u)
    unrolled_s = median_wall(lambda: unrolled(*buffers(), u), args.repeats)

    def python_loop():
        x, y = buffers()
        for _ in range(m):
            p.step(x, y)
        assert x[0] == m
    python_loop()
    python_s = median_wall(python_loop, args.repeats)

    def pipe_args(count):
        return np.zeros(count + 1), np.zeros(1)
    piped = p.piped.lower(*pipe_args(n), n)
    assert piped(*pipe_args(n), n)[0] == n - 1          # x[0] is never put
    piped_s = median_wall(lambda: piped(*pipe_args(n), n), args.repeats)
    piped_unrolled = p.piped_unrolled.lower(*pipe_args(u), u)
    piped_unrolled(*pipe_args(u), u)
    piped_unrolled_s = median_wall(lambda: piped_unrolled(*pipe_args(u), u), args.repeats)
    return {"loop": 1e6 * loop_s / (2 * n), "unrolled": 1e6 * unrolled_s / (2 * u),
            "python_loop": 1e6 * python_s / (2 * m), "pipeline_loop": 1e6 * piped_s / (2 * n),
            "pipeline_unrolled": 1e6 * piped_unrolled_s / (2 * u), "iterations": n,
            "unrolled_iterations": u, "python_loop_iterations": m}


# ---------------------------------------------------------------------------------------- (b)
def compile_time(jitted, n: int) -> dict:
    """CPU seconds of `lower()` (trace and passes) and of code generation (the plan and its native
    dispatcher, `l3c.execute.prepare`, what the first call adds before installing on workers)."""
    from l3c.execute import prepare
    a, b = buffers()
    t0 = time.process_time()
    compiled = jitted.lower(a, b, n)
    lower_s = time.process_time() - t0
    t0 = time.process_time()
    prepare(compiled)
    codegen_s = time.process_time() - t0
    return {"lower_s": lower_s, "codegen_s": codegen_s, "compile_s": lower_s + codegen_s,
            "nodes": compiled.graph.number_of_nodes()}


def compile_scaling(p: SimpleNamespace, args: argparse.Namespace) -> dict:
    out: dict = {"loop": {}, "unrolled": {}}
    compile_time(p.looped, 3)        # warm-up: the first dispatcher of these shapes is built once
    for n in args.compile_sizes:
        out["loop"][n] = compile_time(p.looped, n)
    for n in sorted({min(args.compile_sizes), args.unrolled}):
        out["unrolled"][n] = compile_time(p.unrolled, n)
    sizes = sorted(out["loop"])
    out["loop_ratio"] = out["loop"][sizes[-1]]["compile_s"] / out["loop"][sizes[0]]["compile_s"]
    return out


# ---------------------------------------------------------------------------------------- (c)
def decision(p: SimpleNamespace, args: argparse.Namespace) -> dict:
    n = args.iterations

    def counters():
        return np.array([n], np.int64), np.array([1], np.int64)

    left, go = counters()
    while_c = p.while_countdown.lower(left, go)
    range_c = p.range_countdown.lower(left, go, np.array([n], np.int64))
    trips = np.array([n], np.int64)
    assert while_c(*counters())[0] == 0 and range_c(*counters(), trips)[0] == 0
    while_s = median_wall(lambda: while_c(*counters()), args.repeats)
    range_s = median_wall(lambda: range_c(*counters(), trips), args.repeats)
    m = args.python_loop

    def python_loop():
        left, go = np.array([m], np.int64), np.array([1], np.int64)
        while go[0]:
            go = p.one_countdown(left, go)
    python_loop()
    python_s = median_wall(python_loop, args.repeats)
    return {"while_us_per_iteration": 1e6 * while_s / n, "range_us_per_iteration": 1e6 * range_s / n,
            "decision_us": 1e6 * (while_s - range_s) / n,
            "python_loop_us_per_iteration": 1e6 * python_s / m, "iterations": n}


# ---------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="loops.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--unrolled", type=int, default=10_000,
                    help="iterations of the unrolled program (tracing it costs per task)")
    ap.add_argument("--python-loop", type=int, default=2000,
                    help="calls of the jitted step in the Python loops")
    ap.add_argument("--compile-sizes", type=int, nargs="+", default=[10, 1_000_000])
    ap.add_argument("--kernels", nargs="+", choices=["native", "python"],
                    default=["native", "python"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 2000 iterations, 200 unrolled and Python-loop calls, "
                         "compile sizes 10 and 10000, 1 repeat")
    ap.add_argument("--json", help="write every figure there")
    args = ap.parse_args(argv)
    if args.quick:
        args.iterations, args.unrolled, args.python_loop = 2000, 200, 200
        args.compile_sizes, args.repeats = [10, 10_000], 1
    return args


def report(kind: str, res: dict) -> None:
    a, b, c = res["per_task"], res["compile"], res["decision"]
    print(f"\n[{kind} kernels]")
    print(f"(a) us per task, 2 chips, a carried dependency per task: loop {a['loop']:.3f} "
          f"({a['iterations']} iterations; target <= 1) | unrolled {a['unrolled']:.3f} "
          f"({a['unrolled_iterations']}) | Python loop of a jitted step {a['python_loop']:.2f} "
          f"({a['python_loop_iterations']})")
    print(f"    pipeline (chip 1's take of x[i] after chip 0's put of x[i] one iteration "
          f"earlier): loop {a['pipeline_loop']:.3f} | unrolled {a['pipeline_unrolled']:.3f}")
    print("(b) compile, CPU s (trace and passes + code generation):")
    for what in ("loop", "unrolled"):
        for n, fig in b[what].items():
            print(f"    {what:9s} {n:>9d} iterations: {fig['compile_s']:.4f} s "
                  f"(lower {fig['lower_s']:.4f} + codegen {fig['codegen_s']:.4f}), "
                  f"{fig['nodes']} nodes")
    print(f"    loop: largest / smallest = {b['loop_ratio']:.2f}x (target <= 1.5x)")
    print(f"(c) while_loop decision: {c['decision_us']:.3f} us per iteration (target <= 2) = "
          f"while {c['while_us_per_iteration']:.3f} - range {c['range_us_per_iteration']:.3f} "
          f"({c['iterations']} iterations) | Python loop testing the flag between jitted calls "
          f"{c['python_loop_us_per_iteration']:.2f} us per iteration")


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    results: dict = {"args": vars(args), "l3c": l3c.__file__}
    try:
        for kind in args.kernels:
            k = native_kernels() if kind == "native" else PYTHON
            if k is None:
                print(f"[{kind} kernels] skipped: numba is not installed")
                continue
            p = programs(k)
            compiled = compile_scaling(p, args)      # first: nothing of it lowered yet
            res = {"per_task": per_task(p, args), "compile": compiled, "decision": decision(p, args)}
            results[kind] = res
            report(kind, res)
    finally:
        l3c.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
