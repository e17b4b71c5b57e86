"""How the passes scale with program size, and how close the memory plan gets to its lower bound.

    python benchmarks/compile_scaling.py [--sizes 1000 10000 100000] [--chips 2] [--sub-workers 1]
    python benchmarks/compile_scaling.py --lower dense block [--lower-sizes 10000 100000 1000000]
    python benchmarks/compile_scaling.py --signatures 300

`--lower`: `Jitted.lower()` (trace + passes) of a dense-conflict program (`dense`: N `add` calls
over N/10 tensors picked at random, so each tensor is touched about 30 times all through the
program) and of `traced_blocks` (`block`), in CPU seconds, with the process's peak RSS and, where
the installed l3c takes kernel cost hints, the placement's makespan over its lower bound (the
larger of the critical path and work / workers): unit costs for `dense`, the costs of
`BLOCK_COSTS` for `block` (as `l3c.jit(costs=...)`).
`--signatures N`: RSS growth over N new signatures of a small jitted function (shapes differ, and
every 20th has its own schedule), at the default cache size.

Builds programs of a transformer-like block structure directly through the IR API (the same calls
the tracer makes: tensors, tasks with sliced accesses, scopes, a returned result), then times
`run_passes` on them. Each block (a layer): an intermediate `h` filled by row-interleaved matmul
calls on the previous layer's `h` (fused into groups), a scoped temporary (`relu` then `axpy` back into `h`), a row write into a long-lived
accumulator (many disjoint slices of one tensor), and a sub-worker reduction into a per-block scalar
that a final task reads. Prints build and pass times per size, the 10x ratios (1.0 = linear), and
arena / lower bound.

Tracing is timed separately (`trace s`, `us/call`): `l3c.trace` of a Python function making the
same kernel calls (`traced_blocks`: the same blocks written with l3c.empty, slicing, l3c.scope and
l3c.group), so the figure is what a user's orchestration function costs per kernel call.
Times are CPU seconds of this process (`time.process_time`): the 2-core development VM is shared,
and wall-clock figures swing by +-50% with other jobs.
"""
from __future__ import annotations

import argparse
import inspect
import os
import resource
import sys
import time
from pathlib import Path

if "PYTHONPATH" not in os.environ:     # else the l3c the caller chose (a "before" tree, say)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import l3c  # noqa: E402
from l3c.ir import Access, Config, Program, Region, ResultRef, ScalarArg, Task, TensorInfo  # noqa: E402
from l3c.passes import PassOptions, run_passes  # noqa: E402
from l3c.trace import bind_arguments, trace  # noqa: E402

ROWS, COLS = 64, 64


def rows(start: int, step: int, total: int = ROWS, cols: int = COLS) -> Region:
    """Region of `x[start::step]` for a (total, cols) C-contiguous tensor."""
    count = len(range(start, total, step))
    return Region(start * cols, (count, cols), (step * cols, 1), ((start, count, step), (0, cols, 1)))


def row(index: int, cols: int = COLS) -> Region:
    """Region of `x[index]` for a C-contiguous tensor of `cols` columns."""
    return Region(index * cols, (cols,), (1,), ((index, 1, 1), (0, cols, 1)))


