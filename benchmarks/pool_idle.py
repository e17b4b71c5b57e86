"""Idle CPU of a started pool, and pool start / stop time.

    python benchmarks/pool_idle.py [--chips 2] [--sub-workers 2] [--seconds 2] [--repeats 5]

Idle CPU: after one run (so every worker has been through its loop), read each worker's CPU time
from /proc/<pid>/schedstat, sleep, read again; the target is under 1% of a core per worker (idle workers
sleep on a futex, waking every 100 ms to check that their parent lives).
Start: `get_pool` from nothing to every worker forked (the llvmlite sync module is built once before).
Stop: `shutdown()` until every worker is reaped. Also prints the eager runtime's cost per task.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from l3c import registry  # noqa: E402
from l3c.runtime import sync  # noqa: E402
from l3c.runtime.eager import Call, run_calls  # noqa: E402
from l3c.runtime.plan import Plan, Step, View  # noqa: E402
from l3c.runtime.pool import get_pool, shutdown  # noqa: E402


def noop(*args):
    pass


def cpu_seconds(pid: int) -> float:
    """CPU time the process has run, in ns resolution (/proc/<pid>/schedstat, first field)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chips", type=int, default=2)
    ap.add_argument("--sub-workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    opts = ap.parse_args()
    key = registry.register(noop, "benchmarks.pool_idle:noop")
    sync.ensure()

    starts, stops = [], []
    for _ in range(opts.repeats):
        t = time.perf_counter()
        get_pool(opts.chips, opts.sub_workers, 1 << 20)
        starts.append(time.perf_counter() - t)
        t = time.perf_counter()
        shutdown()
        stops.append(time.perf_counter() - t)

    pool = get_pool(opts.chips, opts.sub_workers, 1 << 20)
    slots = pool.chips + pool.sub_workers
    plan = Plan(pool.chips, pool.sub_workers, tuple((Step(s, key, ()),) for s in range(slots)), 64)
    with pool.lock:
        pool.run_plan(pool.install(plan), plan, 10.0)
        pids = list((ctypes.c_int32 * slots).from_address(pool.pids_address))
    before = [cpu_seconds(p) for p in pids]
    t = time.perf_counter()
    time.sleep(opts.seconds)
    wall = time.perf_counter() - t
    after = [cpu_seconds(p) for p in pids]
    idle = [(a - b) / wall * 100 for a, b in zip(after, before)]

    n = 2000
    calls = [Call(i, key, (), "chip", ()) for i in range(n)]
    with pool.lock:
        run_calls(pool, calls[:100], pool.chips, 0)
        t = time.perf_counter()
        run_calls(pool, calls, pool.chips, 0)
        eager_us = (time.perf_counter() - t) / n * 1e6
        v = View(0, (1,), (8,), "float64")
        chain = [Call(i, key, (v,), "chip", ((0, 0, 8, True),)) for i in range(1000)]
        t = time.perf_counter()
        run_calls(pool, chain, pool.chips, 0)
        chain_us = (time.perf_counter() - t) / len(chain) * 1e6
    shutdown()

    print(f"workers: {opts.chips} chips + {opts.sub_workers} sub workers on {os.cpu_count()} cores")
    print(f"idle CPU over {wall:.2f} s per worker: " + ", ".join(f"{x:.2f}%" for x in idle)
          + f"  (max {max(idle):.2f}%, target < 1%)")
    print(f"pool start: median {statistics.median(starts) * 1e3:.1f} ms "
          f"(min {min(starts) * 1e3:.1f}, max {max(starts) * 1e3:.1f}) over {opts.repeats}")
    print(f"pool stop:  median {statistics.median(stops) * 1e3:.1f} ms "
          f"(min {min(stops) * 1e3:.1f}, max {max(stops) * 1e3:.1f})")
    print(f"eager runtime: {eager_us:.1f} us/task for {n} independent no-ops, "
          f"{chain_us:.1f} us/task for a chain of 1000")


if __name__ == "__main__":
    main()
