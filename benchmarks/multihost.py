"""Several hosts: cross-host transfers through l3c vs raw mpi4py, and planning for 64 hosts.

    python benchmarks/multihost.py            # starts `mpiexec -n 2` for part 1 (with --idle,
                                              # --long and --uneven), then runs part 2
    python benchmarks/multihost.py --plan     # part 2 only (no MPI needed)
    python benchmarks/multihost.py --calls    # part 3 only: what one call costs (mpiexec -n 2)
    L3C_BENCH_REPS=400 python benchmarks/multihost.py   # repetitions per size (default 300 / 100)
    L3C_BENCH_PAUSE_MS=50 ...     # the producer's pause (default 5 ms; past the run loop's 10 ms
                                  # of polling, the sender naps until the producer rings)

1. Transfers (two ranks on this machine, one chip each), one-way latency, l3c and raw interleaved
   (repetition i does one l3c run and then one raw transfer, so machine noise hits both alike):
   - l3c: inside a run, `produce.on(0)` on host 0 fills Y (4 KiB or 4 MiB, after a 5 ms pause so that
     both ranks are in their run loops: the figure is the transfer, not the ranks' start-up skew) and
     stamps CLOCK_MONOTONIC as it returns; `consume.on(1)` on host 1 reads Y and stamps as it starts.
     Latency = consumer start - producer end: worker -> parent (S_DONE), `Isend` from the arena,
     `Irecv` into the arena, landing counter -> consumer worker.
   - raw: the same bytes, between the same arena regions (Y's place in each rank's arena), with
     mpi4py `Send`/`Recv`: rank 1 waits in `Recv`, rank 0 pauses 5 ms, stamps and `Send`s; rank 1
     stamps when `Recv` returns. Both ranks share one clock; stamps are gathered after the loop.
   - reference, one host, no MPI: a dependent hop between two chips of one pool (producer end ->
     consumer start), i.e. what one hand-off between processes costs here; an l3c transfer has two
     (worker -> parent on host 0, parent -> worker on host 1) plus the MPI message.
   `--stages` also prints where an l3c transfer's time goes (stamps in the run loop; "host 1 sees it
   complete" is when host 1's parent publishes the landing, stamped by the native poll when it did).
   `--idle` also measures what each rank's parent spends while host 1 waits 2 s for a slow kernel
   on host 0 (CPU time of the parent over the run, from getrusage).
   `--long` also measures a 4 KiB transfer after a long (30 ms) producer that is followed by
   another 30 ms kernel on its chip: past their 10 ms spin both parents nap, the sender until the
   producer rings its doorbell, the receiver in ticks of 1/64 of its wait.
   `--uneven` also measures a run's end when one host works 100 ms and the other has nothing to
   do: how much longer than 100 ms the run takes on rank 0 (its parent waits for the other's
   "done", then both make the final broadcasts).
2. Planning, without processes: a model program (3 data-parallel layers: 512 matmuls over row
   blocks in groups of 8 + 512 ReLUs, then 64 sub-worker reductions and a final one) traced for
   64 hosts x 8 chips; times the schedule pass and the whole pipeline, and compares the estimated
   makespan with one host of 8 chips. Then, also without processes: 8 hosts each working on its own
   temporaries at once, and the arena each host then needs (each host's arena holds only its own
   tensors).
3. Calls (`--calls`, two ranks): the wall time of one call of a tiny two-host function, median over
   L3C_BENCH_CALLS calls (default 2,000) after 50 warm-up calls: `across` (host 1 scales 4 floats,
   host 0 adds one: one transfer) and `apart` (each host one task, no transfer). Every call carries
   the ranks' agreement (l3c/dist/calls.py). Run it with PYTHONPATH pointing at another tree to
   compare (the benchmark imports l3c from PYTHONPATH when it is set). Then, interleaved and
   barrier-separated, a call's first message alone on the receiving rank: the input's `Ibcast` (what
   every call sent before the agreement) against the call header carrying the same input.

mpiexec is the one beside this interpreter (the `mpich` wheel installs it there), else on PATH.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, ROOT)

import l3c  # noqa: E402

PAUSE = float(os.environ.get("L3C_BENCH_PAUSE_MS", "5")) / 1e3


@l3c.kernel
def produce(x: l3c.In, y: l3c.Out, stamp: l3c.Out):
    time.sleep(PAUSE)             # both ranks are in their run loops by now (no start-up skew)
    y[...] = x[0]
    stamp[0] = time.monotonic_ns()


@l3c.kernel
def consume(y: l3c.In, stamp: l3c.Out):
    stamp[0] = time.monotonic_ns()


def transfer(x, n, chips=(0, 1)):
    y = l3c.empty((n // 8,), x.dtype)
    t0 = l3c.empty((1,), np.int64)
    t1 = l3c.empty((1,), np.int64)
    produce.on(chips[0])(x, y, t0)
    consume.on(chips[1])(y, t1)
    return t0, t1


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), float(np.percentile(values, 90))


def same_host_hop(runs: int) -> tuple[float, float]:
    """One host, two chips: producer end -> consumer start (one hand-off between worker processes)."""
    step = l3c.jit(chips=2, static_argnames=("n", "chips"), timeout=60)(transfer)
    x = np.ones(1)
    lat = []
    for i in range(runs + 5):
        t0, t1 = step(x, 4096, chips=(0, 1))
        if i >= 5:
            lat.append((int(t1[0]) - int(t0[0])) / 1e3)
    return stats(lat)


IDLE_S = 2.0


@l3c.kernel
def slow(x: l3c.In, y: l3c.Out):
    time.sleep(IDLE_S)
    y[...] = x


@l3c.kernel
def bump(y: l3c.In, z: l3c.Out):
    z[...] = y + 1


def idle_wait(x):
    y = l3c.empty(x.shape, x.dtype)
    z = l3c.empty(x.shape, x.dtype)
    slow.on(0)(x, y)
    bump.on(1)(y, z)
    return z


LONG_S = 0.03


@l3c.kernel
def produce_long(x: l3c.In, y: l3c.Out, stamp: l3c.Out):
    time.sleep(LONG_S)
    y[...] = x[0]
    stamp[0] = time.monotonic_ns()


@l3c.kernel
def busy_long(x: l3c.In, z: l3c.Out):
    time.sleep(LONG_S)
    z[...] = x


def long_transfer(x):
    y = l3c.empty((512,), x.dtype)
    z = l3c.empty(x.shape, x.dtype)
    t0 = l3c.empty((1,), np.int64)
    t1 = l3c.empty((1,), np.int64)
    produce_long.on(0)(x, y, t0)
    busy_long.on(0)(x, z)                 # the producer's worker goes on: only its ring is heard
    consume.on(1)(y, t1)
    return t0, t1, z


def part_long(comm) -> None:
    """Producer end -> consumer start of a 4 KiB transfer after a 30 ms kernel (median, p90)."""
    from l3c.runtime.hosts import loop as dist_run
    step = l3c.jit(hosts=2, chips=1, timeout=60)(long_transfer)
    x = np.ones(4)
    lat, seen = [], []
    for i in range(43):
        dist_run.PROBE = []
        t0, t1, _ = step(x)
        events = dict(dist_run.PROBE)
        if i >= 3:
            lat.append((int(t1[0]) - int(t0[0])) / 1e3)
            if "seen" in events:
                seen.append((events["seen"] - int(t0[0])) / 1e3)
    dist_run.PROBE = None
    if comm.Get_rank() == 0:
        print(f"after a {LONG_S * 1e3:.0f} ms kernel (4 KiB, us): producer end -> consumer start "
              f"{statistics.median(lat):.0f} / {np.percentile(lat, 90):.0f}; producer end -> "
              f"host 0's parent sees it {statistics.median(seen):.0f}", flush=True)


UNEVEN_S = 0.1


@l3c.kernel
def quick(x: l3c.InOut):
    x += 1


@l3c.kernel
def slow_inc(x: l3c.InOut):
    time.sleep(UNEVEN_S)
    x += 1


def uneven(a, b):
    quick.on(0)(a)
    slow_inc.on(1)(b)
    return a, b


def part_uneven(comm) -> None:
    """Run time beyond the 100 ms kernel when only host 1 has work (median, max over 20 runs)."""
    step = l3c.jit(hosts=2, chips=1, timeout=60)(uneven)
    a, b = np.zeros(4), np.zeros(4)
    over = []
    for i in range(23):
        comm.Barrier()
        t0 = time.monotonic()
        step(a, b)
        if i >= 3:
            over.append((time.monotonic() - t0 - UNEVEN_S) * 1e3)
    if comm.Get_rank() == 0:
        print(f"uneven run (host 1 works {UNEVEN_S * 1e3:.0f} ms, host 0 nothing): run time "
              f"beyond that {statistics.median(over):.2f} ms median, {max(over):.2f} max",
              flush=True)


def part_idle(comm) -> None:
    """CPU time of each rank's parent during a run that waits IDLE_S on a slow kernel on host 0."""
    import resource
    step = l3c.jit(hosts=2, chips=1, timeout=60)(idle_wait)
    x = np.ones(512)
    step(x)                                                # compile and warm up
    comm.Barrier()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    step(x)
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t0
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    rows = comm.gather((comm.Get_rank(), wall, cpu), root=0)
    if comm.Get_rank() == 0:
        print(f"idle wait ({IDLE_S:.0f} s kernel on host 0, host 1 waits for its output): "
              + ", ".join(f"rank {r} parent {c * 1e3:.0f} ms CPU in {w:.2f} s "
                          f"({100 * c / w:.1f}% of a core)" for r, w, c in rows), flush=True)


