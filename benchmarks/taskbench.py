"""Task Bench (Slaughter et al., SC20) on this machine: METG(50%) of l3c with a native kernel, of the
same C calls in a serial numba loop, and of Dask, Ray tasks and Ray Compiled Graphs (when installed),
on the paper's dependency patterns.

    python benchmarks/taskbench.py [--patterns stencil_1d ...|all] [--runners l3c ...]
                                   [--width 32] [--steps 1000] [--radix 3] [--repeats 5]
                                   [--quick] [--stat median|min|mean] [--json PATH]

The target figures: `python benchmarks/taskbench.py --stat min` (stencil_1d, 32 x 1000; l3c,
l3c_inflight, the serial loop, Dask, Ray tasks, Ray Compiled Graphs); the last lines print the
target ratios (l3c / serial loop <= 1.5; each peer / l3c >= 10, Dask / l3c >= 100).

What is measured (written from the paper's definitions):
  * A task graph is `steps` timesteps of `width` points; point (t, x) depends on a set of points of
    timestep t-1 given by the dependency *pattern* (`taskbench_patterns.py`: trivial, no_comm,
    stencil_1d, stencil_1d_periodic, dom, tree, fft, all_to_all, nearest, spread, random_nearest).
  * Every task runs the *compute_bound* kernel: a loop of `iterations` rounds of 8 independent
    multiply-adds. The kernel is one C function (a numba cfunc) per number of inputs: it checks that
    each input is a record of timestep t-1 written in this run (each run has its own epoch number),
    writes its own record (t, x, a checksum of the records it received, the loop's result, the
    epoch) and returns a nonzero status (a failed run) otherwise. After the last run of each point
    the runner's records are compared with the checksums the pattern implies: every task must have
    received exactly its dependencies' outputs.
  * Task granularity = wall time x cores / tasks. Efficiency = achieved rate (kernel iterations per
    core-second) / peak rate (the best rate any runner reached on the pattern, normally the serial
    loop with long tasks; printed too against each runner's own best rate, for machines shared with
    other jobs where a runner may not get all its cores). METG(50%) = the smallest granularity at
    which efficiency >= 50%, interpolated (log scale) between the sweep's two bracketing points.
    Each runner sweeps `iterations` downward by factors of sqrt(2) from its start until two points
    in a row fall below a quarter of its best; at each point the runners take turns, repeat after
    repeat (each peer runs alone, after the others). `--quick`: width 8 x 20 steps, 3 repeats,
    sweeps from 2^14 iterations (peers from 2^21).
  * Width and steps, against the paper's own METG runs (Task Bench's experiment
    scripts): those run `-steps 1000` and `-width` = cores per node x nodes, one
    point per core and timestep, so every task of stencil_1d at a block's edge waits for a record
    from another core. The default here is 1000 steps as there, but width 32: `width` is the
    number of points per timestep, and l3c places them in blocks of width/chips points per chip
    (16 a chip on 2 chips), so a chip runs 16 tasks a timestep and exchanges one boundary record
    each way per timestep. `--width 2` is the paper's one point per core on this 2-core machine:
    every task then waits for the other core, and METG measures a cross-core hand-off (~0.15 us
    here) more than the runtime's dispatch. The peers run smaller graphs (`GRAPH_SIZE` in
    `taskbench_peers.py`: their tasks cost a millisecond, so 1000 steps would take minutes a
    point).
  * Records: by default every timestep's are kept, (steps, width, 5), so the last run of each point
    is verified whole. That is 1.28 MB at 32 x 1000: Task Bench itself keeps each point's output
    in a buffer reused across timesteps. `--depth 2` keeps two rows, timestep t writing row t % 2
    (the kernels still check every input in C; the last two timesteps are verified whole): a
    working set of kilobytes. It matters for two processes at once on this VM: the host check
    below (two independent loops against one alone) shows them 1.3x slower at 50 timesteps of
    records and 2-3.5x at 1000 at small tasks, as if the two vCPUs shared their caches.
  * Host check (with a two-core runner; `--no-host-check` skips it): each round of turns ends with
    `taskbench_floor.HostCheck`, the floor's two loops on no_comm (no waits) at once against one
    of them alone, at the point's iterations; printed beside each point and summed up with the
    METGs. At large iterations it also measures the peak with both cores busy, which is Task
    Bench's own peak (the machine's, every core computing): "METG busy" is against it, printed
    beside the METG against the best single-core rate; the targets keep the latter.
  * `--passes N` runs the sweep's points N times, pass after pass, and takes each point's
    statistic over the repeats of all passes, so that a spell of interference from the host
    (minutes long here) cannot spoil every repeat of one point.
  * The paper sweeps iterations by powers of 2, averages the repeats of a point (`--stat mean`;
    `--stat min` suits a machine shared with other jobs) and takes efficiency against the node's
    peak FLOP rate; here against the best rate any runner reached on the pattern (the serial loop
    with long tasks: the kernel's peak on one core, as nearly as this machine measures it).

Runners (`RUNNERS`; each has `cores`, `start_iterations`, `runs`, `prepare(graph)`, `close()` and
`run(iterations, epoch)` returning the (steps, width, 5) records):
  l3c           one `l3c.jit(chips=2)` program, traced once: one native task per point, pinned in
                blocks of width/chips points per chip (Task Bench's block distribution), the points
                another chip reads next first in each timestep; the records and (iterations, epoch)
                (a tensor the kernels read, so every granularity runs the same compiled schedule)
                are `l3c.shared` arrays, used in place.
  l3c_inflight  the same schedule, 4 runs submitted before waiting (`runs` per timed call).
  l3c_1chip     the same on one chip (not run by default): the per-task cost without cross-chip
                waits.
  steploop      l3c's native step loop (`l3c.runtime.steploop`) walking a table of the same calls
                in this process (not run by default): the schedule's dispatch cost alone, without
                workers and without a run's start and end.
  serial_numba  the same C calls, point after point, in one numba-compiled loop (1 core).
  floor         `taskbench_floor.py` (not run by default): the same C calls and records on 2 cores,
                without a runtime: two forked processes, each one numba loop over its block of
                points, waiting for the other on a per-timestep flag in shared memory (a bounded
                spin). What hand-written code reaches on this machine: l3c's 2-chip METG is
                measured against it as well as against the serial loop.
  dask, ray, ray_cg  `taskbench_peers.py`: one Dask `client.submit` / Ray task per point, futures
                of the dependencies as arguments, on 2 single-threaded workers; Ray Compiled Graphs
                compile the whole graph over 2 actors once. Smaller graphs (`GRAPH_SIZE`).

Adding a pattern: a function (t, x, width, radix) -> tuple of dependency points (or None: not a
task) in `taskbench_patterns.PATTERNS`. Adding a runner: a class like `SerialNumba` in `RUNNERS`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
if HERE not in sys.path:                      # Dask's workers import this file as `taskbench`
    sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join([HERE, os.path.dirname(HERE),
                                            os.environ.get("PYTHONPATH", "")])

import l3c  # noqa: E402
from numba import cfunc, njit, types  # noqa: E402

from taskbench_patterns import PATTERNS  # noqa: E402

if __name__ == "__main__":                    # the runner modules import this one as `taskbench`
    sys.modules.setdefault("taskbench", sys.modules[__name__])

RECORD = 5                                    # t, x, checksum of inputs, compute result, epoch
LANES = 8                                     # independent multiply-add chains per iteration


@dataclass(frozen=True)
class Graph:
    pattern: str
    width: int
    steps: int
    deps: tuple[tuple[Any, ...], ...]      # deps[t][x]: points of t-1, or None (not a task)
    depth: int = 0                         # rows of records kept: timestep t writes row t % rows

    @staticmethod
    def make(pattern: str, width: int, steps: int, radix: int = 3, depth: int = 0) -> "Graph":
        fn = PATTERNS[pattern]
        deps = tuple(tuple(fn(t, x, width, radix) for x in range(width)) for t in range(steps))
        return Graph(pattern, width, steps, deps, min(depth, steps))

    @property
    def rows(self) -> int:
        """Rows of the records array: every timestep's (depth 0), or the last `depth`."""
        return self.depth or self.steps

    @property
    def tasks(self) -> int:
        return sum(d is not None for row in self.deps for d in row)

    @property
    def max_inputs(self) -> int:
        return max(len(d) for row in self.deps for d in row if d is not None)

    def points(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """(t, x, deps) of every task, timestep after timestep."""
        return [(t, x, d) for t, row in enumerate(self.deps) for x, d in enumerate(row)
                if d is not None]

    def expected_checksums(self) -> np.ndarray:
        out = np.zeros((self.steps, self.width))
        for t, x, deps in self.points():
            out[t, x] = sum(checksum_of(t - 1, d) for d in deps)
        return out

    def verify(self, records: np.ndarray, epoch: int, who: str) -> None:
        """Every task of run `epoch` whose record is kept (all, or the last timesteps' with a
        depth; the kernels check every input in C) ran once, in its place, and received exactly
        its dependencies' records."""
        rows = records.shape[0]                # a peer returns every timestep's records
        first = self.steps - rows
        kept = np.stack([records[t % rows] for t in range(first, self.steps)])
        steps, points = np.meshgrid(np.arange(first, self.steps), np.arange(self.width),
                                    indexing="ij")
        active = np.array([[d is not None for d in row] for row in self.deps[first:]])
        expected = self.expected_checksums()[first:]
        bad = active & ((kept[..., 0] != steps) | (kept[..., 1] != points)
                        | (kept[..., 2] != expected) | (kept[..., 4] != epoch))
        if bad.any():
            t, x = map(int, np.argwhere(bad)[0])
            raise AssertionError(f"{who}: task ({first + t}, {x}) has record "
                                 f"{kept[t, x].tolist()}, expected checksum {expected[t, x]}")


def checksum_of(t: int, x: int) -> float:
    return t * 65536.0 + x + 1.0


# ----------------------------------------------------------------------------------------- kernels
def _kernel_source(n: int) -> str:
    """The compute_bound C function with n inputs: (t, x, run*, 2, out*, 5, in0*, 5, ...), where
    run = (iterations, epoch): an input must be a record of timestep t-1 written in this run."""
    params = ["t", "x", "run", "n_run", "out", "n_out"] + [f"in{j}, n{j}" for j in range(n)]
    lines = [f"def point_{n}({', '.join(params)}):", "    check = 0.0", "    epoch = run[1]"]
    for j in range(n):
        lines += [f"    if in{j}[0] != t - 1 or in{j}[4] != epoch:", "        return 1",
                  f"    check += in{j}[0] * 65536.0 + in{j}[1] + 1.0"]
    lines += [f"    a{k} = 1.0 + {k} * 0.125" for k in range(LANES)]
    lines += ["    for _ in range(run[0]):"]
    lines += [f"        a{k} = a{k} * 0.5 + 0.25" for k in range(LANES)]
    lines += ["    out[0] = t", "    out[1] = x", "    out[2] = check",
              f"    out[3] = {' + '.join(f'a{k}' for k in range(LANES))}", "    out[4] = epoch",
              "    return 0"]
    return "\n".join(lines)


def _signature(n: int) -> Any:
    f64p, i64 = types.CPointer(types.float64), types.int64
    return types.int32(i64, i64, types.CPointer(types.int64), i64, f64p, i64,
                       *[a for _ in range(n) for a in (f64p, i64)])


_C_POINTS: dict[int, Any] = {}


def c_point(n: int) -> Any:
    """The compute_bound C function with n inputs (a numba cfunc, compiled on first use)."""
    if n not in _C_POINTS:
        scope: dict[str, Any] = {}
        exec(_kernel_source(n), scope)                      # noqa: S102 - generated above
        _C_POINTS[n] = cfunc(_signature(n))(scope[f"point_{n}"])
    return _C_POINTS[n]


def python_point(t: int, x: int, run: np.ndarray, out: np.ndarray, *inputs: np.ndarray) -> None:
    """The kernel's Python body (runs only outside a trace)."""
    check = 0.0
    for rec in inputs:
        assert rec[0] == t - 1 and rec[4] == run[1]
        check += checksum_of(int(rec[0]), int(rec[1]))
    a = 1.0 + 0.125 * np.arange(LANES)
    for _ in range(int(run[0])):
        a = a * 0.5 + 0.25
    out[:] = (t, x, check, a.sum(), run[1])


def _l3c_kernel(n: int) -> Any:
    ins = [f"in{j}" for j in range(n)]
    src = (f"def point_{n}(t, x, run: l3c.In, out: l3c.Out"
           + "".join(f", {i}: l3c.In" for i in ins) + f"):\n"
           f"    python_point(t, x, run, out{''.join(', ' + i for i in ins)})\n")
    scope = {"l3c": l3c, "python_point": python_point, "__name__": __name__}
    exec(src, scope)                                        # noqa: S102 - generated above
    return l3c.kernel(native=c_point(n))(scope[f"point_{n}"])


_L3C_POINTS: dict[int, Any] = {}


def l3c_point(n: int) -> Any:
    if n not in _L3C_POINTS:
        _L3C_POINTS[n] = _l3c_kernel(n)
    return _L3C_POINTS[n]


# ----------------------------------------------------------------------------------------- runners
class L3C:
    name, cores, start_iterations, runs = "l3c", 2, 4096, 1

    def prepare(self, graph: Graph) -> None:
        chips, per_chip = self.cores, math.ceil(graph.width / self.cores)

        owner = [x // per_chip for x in range(graph.width)]
        # Within a timestep, a chip first runs the points another chip reads next: their outputs
        # are published early, so the other chip rarely waits for them.
        exported = [{d for x, deps in enumerate(graph.deps[t + 1]) for d in deps or ()
                     if owner[d] != owner[x]} if t + 1 < graph.steps else set()
                    for t in range(graph.steps)]

        kernels = {n: l3c_point(n) for n in {len(d) for _, _, d in graph.points()}}
        rows = graph.rows

        def program(run, records):
            for t in range(graph.steps):
                for x in sorted(range(graph.width), key=lambda x: (x not in exported[t], x)):
                    deps = graph.deps[t][x]
                    if deps is None:
                        continue
                    kernels[len(deps)].on(owner[x])(
                        t, x, run, records[t % rows, x], *[records[(t - 1) % rows, d] for d in deps])
            return ()

        self.params = l3c.shared(np.zeros(2, np.int64))
        self.records = l3c.shared((rows, graph.width, RECORD), np.float64)
        self.compiled = l3c.jit(chips=chips, timeout=600)(program).lower(self.params, self.records)

    def run(self, iterations: int, epoch: int) -> np.ndarray:
        self.params[:] = iterations, epoch
        self.compiled(self.params, self.records)
        return self.records

    def close(self) -> None:
        l3c.shutdown()


class L3COneChip(L3C):
    """The same on one chip: the step loop's and the run's own cost, with no cross-chip waits."""
    name, cores = "l3c_1chip", 1


class L3CInFlight(L3C):
    """The same schedule, `runs` runs submitted before waiting for the first: each run's
    (iterations, epoch) is an ordinary array, captured at submit; the records stay shared, so the
    runs take effect in submission order and each checks it read its own run's records."""
    name, runs = "l3c_inflight", 4

    def run(self, iterations: int, epoch: int) -> np.ndarray:
        handles = [self.compiled.submit(np.array([iterations, e], np.int64), self.records)
                   for e in range(epoch - self.runs + 1, epoch + 1)]
        for h in handles:
            h.result()
        return self.records


class StepLoop:
    """l3c's native step loop in this process, on a table of the same native calls in the l3c
    runner's order: what dispatching the schedule costs per task, without the pool (no workers, no
    run start or end)."""
    name, cores, start_iterations, runs = "steploop", 1, 4096, 1

    def prepare(self, graph: Graph) -> None:
        import ctypes

        from l3c.registry import NativeFunction
        from l3c.runtime import steploop
        natives = {n: NativeFunction(c_point(n).address, f"point_{n}", c_point(n))
                   for n in {len(d) for _, _, d in graph.points()}}
        self.params = np.zeros(2, np.int64)
        self.records = np.zeros((graph.rows, graph.width, RECORD))
        rows = graph.rows
        self.table = steploop.StepTable([
            (natives[len(deps)], (t, x, self.params, self.records[t % rows, x],
                                  *[self.records[(t - 1) % rows, d] for d in deps]),
             (), False, 0, 1, 0)
            for t, x, deps in graph.points()])
        self.words = (ctypes.c_uint32 * 32)()     # S_DONE, its waiters, the abort word
        self.context = (ctypes.c_int64 * 2)()
        self.out_k = ctypes.c_int64(0)

    def run(self, iterations: int, epoch: int) -> np.ndarray:
        import ctypes
        self.params[:] = iterations, epoch
        base = ctypes.addressof(self.words)
        self.table.run(0, base + 8, base, base + 4, ctypes.addressof(self.context), 0, 100,
                       10**9, self.out_k)
        return self.records

    def close(self) -> None:
        pass


def _serial_source(max_inputs: int) -> str:
    lines = ["def serial(records, run, deps, counts):",
             "    rows = records.shape[0]",
             "    for t in range(counts.shape[0]):",
             "        for x in range(records.shape[1]):",
             "            n = counts[t, x]",
             "            status = 0"]
    for n in range(max_inputs + 1):
        args = "".join(f", records[(t - 1) % rows, deps[t, x, {j}]].ctypes, {RECORD}"
                       for j in range(n))
        lines += [f"            {'if' if n == 0 else 'elif'} n == {n}:",
                  f"                status = C{n}(t, x, run.ctypes, 2, records[t % rows, x].ctypes, "
                  f"{RECORD}{args})"]
    lines += ["            if status != 0:", "                return t * records.shape[1] + x + 1",
              "    return 0"]
    return "\n".join(lines)


class SerialNumba:
    name, cores, start_iterations, runs = "serial_numba", 1, 4096, 1

    def prepare(self, graph: Graph) -> None:
        scope = {f"C{n}": c_point(n) for n in range(graph.max_inputs + 1)}
        exec(_serial_source(graph.max_inputs), scope)       # noqa: S102 - generated above
        self.loop = njit(scope["serial"])
        self.deps = np.zeros((graph.steps, graph.width, max(1, graph.max_inputs)), np.int64)
        self.counts = np.full((graph.steps, graph.width), -1, np.int64)   # -1: not a task
        for t, x, deps in graph.points():
            self.counts[t, x] = len(deps)
            self.deps[t, x, :len(deps)] = deps
        self.records = np.zeros((graph.rows, graph.width, RECORD))
        self.params = np.zeros(2, np.int64)
        self.loop(self.records, self.params, self.deps, self.counts)      # compile

    def run(self, iterations: int, epoch: int) -> np.ndarray:
        self.params[:] = iterations, epoch
        failed = self.loop(self.records, self.params, self.deps, self.counts)
        if failed:
            raise AssertionError(f"serial loop: task {failed - 1} saw an input of another timestep")
        return self.records

    def close(self) -> None:
        pass


from taskbench_floor import Floor, HostCheck  # noqa: E402
from taskbench_peers import GRAPH_SIZE, PEER_MODULES, PEERS  # noqa: E402

RUNNERS: dict[str, Any] = {"l3c": L3C, "l3c_inflight": L3CInFlight, "l3c_1chip": L3COneChip,
                           "steploop": StepLoop, "serial_numba": SerialNumba, "floor": Floor, **PEERS}


# -------------------------------------------------------------------------------------------- METG
def _turns(active: list[Any], it: int, repeats: int, epoch: int, samples: dict[str, list[float]],
           checks: list[tuple[float, float, float]], host: HostCheck | None
           ) -> tuple[int, dict[str, np.ndarray]]:
    """`repeats` rounds at `it` iterations: in each, every active runner runs once (timed into
    `samples`), then the host check. Returns the last epoch and each runner's last records."""
    last: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        epoch += max(r.runs for r in active)
        for r in active:
            t0 = time.perf_counter()
            last[r.name] = r.run(it, epoch)
            samples[r.name].append(time.perf_counter() - t0)
        if host is not None and active:
            checks.append(host.times(it))
    return epoch, last


def _point(r: Any, graph: Graph, it: int, samples: list[float], stat: Callable) -> dict:
    wall = stat(samples)
    tasks = graph.tasks * r.runs
    return {"iterations": it, "seconds": wall, "rate": tasks * it / (wall * r.cores),
            "granularity_us": wall * r.cores / tasks * 1e6, "samples": len(samples)}


def _print_point(name: str, p: dict) -> None:
    print(f"  {name:13} iterations {p['iterations']:8d}  {p['seconds'] * 1e3:9.3f} ms  granularity "
          f"{p['granularity_us']:10.3f} us  rate {p['rate']:.3g}/core-s", flush=True)


def _host_point(it: int, checks: list[tuple[float, float, float]], stat: Callable,
                show: bool = True) -> dict:
    alone, pair = stat([c[0] for c in checks]), stat([c[1] for c in checks])
    point = {"iterations": it, "alone_s": alone, "pair_s": pair, "ratio": pair / alone,
             "pair_rate": max(c[2] for c in checks)}
    if show:
            print(f"  {'host check':13} iterations {it:8d}  two loops at once / one alone "
              f"x{pair / alone:.2f} ({pair * 1e3:.3f} / {alone * 1e3:.3f} ms)  pair rate "
              f"{point['pair_rate']:.3g}/core-s", flush=True)
    return point


def sweep(runners: list[Any], graph_of: dict[str, Graph], repeats: int,
          stat: Callable = statistics.median, host: HostCheck | None = None, passes: int = 1
          ) -> dict[str, list[dict]]:
    """Each runner's points (iterations, seconds, granularity, rate), iterations going down by
    sqrt(2) from its `start_iterations` until two of its points in a row run below a quarter of its
    best rate so far. At each iteration count the runners take turns, repeat after repeat, so that a
    change in the machine's load hits them alike. Every run's records are verified, and each runner
    runs once untimed first (Dask's workers import this module and compile its kernels then).
    With `passes` > 1 the sweep's points are run again, pass after pass, and each point's
    statistic is taken over the repeats of every pass: a point's repeats are then spread over the
    whole measurement, not one stretch of it, so a spell of interference from the host (minutes
    long on this VM) cannot spoil every repeat of a point. With `host`, each round of turns ends
    with the host check at the same iterations (two independent loops at once against one alone,
    `taskbench_floor.HostCheck`), in `points["host"]`."""
    epoch = max(r.runs for r in runners)       # a runner of several runs per call takes epochs
    for r in runners:                          # epoch - runs + 1 .. epoch
        graph_of[r.name].verify(r.run(1, epoch), epoch, r.name)
    samples: dict[tuple[str, int], list[float]] = {}
    checks: dict[int, list[tuple[float, float, float]]] = {}
    visited: list[tuple[int, list[Any]]] = []
    best = {r.name: 0.0 for r in runners}
    below = {r.name: 0 for r in runners}
    iterations = float(max(r.start_iterations for r in runners))
    while iterations >= 1:
        it = int(round(iterations))
        active = [r for r in runners if r.start_iterations >= it and below[r.name] < 2]
        if not active and all(below[r.name] >= 2 for r in runners):
            break
        mine = {r.name: samples.setdefault((r.name, it), []) for r in active}
        epoch, last = _turns(active, it, repeats, epoch, mine, checks.setdefault(it, []), host)
        visited.append((it, active))
        if checks[it]:
            _host_point(it, checks[it], stat)
        for r in active:          # every run checked its inputs in C; the last one's checksums too
            graph_of[r.name].verify(last[r.name], epoch, r.name)
            point = _point(r, graph_of[r.name], it, mine[r.name], stat)
            best[r.name] = max(best[r.name], point["rate"])
            below[r.name] = below[r.name] + 1 if point["rate"] < 0.25 * best[r.name] else 0
            _print_point(r.name, point)
        iterations /= math.sqrt(2)
    for n in range(2, passes + 1):
        print(f"  pass {n} of {passes}", flush=True)
        for it, active in visited:
            mine = {r.name: samples[(r.name, it)] for r in active}
            epoch, last = _turns(active, it, repeats, epoch, mine, checks[it], host)
            for r in active:
                graph_of[r.name].verify(last[r.name], epoch, r.name)
    points: dict[str, list[dict]] = {r.name: [] for r in runners}
    if passes > 1:
        print(f"  the points over all {passes} passes:", flush=True)
    if host is not None:
        points["host"] = [_host_point(it, checks[it], stat, passes > 1) for it, _ in visited]
    for it, active in visited:
        for r in active:
            points[r.name].append(_point(r, graph_of[r.name], it, samples[(r.name, it)], stat))
            if passes > 1:
                _print_point(r.name, points[r.name][-1])
    return points


STATS: dict[str, Callable] = {"median": statistics.median, "min": min, "mean": statistics.fmean}


def metg(points: list[dict], peak: float, threshold: float = 0.5) -> float | None:
    """Smallest granularity with efficiency >= threshold, log-interpolated to the crossing."""
    pts = sorted(points, key=lambda p: p["granularity_us"])
    eff = [p["rate"] / peak for p in pts]
    for i, (p, e) in enumerate(zip(pts, eff)):
        if e >= threshold:
            if i == 0:
                return p["granularity_us"]
            q, f = pts[i - 1], eff[i - 1]              # the next smaller point, below threshold
            w = (threshold - f) / (e - f)
            return math.exp(math.log(q["granularity_us"])
                            + w * (math.log(p["granularity_us"]) - math.log(q["granularity_us"])))
    return None


def measure(pattern: str, names: list[str], opts: argparse.Namespace,
            stat: Callable) -> dict[str, dict]:
    """Every runner's sweep on one pattern (the peers in a phase of their own, after l3c and the
    serial loop: their idle processes would share the cores with the others' runs)."""
    sweeps = {}
    for phase in ([n for n in names if n not in PEERS], [n for n in names if n in PEERS]):
        for group in ([phase] if phase and phase[0] not in PEERS else [[n] for n in phase]):
            runners = [RUNNERS[name]() for name in group]
            graph_of = {}
            for r in runners:
                width, steps = GRAPH_SIZE.get(r.name, (None, None))
                graph_of[r.name] = Graph.make(pattern, min(width or opts.width, opts.width),
                                              min(steps or opts.steps, opts.steps), opts.radix,
                                              opts.depth)
            host = None
            try:
                for r in runners:
                    r.prepare(graph_of[r.name])
                if opts.host_check and any(r.cores > 1 for r in runners):
                    host = HostCheck(opts.width, opts.steps, opts.depth)
                repeats = max(1, opts.repeats // 2) if group[0] in PEERS else opts.repeats
                for name, points in sweep(runners, graph_of, repeats, stat, host,
                                          opts.passes).items():
                    if name == "host":
                        sweeps["host"] = {"points": points}
                        continue
                    sweeps[name] = {"width": graph_of[name].width, "steps": graph_of[name].steps,
                                    "tasks": graph_of[name].tasks, "cores": RUNNERS[name].cores,
                                    "points": points}
            except Exception as e:                  # noqa: BLE001 - report, keep measuring
                if not group[0] in PEERS:
                    raise
                print(f"  {group[0]} failed on {pattern}: {type(e).__name__}: {e}", file=sys.stderr)
                sweeps[group[0]] = {"error": f"{type(e).__name__}: {e}"}
            finally:
                if host is not None:
                    host.close()
                for r in runners:
                    try:
                        r.close()
                    except Exception:               # noqa: BLE001 - closing a failed peer
                        pass
    return sweeps


def summarize(pattern: str, sweeps: dict[str, dict]) -> None:
    ok = {n: s for n, s in sweeps.items() if "points" in s and n != "host"}
    peak = max(p["rate"] for s in ok.values() for p in s["points"])
    host = sweeps.get("host", {}).get("points", [])
    busy = max((p["pair_rate"] for p in host), default=None)
    print(f"\n{pattern}, compute_bound; peak {peak:.3g} kernel iterations per core-second\n"
          "METG(50%) against that peak (Task Bench's definition), and against each runner's own best "
          "rate (on a machine shared with other jobs a runner may not get all its cores)")
    if busy:
        ratios = [p["ratio"] for p in host]
        print(f"host check (two independent loops at once / one alone, at each point's iterations"
              f"): x{min(ratios):.2f} min, x{statistics.median(ratios):.2f} median, "
              f"x{max(ratios):.2f} max over the points; peak with both cores busy {busy:.3g} per "
              f"core-second ({busy / peak:.0%} of the peak): 'METG busy' is against it")
    print(f"{'runner':14}{'width x steps':>15}{'cores':>7}{'best rate':>12}{'METG us':>12}"
          f"{'METG own us':>14}" + (f"{'METG busy us':>15}" if busy else ""))
    for name, s in ok.items():
        s["best_rate"] = max(p["rate"] for p in s["points"])
        s["metg_us"] = metg(s["points"], peak)
        s["metg_own_us"] = metg(s["points"], s["best_rate"])
        columns = [(s["metg_us"], 12), (s["metg_own_us"], 14)]
        if busy:
            s["metg_busy_us"] = metg(s["points"], busy)
            columns.append((s["metg_busy_us"], 15))
        shown = "".join(f"{v:{w}.3f}" if v is not None else f"{'-':>{w}}" for v, w in columns)
        print(f"{name:14}{s['width']:>8} x {s['steps']:<5}{s['cores']:>7}{s['best_rate']:12.3g}{shown}")
    print_targets(sweeps, ok)


# (numerator, denominator, bound, "<=" or ">="): the targets for ratios of METG(50%)
TARGETS = [("l3c", "serial_numba", 1.5, "<="), ("dask", "l3c", 100.0, ">="),
           ("ray", "l3c", 10.0, ">="), ("ray_cg", "l3c", 10.0, ">=")]


def _verdict(a: float | None, b: float | None, bound: float, sense: str) -> str:
    """Whether a / b meets the bound; a METG of None (the runner never reached half the peak) is
    beyond every granularity swept, so larger than any measured one."""
    if a is None and b is None:
        return "-"
    if a is None or b is None:
        ratio_is_large = a is None
        return "met" if ratio_is_large == (sense == ">=") else "NOT met"
    return "met" if (a / b <= bound if sense == "<=" else a / b >= bound) else "NOT met"


def print_targets(sweeps: dict[str, dict], ok: dict[str, dict]) -> None:
    """The target ratios of METG(50%), against the pattern's peak and against each runner's own
    best rate, with every other l3c runner's ratio beside l3c's (stored in `sweeps["ratios"]`)."""
    print("target ratios of METG(50%), against the pattern's peak / against each runner's own best:")
    for top, bottom, bound, sense in TARGETS:
        pairs = [(top, bottom)] + [(top.replace("l3c", m), bottom.replace("l3c", m))
                                   for m in ("l3c_inflight", "l3c_1chip", "steploop")
                                   if "l3c" in (top, bottom) and m in ok]
        for a_name, b_name in pairs:
            values = []
            for field in ("metg_us", "metg_own_us"):
                a, b = ok.get(a_name, {}).get(field), ok.get(b_name, {}).get(field)
                values.append(a / b if a and b else None)
                if a and b:
                    sweeps.setdefault("ratios", {})[f"{field}: {a_name}/{b_name}"] = a / b
            if a_name not in ok or b_name not in ok:
                continue
            verdict = _verdict(ok[a_name].get("metg_us"), ok[b_name].get("metg_us"), bound, sense)
            shown = [f"{v:.3g}" if v is not None else "-" for v in values]
            print(f"  {a_name + ' / ' + b_name:28} {shown[0]:>10} / {shown[1]:<10} target {sense} "
                  f"{bound:g}: {verdict}")
    for name in ("l3c", "l3c_inflight", "serial_numba"):     # not targets: against the floor
        a, b = ok.get(name, {}).get("metg_us"), ok.get("floor", {}).get("metg_us")
        if a and b:
            sweeps.setdefault("ratios", {})[f"metg_us: {name}/floor"] = a / b
            print(f"  {name + ' / floor':28} {a / b:>10.3g}   (hand-written code on 2 cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--patterns", nargs="+", default=["stencil_1d"],
                    choices=sorted(PATTERNS) + ["all"])
    ap.add_argument("--runners", nargs="+", default=["l3c", "l3c_inflight", "serial_numba", "dask",
                                                      "ray", "ray_cg"], choices=list(RUNNERS))
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--radix", type=int, default=3, help="nearest, spread, random_nearest")
    ap.add_argument("--depth", type=int, default=0,
                    help="rows of records kept, timestep t writing row t %% depth (2: Task "
                    "Bench's own double buffer of each point's output); 0: every timestep's")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--passes", type=int, default=1,
                    help="run the sweep's points this many times, pass after pass; a point's "
                    "statistic is over the repeats of every pass (spread over the whole run)")
    ap.add_argument("--quick", action="store_true", help="width 8 x 20 steps, 3 repeats, sweeps "
                    "from 2^14 iterations (peers from 2^21): minutes a pattern")
    ap.add_argument("--stat", choices=tuple(STATS), default="median",
                    help="statistic of the repeats of one point (min: on a machine shared with "
                    "other jobs; mean: the paper's)")
    ap.add_argument("--no-host-check", dest="host_check", action="store_false",
                    help="skip the host check beside two-core runners (two independent loops at "
                    "once against one alone, each round)")
    ap.add_argument("--json", default=os.path.join(HERE, "taskbench.json"))
    opts = ap.parse_args()
    if opts.quick:
        opts.width, opts.steps, opts.repeats = min(opts.width, 8), min(opts.steps, 20), 3
        for cls in RUNNERS.values():
            cls.start_iterations = 1 << 21 if cls in PEERS.values() else 1 << 14
    logging.getLogger("distributed").setLevel(logging.ERROR)
    patterns = sorted(PATTERNS) if "all" in opts.patterns else opts.patterns
    skipped = {}
    names = list(opts.runners)
    for name in [n for n in names if n in PEER_MODULES]:
        if importlib.util.find_spec(PEER_MODULES[name]) is None:
            skipped[name] = f"{PEER_MODULES[name]} not installed (pip install -e .[bench])"
            print(f"skipping {name}: {skipped[name]}", file=sys.stderr)
            names.remove(name)
    results = {}
    load = [os.getloadavg()]
    print(f"load average {load[0][0]:.2f} (1 min); width {opts.width} x {opts.steps} steps, "
          f"{opts.repeats} repeats, stat {opts.stat}", flush=True)
    for pattern in patterns:
        print(f"== {pattern}", flush=True)
        results[pattern] = measure(pattern, names, opts, STATS[opts.stat])
        summarize(pattern, results[pattern])
    print("\nMETG(50%) in us: against the pattern's peak / against the runner's own best rate")
    print(f"{'pattern':22}" + "".join(f"{n:>20}" for n in names))
    for pattern, sweeps in results.items():
        cells = [" / ".join(f"{v:.3g}" if v else "-" for v in
                            (sweeps.get(n, {}).get("metg_us"), sweeps.get(n, {}).get("metg_own_us")))
                 for n in names]
        print(f"{pattern:22}" + "".join(f"{c:>20}" for c in cells))
    load.append(os.getloadavg())
    print(f"load average {load[1][0]:.2f} (1 min) at the end")
    with open(opts.json, "w") as f:
        json.dump({"load_average": [v[0] for v in load], "patterns": results, "kernel": "compute_bound", "skipped": skipped,
                   "cpus": os.cpu_count(), "repeats": opts.repeats, "stat": opts.stat,
                   "quick": opts.quick}, f, indent=1)
    print(f"wrote {opts.json}")


if __name__ == "__main__":
    main()
