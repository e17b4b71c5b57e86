"""Where a Task Bench run's time goes, per timestep: each runner of `benchmarks/taskbench.py` on a
pattern at a fixed small number of kernel iterations, timed at two graph lengths so that the run's
fixed cost (posting, waking the workers, the end of the run) drops out.

    python benchmarks/taskbench_costs.py [--runners l3c l3c_1chip serial_numba floor]
                                         [--patterns stencil_1d no_comm] [--width 32]
                                         [--steps 200 1000] [--iterations 6] [--repeats 30]

For each runner and pattern: the minimum over `repeats` runs (the runners take turns, run after run)
at each length, the fixed cost (the line through the two lengths at 0 steps) and the cost of a
timestep (its slope), in us, and that per task of a chip (a timestep's cost / (width / cores)).
no_comm has no cross-chip dependency: stencil_1d minus no_comm on two chips is what exchanging one
boundary record each way per timestep costs. Run it under `chrt -f 1` on a machine shared with other
jobs.
"""
from __future__ import annotations

import argparse
import time

from taskbench import RUNNERS, Graph


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--runners", nargs="+", default=["l3c", "l3c_1chip", "serial_numba", "floor"])
    ap.add_argument("--patterns", nargs="+", default=["stencil_1d", "no_comm"])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, nargs=2, default=[200, 1000])
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--depth", type=int, default=0, help="rows of records kept (taskbench.py)")
    opts = ap.parse_args()
    print(f"width {opts.width}, {opts.iterations} kernel iterations a task, min of {opts.repeats} "
          f"runs at {opts.steps[0]} and {opts.steps[1]} steps")
    print(f"{'pattern':12}{'runner':14}{'fixed us':>10}{'timestep us':>13}{'task us':>10}")
    for pattern in opts.patterns:
        best: dict[tuple[str, int], float] = {}
        graphs = {steps: Graph.make(pattern, opts.width, steps, depth=opts.depth)
                  for steps in opts.steps}
        runners = [(steps, RUNNERS[name]()) for steps in opts.steps for name in opts.runners]
        try:
            for steps, r in runners:
                r.prepare(graphs[steps])
            epoch = 1
            for steps, r in runners:
                graphs[steps].verify(r.run(opts.iterations, epoch), epoch, r.name)
            for _ in range(opts.repeats):          # both lengths in every round: alike load
                epoch += 1
                for steps, r in runners:
                    t0 = time.perf_counter()
                    r.run(opts.iterations, epoch)
                    wall = time.perf_counter() - t0
                    key = (r.name, steps)
                    best[key] = min(best.get(key, wall), wall)
            for steps, r in runners:
                graphs[steps].verify(r.records, epoch, r.name)
        finally:
            for _, r in runners:
                r.close()
        short, long = opts.steps
        for name in opts.runners:
            a, b = best[(name, short)], best[(name, long)]
            per_step = (b - a) / (long - short)
            fixed = a - per_step * short
            print(f"{pattern:12}{name:14}{fixed * 1e6:10.1f}{per_step * 1e6:13.3f}"
                  f"{per_step * 1e6 / (opts.width / RUNNERS[name].cores):10.4f}", flush=True)


if __name__ == "__main__":
    main()