def part_transfers() -> None:
    from mpi4py import MPI

    from l3c.runtime.hosts import loop as dist_run
    from l3c.runtime.pool import get_pool
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    show_stages = "--stages" in sys.argv
    step = l3c.jit(hosts=2, chips=1, static_argnames=("n", "chips"), timeout=60)(transfer)
    reps = os.environ.get("L3C_BENCH_REPS")
    rows = []
    for nbytes, runs in ((4096, 300), (4 << 20, 100)):
        runs = int(reps) if reps else runs
        x = np.ones(1)
        step(x, nbytes)                                    # compile, start the pool, warm up
        compiled = step.lower(x, nbytes)
        tr = compiled.artifacts["dist"].transfers[0]
        (piece,) = tr.pieces
        assert piece.view is not None and piece.nbytes == nbytes
        lat, raw_lat, raw_t0, stages = [], [], [], []
        dist_run.PROBE = [] if show_stages else None
        for i in range(runs + 5):
            if show_stages:
                dist_run.PROBE.clear()
            t0, t1 = step(x, nbytes)
            if show_stages:
                events = comm.allgather(dict(dist_run.PROBE))
            if i >= 5:
                lat.append((int(t1[0]) - int(t0[0])) / 1e3)
                if show_stages:
                    e0, e1 = events
                    stages.append((e0["seen"] - int(t0[0]), e0["sent"] - e0["seen"],
                                   e1["arrived"] - e0["sent"], int(t1[0]) - e1["arrived"]))
            plan = compiled.artifacts["dist"].parts[rank].lowered.plan
            buf = get_pool(plan.chips, plan.sub_workers, plan.arena_bytes).array(piece.view)
            # (Y's place in this rank's arena: the pool as the l3c run left it)
            comm.Barrier()
            if rank == 0:
                time.sleep(PAUSE)
                stamp = time.monotonic_ns()
                comm.Send([buf, MPI.BYTE], dest=1, tag=2)
                raw_t0.append(stamp)
            else:
                comm.Recv([buf, MPI.BYTE], source=0, tag=2)
                raw_t0.append(time.monotonic_ns())
        dist_run.PROBE = None
        sent = comm.bcast(raw_t0 if rank == 0 else None, root=0)
        raw_lat = [(b - a) / 1e3 for a, b in zip(sent, raw_t0)][5:] if rank == 1 else []
        raw_lat = comm.bcast(raw_lat, root=1)
        rows.append((nbytes, stats(lat), stats(raw_lat),
                     np.median(np.array(stages), axis=0) / 1e3 if stages else None))
    if rank == 0:
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"cross-host transfer, one way (2 ranks x 1 chip on this machine; median / p90 in us; "
              f"load average {load}: with other jobs running, every figure here measures the "
              f"scheduler more than l3c or MPI):")
        print(f"  {'bytes':>9}  {'l3c':>16}  {'raw Send/Recv':>16}  {'l3c/raw':>7}  {'l3c-raw':>8}")
        for nbytes, (l, l90), (r, r90), _ in rows:
            print(f"  {nbytes:>9}  {l:8.1f} / {l90:6.1f}  {r:8.1f} / {r90:6.1f}  {l / r:7.2f}  "
                  f"{l - r:8.1f}")
        if show_stages:
            print("  where an l3c transfer's time goes (medians, us): producer end -> host 0's "
                  "parent sees S_DONE | -> Isend posted | -> host 1 sees it complete | -> consumer starts")
            for nbytes, _, _, st in rows:
                print(f"  {nbytes:>9}  " + " | ".join(f"{v:7.1f}" for v in st))
        sys.stdout.flush()
    if "--idle" in sys.argv:
        part_idle(comm)
    if "--long" in sys.argv:
        part_long(comm)
    if "--uneven" in sys.argv:
        part_uneven(comm)
    l3c.shutdown()
    if rank == 0:
        h, h90 = same_host_hop(300 if not reps else int(reps))
        print(f"  reference, one host: a dependent hop between two chips {h:.1f} / {h90:.1f} us "
              f"(an l3c transfer makes two such hand-offs plus the message)", flush=True)
        l3c.shutdown()


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
    program.costs.kernel_costs = {"matmul": 20.0, "relu": 2.0, "reduce_rows": 5.0}
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


