"""`l3c demo`: what compiling an orchestration buys, in two parts, each checked against numpy.

1. Fine-grained: a 96x96 matmul done as 12x12x12 products of 8x8 tiles, 1,728 small tasks (each
   tile's chain of products stays on one chip), run three ways: a plain serial numpy loop in one
   process, the dynamic runtime (`tiled.eager`: a submit per task with runtime dependency tracking,
   the seed's model) and the compiled schedule. It prints microseconds a task and the ratios, and
   writes the HTML timeline of one compiled run (`compiled.profile`).
2. The larger example: a two-layer MLP block the way a multi-chip host would run it: each layer's
   matmul is split into row tiles that run as group tasks over the chips, a bias + ReLU stage works
   on scoped temporaries, each chip reduces its tiles to partial column sums, and a sub worker turns
   the partials into the final column means. It prints what the passes made of it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

import l3c

CHIPS = 2
TILES = 8          # row tiles per layer; groups of CHIPS tiles run at once
FINE_TILES, FINE_TILE = 12, 8      # the fine-grained part: 12x12 blocks of 8x8 per matrix
LIMITS = {"rows": (TILES, 1 << 16), "width": (1, 4096), "repeats": (1, 1000)}
TIMELINE = "l3c-demo-timeline.html"


@l3c.kernel
def tile_fma(a: l3c.In, b: l3c.In, c: l3c.InOut):
    c += a @ b


@l3c.jit(chips=CHIPS)
def tiled_matmul(a, b):
    """c = a @ b as one small task per tile product; c[i, j]'s products form a chain."""
    t = a.shape[0] // FINE_TILE
    blocks = [slice(i * FINE_TILE, (i + 1) * FINE_TILE) for i in range(t)]
    c = l3c.zeros(a.shape, a.dtype)
    for i in blocks:
        for j in blocks:
            for k in blocks:
                tile_fma(a[i, k], b[k, j], c[i, j])
    return c


def serial_tiled_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The same tile products as a plain numpy loop in this process."""
    t = a.shape[0] // FINE_TILE
    blocks = [slice(i * FINE_TILE, (i + 1) * FINE_TILE) for i in range(t)]
    c = np.zeros(a.shape, a.dtype)
    for i in blocks:
        for j in blocks:
            for k in blocks:
                c[i, j] += a[i, k] @ b[k, j]
    return c


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


def _median_s(fn: Callable[..., Any], args: tuple, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:      # one line and status 1, as every l3c command
        raise ValueError(message)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's options, each checked against `LIMITS` (a ValueError says which and why)."""
    parser = _Parser(prog="l3c demo", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512,
                        help=f"rows of the MLP's input, a multiple of {TILES} (default 512)")
    parser.add_argument("--width", type=int, default=128, help="its width (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--timeline", default=TIMELINE, metavar="FILE.html",
                        help=f"where to write the timeline (default ./{TIMELINE})")
    opts = parser.parse_args(argv)
    for name, (low, high) in LIMITS.items():
        value = getattr(opts, name)
        if not low <= value <= high:
            raise ValueError(f"--{name} must be between {low} and {high}, got {value}")
    if opts.rows % TILES:
        raise ValueError(f"--rows must be a multiple of {TILES} (the MLP's row tiles), got {opts.rows}")
    if not opts.timeline.lower().endswith((".html", ".htm")):
        raise ValueError(f"--timeline must name an .html file, got {opts.timeline!r}")
    return opts


def _say(msg: str = "") -> None:
    print(msg, flush=True)                     # progress lines, shown as they happen


def _write_timeline(trace: Any, path: str) -> str:
    """Write the HTML timeline at `path`, or in the temporary folder when that is not writable."""
    try:
        trace.save(path)
    except l3c.L3CError:
        path = os.path.join(tempfile.gettempdir(), os.path.basename(path) or TIMELINE)
        trace.save(path)
    return os.path.abspath(path)


def time_fine_grained(compiled: l3c.Compiled, a: np.ndarray, b: np.ndarray, repeats: int
                      ) -> dict[str, float]:
    """Median seconds of a run of part 1: "serial", "eager" (at most 3 runs: each costs about 100x
    the others) and "compiled"."""
    return {"serial": _median_s(serial_tiled_matmul, (a, b), repeats),
            "eager": _median_s(tiled_matmul.eager, (a, b), min(repeats, 3)),
            "compiled": _median_s(compiled, (a, b), repeats)}


