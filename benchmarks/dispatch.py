"""Dispatch cost per task: l3c compiled vs l3c eager vs ProcessPoolExecutor vs Dask vs Ray tasks vs
Ray Compiled Graphs (each optional peer skipped when not installed), on the workloads of issue 6,
with 2 and 4 workers; and l3c with native kernels (numba cfuncs) vs the same C calls in a serial
numba loop.

    python benchmarks/dispatch.py [--workers 2 4] [--repeats 5] [--workloads abcde] [--json PATH]
                                  [--no-peers] [--sections tasks call] [--calls 2000]

Sections: "tasks" (the default; below) and "call": what one call of a 1-task program costs, l3c's
`Compiled` call, jitted call and submitted runs beside ProcessPool and Ray Compiled Graphs, plus the
64 MiB shared-array call and a two-stage pipeline (`benchmarks/calls.py`, which says how).

Workloads (tasks per run):
    a  2,000 independent no-op tasks                  (each writes its own row of one tensor)
    b  a chain of 1,000 dependent no-op tasks         (each updates the same row)
    c  8 x (1 -> 256 -> 1) fan-out / fan-in           (8 * 258 tasks)
    d  200 2-member group tasks, each group reading what the previous group wrote (cost per group);
       the members write the two contiguous halves of the destination
    e  a chain of 100 in-place `x += 1` on a 4 MiB float64 array (vs the same numpy loop)

How each peer expresses them (same dependency structure as the l3c programs):
    process_pool  no dependency edges exist, so the parent waits for each stage before submitting
                  the next; (e) ships the array to the worker and back for every update.
    dask, ray     futures / ObjectRefs passed as arguments are the edges: (c) each fan task takes
                  the round's first task, the gather takes all 256; (d) both members of a group take
                  both members of the previous group; (e) the array is put once and handed from
                  task to task. Dask updates it in place; Ray store objects are read-only, so each
                  Ray task writes `x + 1` into a new object.
    ray_cg        Ray Compiled Graphs over W actors (fresh actors per graph). A graph is static and
                  compiling costs 20-50 ms a node here, so each workload is a fixed sub-graph
                  executed repeatedly, the driver feeding one execution's output into the next
                  where the workload has a dependency:
                    a  50 independent calls spread over the actors, 40 executions, up to 8 in flight
                    b  a chain of 10 calls alternating over the actors, 100 executions
                    c  one round (1 -> 256 spread over the actors -> 1), 8 executions
                    d  10 chained groups (members on actors 0 and 1, each taking both members of the
                       previous group), 20 executions
                    e  a chain of 10 updates alternating over the actors, 10 executions; channel
                       reads are read-only, so each actor adds into a buffer it owns
    ray_cg_1actor (b) and (e) with the whole chain on one actor, as l3c places a chain on one
                  worker: every link crosses a process in `ray_cg`, but not here.

Timing: median wall time of `--repeats` runs after one warm-up run (which traces, compiles, forks,
starts the peer's workers). Peers run in separate phases per worker count (l3c, process pool and
floors first, then Dask, then Ray), so no framework's idle processes share the cores with another's
measurement. Two floors, both in one process with views built once:
    floor          the same kernel calls one after another in a plain Python loop
    floor_counter  the same loop also storing the step count into a word of a shared mapping
                   (FACTS.md's floor: about 0.3 us a task on this machine)
Native columns (numba installed): `l3c_native` is a compiled run whose kernels are the same no-ops
(and `x += 1` for e) as numba cfuncs behind `@l3c.kernel(native=...)`: the workers' step loop calls
C directly; `native_marginal` is the same minus the median cost of a compiled run of one native
no-op task (the run's fixed cost: staging, posting, waking, copying out; measured turn about with
the workload's runs), i.e. what each further task adds; `native_floor` makes the same C calls one after another in a numba-compiled loop in one
process.
Prints microseconds per task (per group for d), each peer's ratio to l3c compiled, and l3c
compiled's ratio to both floors (and l3c_native's to native_floor); writes everything, with
versions, errors and skips, as JSON.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import json
import logging
import mmap
import os
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import l3c  # noqa: E402

N_A, N_B, FAN, ROUNDS, N_D, N_E = 2000, 1000, 256, 8, 200, 100
BIG = (4 << 20) // 8
CG_INDEPENDENT, CG_CHAIN, CG_GROUPS, CG_IN_FLIGHT = 50, 10, 10, 8   # Ray Compiled Graph sub-graphs
CG_TEARDOWN_S = 5    # Ray's default waits 30 s for an actor stuck after (e), then kills it anyway


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


PYTHON = SimpleNamespace(touch=touch, fan=fan, gather=gather, member=member, inc=inc)


def native_kernels() -> SimpleNamespace | None:
    """The same kernels as numba cfuncs (`@l3c.kernel(native=...)`), or None without numba."""
    try:
        from numba import cfunc, types
    except ImportError:
        return None
    f64p, i64, i32 = types.CPointer(types.float64), types.int64, types.int32

    @cfunc(i32(f64p, i64))
    def c_touch(x, n):
        return 0

    @cfunc(i32(f64p, i64, f64p, i64))
    def c_pair(a, na, b, nb):
        return 0

    @cfunc(i32(f64p, i64))
    def c_inc(x, n):
        for k in range(n):
            x[k] += 1.0
        return 0

    def native(c_fn, fn):
        return l3c.kernel(native=c_fn)(fn)

    return SimpleNamespace(touch=native(c_touch, touch.fn), fan=native(c_pair, fan.fn),
                           gather=native(c_pair, gather.fn), member=native(c_pair, member.fn),
                           inc=native(c_inc, inc.fn), c_touch=c_touch, c_pair=c_pair, c_inc=c_inc)


def workload(name: str, k: SimpleNamespace) -> Callable:
    """The orchestration function of workload `name` calling the kernels of `k`."""
    def wl_a(t):
        for i in range(N_A):
            k.touch(t[i])
        return t

    def wl_b(t):
        for _ in range(N_B):
            k.touch(t[0])
        return t

    def wl_c(a, b):
        for _ in range(ROUNDS):
            k.touch(a)
            for i in range(FAN):
                k.fan(a, b[i])
            k.gather(b, a)
        return a

    def wl_d(a, b):                 # contiguous halves: native kernels take contiguous tensors
        for j in range(N_D):
            src, dst = (a, b) if j % 2 == 0 else (b, a)
            l3c.group(k.member, [(src, dst[i * 4:(i + 1) * 4]) for i in range(2)])
        return a

    def wl_e(x):
        for _ in range(N_E):
            k.inc(x)
        return x

    return {"a": wl_a, "b": wl_b, "c": wl_c, "d": wl_d, "e": wl_e}[name]


WORKLOADS = {
    "a": (lambda: (np.zeros((N_A, 1)),), N_A, "2,000 independent no-ops"),
    "b": (lambda: (np.zeros((1, 1)),), N_B, "chain of 1,000"),
    "c": (lambda: (np.zeros(4), np.zeros((FAN, 4))), ROUNDS * (FAN + 2), "8 x (1 -> 256 -> 1)"),
    "d": (lambda: (np.zeros(8), np.zeros(8)), N_D, "2-member groups (per group)"),
    "e": (lambda: (np.zeros(BIG),), N_E, "100 updates of 4 MiB"),
}
PEERS = ("l3c_compiled", "l3c_eager", "process_pool", "dask", "ray", "ray_cg", "ray_cg_1actor")
FLOORS = ("floor", "floor_counter")
NATIVE = ("l3c_native", "native_marginal", "native_floor")   # native kernels (numba installed)


def timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()                                     # warm-up: trace, compile, fork, install
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


# ----------------------------------------------------------------------------- floors (one process)
def floors(name: str, repeats: int) -> dict[str, float]:
    """The same kernel calls (the plain kernel functions a worker runs), one after another, with
    prebuilt views in one process: bare, and with a completion counter stored into shared memory
    after each call, which is the least any dispatcher must do to tell another process a task is
    done."""
    from l3c.registry import resolve
    t_, f_, g_, m_, i_ = (resolve(k.name) for k in (touch, fan, gather, member, inc))
    args = WORKLOADS[name][0]()
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
        calls = [(m_, (a, b[:4])), (m_, (a, b[4:]))] * N_D
    else:
        calls = [(i_, args)] * N_E

    shared = mmap.mmap(-1, mmap.PAGESIZE)    # anonymous MAP_SHARED: visible to forked children
    done = memoryview(shared).cast("I")

    def bare():
        for fn, a in calls:
            fn(*a)

    def counted():
        for step, (fn, a) in enumerate(calls, 1):
            fn(*a)
            done[0] = step

    try:
        return {"floor": timed(bare, repeats), "floor_counter": timed(counted, repeats)}
    finally:
        done.release()
        shared.close()


# ----------------------------------------------------------------------------- ProcessPoolExecutor
def _noop(*args):
    return None


def _inc_in_place(x):
    """(e) for the process pool and Dask, whose workers hold a private, writable copy."""
    x += 1.0
    return x


def _inc_copy(x):
    """(e) for Ray tasks: objects in Ray's store are read-only, so each update makes a new one."""
    return x + 1.0


