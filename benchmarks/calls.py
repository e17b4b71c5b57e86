"""What a user pays per *call* (the "call" section of `benchmarks/dispatch.py`): a 1-task program with
a 16-float input on 2 workers, called through l3c and its peers, plus two larger workloads.

    python benchmarks/calls.py [--calls 2000] [--no-peers] [--json PATH]
    python benchmarks/dispatch.py --sections call         (the same, from dispatch.py)

Rows (medians of per-call wall times after a warm-up; per run for the rows with runs in flight):
  l3c_compiled        `compiled(x)` of `step.lower(x)`: check, stage, run one native no-op, copy out
  l3c_jitted          `step(x)`: the same plus finding the compiled signature
  l3c_submitted       `compiled.submit(x)` of no-op runs, `--in-flight` submitted before the first
                      `result()` (per run)
  process_pool        `ProcessPoolExecutor(2).submit(noop, x).result()`
  ray_cg_execute      Ray Compiled Graphs, one actor method: `ray.get(compiled.execute(x))`
  ray_cg_async        the same graph compiled with asyncio, `--in-flight` `execute_async` awaited
                      together (per run)
  shared_64mib        a 64 MiB `l3c.shared` float64 array through a kernel that adds 1 to one
                      element (`ordinary_64mib`: the same with an ordinary array)
  pipeline_calls      a two-stage pipeline over 2 chips (stage 1 on chip 0 feeds stage 2 on chip 1,
                      each a ~`--stage-ms` ms busy kernel), back-to-back calls, per run
  pipeline_submitted  the same, `--in-flight` runs submitted at a time, per run; the ratio
                      calls/submitted is the pipelining speed-up. A wave of N runs submitted
                      together and waited for takes at least N + 1 stage times (the first stage
                      of the first run and the second of the last run overlap nothing), against
                      2N for N calls: 2N/(N + 1) at most (1.78x for 8, 1.88x for 16), plus what
                      the calls lose in hand-overs between the two chips
Every row checks its result. Peers are skipped (and say so) when not installed or with --no-peers.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import l3c  # noqa: E402

SMALL = 16                            # float32 elements of the 1-task program's input
BIG = 64 << 20                        # bytes of the shared-array row


@l3c.kernel
def noop(x: l3c.InOut):
    pass


@l3c.kernel
def touch_one(x: l3c.InOut):
    x.reshape(-1)[0] += 1


@l3c.kernel
def stage(src: l3c.In, dst: l3c.Out, seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    dst[...] = src + 1


def one_task(x):
    noop(x)


def touch_program(x):
    touch_one(x)


def pipeline(x, seconds):
    mid = l3c.empty_like(x)
    out = l3c.empty_like(x)
    stage.on(0)(x, mid, seconds)
    stage.on(1)(mid, out, seconds)
    return out


def per_call(fn: Callable[[], Any], calls: int, warmup: int | None = None) -> float:
    """Median seconds of one `fn()` over `calls` timed calls, after `warmup` (calls // 10)
    untimed."""
    for _ in range(max(1, calls // 10) if warmup is None else warmup):
        fn()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) * 1e-9


def per_run_in_flight(submit: Callable[[], Any], wait: Callable[[Any], Any], runs: int,
                      in_flight: int) -> float:
    """Median over batches of (time to submit `in_flight` runs and wait for all) / in_flight."""
    batches = max(3, runs // in_flight)
    samples = []
    for b in range(batches + 2):
        t0 = time.perf_counter_ns()
        handles = [submit() for _ in range(in_flight)]
        for h in handles:
            wait(h)
        if b >= 2:                                     # two untimed batches first
            samples.append((time.perf_counter_ns() - t0) / in_flight)
    return statistics.median(samples) * 1e-9


# ---------------------------------------------------------------------------------------------- l3c
def l3c_rows(opts: argparse.Namespace) -> dict[str, float]:
    x = np.arange(SMALL, dtype=np.float32)
    step = l3c.jit(chips=2, max_inflight=opts.in_flight)(one_task)
    compiled = step.lower(x)
    rows = {"l3c_compiled": per_call(lambda: compiled(x), opts.calls),
            "l3c_jitted": per_call(lambda: step(x), opts.calls),
            "l3c_submitted": per_run_in_flight(lambda: compiled.submit(x), lambda r: r.result(),
                                               opts.calls, opts.in_flight)}
    assert np.array_equal(x, np.arange(SMALL, dtype=np.float32))

    for name, make in (("shared_64mib", lambda: l3c.shared(BIG // 8, np.float64)),
                       ("ordinary_64mib", lambda: np.zeros(BIG // 8))):
        big = make()
        touch = l3c.jit(chips=2)(touch_program).lower(big)
        calls = max(5, opts.calls // 200)
        # the first calls of a fresh pool and a newly mapped memory are slower: warm up more
        rows[name] = per_call(lambda: touch(big), calls, warmup=10)
        assert big[0] == calls + 10 and big[1] == 0, (big[0], big[1])
        del big, touch

    y = np.arange(SMALL, dtype=np.float64)
    seconds = opts.stage_ms * 1e-3
    pipe = l3c.jit(chips=2, max_inflight=opts.in_flight)(pipeline).lower(y, seconds)
    # Batches of back-to-back calls and of submitted runs take turns, so that a change in the
    # machine's load hits both alike.
    calls, submitted = [], []
    for b in range(max(3, opts.calls // 100 // opts.in_flight) + 1):
        t0 = time.perf_counter_ns()
        for _ in range(opts.in_flight):
            assert np.array_equal(pipe(y, seconds), y + 2)
        t1 = time.perf_counter_ns()
        runs = [pipe.submit(y, seconds) for _ in range(opts.in_flight)]
        for r in runs:
            assert np.array_equal(r.result(), y + 2)
        t2 = time.perf_counter_ns()
        if b:                                          # the first batch warms up
            calls.append((t1 - t0) / opts.in_flight)
            submitted.append((t2 - t1) / opts.in_flight)
    rows["pipeline_calls"] = statistics.median(calls) * 1e-9
    rows["pipeline_submitted"] = statistics.median(submitted) * 1e-9
    l3c.shutdown()
    return rows


# -------------------------------------------------------------------------------------------- peers
def _noop(x: np.ndarray) -> float:
    return float(x[0])


def process_pool_row(opts: argparse.Namespace) -> float:
    x = np.arange(SMALL, dtype=np.float32)
    with cf.ProcessPoolExecutor(2) as ex:
        def call() -> None:
            assert ex.submit(_noop, x).result() == 0.0
        return per_call(call, max(100, opts.calls // 4))


def ray_rows(opts: argparse.Namespace) -> dict[str, float]:
    import ray
    from ray.dag import InputNode
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        @ray.remote(num_cpus=0)
        class Chip:
            def noop(self, x):
                return float(x[0])

        x = np.arange(SMALL, dtype=np.float32)
        rows = {}
        actor = Chip.remote()
        with InputNode() as inp:
            dag = actor.noop.bind(inp)
        compiled = dag.experimental_compile()
        try:
            def call() -> None:
                assert ray.get(compiled.execute(x)) == 0.0
            rows["ray_cg_execute"] = per_call(call, max(100, opts.calls // 4))
        finally:
            compiled.teardown()

        actor = Chip.remote()
        with InputNode() as inp:
            dag = actor.noop.bind(inp)
        compiled = dag.experimental_compile(enable_asyncio=True)

        async def batch() -> float:
            samples = []
            for b in range(max(3, opts.calls // 4 // opts.in_flight) + 2):
                t0 = time.perf_counter_ns()
                futures = [await compiled.execute_async(x) for _ in range(opts.in_flight)]
                for fut in futures:
                    assert await fut == 0.0
                if b >= 2:
                    samples.append((time.perf_counter_ns() - t0) / opts.in_flight)
            return statistics.median(samples) * 1e-9
        try:
            rows["ray_cg_async"] = asyncio.get_event_loop().run_until_complete(batch())
        finally:
            compiled.teardown()
        return rows
    finally:
        ray.shutdown()


ORDER = ("l3c_compiled", "l3c_jitted", "l3c_submitted", "process_pool", "ray_cg_execute",
         "ray_cg_async", "shared_64mib", "ordinary_64mib", "pipeline_calls", "pipeline_submitted")


def run_section(calls: int = 2000, in_flight: int = 8, stage_ms: float = 2.0,
                peers: bool = True) -> dict[str, Any]:
    """Measure every row (peers after l3c, in their own phase); returns {"us": ..., "skipped":
    ..., "errors": ...} and prints the table."""
    opts = argparse.Namespace(calls=calls, in_flight=in_flight, stage_ms=stage_ms)
    us: dict[str, float] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    us.update({k: v * 1e6 for k, v in l3c_rows(opts).items()})
    us["process_pool"] = process_pool_row(opts) * 1e6
    if not peers:
        skipped["ray"] = "--no-peers"
    elif importlib.util.find_spec("ray") is None:
        skipped["ray"] = "ray not installed"
    else:
        try:
            us.update({k: v * 1e6 for k, v in ray_rows(opts).items()})
        except Exception as e:                       # noqa: BLE001 - report, keep the rest
            errors["ray"] = f"{type(e).__name__}: {e}"
    for peer, why in {**skipped, **errors}.items():
        print(f"  {peer}: skipped ({why})", file=sys.stderr)
    print(f"\ncall section: 1 task, float32[{SMALL}] input, 2 workers; medians in us "
          f"(per run where runs are in flight, {in_flight} at a time)")
    for k in ORDER:
        if k in us:
            print(f"  {k:20} {us[k]:12.1f}")
    if "pipeline_submitted" in us:
        print(f"  pipeline speed-up (calls / submitted): "
              f"{us['pipeline_calls'] / us['pipeline_submitted']:.2f}x (a wave of {in_flight} "
              f"runs takes at least {in_flight + 1} stage times: at most "
              f"{2 * in_flight / (in_flight + 1):.2f}x, but for the calls' own hand-overs)")
    return {"us": us, "skipped": skipped, "errors": errors, "calls": calls, "in_flight": in_flight,
            "stage_ms": stage_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--stage-ms", type=float, default=2.0)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "calls.json"))
    opts = ap.parse_args()
    result = run_section(opts.calls, opts.in_flight, opts.stage_ms, not opts.no_peers)
    with open(opts.json, "w") as f:
        json.dump({**result, "cpus": os.cpu_count()}, f, indent=1)
    print(f"wrote {opts.json}")


if __name__ == "__main__":
    main()
