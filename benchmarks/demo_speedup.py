"""Does `l3c demo`'s fine-grained part show compiled at least 10x cheaper per task than the dynamic
runtime in every run, quiet or loaded? Repeats the demo's own measurement many times.

    python benchmarks/demo_speedup.py [--rounds 20] [--repeats 5] [--load 0 2 4] [--json PATH]

Each round is what `l3c demo` does for part 1 (`l3c.demo.time_fine_grained`: median of --repeats
runs of the serial numpy loop and of the compiled schedule, of up to 3 runs of `.eager`) on the
demo's 1,728-task tiled matmul. `--load K` runs the rounds again with K extra processes spinning on
the CPU (a plain `while True` loop each, killed afterwards), so the workers compete for the cores.
Prints, per load level, the per-task microseconds (min / median / max over rounds) and the smallest
eager/compiled ratio seen: the figure `l3c demo` promises to keep above 10.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import l3c  # noqa: E402
from l3c import demo  # noqa: E402


def _spin() -> None:
    while True:
        pass


def rounds(n: int, repeats: int) -> list[dict[str, float]]:
    size = demo.FINE_TILES * demo.FINE_TILE
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    compiled = demo.tiled_matmul.lower(a, b)
    tasks = compiled.graph.number_of_nodes()
    compiled(a, b)
    demo.tiled_matmul.eager(a, b)
    out = []
    for _ in range(n):
        times = demo.time_fine_grained(compiled, a, b, repeats)
        out.append({k: v / tasks * 1e6 for k, v in times.items()})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--load", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--json", default=None)
    opts = parser.parse_args()
    report = {}
    ctx = mp.get_context("spawn")            # spinners share nothing with l3c's pool
    for load in opts.load:
        spinners = [ctx.Process(target=_spin, daemon=True) for _ in range(load)]
        for p in spinners:
            p.start()
        try:
            per_task = rounds(opts.rounds, opts.repeats)
        finally:
            for p in spinners:
                p.kill()
                p.join(timeout=5)
        ratios = [r["eager"] / r["compiled"] for r in per_task]
        summary = {k: [min(r[k] for r in per_task), statistics.median(r[k] for r in per_task),
                       max(r[k] for r in per_task)] for k in ("serial", "eager", "compiled")}
        report[load] = {"us_per_task_min_median_max": summary, "ratio_min": min(ratios),
                        "ratio_median": statistics.median(ratios), "rounds": opts.rounds}
        print(f"load {load}: " + ", ".join(f"{k} {a:.2f}/{m:.2f}/{z:.2f} us" for k, (a, m, z) in summary.items())
              + f"; eager/compiled min {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x",
              flush=True)
    l3c.shutdown()
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if all(r["ratio_min"] >= 10 for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
