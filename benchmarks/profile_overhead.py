"""What per-task timestamps cost: a chain of 1,000 no-op tasks, run plain vs profiled.

    python benchmarks/profile_overhead.py [--tasks 1000] [--repeats 30] [--chips 2]

A profiled run differs from a plain one only in the RUN_PROFILE flag of the run command: each worker
then calls `time.monotonic_ns()` and stores the value into its profile area of the control block
after every step, and also before step 0 and every step that waited (a chain on one worker: one
clock read and one store per step). Plain and profiled runs alternate (so drift in this noisy VM
hits both alike); the figure is the median of the paired differences per task. `compiled.profile`
also builds the trace dict afterwards (in the parent, after the run): timed as "trace building".
Also timed: the same loop as a worker runs it, with and without the stamps, in one process (the
added cost without scheduling noise).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import l3c  # noqa: E402
from l3c import execute  # noqa: E402
from l3c.profile import build_trace  # noqa: E402

N = 1000


@l3c.kernel
def touch(x: l3c.InOut):
    pass


def chain(t):
    for _ in range(N):
        touch(t[0])
    return t


def in_process_floor(n: int, repeats: int) -> tuple[float, float]:
    """Seconds per step of a worker-like loop without and with the two stamps."""
    from l3c.registry import resolve
    fn = resolve(touch.name)
    x = np.zeros((1, 1))[0]
    area = (ctypes.c_uint64 * (2 * n))()
    stamps = memoryview(area).cast("B").cast("Q")
    clock = time.monotonic_ns
    steps = [(fn, (x,))] * n

    waits = ()                          # a chain on one worker: no step waits

    def loop(st):
        for k, (f, a) in enumerate(steps):
            if st is not None and (waits or not k):
                st[2 * k] = clock()
            f(*a)
            if st is not None:
                st[2 * k + 1] = clock()

    def plain():
        loop(None)

    def stamped():
        loop(stamps)

    def best(loop):
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            loop()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) / n
    return best(plain), best(stamped)


def main() -> None:
    global N
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--chips", type=int, default=2)
    opts = ap.parse_args()
    N = opts.tasks

    jitted = l3c.jit(chips=opts.chips, timeout=120)(chain)
    t = np.zeros((1, 1))
    compiled = jitted.lower(t)
    compiled(t)
    compiled.profile(t)                                    # warm-up: fork, install, JIT

    plain, profiled, building = [], [], []
    for _ in range(opts.repeats):
        t0 = time.perf_counter()
        compiled(t)
        plain.append(time.perf_counter() - t0)
        stamps: dict = {}
        t0 = time.perf_counter()
        execute.run(compiled, t, _stamps=stamps)
        profiled.append(time.perf_counter() - t0)
        lowered, _ = execute.prepare(compiled)
        t0 = time.perf_counter()
        build_trace(compiled.program, lowered.plan, stamps["steps"], stamps["t0"], stamps["t1"])
        building.append(time.perf_counter() - t0)

    med = statistics.median
    diffs = [p - q for p, q in zip(profiled, plain)]
    print(f"chain of {N} no-op tasks on {opts.chips} chips, {opts.repeats} alternating runs each")
    print(f"  plain run        {med(plain) / N * 1e6:8.3f} us/task  ({med(plain) * 1e3:.2f} ms/run)")
    print(f"  profiled run     {med(profiled) / N * 1e6:8.3f} us/task  ({med(profiled) * 1e3:.2f} ms/run)")
    print(f"  overhead         {med(diffs) / N * 1e6:8.3f} us/task  (median of paired differences; "
          f"{(med(profiled) / med(plain) - 1) * 100:+.1f}% of the run)")
    print(f"  trace building   {med(building) / N * 1e6:8.3f} us/task  (in the parent, after the run)")
    off, on = in_process_floor(N, opts.repeats)
    print(f"  in-process loop  {off * 1e6:8.3f} us/step without stamps, {on * 1e6:.3f} with "
          f"(+{(on - off) * 1e9:.0f} ns/step)")
    l3c.shutdown()


if __name__ == "__main__":
    main()