@l3c.kernel
def plus_one(x: l3c.In, y: l3c.Out):
    y[...] = x + 1


def own_temporaries(x, hosts=8, chips=2):
    """Every host works on its own 512 KiB of temporaries, all hosts at once."""
    rows = x.shape[0] // hosts
    out = l3c.empty((hosts, 4), x.dtype)
    for h in range(hosts):
        with l3c.scope():
            a = l3c.empty((rows, x.shape[1]), x.dtype)
            b = l3c.empty((rows, x.shape[1]), x.dtype)
            plus_one.on(h * chips)(x[h * rows:(h + 1) * rows], a)
            plus_one.on(h * chips + 1)(a, b)
            plus_one.on(h * chips)(b[0, :4], out[h])
    return out


def part_arenas() -> None:
    """Each host's arena holds only its own tensors (passes only, no processes)."""
    from l3c.ir import Config
    from l3c.passes import run_passes
    from l3c.trace import bind_arguments, trace
    x = np.zeros((8 * 256, 256), np.float32)
    program = run_passes(trace(own_temporaries, config=Config(chips=2, sub_workers=0, hosts=8),
                               bound=bind_arguments(own_temporaries, (x,), {}, ())))
    ends = program.reports["host_arena_bytes"]
    print(f"own temporaries on 8 hosts (2 x 256 KiB each, all at once): arena per host "
          f"{max(ends) / 1024:.0f} KiB; all hosts' intermediates together (what one arena "
          f"for every host would hold) {program.memory.naive_bytes / 1024:.0f} KiB", flush=True)


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
    from l3c.codegen.hosts import split
    t = time.perf_counter()
    d = split(many["program"])
    print(f"  split into 64 host plans: {time.perf_counter() - t:.2f} s, {d.stats['transfers']} "
          f"transfers ({d.stats['tokens']} tokens), {d.stats['transfer_bytes']} bytes", flush=True)


