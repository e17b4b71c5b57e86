"""A while loop across 2 hosts: what one iteration costs when its decision (and data) cross hosts.

    python benchmarks/loops_hosts.py                 # starts `mpiexec -n 2` itself
    L3C_BENCH_ITERS=4000 L3C_BENCH_REPS=7 python benchmarks/loops_hosts.py
    L3C_BENCH_ROWS=py PYTHONPATH=/other/tree python benchmarks/loops_hosts.py   # some rows only
                                                    # (`py loop` runs on trees without host loops)

Each row is the median over L3C_BENCH_REPS calls (default 5, after one warm-up) of one compiled
call running a `while_loop` of L3C_BENCH_ITERS iterations (default 2,000), minus the same call
with 0 iterations, divided by the iterations: us per iteration. Python kernels of a few us each.

- `one host`   (hosts=1, chips=2, no MPI in the loop): chip 1 counts down the flag, chip 0 works;
                every chip reads the flag each iteration (the single-host reference).
- `local`      (hosts=2): the whole body on host 0; host 1 has nothing in the loop (no messages).
- `decision`   (hosts=2): host 1 counts down the flag, host 0 works: the flag goes 1 -> 0 once per
                iteration (one small message per decision).
- `ping-pong`  (hosts=2): host 0 updates x, host 1 reads it and decides: x goes 0 -> 1 and the
                flag 1 -> 0 every iteration, a dependent round trip between the hosts.
- `py loop`    (hosts=2): `decision`'s body as a compiled call without a loop, called from a
                Python `while` on every rank until the returned flag is 0 (what a program had to do
                before loops ran compiled across hosts): one whole call per iteration; median of
                the per-iteration time over REPS loops of L3C_BENCH_PY_ITERS (default 200).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "PYTHONPATH" not in os.environ:
    sys.path.insert(0, ROOT)

import l3c  # noqa: E402

ITERS = int(os.environ.get("L3C_BENCH_ITERS", "2000"))
REPS = int(os.environ.get("L3C_BENCH_REPS", "5"))
ROWS = os.environ.get("L3C_BENCH_ROWS", "one,local,decision,ping-pong,py").split(",")


@l3c.kernel
def count_down(go: l3c.InOut):
    go[0] -= 1


@l3c.kernel
def work(x: l3c.InOut):
    x[0] += 1.0


@l3c.kernel
def look(x: l3c.In, go: l3c.InOut):
    go[0] -= 1 if x[0] >= 0 else 0


def local(x, go):
    for _ in l3c.while_loop(go):
        work.on(0)(x)
        count_down.on(0)(go)
    return x


def decision(x, go):
    for _ in l3c.while_loop(go):
        work.on(0)(x)
        count_down.on(1)(go)
    return x


def ping_pong(x, go):
    for _ in l3c.while_loop(go):
        work.on(0)(x)
        look.on(1)(x, go)
    return x


def body(x, go):
    work.on(0)(x)
    count_down.on(1)(go)
    return go


def python_loop() -> float:
    """us per iteration of a Python loop calling the compiled body (every rank)."""
    jitted = l3c.jit(body, chips=1, hosts=2, timeout=120)
    n = int(os.environ.get("L3C_BENCH_PY_ITERS", "200"))
    x = np.zeros(1)
    jitted(x, np.array([1], np.int64))
    times = []
    for _ in range(REPS):
        go = np.array([n], np.int64)
        t = time.perf_counter()
        while go[0]:
            go = jitted(x, go)
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


def per_iteration(fn, **jit) -> float:
    """us per iteration: (median call with ITERS iterations - median call with 0) / ITERS."""
    jitted = l3c.jit(fn, timeout=120, **jit)
    x = np.zeros(1)

    def median(n: int) -> float:
        times = []
        for _ in range(REPS + 1):
            go = np.array([n], np.int64)
            t = time.perf_counter()
            jitted(x, go)
            times.append(time.perf_counter() - t)
        return statistics.median(times[1:])
    return (median(ITERS) - median(0)) / ITERS * 1e6


def ranks() -> None:
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    rows = [(name, per_iteration(fn, chips=1, hosts=2))
            for name, fn in (("local", local), ("decision", decision), ("ping-pong", ping_pong))
            if name in ROWS]
    if "py" in ROWS:
        rows.append(("py loop", python_loop()))
    if rank == 0:
        for name, us in rows:
            print(f"{name:10s} {us:8.1f} us per iteration (hosts=2, chips=1)", flush=True)
    l3c.shutdown()


def main() -> None:
    if "--rank" in sys.argv:
        ranks()
        return
    print(f"while_loop of {ITERS} iterations, median of {REPS} calls, minus 0 iterations")
    if "one" in ROWS:
        one = per_iteration(decision, chips=2)
        print(f"{'one host':10s} {one:8.1f} us per iteration (hosts=1, chips=2)", flush=True)
        l3c.shutdown()
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    subprocess.run([mpiexec, "-n", "2", sys.executable, os.path.abspath(__file__), "--rank"],
                   check=True)


if __name__ == "__main__":
    main()
