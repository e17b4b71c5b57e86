"""Run under `mpiexec -n H python tests/_loops_hosts_driver.py H C S SEED0 COUNT` by
tests/test_loops_hosts.py (not a test module itself): random programs with loops
(tests/stress/loop_programs.py) on H hosts of C chips and S sub workers, compiled where this l3c
compiles loops across hosts (else, when its lowering refuses them with an `L3CError` saying so,
`.eager`, the single-host reference every rank runs), compared
on every rank with numpy iterating on rank 0's inputs (the other ranks pass garbage).

Prints `RESULT <rank> <name> ok|FAIL <detail>` per program (detail: `compiled` or `eager`) and
`DONE <rank>` at the end.
"""
from __future__ import annotations

import os
import random
import sys
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "stress"))

import l3c  # noqa: E402
from mpi4py import MPI  # noqa: E402

import loop_programs as lp  # noqa: E402
import stress_programs as sp  # noqa: E402

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


def report(name: str, ok: bool, detail: str = "") -> None:
    detail = detail.replace("\n", " | ")[:2000]
    print(f"\nRESULT {RANK} {name} {'ok' if ok else 'FAIL'} {detail}", flush=True)


def refuses_loops(exc: Exception) -> bool:
    """An l3c whose lowering refuses loops across hosts says so (then `.eager` is what runs)."""
    text = str(exc)
    return "loops" in text and ("not supported" in text or ".eager" in text)


def main(hosts: int, chips: int, sub: int, seed0: int, count: int) -> None:
    dist = l3c.jit(hosts=hosts, chips=chips, sub_workers=sub, static_argnames=("ops",),
                   timeout=30)(lp.orchestrate_loops)
    compiled = True
    for seed in range(seed0, seed0 + count):
        rng = random.Random(seed)
        gen = lp.LoopGen(rng, hosts * chips, sub)
        ops = gen.program(rng.randint(2, 12))
        data = np.random.default_rng(seed)
        ctl = np.zeros(sp.MAX_TASKS, np.int64)
        for slot, (lo, hi) in enumerate(gen.slots):
            ctl[lp.BOUNDS_AT + slot] = rng.randint(lo, hi)
        x, y = data.standard_normal((sp.N, sp.N)), data.standard_normal((sp.N, sp.N))
        oracle = None
        if RANK == 0:
            it = lp.LoopInterpreter(ctl, x.copy(), y.copy(), numpy=True)
            it.run(ops)
            oracle = it.results()
        else:                                            # inputs must come from rank 0
            x, y, ctl = x * 0 + 99.0, y * 0 - 7.0, np.zeros_like(ctl)
        oracle = COMM.bcast(oracle, root=0)
        try:
            how = "compiled" if compiled else "eager"
            try:
                got = dist(ctl, x, y, ops=ops) if compiled else dist.eager(ctl, x, y, ops=ops)
            except l3c.L3CError as exc:
                if not compiled or not refuses_loops(exc):
                    raise
                compiled, how = False, "eager"
                got = dist.eager(ctl, x, y, ops=ops)
            bad = [i for i, (a, b) in enumerate(zip(got, oracle)) if not np.array_equal(a, b)]
            ok = len(got) == len(oracle) and not bad
            report(f"seed{seed}", ok, f"{how} tasks={lp.count_tasks(ops)} differ={bad}")
        except Exception:  # noqa: BLE001
            report(f"seed{seed}", False, traceback.format_exc() + f" ops={ops}")
    print(f"\nDONE {RANK}", flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:6]))