@l3c.kernel
def scale(x: l3c.In, y: l3c.Out):
    y[...] = x * 2


@l3c.kernel
def add_one(y: l3c.In, z: l3c.Out):
    z[...] = y + 1


def across(x):
    y = l3c.empty(x.shape, x.dtype)
    scale.on(1)(x, y)
    z = l3c.empty(x.shape, x.dtype)
    add_one.on(0)(y, z)
    return z


def apart(x):
    y = l3c.empty(x.shape, x.dtype)
    z = l3c.empty(x.shape, x.dtype)
    scale.on(0)(x, y)
    scale.on(1)(x, z)
    return y, z


def part_calls() -> None:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    n = int(os.environ.get("L3C_BENCH_CALLS", "2000"))
    x = np.arange(4.0)
    for name, fn in (("across", across), ("apart", apart)):
        step = l3c.jit(hosts=2, chips=1, timeout=60)(fn)
        for _ in range(50):
            step(x)
        comm.Barrier()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step(x)
            times.append((time.perf_counter() - t0) * 1e6)
        if comm.Get_rank() == 0:
            med, p90 = stats(times)
            print(f"one call of `{name}` on 2 hosts ({l3c.__file__}): median {med:.0f} us, "
                  f"p90 {p90:.0f} us over {n} calls", flush=True)
    try:
        from l3c.runtime.hosts import calls
    except ImportError:                   # a tree without per-call agreement
        return
    # The agreement alone, interleaved with what a call sent before it (one Ibcast of the input)
    from l3c.runtime.hosts import launcher
    data, _ = launcher.comms()
    buf = np.arange(4.0)
    side = calls.CallSide(calls.call_digest("bench", "bench(x: float64[4])"), "bench(x: float64[4])",
                          [buf])
    old, new = [], []
    for _ in range(n):
        comm.Barrier()
        t0 = time.perf_counter()
        launcher.wait_all([data.Ibcast([buf.view(np.uint8), MPI.BYTE], root=0)],
                          time.monotonic() + 10, "bench")
        old.append((time.perf_counter() - t0) * 1e6)
        comm.Barrier()
        t0 = time.perf_counter()
        calls.exchange(side, None)
        new.append((time.perf_counter() - t0) * 1e6)
    if comm.Get_rank() == 1:              # the receiving side, which waits for the message
        print(f"a call's first message on the receiving rank (median / p90 us over {n}, "
              f"interleaved): the input's Ibcast alone {stats(old)[0]:.1f} / {stats(old)[1]:.1f}, "
              f"the call header with the input inline {stats(new)[0]:.1f} / {stats(new)[1]:.1f}",
              flush=True)


