"""Pool start + first run, shutdown, and worker replacement, from the public API.

    PYTHONPATH=<tree> python benchmarks/pool_start.py [--repeats 15] [--chips 2]

Start: `f(x)` right after `l3c.shutdown()` (the function is compiled and its dispatcher built
before, so this is the pool: mappings, the fork server, every worker, the plan install, one run).
Stop: `l3c.shutdown()` until the server and every worker are reaped. Replace: a call whose kernel
kills its worker (WorkerCrashed: recovery and a new worker) followed by a normal call. Prints
medians and ranges in ms; the l3c imported is printed first so runs of two trees can be compared
side by side (set PYTHONPATH).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import l3c


@l3c.kernel
def add_one(x: l3c.InOut):
    x += 1


@l3c.kernel
def die(x: l3c.InOut):
    os._exit(7)


def figures(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1e3 for s in samples)
    print(f"{name:<28} median {statistics.median(ms):7.2f} ms   min {ms[0]:7.2f}   max {ms[-1]:7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--chips", type=int, default=2)
    args = ap.parse_args()

    @l3c.jit(chips=args.chips)
    def bump(x):
        for _ in range(args.chips):
            add_one(x)

    @l3c.jit(chips=args.chips)
    def crash(x):
        add_one(x)
        die(x)

    print("l3c:", os.path.dirname(l3c.__file__))
    x = np.zeros(4)
    bump(x)
    try:
        crash(x)
    except l3c.WorkerCrashed:
        pass
    start, stop, replace = [], [], []
    for _ in range(args.repeats):
        l3c.shutdown()
        t = time.perf_counter()
        bump(x)
        start.append(time.perf_counter() - t)
        t = time.perf_counter()
        try:
            crash(x)
        except l3c.WorkerCrashed:
            pass
        bump(x)
        replace.append(time.perf_counter() - t)
        t = time.perf_counter()
        l3c.shutdown()
        stop.append(time.perf_counter() - t)
    figures("pool start + first run", start)
    figures("crash + replacement + run", replace)
    figures("shutdown", stop)


if __name__ == "__main__":
    main()