def fine_grained(repeats: int, timeline: str) -> bool:
    """Part 1: serial numpy vs the dynamic runtime vs the compiled schedule, per task."""
    n = FINE_TILES * FINE_TILE
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    compiled = tiled_matmul.lower(a, b)
    tasks = compiled.graph.number_of_nodes()
    _say(f"1. fine-grained: a {n}x{n} matmul as {FINE_TILES}x{FINE_TILES}x{FINE_TILES} products of "
         f"{FINE_TILE}x{FINE_TILE} tiles, {tasks} tasks on {CHIPS} chips")
    want = a @ b
    ok = (np.allclose(compiled(a, b), want, rtol=1e-4, atol=1e-3)
          and np.allclose(tiled_matmul.eager(a, b), want, rtol=1e-4, atol=1e-3)
          and np.allclose(serial_tiled_matmul(a, b), want, rtol=1e-4, atol=1e-3))
    times = time_fine_grained(compiled, a, b, repeats)
    for label, key in (("serial numpy loop, one process", "serial"),
                       ("dynamic runtime (tiled_matmul.eager)", "eager"),
                       ("compiled schedule", "compiled")):
        _say(f"   {label:<38} {times[key] * 1e3:8.2f} ms  {times[key] / tasks * 1e6:7.2f} us a task")
    _say(f"   compiled speed-up a task: {times['eager'] / times['compiled']:.0f}x over the dynamic "
         f"runtime, {times['serial'] / times['compiled']:.1f}x over the serial loop")
    _say(f"   result           {'matches numpy' if ok else 'DIFFERS FROM NUMPY'}")
    _, trace = compiled.profile(a, b)
    _say(f"   timeline of one compiled run: {_write_timeline(trace, timeline)} (open it in a browser)")
    return ok


def mlp(rows: int, width: int, repeats: int) -> bool:
    """Part 2: the MLP block, with what the passes made of it."""
    args = _inputs(rows, width)
    _say(f"2. the larger example: 2-layer MLP block, x {rows}x{width} f32, {CHIPS} chips + 1 sub worker")
    t0 = time.perf_counter()
    compiled = mlp_block.lower(*args)
    compile_s = time.perf_counter() - t0
    y, means = compiled(*args)
    want_y, want_means = reference(*args)
    ok = np.allclose(y, want_y, rtol=1e-4, atol=1e-4) and np.allclose(means, want_means, rtol=1e-4, atol=1e-4)
    eager_y, eager_means = mlp_block.eager(*args)
    ok = ok and np.array_equal(eager_y, y) and np.allclose(eager_means, means)
    run_s = _median_s(compiled, args, repeats)
    eager_s = _median_s(mlp_block.eager, args, max(1, repeats // 2))

    reports = compiled.program.reports
    mem = compiled.memory
    _say(f"   result           {'matches numpy' if ok else 'DIFFERS FROM NUMPY'}")
    _say(f"   tasks            {compiled.graph.number_of_nodes()}")
    _say(f"   groups           {len(compiled.groups)}")
    _say(f"   edges            {reports['edges_before_reduction']} before reduction, "
         f"{reports['edges_after_reduction']} after, +{mem.added_edges} ordering edges for arena reuse")
    _say(f"   arena            {mem.arena_bytes} B (naive {mem.naive_bytes} B, "
         f"lower bound {mem.lower_bound_bytes} B)")
    _say(f"   compile time     {compile_s * 1e3:.1f} ms")
    _say(f"   run time         compiled {run_s * 1e3:.2f} ms, eager {eager_s * 1e3:.2f} ms: a few "
         "large matmuls, where the time goes into numpy, not into running the tasks")
    specs = " ".join(f"--arg f32[{','.join(map(str, a.shape))}]" for a in args)
    _say()
    _say(f"   next: l3c dump-ir l3c.demo:mlp_block {specs} --format svg -o mlp.svg")
    _say(f"         l3c profile l3c.demo:mlp_block {specs} -o mlp.html")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run both parts; 0 when every result matches numpy, 1 otherwise or on a bad option."""
    try:
        opts = parse_args(argv)
    except ValueError as exc:
        print(f"l3c: error: {exc}", file=sys.stderr)
        return 1
    _say("l3c demo (the first run forks the workers and compiles)")
    try:
        ok = fine_grained(opts.repeats, opts.timeline)
        _say()
        ok = mlp(opts.rows, opts.width, opts.repeats) and ok
    finally:
        l3c.shutdown()
    return 0 if ok else 1