def mpiexec() -> str:
    """The mpiexec beside this interpreter (the mpich wheel puts it there), else the one on PATH."""
    import shutil
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        sys.exit("benchmarks/multihost.py: no mpiexec beside this Python nor on PATH; install "
                 "the several-host extra: pip install -e '.[dist]' (or run --plan, which needs none)")
    return found


def main() -> None:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=(
        "Without a part, starts `mpiexec -n 2` for part 1 (transfers with --idle, --long and "
        "--uneven), then runs part 2 (planning). Environment: L3C_BENCH_REPS, L3C_BENCH_PAUSE_MS, "
        "L3C_BENCH_CALLS."), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", action="store_true", help="part 2 only: planning, no MPI")
    parser.add_argument("--calls", action="store_true",
                        help="part 3 only: what one call costs (starts mpiexec -n 2)")
    parser.add_argument("--transfers", action="store_true",
                        help="part 1 inside an MPI job (run it under mpiexec -n 2)")
    for flag, what in (("--stages", "where a transfer's time goes"), ("--idle", "idle-wait CPU"),
                       ("--long", "a transfer after a 30 ms kernel"),
                       ("--uneven", "a run's end with one host idle")):
        parser.add_argument(flag, action="store_true", help=f"with --transfers: also {what}")
    ns = parser.parse_args()
    under_mpi = any(v in os.environ for v in ("PMI_RANK", "PMI_SIZE", "HYDRA_CONTROL_FD"))
    if ns.plan:
        part_planning()
        part_arenas()
        return
    if ns.transfers:
        part_transfers()
        return
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH") or ROOT)
    if ns.calls:
        if under_mpi:
            part_calls()
        else:
            subprocess.run([mpiexec(), "-n", "2", sys.executable, os.path.abspath(__file__),
                            "--calls"], check=True, timeout=600, env=env)
        return
    subprocess.run([mpiexec(), "-n", "2", sys.executable, os.path.abspath(__file__), "--transfers",
                    "--idle", "--long", "--uneven"],
                   check=True, timeout=600, env=env)
    part_planning()
    part_arenas()


if __name__ == "__main__":
    main()
