"""Soak: many compiled runs in one process; fds, threads, children, mappings and RSS must stay flat.

    python benchmarks/soak.py                      # 10,000 runs, a fault every 250 runs
    python benchmarks/soak.py --runs 2000 --fault-every 0

Each run is one call of a small jitted function (2 chips + 1 sub worker, a group, a scope, a
sub-worker kernel, an in-place update of an input), checked against numpy. With --fault-every K,
every K-th call instead injects a fault (a kernel raising, SIGKILL, os._exit, in turn) and the
next call must be correct again; every 7th checkpoint also runs an eager call. After a warm-up the
script samples, every --every runs: open fds, threads, child processes, lines of /proc/self/maps,
the parent's RSS and the workers' total RSS, and prints the growth per 1,000 runs (least squares
over the samples, and first-to-last).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import l3c  # noqa: E402

N = 16
FAULT_NONE, FAULT_RAISE, FAULT_SIGKILL, FAULT_EXIT = 0, 1, 2, 3


class SoakFault(RuntimeError):
    pass


@l3c.kernel
def axpy(ctl: l3c.In, alpha: float, x: l3c.In, y: l3c.InOut):
    code = int(ctl[0])
    if code == FAULT_RAISE:
        raise SoakFault("injected")
    if code == FAULT_SIGKILL:
        os.kill(os.getpid(), signal.SIGKILL)
    if code == FAULT_EXIT:
        os._exit(5)
    y += alpha * x


@l3c.kernel
def double(x: l3c.InOut):
    x *= 2.0


@l3c.kernel(worker="sub")
def total(x: l3c.In, out: l3c.Out):
    out[...] = x.sum()


@l3c.jit(chips=2, sub_workers=1, timeout=30)
def step(ctl, x, y):
    h = l3c.zeros(x.shape, x.dtype)
    l3c.group(axpy, [(ctl, 1.0, x[i::2], h[i::2]) for i in range(2)])
    with l3c.scope():
        t = l3c.zeros(h.shape, h.dtype)      # lives only in the scope
        axpy(ctl, 1.0, h, t)
        double(t)
        axpy(ctl, 0.5, t, h)
    s = l3c.empty((1,), x.dtype)
    total(h, s)
    axpy(ctl, -0.5, h, y)
    return h, s


def expected(x, y):
    h = 2.0 * x
    return h, np.array([h.sum()]), y - 0.5 * h


# ------------------------------------------------------------------------------------ probes
def _children() -> list[int]:
    out = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return out


def _rss_kib(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample() -> dict[str, int]:
    """One reading of everything that must stay flat."""
    kids = _children()
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": len(os.listdir("/proc/self/task")),
            "children": len(kids), "maps": maps, "rss_kib": _rss_kib(),
            "workers_rss_kib": sum(_rss_kib(p) for p in kids)}


def slope_per_1000(xs: list[int], ys: list[int]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else 1000.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


# ------------------------------------------------------------------------------------ soak
def one_run(rng: np.random.Generator, fault: int = FAULT_NONE, eager: bool = False) -> None:
    ctl = np.array([fault], np.int64)
    x, y = rng.standard_normal((N, N)), rng.standard_normal((N, N))
    want = expected(x, y.copy())
    fn = step.eager if eager else step
    if fault == FAULT_NONE:
        h, s = fn(ctl, x, y)
        np.testing.assert_allclose(h, want[0])
        np.testing.assert_allclose(s, want[1])
        np.testing.assert_allclose(y, want[2])
        return
    kind = {FAULT_RAISE: l3c.KernelError, FAULT_SIGKILL: l3c.WorkerCrashed,
            FAULT_EXIT: l3c.WorkerCrashed}[fault]
    try:
        fn(ctl, x, y)
    except kind:
        return
    raise AssertionError(f"fault {fault} raised nothing")


def soak(runs: int, fault_every: int = 0, every: int = 500, warmup: int = 200,
         log=None) -> dict:
    """Run `runs` compiled calls after `warmup` ones; return the samples and growth figures."""
    rng = np.random.default_rng(0)
    faults = 0
    cycle = (FAULT_RAISE, FAULT_SIGKILL, FAULT_EXIT)
    for i in range(warmup):                      # includes one of each fault: lazy imports etc.
        one_run(rng, cycle[i // 10] if i % 10 == 5 and i // 10 < len(cycle) else FAULT_NONE)
        if i % 50 == 0:
            one_run(rng, eager=True)
    samples, at = [sample()], [0]
    t0 = time.monotonic()
    for i in range(1, runs + 1):
        if fault_every and i % fault_every == 0:
            one_run(rng, cycle[faults % len(cycle)])
            faults += 1
        else:
            one_run(rng, eager=(i % (7 * every) == 0))
        if i % every == 0:
            samples.append(sample())
            at.append(i)
            if log:
                log(f"{i:6d} runs  {samples[-1]}  {time.monotonic() - t0:.1f} s")
    growth = {k: slope_per_1000(at, [s[k] for s in samples]) for k in samples[0]}
    delta = {k: samples[-1][k] - samples[0][k] for k in samples[0]}
    return {"runs": runs, "faults": faults, "seconds": time.monotonic() - t0, "samples": samples,
            "growth_per_1000": growth, "first_to_last": delta}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--fault-every", type=int, default=250)
    ap.add_argument("--every", type=int, default=500, help="sample every N runs")
    args = ap.parse_args(argv)
    result = soak(args.runs, args.fault_every, args.every, log=print)
    print(f"\n{result['runs']} compiled runs ({result['faults']} with an injected fault) in "
          f"{result['seconds']:.1f} s ({1e6 * result['seconds'] / result['runs']:.0f} us/run)")
    print(f"{'probe':>16} {'start':>9} {'end':>9} {'growth/1000 runs (fit)':>24}")
    first, last = result["samples"][0], result["samples"][-1]
    for k in first:
        print(f"{k:>16} {first[k]:>9} {last[k]:>9} {result['growth_per_1000'][k]:>24.2f}")
    l3c.shutdown()
    left = _children()
    print(f"after shutdown: {len(left)} children, {len(os.listdir('/proc/self/fd'))} fds")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