def build(n_tasks: int, chips: int, sub_workers: int) -> Program:
    prog = Program(name="bench:blocks", loc="bench.py:1",
                   config=Config(chips=chips, sub_workers=sub_workers))
    tensors = prog.tensors

    def tensor(name, kind, shape, scope=()):
        info = TensorInfo(len(tensors), name, kind, shape, "float32", f"bench.py:{len(tensors)}",
                          scope)
        tensors.append(info)
        return info

    def task(kernel, worker, args, scope=()):
        prog.add_task(Task(len(prog.graph), f"bench:{kernel}", worker, tuple(args),
                           f"bench.py:{100 + len(prog.graph)}", scope))

    whole = Region.whole((ROWS, COLS))
    x = tensor("arg0", "input", (ROWS, COLS))
    w = tensor("arg1", "input", (COLS, COLS))
    per_block = chips + 5
    blocks = max(1, n_tasks // per_block)
    acc = tensor("acc", "intermediate", (blocks, COLS))
    sums = []
    prev = x
    for b in range(blocks):
        h = tensor(f"h{b}", "intermediate", (ROWS, COLS))
        for i in range(chips):
            task("mm", "chip", [Access("x", prev.id, rows(i, chips), "In"),
                                Access("w", w.id, Region.whole(w.shape), "In"),
                                Access("out", h.id, rows(i, chips), "Out")])
        scope = (b,)
        prog.scopes[b] = scope
        t = tensor(f"t{b}", "intermediate", (ROWS, COLS), scope)
        task("relu", "chip", [Access("x", h.id, whole, "In"), Access("out", t.id, whole, "Out")],
             scope)
        task("axpy", "chip", [ScalarArg("alpha", 0.5), Access("x", t.id, whole, "In"),
                              Access("y", h.id, whole, "InOut")], scope)
        task("rowsum", "chip", [Access("x", h.id, whole, "In"),
                                Access("out", acc.id, row(b), "Out")])
        s = tensor(f"s{b}", "intermediate", (1,))
        kind = "sub" if sub_workers else "chip"
        task("report", kind, [Access("x", h.id, whole, "In"),
                              Access("out", s.id, Region.whole((1,)), "Out")])
        sums.append(s)
        prev = h
        if len(sums) == 8 or b == blocks - 1:
            total = tensor(f"total{b}", "intermediate", (1,))
            task("gather", kind, [Access(f"s{k}", s.id, Region.whole((1,)), "In")
                                  for k, s in enumerate(sums)]
                 + [Access("out", total.id, Region.whole((1,)), "Out")])
            sums = []
    prog.results = ResultRef(acc.id, Region.whole(acc.shape), "float32")
    return prog


@l3c.kernel
def mm(x: l3c.In, w: l3c.In, out: l3c.Out):
    out[...] = x @ w


@l3c.kernel
def relu(x: l3c.In, out: l3c.Out):
    np.maximum(x, 0, out=out)


@l3c.kernel
def axpy(alpha: float, x: l3c.In, y: l3c.InOut):
    y += alpha * x


@l3c.kernel
def rowsum(x: l3c.In, out: l3c.Out):
    out[...] = x.sum(axis=0)


@l3c.kernel(worker="sub")
def report(x: l3c.In, out: l3c.Out):
    out[...] = x.sum()


@l3c.kernel(worker="sub")
def gather(parts: l3c.In, out: l3c.Out):
    out[...] = parts.sum()


def traced_blocks(x, w, blocks=10, chips=2):
    """The blocks of `build` as an orchestration function (one gather over a block's 8 sums)."""
    acc = l3c.empty((blocks, COLS), x.dtype)
    sums = l3c.empty((blocks,), x.dtype)
    prev = x
    for b in range(blocks):
        h = l3c.empty((ROWS, COLS), x.dtype)
        l3c.group(mm, [(prev[i::chips], w, h[i::chips]) for i in range(chips)])
        with l3c.scope():
            t = l3c.empty((ROWS, COLS), x.dtype)
            relu(h, t)
            axpy(0.5, t, h)
        rowsum(h, acc[b])
        report(h, sums[b:b + 1])
        prev = h
        if b % 8 == 7 or b == blocks - 1:
            total = l3c.empty((1,), x.dtype)
            gather(sums[b - b % 8:b + 1], total)
    return acc


def time_trace(n_tasks: int, chips: int, sub_workers: int) -> tuple[float, int]:
    """CPU seconds to trace `traced_blocks` with about `n_tasks` kernel calls, and the calls."""
    blocks = max(1, n_tasks // (chips + 5))
    x = np.zeros((ROWS, COLS), np.float32)
    w = np.zeros((COLS, COLS), np.float32)
    cfg = Config(chips=chips, sub_workers=max(1, sub_workers))
    bound = bind_arguments(traced_blocks, (x, w), {"blocks": blocks, "chips": chips},
                           ("blocks", "chips"))
    t0 = time.process_time()
    prog = trace(traced_blocks, config=cfg, bound=bound)
    return time.process_time() - t0, len(prog.graph)


# Costs of the block program's kernels for `--lower`: arithmetic per call in units of 4,096
# operations (a 32x64 by 64x64 matmul member: 262,144 multiply-adds x2; relu, rowsum, report:
# one pass over 4,096 elements; axpy: two; gather: eight sums).
BLOCK_COSTS = {"mm": 64.0, "relu": 1.0, "axpy": 2.0, "rowsum": 1.0, "report": 1.0,
               "gather": 0.002}


@l3c.kernel
def add(a: l3c.In, b: l3c.In, out: l3c.InOut):
    out += a + b


def dense_program(n_calls: int):
    """`n_calls` add calls over n_calls / 10 zero-filled tensors chosen at random (seeded)."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, max(1, n_calls // 10), size=(n_calls, 3)).tolist()

    def dense(x):
        tensors = [l3c.zeros((16,), x.dtype) for _ in range(max(1, n_calls // 10))]
        for a, b, c in picks:
            add(tensors[a], tensors[b], tensors[c])
        return tensors[0]
    return dense


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_lower(kind: str, n: int, chips: int, sub_workers: int) -> dict:
    """Trace and lower one program of about `n` tasks; CPU seconds, tasks, makespan / bound."""
    x = np.zeros((ROWS, COLS), np.float32)
    w = np.zeros((COLS, COLS), np.float32)
    with_costs = "costs" in inspect.signature(l3c.jit).parameters
    if kind == "dense":
        jitted = l3c.jit(dense_program(n), chips=chips)
        args, kwargs = (x,), {}
    else:
        options = dict(costs=BLOCK_COSTS) if with_costs else {}
        jitted = l3c.jit(traced_blocks, chips=chips, sub_workers=max(1, sub_workers),
                         static_argnames=("blocks", "chips"), **options)
        args, kwargs = (x, w), {"blocks": max(1, n // (chips + 5)), "chips": chips}
    t0 = time.process_time()
    traced = jitted.trace(*args, **kwargs)
    t1 = time.process_time()
    program = jitted.lower(*args, **kwargs).program
    t2 = time.process_time()
    reports = program.reports
    bound = reports.get("makespan_lower_bound")
    return {"tasks": len(traced.graph), "trace": t1 - t0, "passes": t2 - t1, "total": t2 - t0,
            "ratio": reports["makespan"] / bound if bound else None}


def lower_table(kinds: list[str], sizes: list[int], chips: int, sub_workers: int) -> None:
    print(f"{'program':>8} {'tasks':>8} {'trace s':>8} {'passes s':>9} {'lower s':>8} "
          f"{'peak RSS MB':>12} {'makespan/LB':>12}")
    for kind in kinds:
        for n in sizes:
            got = time_lower(kind, n, chips, sub_workers)
            ratio = f"{got['ratio']:.3f}" if got["ratio"] is not None else "-"
            print(f"{kind:>8} {got['tasks']:>8} {got['trace']:>8.2f} {got['passes']:>9.2f} "
                  f"{got['total']:>8.2f} {peak_rss_mb():>12.0f} {ratio:>12}", flush=True)


@l3c.kernel
def bump(x: l3c.InOut):
    x += 1


def signature_growth(count: int) -> None:
    """RSS growth over `count` new signatures (after 20 to warm the pool up)."""
    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def halves(x, n):
        for _ in range(n % 20 + 1):
            bump(x[: x.shape[0] // 2])
            bump(x[x.shape[0] // 2:])
        return x

    jitted = l3c.jit(halves, chips=2, static_argnames=("n",))
    for k in range(20):
        jitted(np.zeros(k + 2, np.float32), n=k)
    before = rss_mb()
    t0 = time.time()
    for k in range(count):
        jitted(np.zeros(100 + k, np.float32), n=k)
    print(f"{count} new signatures: RSS {before:.0f} -> {rss_mb():.0f} MB "
          f"(+{rss_mb() - before:.1f} MB), {time.time() - t0:.1f} s wall")
    l3c.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--chips", type=int, default=2)
    parser.add_argument("--sub-workers", type=int, default=1)
    parser.add_argument("--lower", nargs="+", choices=("dense", "block"), default=None)
    parser.add_argument("--lower-sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--signatures", type=int, default=None)
    args = parser.parse_args()
    if args.lower:
        lower_table(args.lower, args.lower_sizes, args.chips, args.sub_workers)
        return
    if args.signatures:
        signature_growth(args.signatures)
        return
    print(f"{'tasks':>8} {'tensors':>8} {'build s':>8} {'passes s':>9} {'edges':>8} "
          f"{'groups':>7} {'arena/LB':>9} {'arena/naive':>12} {'mem edges':>9} {'makespan':>9} "
          f"{'trace s':>8} {'us/call':>8}")
    previous = None
    for n in args.sizes:
        t0 = time.process_time()
        prog = build(n, args.chips, args.sub_workers)
        t1 = time.process_time()
        run_passes(prog, options=PassOptions())
        t2 = time.process_time()
        m = prog.memory
        traced_s, calls = time_trace(n, args.chips, args.sub_workers)
        print(f"{len(prog.graph):>8} {len(prog.tensors):>8} {t1 - t0:>8.3f} {t2 - t1:>9.3f} "
              f"{prog.graph.number_of_edges():>8} {len(prog.groups):>7} "
              f"{m.arena_bytes / m.lower_bound_bytes:>9.3f} {m.arena_bytes / m.naive_bytes:>12.4f} "
              f"{m.added_edges:>9} {prog.reports['makespan']:>9.0f} "
              f"{traced_s:>8.3f} {traced_s / calls * 1e6:>8.1f}")
        if previous is not None:
            pn, pt = previous
            ratio = (t2 - t1) / pt
            print(f"{'':>8} passes time x{ratio:.1f} for x{len(prog.graph) / pn:.1f} tasks "
                  f"(per-task ratio {ratio / (len(prog.graph) / pn):.2f}; 1.00 = linear)")
        previous = (len(prog.graph), t2 - t1)


if __name__ == "__main__":
    main()
