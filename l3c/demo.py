"""`l3c demo`: the bundled example, end to end.

A two-layer MLP block the way a multi-chip host would run it: each layer's matmul is split into row
tiles that run as group tasks over the chips, a bias + ReLU stage works on scoped temporaries, each
chip reduces its tiles to partial column sums, and a sub worker turns the partials into the final
column means. The demo traces, compiles, runs, checks the result against plain numpy and prints a
short report.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import l3c

CHIPS = 2
TILES = 8          # row tiles per layer; groups of CHIPS tiles run at once


@l3c.kernel
def matmul_tile(x: l3c.In, w: l3c.In, out: l3c.Out):
    np.matmul(x, w, out=out)


@l3c.kernel
def bias_relu(b: l3c.In, h: l3c.In, out: l3c.Out):
    np.add(h, b, out=out)
    np.maximum(out, 0, out=out)


@l3c.kernel
def column_sums(h: l3c.In, out: l3c.Out):
    out[...] = h.sum(axis=0)


@l3c.kernel(worker="sub")
def column_means(partials: l3c.In, rows: int, out: l3c.Out):
    out[...] = partials.sum(axis=0) / rows


@l3c.jit(chips=CHIPS, sub_workers=1)
def mlp_block(x, w1, b1, w2, b2):
    """Two dense layers over row tiles, then column means of the output."""
    rows, step = x.shape[0], x.shape[0] // TILES
    tiles = [slice(i * step, (i + 1) * step) for i in range(TILES)]
    y = l3c.empty((rows, w2.shape[1]), x.dtype)
    partials = l3c.empty((TILES, w2.shape[1]), x.dtype)
    for first in range(0, TILES, CHIPS):
        block = tiles[first:first + CHIPS]
        with l3c.scope():
            h = l3c.empty((rows, w1.shape[1]), x.dtype)
            a = l3c.empty_like(h)
            l3c.group(matmul_tile, [(x[t], w1, h[t]) for t in block])
            l3c.group(bias_relu, [(b1, h[t], a[t]) for t in block])
            l3c.group(matmul_tile, [(a[t], w2, y[t]) for t in block])
        for i, t in enumerate(block):
            column_sums(y[t], partials[first + i])
    means = l3c.empty((w2.shape[1],), x.dtype)
    column_means(partials, rows, means)
    return y, means


def reference(x, w1, b1, w2, b2):
    """The same computation in plain numpy."""
    y = np.maximum(x @ w1 + b1, 0) @ w2
    return y, y.mean(axis=0)


def _inputs(rows: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    f = np.float32
    return (rng.standard_normal((rows, width)).astype(f),
            (rng.standard_normal((width, width)) / np.sqrt(width)).astype(f),
            rng.standard_normal(width).astype(f),
            (rng.standard_normal((width, width)) / np.sqrt(width)).astype(f),
            rng.standard_normal(width).astype(f))


def _best_of(fn, args, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l3c demo", description=__doc__)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args(argv)
    if opts.rows % TILES:
        print(f"l3c: error: --rows must be a multiple of {TILES}", file=sys.stderr)
        return 1
    say = lambda msg: print(msg, flush=True)  # noqa: E731 - progress lines, shown as they happen

    args = _inputs(opts.rows, opts.width)
    say(f"l3c demo: 2-layer MLP block, x {opts.rows}x{opts.width} f32, {CHIPS} chips + 1 sub worker")
    say("  tracing and compiling ...")
    t0 = time.perf_counter()
    compiled = mlp_block.lower(*args)
    compile_s = time.perf_counter() - t0
    program = compiled.program
    say("  starting workers and running ...")
    y, means = compiled(*args)
    want_y, want_means = reference(*args)
    ok = np.allclose(y, want_y, rtol=1e-4, atol=1e-4) and np.allclose(means, want_means, rtol=1e-4, atol=1e-4)
    eager_y, eager_means = mlp_block.eager(*args)
    ok = ok and np.array_equal(eager_y, y) and np.allclose(eager_means, means)
    run_s = _best_of(compiled, args, opts.repeats)
    eager_s = _best_of(mlp_block.eager, args, max(1, opts.repeats // 2))

    reports = program.reports
    mem = compiled.memory
    say("")
    say(f"  result           {'matches numpy' if ok else 'DIFFERS FROM NUMPY'}")
    say(f"  tasks            {compiled.graph.number_of_nodes()}")
    say(f"  groups           {len(compiled.groups)}")
    say(f"  edges            {reports['edges_before_reduction']} before reduction, "
        f"{reports['edges_after_reduction']} after, +{mem.added_edges} ordering edges for arena reuse")
    say(f"  arena            {mem.arena_bytes} B (naive {mem.naive_bytes} B, "
        f"lower bound {mem.lower_bound_bytes} B)")
    say(f"  compile time     {compile_s * 1e3:.1f} ms")
    say(f"  run time         compiled {run_s * 1e3:.2f} ms, eager {eager_s * 1e3:.2f} ms "
        f"({eager_s / run_s:.1f}x)")
    say("")
    say("  next: l3c dump-ir l3c.demo:mlp_block --arg f32[512,128] --arg f32[128,128] --arg f32[128] "
        "--arg f32[128,128] --arg f32[128]")
    say("        l3c profile l3c.demo:mlp_block --arg f32[512,128] --arg f32[128,128] --arg f32[128] "
        "--arg f32[128,128] --arg f32[128] -o trace.json   (open in https://ui.perfetto.dev)")
    l3c.shutdown()
    return 0 if ok else 1
