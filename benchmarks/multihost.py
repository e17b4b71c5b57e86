"""Several hosts: cross-host transfers through l3c vs raw mpi4py, and planning for 64 hosts.

    python benchmarks/multihost.py            # starts `mpiexec -n 2` for part 1, then runs part 2
    python benchmarks/multihost.py --plan     # part 2 only (no MPI needed)

1. Transfers (two ranks on this machine, one chip each). l3c: `produce.on(0)` writes X (4 KiB or
   4 MiB) on host 0 (after a 5 ms pause, so that both ranks have entered the run: the figure is
   the transfer, not the ranks' start-up skew) and stamps CLOCK_MONOTONIC as it returns; `consume.on(1)` on host 1 reads X and
   stamps as it starts. One-way latency = consumer start - producer end: worker -> parent (S_DONE),
   Isend from the arena, Irecv into the arena, landing counter -> consumer worker. Raw: rank 0 stamps,
   `Send`s the same buffer, rank 1 stamps after `Recv`. Medians; both ranks share one clock.
2. Planning, without processes: a model program (3 data-parallel layers: 512 matmuls over row
   blocks in groups of 8 + 512 ReLUs, then 64 sub-worker reductions and a final one) traced for
   64 hosts x 8 chips; times the schedule pass and the whole pipeline, and compares the estimated
   makespan with one host of 8 chips.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import l3c  # noqa: E402


@l3c.kernel
def produce(x: l3c.In, y: l3c.Out, stamp: l3c.Out):
    time.sleep(0.005)             # both ranks are in their run loops by now (no start-up skew)
    y[:1] = x[:1]
    stamp[0] = time.monotonic_ns()


@l3c.kernel
def consume(y: l3c.In, stamp: l3c.Out):
    stamp[0] = time.monotonic_ns()


def transfer(x, n):
    y = l3c.empty(x.shape, x.dtype)
    t0 = l3c.empty((1,), np.int64)
    t1 = l3c.empty((1,), np.int64)
    produce.on(0)(x, y, t0)
    consume.on(1)(y, t1)
    return t0, t1


def part_transfers() -> None:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    step = l3c.jit(hosts=2, chips=1, static_argnames=("n",), timeout=60)(transfer)
    rows = []
    for nbytes, runs in ((4096, 400), (4 << 20, 60)):
        x = np.ones(nbytes // 8)
        lat = []
        for i in range(runs + 5):
            t0, t1 = step(x, nbytes)
            if i >= 5:
                lat.append((int(t1[0]) - int(t0[0])) / 1e3)
        buf = np.ones(nbytes // 8)
        stamp = np.zeros(1, np.int64)
        raw = []
        for i in range(runs + 5):
            comm.Barrier()
            if rank == 0:
                stamp[0] = time.monotonic_ns()
                comm.Send(stamp, dest=1, tag=1)
                comm.Send(buf, dest=1, tag=2)
            else:
                comm.Recv(stamp, source=0, tag=1)
                comm.Recv(buf, source=0, tag=2)
                if i >= 5:
                    raw.append((time.monotonic_ns() - int(stamp[0])) / 1e3)
        raw = comm.bcast(raw, root=1)
        rows.append((nbytes, statistics.median(lat), statistics.median(raw),
                     np.percentile(lat, 90), np.percentile(raw, 90)))
    if rank == 0:
        print("cross-host transfer, one way (2 ranks on this machine, median / p90 in us):")
        print(f"  {'bytes':>9}  {'l3c':>16}  {'raw Send/Recv':>16}  {'l3c/raw':>7}  {'l3c-raw':>8}")
        for nbytes, l, r, l90, r90 in rows:
            print(f"  {nbytes:>9}  {l:8.1f} / {l90:6.1f}  {r:8.1f} / {r90:6.1f}  {l / r:7.2f}  "
                  f"{l - r:8.1f}")
        print("  (raw includes a second small Send carrying the stamp; l3c includes the worker -> "
              "parent and parent -> worker hand-offs)", flush=True)


# ------------------------------------------------------------------------------------ planning
@l3c.kernel
def matmul(a: l3c.In, w: l3c.In, out: l3c.Out):
    out[...] = a @ w


@l3c.kernel
def relu(a: l3c.In, out: l3c.Out):
    out[...] = np.maximum(a, 0)


@l3c.kernel(worker="sub")
def reduce_rows(a: l3c.In, out: l3c.Out):
    out[...] = a.sum(axis=0)


def model(x, w, blocks=512, hosts=64):
    """`blocks` row blocks, data-parallel; `hosts` only picks the sub workers of the reductions."""
    h = x
    for _ in range(3):
        z = l3c.empty(h.shape, h.dtype)
        for g in range(0, blocks, 8):
            l3c.group(matmul, [(h[i::blocks], w, z[i::blocks]) for i in range(g, g + 8)])
        a = l3c.empty(h.shape, h.dtype)
        for i in range(blocks):
            relu(z[i::blocks], a[i::blocks])
        h = a
    partial = l3c.empty((64, x.shape[1]), x.dtype)
    rows = x.shape[0] // 64
    for k in range(64):
        reduce_rows.on(k % hosts)(h[k * rows:(k + 1) * rows], partial[k])
    out = l3c.empty((1, x.shape[1]), x.dtype)
    reduce_rows.on(0)(partial, out)
    return out


def plan(hosts: int, chips: int = 8) -> dict:
    from l3c.ir import Config
    from l3c.passes import run_passes
    from l3c.passes import schedule
    from l3c.trace import bind_arguments, trace
    x = np.zeros((64 * 8 * 4, 64), np.float32)
    w = np.zeros((64, 64), np.float32)
    cfg = Config(chips=chips, sub_workers=1, hosts=hosts)
    t0 = time.perf_counter()
    bound = bind_arguments(model, (x, w), {"blocks": 512, "hosts": hosts}, ("blocks", "hosts"))
    program = trace(model, config=cfg, bound=bound)
    traced = time.perf_counter() - t0
    program.reports["kernel_costs"] = {"matmul": 20.0, "relu": 2.0, "reduce_rows": 5.0}
    run_passes(program, until="fuse")
    t1 = time.perf_counter()
    schedule.run(program)
    placed = time.perf_counter() - t1
    program.passes_run.append("schedule")
    run_passes_rest = time.perf_counter()
    from l3c.passes import memory
    memory.run(program)
    mem = time.perf_counter() - run_passes_rest
    return {"tasks": program.graph.number_of_nodes(), "trace_s": traced, "placement_s": placed,
            "memory_s": mem, "makespan": program.reports["makespan"],
            "critical_path": program.reports["critical_path"],
            "cross_host_edges": program.reports.get("cross_host_edges", 0), "program": program}


def part_planning() -> None:
    many = plan(64)
    one = plan(1)
    print(f"planning a model program ({many['tasks']} tasks; costs matmul 20, relu 2, reduce 5; "
          f"host latency 2 + 1 per MiB):")
    for name, r in (("64 hosts x 8 chips", many), ("1 host x 8 chips", one)):
        print(f"  {name:<19} placement {r['placement_s']:.2f} s  (trace {r['trace_s']:.2f} s, "
              f"memory plan {r['memory_s']:.2f} s)  makespan {r['makespan']:.0f}  "
              f"critical path {r['critical_path']:.0f}  cross-host edges {r['cross_host_edges']}")
    print(f"  estimated speed-up of 64 hosts over one host: {one['makespan'] / many['makespan']:.1f}x")
    from l3c.dist.split import split
    t = time.perf_counter()
    d = split(many["program"])
    print(f"  split into 64 host plans: {time.perf_counter() - t:.2f} s, {d.stats['transfers']} "
          f"transfers ({d.stats['tokens']} tokens), {d.stats['transfer_bytes']} bytes", flush=True)


def main() -> None:
    if "--plan" in sys.argv:
        part_planning()
        return
    if "--transfers" in sys.argv:
        part_transfers()
        return
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run(["mpiexec", "-n", "2", sys.executable, os.path.abspath(__file__), "--transfers"],
                   check=True, timeout=600, env=env)
    part_planning()


if __name__ == "__main__":
    main()