def ppe(name: str, workers: int, repeats: int) -> float:
    with cf.ProcessPoolExecutor(max_workers=workers) as ex:
        list(ex.map(_noop, range(workers * 2)))          # start the workers
        if name == "a":
            def run():
                cf.wait([ex.submit(_noop, i) for i in range(N_A)])
        elif name == "b":
            def run():
                for i in range(N_B):
                    ex.submit(_noop, i).result()
        elif name == "c":
            def run():
                for _ in range(ROUNDS):
                    ex.submit(_noop).result()
                    cf.wait([ex.submit(_noop, i) for i in range(FAN)])
                    ex.submit(_noop).result()
        elif name == "d":
            def run():
                for _ in range(N_D):
                    cf.wait([ex.submit(_noop, i) for i in range(2)])
        else:
            def run():
                x = np.zeros(BIG)
                for _ in range(N_E):
                    x = ex.submit(_inc_in_place, x).result()
                assert x[0] == N_E
        return timed(run, max(1, repeats // 2) if name in "be" else repeats)


# ----------------------------------------------------------------------------- futures peers
def task_graph(name: str, submit: Callable, get: Callable, put: Callable, inc_fn: Callable,
               map_: Callable | None = None) -> Callable[[], None]:
    """The workload as a graph of tasks whose edges are the futures passed as arguments, with the
    dependency structure of the l3c program. `submit(fn, *args)` returns a future, `get(list)`
    waits for and returns results, `put(x)` places an array, `map_(fn, *iterables)` (optional)
    submits independent tasks in one batch."""
    many = map_ or (lambda fn, *its: [submit(fn, *a) for a in zip(*its)])
    if name == "a":
        def run():
            get(many(_noop, range(N_A)))
    elif name == "b":
        def run():
            f = None
            for i in range(N_B):
                f = submit(_noop, f, i)
            get([f])
    elif name == "c":
        def run():
            last = None
            for _ in range(ROUNDS):
                first = submit(_noop, last)
                last = submit(_noop, *many(_noop, [first] * FAN, range(FAN)))
            get([last])
    elif name == "d":
        def run():
            group = []
            for _ in range(N_D):
                group = [submit(_noop, *group, i) for i in range(2)]
            get(group)
    else:
        def run():
            f = put(np.zeros(BIG))
            for _ in range(N_E):
                f = submit(inc_fn, f)
            x, = get([f])
            assert x[0] == N_E, x[0]
    return run


def dask_phase(names: str, workers: int, repeats: int) -> dict[str, float]:
    """Seconds per run of each workload on a `distributed.LocalCluster` of `workers` processes with
    one thread each; one cluster serves every workload."""
    from distributed import Client, LocalCluster
    out = {}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster) as client:
        def submit(fn, *args):
            return client.submit(fn, *args, pure=False)

        def map_(fn, *iterables):
            return client.map(fn, *iterables, pure=False)

        def put(x):
            return client.scatter(x, hash=False)     # a content hash would reuse the mutated array

        for name in names:
            run = task_graph(name, submit, client.gather, put, _inc_in_place, map_)
            out[name] = timed(run, max(1, repeats // 2) if name in "be" else repeats)
    return out


def ray_phase(names: str, workers: int, repeats: int) -> tuple[dict[str, dict[str, float]], dict]:
    """Seconds per run of each workload as Ray tasks and as Ray Compiled Graphs, in one local Ray
    instance limited to `workers` CPUs; returns ({peer: {workload: seconds}}, {errors})."""
    import ray
    out: dict[str, dict[str, float]] = {"ray": {}, "ray_cg": {}, "ray_cg_1actor": {}}
    errors: dict[str, str] = {}
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=1 << 30)
    try:
        remote = {fn: ray.remote(fn) for fn in (_noop, _inc_copy)}

        def submit(fn, *args):
            return remote[fn].remote(*args)

        for name in names:
            run = task_graph(name, submit, ray.get, ray.put, _inc_copy)
            out["ray"][name] = timed(run, max(1, repeats // 2) if name in "be" else repeats)
            for peer, spread in (("ray_cg", True), ("ray_cg_1actor", False)):
                if not spread and name not in "be":
                    continue
                try:
                    out[peer][name] = ray_compiled_graph(name, workers, repeats, spread)
                except Exception as e:                   # noqa: BLE001 - report, keep measuring
                    errors[f"{peer}/{name}"] = f"{type(e).__name__}: {e}"
                    print(f"  {peer} ({name}) failed: {errors[f'{peer}/{name}']}", file=sys.stderr)
    finally:
        ray.shutdown()
    return out, errors


_chip_class = None


def _ray_chip():
    """The actor class for compiled graphs, defined on first use because Ray is optional."""
    global _chip_class
    if _chip_class is None:
        import ray

        @ray.remote(num_cpus=0)
        class Chip:
            def __init__(self):
                self.out = None

            def noop(self, *args):
                return 0

            def inc(self, x):
                # Channel reads are read-only views of the channel's buffer: add into our own.
                if self.out is None or self.out.shape != x.shape:
                    self.out = np.empty_like(x)
                return np.add(x, 1.0, out=self.out)

        _chip_class = Chip
    return _chip_class


def ray_compiled_graph(name: str, workers: int, repeats: int, spread: bool = True) -> float:
    """Seconds per run of one workload as repeated executions of a compiled sub-graph over
    `workers` fresh actors (an actor runs one compiled graph at a time); see the module docstring
    for each workload's mapping. `spread=False` keeps a chain on one actor."""
    import ray
    from ray.dag import DAGContext, InputNode, MultiOutputNode
    DAGContext.get_current().teardown_timeout = CG_TEARDOWN_S
    actors = [_ray_chip().remote() for _ in range(workers)]
    ray.get([a.noop.remote() for a in actors])
    on = (lambda i: actors[i % workers]) if spread else (lambda i: actors[0])
    with InputNode() as inp:
        if name == "a":
            dag = MultiOutputNode([on(i).noop.bind(inp) for i in range(CG_INDEPENDENT)])
        elif name in "be":
            dag = inp
            for i in range(CG_CHAIN):
                dag = (on(i).noop if name == "b" else on(i).inc).bind(dag)
        elif name == "c":
            first = on(0).noop.bind(inp)
            dag = on(0).noop.bind(*[on(i).noop.bind(first) for i in range(FAN)])
        else:
            group = [inp]
            for _ in range(CG_GROUPS):
                group = [on(i).noop.bind(*group) for i in range(2)]
            dag = MultiOutputNode(group)
    big_channels = BIG * 8 + (64 << 10) if name == "e" else None     # the array and its header
    compiled = dag.experimental_compile(_buffer_size_bytes=big_channels)

    def chained(executions: int, value):
        for _ in range(executions):
            value = ray.get(compiled.execute(value))
        return value

    def run():
        if name == "a":              # independent: keep several executions in flight
            pending = []
            for _ in range(N_A // CG_INDEPENDENT):
                if len(pending) == CG_IN_FLIGHT:
                    ray.get(pending.pop(0))
                pending.append(compiled.execute(0))
            for ref in pending:      # ray.get takes one compiled-graph reference at a time
                ray.get(ref)
        elif name == "b":
            chained(N_B // CG_CHAIN, 0)
        elif name == "c":
            chained(ROUNDS, 0)
        elif name == "d":
            chained(N_D // CG_GROUPS, 0)
        else:
            x = chained(N_E // CG_CHAIN, np.zeros(BIG))
            assert x[0] == N_E, x[0]

    try:
        return timed(run, max(1, repeats // 2) if name in "be" else repeats)
    finally:
        compiled.teardown(kill_actors=True)
        for a in actors:
            ray.kill(a)


# ----------------------------------------------------------------------------- l3c
def l3c_modes(name: str, workers: int, repeats: int) -> tuple[float, float]:
    make, _, _ = WORKLOADS[name]
    jitted = l3c.jit(chips=workers, timeout=120)(workload(name, PYTHON))
    args = make()
    compiled = jitted.lower(*args)
    t_compiled = timed(lambda: compiled(*args), repeats)
    t_eager = timed(lambda: jitted.eager(*args), max(1, repeats // 2))
    return t_compiled, t_eager


def l3c_native(name: str, workers: int, repeats: int, k: SimpleNamespace) -> tuple[float, float]:
    """Seconds of a compiled run of the workload with native kernels (the step loop calls C, no
    Python), and of a compiled run of one native no-op task (the run's fixed cost: staging,
    posting, waking the workers and the parent, copying out), measured turn about so that the
    machine's load hits both alike."""
    make, _, _ = WORKLOADS[name]
    args = make()
    compiled = l3c.jit(chips=workers, timeout=120)(workload(name, k)).lower(*args)
    if name == "e":
        x = np.zeros(BIG)
        compiled(x)
        assert x[0] == N_E, x[0]          # the C kernel ran, on the caller's array

    def one(t):
        k.touch(t[0])
        return t

    one_args = (np.zeros((1, 1)),)
    one_task = l3c.jit(chips=workers, timeout=120)(one).lower(*one_args)
    compiled(*args), one_task(*one_args)
    runs, fixed = [], []
    for _ in range(max(repeats, 9)):
        t0 = time.perf_counter()
        compiled(*args)
        t1 = time.perf_counter()
        one_task(*one_args)
        t2 = time.perf_counter()
        runs.append(t1 - t0)
        fixed.append(t2 - t1)
    return statistics.median(runs), statistics.median(fixed)


def native_floor(name: str, repeats: int, k: SimpleNamespace) -> float:
    """The same C calls one after another in a numba-compiled loop in one process: what a task
    costs with no scheduling at all."""
    from numba import njit
    c_touch, c_pair, c_inc = k.c_touch, k.c_pair, k.c_inc

    @njit
    def loop_a(t):
        for i in range(t.shape[0]):
            c_touch(t[i].ctypes, 1)

    @njit
    def loop_b(t):
        for _ in range(N_B):
            c_touch(t[0].ctypes, 1)

    @njit
    def loop_c(a, b):
        for _ in range(ROUNDS):
            c_touch(a.ctypes, 4)
            for i in range(FAN):
                c_pair(a.ctypes, 4, b[i].ctypes, 4)
            c_pair(b.ctypes, FAN * 4, a.ctypes, 4)

    @njit
    def loop_d(a, b):
        for j in range(N_D):
            src, dst = (a, b) if j % 2 == 0 else (b, a)
            c_pair(src.ctypes, 8, dst[:4].ctypes, 4)
            c_pair(src.ctypes, 8, dst[4:].ctypes, 4)

    @njit
    def loop_e(x):
        for _ in range(N_E):
            c_inc(x.ctypes, x.size)

    loop = {"a": loop_a, "b": loop_b, "c": loop_c, "d": loop_d, "e": loop_e}[name]
    args = WORKLOADS[name][0]()
    return timed(lambda: loop(*args), repeats)


# ----------------------------------------------------------------------------- report
def print_table(rows: list[dict]) -> None:
    """Two tables for one worker count: microseconds per task, then ratios."""
    us_cols = [c for c in PEERS + FLOORS + NATIVE if any(c in r["us_per_task"] for r in rows)]
    ratio_cols = [c for c in PEERS[1:] if c in us_cols] + ["/floor", "/floor_counter"]
    if "l3c_native" in us_cols:
        ratio_cols += ["native/native_floor"]
    width = {c: max(15, len(c) + 2) for c in us_cols + ratio_cols}
    head = f"{'W':>2} {'':3} {'workload':28}"
    print(f"\nus per task (d: per group), median of runs; W = workers\n{head}"
          + "".join(f"{c:>{width[c]}}" for c in us_cols))
    for r in rows:
        cells = "".join(f"{r['us_per_task'][c]:{width[c]}.2f}" if c in r["us_per_task"]
                        else f"{'-':>{width[c]}}" for c in us_cols)
        print(f"{r['workers']:>2} ({r['workload']}) {r['label']:28}{cells}")
    print(f"\npeer / l3c compiled; /floor* = l3c compiled / floor; native/native_floor = "
          f"l3c_native / native_floor\n{head}" + "".join(f"{c:>{width[c]}}" for c in ratio_cols))
    for r in rows:
        ratios = {**r["ratio_to_compiled"],
                  **{f"/{k}": v for k, v in r["compiled_over_floor"].items()},
                  **r.get("native_over_floor", {})}
        cells = "".join(f"{ratios[c]:{width[c] - 1}.1f}x" if c in ratios else f"{'-':>{width[c]}}"
                        for c in ratio_cols)
        print(f"{r['workers']:>2} ({r['workload']}) {r['label']:28}{cells}")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workloads", default="abcde")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "dispatch.json"))
    ap.add_argument("--no-peers", action="store_true", help="skip Dask and Ray (l3c, the process "
                    "pool and the floors only)")
    ap.add_argument("--sections", nargs="+", choices=("tasks", "call"), default=["tasks"])
    ap.add_argument("--calls", type=int, default=2000, help="timed calls per row of the call "
                    "section")
    opts = ap.parse_args()
    names = opts.workloads
    if "call" in opts.sections:
        from calls import run_section
        call = run_section(opts.calls, peers=not opts.no_peers)
        if "tasks" not in opts.sections:
            with open(opts.json, "w") as f:
                json.dump({"call": call, "cpus": os.cpu_count()}, f, indent=1)
            print(f"wrote {opts.json}")
            return

    installed = {m: not opts.no_peers and importlib.util.find_spec(m) is not None
                 for m in ("distributed", "ray")}
    natives = native_kernels()
    if natives is None:
        print("skipping l3c_native and native_floor: numba not installed (pip install -e .[native])",
              file=sys.stderr)
    needs = {"dask": "distributed", "ray": "ray", "ray_cg": "ray", "ray_cg_1actor": "ray"}
    skipped = {peer: "--no-peers" if opts.no_peers else f"{mod} not installed"
               for peer, mod in needs.items() if not installed[mod]}
    for peer, why in skipped.items():
        print(f"skipping {peer}: {why} (pip install -e .[bench])", file=sys.stderr)
    logging.getLogger("distributed").setLevel(logging.ERROR)

    all_rows, errors, run_costs = [], {}, {}
    for workers in opts.workers:
        rows = {}
        for name in names:                       # phase 1: l3c, the process pool, the floors
            _, tasks, label = WORKLOADS[name]
            comp, eager = l3c_modes(name, workers, opts.repeats)
            seconds = {"l3c_compiled": comp, "l3c_eager": eager,
                       "process_pool": ppe(name, workers, opts.repeats),
                       **floors(name, opts.repeats)}
            if natives is not None:
                seconds["l3c_native"], run_cost = l3c_native(name, workers, opts.repeats, natives)
                seconds["native_marginal"] = max(0.0, seconds["l3c_native"] - run_cost)
                run_costs[f"{workers}/{name}"] = run_cost
                seconds["native_floor"] = native_floor(name, opts.repeats, natives)
            rows[name] = {"workload": name, "label": label, "workers": workers, "tasks": tasks,
                          "seconds": seconds}
        l3c.shutdown()                           # no idle chips during the peers' phases
        peer_seconds: dict[str, dict[str, float]] = {}
        if installed["distributed"]:
            try:
                peer_seconds["dask"] = dask_phase(names, workers, opts.repeats)
            except Exception as e:                   # noqa: BLE001 - report, keep measuring
                errors[f"dask/W={workers}"] = f"{type(e).__name__}: {e}"
                print(f"  dask failed: {errors[f'dask/W={workers}']}", file=sys.stderr)
        if installed["ray"]:
            try:
                ray_seconds, ray_errors = ray_phase(names, workers, opts.repeats)
                peer_seconds.update(ray_seconds)
                errors.update({f"{k}/W={workers}": v for k, v in ray_errors.items()})
            except Exception as e:                   # noqa: BLE001 - report, keep measuring
                errors[f"ray/W={workers}"] = f"{type(e).__name__}: {e}"
                print(f"  ray failed: {errors[f'ray/W={workers}']}", file=sys.stderr)
        for peer, by_name in peer_seconds.items():
            for name, t in by_name.items():
                rows[name]["seconds"][peer] = t
        for r in rows.values():
            us = {k: r["seconds"][k] / r["tasks"] * 1e6
                  for k in PEERS + FLOORS + NATIVE if k in r["seconds"]}
            r["us_per_task"] = us
            r["ratio_to_compiled"] = {k: us[k] / us["l3c_compiled"] for k in PEERS[1:] if k in us}
            r["compiled_over_floor"] = {k: us["l3c_compiled"] / us[k] for k in FLOORS}
            if "l3c_native" in us:
                r["native_over_floor"] = {"native/native_floor":
                                          us["l3c_native"] / us["native_floor"]}
            del r["seconds"]
        print_table(list(rows.values()))
        all_rows.extend(rows.values())

    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    if natives is not None:
        versions["numba"] = __import__("numba").__version__
    for mod in ("distributed", "ray"):
        if installed[mod]:
            versions[mod] = __import__(mod).__version__
    with open(opts.json, "w") as f:
        json.dump({"rows": all_rows, "call": call if "call" in opts.sections else None,
                   "cpus": os.cpu_count(), "repeats": opts.repeats,
                   "versions": versions, "skipped": skipped, "errors": errors,
                   "native_one_task_run_us": {w: c * 1e6 for w, c in run_costs.items()},
                   "ray_cg_subgraph": {"independent": CG_INDEPENDENT, "chain": CG_CHAIN,
                                       "groups": CG_GROUPS, "in_flight": CG_IN_FLIGHT}},
                  f, indent=1)
    print(f"wrote {opts.json}")
    l3c.shutdown()


if __name__ == "__main__":
    main()
