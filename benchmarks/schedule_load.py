"""How long `l3c.load` takes, and how much of it the safety re-check costs
(`l3c.passes.verify.check_schedule`: conflicts re-derived and checked against the stored edges and
queue order, arena reuse checked for disjoint lifetimes), on programs of growing size.

    python benchmarks/schedule_load.py [--tasks 1000 5000 20000] [--repeats 3]

The program: a row-parallel stencil on 4 chips. Each of `tasks / 3` steps reads rows i and i+1 of
a tensor into a scoped temporary, then writes row i of the next tensor from it, so there are
RAW/WAR edges between chips, reused arena space, and a fused group now and then. Prints the median
load time and the median time of `check_schedule` alone, per size.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import l3c  # noqa: E402
from benchmarks_kernels import copy_rows, mix_rows  # noqa: E402


def program(steps: int):
    @l3c.jit(chips=4)
    def stencil(x):
        rows = x.shape[0]
        a, b = x, l3c.empty_like(x)
        for s in range(steps):
            i = s % (rows - 1)
            with l3c.scope():
                t = l3c.empty((2, x.shape[1]), x.dtype)
                copy_rows(a[i:i + 2], t)
                mix_rows(t, b[i])
            if i == rows - 2:
                a, b = b, a
        return a

    return stencil


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--repeats", type=int, default=3)
    ns = parser.parse_args(argv)
    from l3c.ircodec import dec_program
    from l3c.passes.verify import check_schedule
    from l3c import aot
    x = np.zeros((64, 16))
    with tempfile.TemporaryDirectory() as folder:
        for tasks in ns.tasks:
            compiled = program(max(1, tasks // 2)).lower(x)
            path = os.path.join(folder, "s.l3c")
            compiled.save(path)
            loads, checks = [], []
            for _ in range(ns.repeats):
                t0 = time.perf_counter()
                l3c.load(path)
                loads.append(time.perf_counter() - t0)
                prog = dec_program(aot.read_payload(path)["program"], 1 << 10)
                t0 = time.perf_counter()
                check_schedule(prog)
                checks.append(time.perf_counter() - t0)
            n = compiled.graph.number_of_nodes()
            print(f"{n:>7} tasks  load {statistics.median(loads) * 1e3:9.1f} ms  "
                  f"check_schedule {statistics.median(checks) * 1e3:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
