"""Cross-worker hand-off: a worker waiting on its predecessor's counter directly, against the
parent relaying every dependency (wait for the producer, then release the consumer).

    python benchmarks/handoff.py [--hops 2000] [--repeats 5]

Two forked workers run a dependency chain that alternates between them (the worst case for a
schedule: every edge crosses processes). Both variants use l3c's own native wait/publish primitives
(`l3c.runtime.sync`: spin, then futex with a bounded timeout) on real shared memory:

  direct  worker A publishes done_A = k; worker B waits for done_A >= k, runs, publishes done_B = k ...
  relay   each worker waits for its own release word; the parent waits for done_A >= k, then
          publishes release_B = k (two hand-offs per edge, one of them through the parent)

This is the measurement behind the dispatcher's choice of worker-to-worker waits (docs/dispatcher.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from l3c.runtime import sync  # noqa: E402
from l3c.runtime.arena import SharedMapping  # noqa: E402

LINE = 64
SPIN = sync.RUN_SPIN
SLICE_NS = 50_000_000
# word addresses (each alone in its cache line): done[0], done[1], release[0], release[1], waiters x4, abort
DONE, RELEASE, WAITERS, ABORT = 0, 2, 4, 8


def _addr(base: int, index: int) -> int:
    return base + index * LINE


def _wait(base: int, word: int, target: int) -> None:
    while sync.wait_ge(_addr(base, word), target, _addr(base, WAITERS + word), _addr(base, ABORT),
                       SPIN, SLICE_NS) != sync.WAIT_OK:
        pass


def _worker(base: int, me: int, hops: int, relay: bool) -> None:
    """Run my half of the alternating chain: hops 0, 2, 4, ... for worker 0; 1, 3, 5, ... for 1."""
    other = 1 - me
    for k in range(me, hops, 2):
        if k > 0:
            if relay:
                _wait(base, RELEASE + me, k)
            else:
                _wait(base, DONE + other, k)
        sync.publish(_addr(base, DONE + me), k + 1, _addr(base, WAITERS + DONE + me))


def _parent_relay(base: int, hops: int) -> None:
    for k in range(hops - 1):
        producer, consumer = k % 2, (k + 1) % 2
        _wait(base, DONE + producer, k + 1)
        sync.publish(_addr(base, RELEASE + consumer), k + 1, _addr(base, WAITERS + RELEASE + consumer))


def one_run(hops: int, relay: bool) -> float:
    """Seconds for one alternating chain of `hops` tasks."""
    shm = SharedMapping(16 * LINE)
    base = shm.address
    pids = []
    t0 = time.perf_counter()
    for me in (0, 1):
        pid = os.fork()
        if pid == 0:
            try:
                _worker(base, me, hops, relay)
            finally:
                os._exit(0)
        pids.append(pid)
    if relay:
        _parent_relay(base, hops)
    _wait(base, DONE + (hops - 1) % 2, hops)
    elapsed = time.perf_counter() - t0
    for pid in pids:
        os.waitpid(pid, 0)
    shm.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    sync.ensure()
    fork_cost = statistics.median(one_run(2, False) for _ in range(opts.repeats))
    results = {}
    for name, relay in (("direct", False), ("relay", True)):
        runs = [one_run(opts.hops, relay) for _ in range(opts.repeats)]
        results[name] = (statistics.median(runs) - fork_cost) / opts.hops * 1e6
    print(f"alternating chain of {opts.hops} cross-worker hops, median of {opts.repeats} "
          f"(fork cost subtracted)")
    for name, us in results.items():
        print(f"  {name:7s} {us:8.2f} us per hop")
    print(f"  relay / direct = {results['relay'] / results['direct']:.2f}x")


if __name__ == "__main__":
    main()
