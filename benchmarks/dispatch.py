"""Dispatch cost per task: l3c compiled vs l3c eager vs ProcessPoolExecutor (vs Dask / Ray when
importable), on the workloads of issue 6, with 2 and 4 workers.

    python benchmarks/dispatch.py [--workers 2 4] [--repeats 5] [--json benchmarks/dispatch.json]

Workloads (tasks per run):
    a  2,000 independent no-op tasks                  (each writes its own row of one tensor)
    b  a chain of 1,000 dependent no-op tasks         (each updates the same row)
    c  8 x (1 -> 256 -> 1) fan-out / fan-in           (8 * 258 tasks)
    d  200 2-member group tasks, each group reading what the previous group wrote (cost per group)
    e  a chain of 100 in-place `x += 1` on a 4 MiB float64 array (vs the same numpy loop)

Timing: median wall time of `--repeats` runs after one warm-up run (which traces, compiles, forks).
The floor for a-c is the same kernel calls made one after another in a plain Python loop in one
process with prebuilt numpy views. Prints microseconds per task, each peer's ratio to l3c compiled,
and l3c compiled's ratio to the floor; writes everything as JSON.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import l3c  # noqa: E402

N_A, N_B, FAN, ROUNDS, N_D, N_E = 2000, 1000, 256, 8, 200, 100
BIG = (4 << 20) // 8


@l3c.kernel
def touch(x: l3c.InOut):
    pass


@l3c.kernel
def fan(src: l3c.In, dst: l3c.InOut):
    pass


@l3c.kernel
def gather(src: l3c.In, dst: l3c.InOut):
    pass


@l3c.kernel
def member(src: l3c.In, dst: l3c.Out):
    pass


@l3c.kernel
def inc(x: l3c.InOut):
    x += 1.0


def wl_a(t):
    for i in range(N_A):
        touch(t[i])
    return t


def wl_b(t):
    for _ in range(N_B):
        touch(t[0])
    return t


def wl_c(a, b):
    for _ in range(ROUNDS):
        touch(a)
        for i in range(FAN):
            fan(a, b[i])
        gather(b, a)
    return a


def wl_d(a, b):
    for k in range(N_D):
        src, dst = (a, b) if k % 2 == 0 else (b, a)
        l3c.group(member, [(src, dst[i::2]) for i in range(2)])
    return a


def wl_e(x):
    for _ in range(N_E):
        inc(x)
    return x


WORKLOADS = {
    "a": (wl_a, lambda: (np.zeros((N_A, 1)),), N_A, "2,000 independent no-ops"),
    "b": (wl_b, lambda: (np.zeros((1, 1)),), N_B, "chain of 1,000"),
    "c": (wl_c, lambda: (np.zeros(4), np.zeros((FAN, 4))), ROUNDS * (FAN + 2), "8 x (1 -> 256 -> 1)"),
    "d": (wl_d, lambda: (np.zeros(8), np.zeros(8)), N_D, "2-member groups (per group)"),
    "e": (wl_e, lambda: (np.zeros(BIG),), N_E, "100 updates of 4 MiB"),
}


def timed(fn, repeats: int) -> float:
    fn()                                     # warm-up: trace, compile, fork, install
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


# ----------------------------------------------------------------------------- floor (one process)
def floor(name: str, repeats: int) -> float:
    """The same kernel calls (the plain kernel functions a worker runs), one after another, with
    prebuilt views in one process."""
    from l3c.registry import resolve
    t_, f_, g_, m_ = (resolve(k.name) for k in (touch, fan, gather, member))
    args = WORKLOADS[name][1]()
    if name == "a":
        calls = [(t_, (args[0][i],)) for i in range(N_A)]
    elif name == "b":
        calls = [(t_, (args[0][0],))] * N_B
    elif name == "c":
        a, b = args
        one = [(t_, (a,))] + [(f_, (a, b[i])) for i in range(FAN)] + [(g_, (b, a))]
        calls = one * ROUNDS
    elif name == "d":
        a, b = args
        calls = [(m_, (a, b[0::2])), (m_, (a, b[1::2]))] * N_D
    else:
        x = args[0]
        return timed(lambda: [np.add(x, 1.0, out=x) for _ in range(N_E)], repeats)

    def loop():
        for fn, a in calls:
            fn(*a)
    return timed(loop, repeats)


# ----------------------------------------------------------------------------- ProcessPoolExecutor
def _ppe_noop(*args):
    return None


def _ppe_inc(x):
    x += 1.0
    return x


def ppe(name: str, workers: int, repeats: int) -> float:
    with cf.ProcessPoolExecutor(max_workers=workers) as ex:
        list(ex.map(_ppe_noop, range(workers * 2)))          # start the workers
        if name == "a":
            def run():
                cf.wait([ex.submit(_ppe_noop, i) for i in range(N_A)])
        elif name == "b":
            def run():
                for i in range(N_B):
                    ex.submit(_ppe_noop, i).result()
        elif name == "c":
            def run():
                for _ in range(ROUNDS):
                    ex.submit(_ppe_noop).result()
                    cf.wait([ex.submit(_ppe_noop, i) for i in range(FAN)])
                    ex.submit(_ppe_noop).result()
        elif name == "d":
            def run():
                for _ in range(N_D):
                    cf.wait([ex.submit(_ppe_noop, i) for i in range(2)])
        else:
            def run():
                x = np.zeros(BIG)
                for _ in range(N_E):
                    x = ex.submit(_ppe_inc, x).result()
        return timed(run, max(1, repeats // 2) if name in "be" else repeats)


# ----------------------------------------------------------------------------- optional peers
def dask_peer(name: str, workers: int, repeats: int) -> float | None:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return None
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster, \
            Client(cluster) as client:
        if name == "a":
            run = lambda: client.gather(client.map(_ppe_noop, range(N_A), pure=False))  # noqa: E731
        elif name == "b":
            def run():
                f = None
                for i in range(N_B):
                    f = client.submit(_ppe_noop, f, i, pure=False)
                f.result()
        else:
            return None
        return timed(run, repeats)


def ray_peer(name: str, workers: int, repeats: int) -> float | None:
    try:
        import ray
    except ImportError:
        return None
    ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(_ppe_noop)
        if name == "a":
            run = lambda: ray.get([remote.remote(i) for i in range(N_A)])  # noqa: E731
        elif name == "b":
            def run():
                r = None
                for i in range(N_B):
                    r = remote.remote(r, i)
                ray.get(r)
        else:
            return None
        return timed(run, repeats)
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- l3c
def l3c_modes(name: str, workers: int, repeats: int) -> tuple[float, float]:
    fn, make, _, _ = WORKLOADS[name]
    jitted = l3c.jit(chips=workers, timeout=120)(fn)
    args = make()
    compiled = jitted.lower(*args)
    t_compiled = timed(lambda: compiled(*args), repeats)
    t_eager = timed(lambda: jitted.eager(*args), max(1, repeats // 2))
    return t_compiled, t_eager


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workloads", default="abcde")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "dispatch.json"))
    opts = ap.parse_args()

    rows = []
    for workers in opts.workers:
        for name in opts.workloads:
            _, _, tasks, label = WORKLOADS[name]
            comp, eager = l3c_modes(name, workers, opts.repeats)
            row = {"workload": name, "label": label, "workers": workers, "tasks": tasks,
                   "us_per_task": {"l3c_compiled": comp / tasks * 1e6,
                                   "l3c_eager": eager / tasks * 1e6,
                                   "process_pool": ppe(name, workers, opts.repeats) / tasks * 1e6,
                                   "floor": floor(name, opts.repeats) / tasks * 1e6}}
            for peer, fn in (("dask", dask_peer), ("ray", ray_peer)):
                t = fn(name, workers, opts.repeats)
                if t is not None:
                    row["us_per_task"][peer] = t / tasks * 1e6
            rows.append(row)
            us = row["us_per_task"]
            ratios = "  ".join(f"{k} {v / us['l3c_compiled']:.1f}x" for k, v in us.items()
                               if k not in ("l3c_compiled", "floor"))
            print(f"W={workers} ({name}) {label:30s} compiled {us['l3c_compiled']:9.2f} us  "
                  f"eager {us['l3c_eager']:9.2f}  ppe {us['process_pool']:9.2f}  "
                  f"floor {us['floor']:7.2f}  | peer/compiled: {ratios}  "
                  f"compiled/floor {us['l3c_compiled'] / us['floor']:.1f}x", flush=True)
    with open(opts.json, "w") as f:
        json.dump({"rows": rows, "cpus": os.cpu_count()}, f, indent=1)
    print(f"wrote {opts.json}")
    l3c.shutdown()


if __name__ == "__main__":
    main()
