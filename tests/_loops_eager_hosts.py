"""Run under `mpiexec -n 2 python tests/_loops_eager_hosts.py` by tests/test_loops_eager.py (not a
test module): `.eager` of a hosts=2 function with an `l3c.range` of group tasks that span both
hosts and a `while_loop` whose flag a kernel writes. Rank 1 passes garbage (inputs are rank 0's);
every rank prints `RESULT <rank> ok|FAIL <detail>`."""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

import l3c


@l3c.kernel
def add(x: l3c.InOut, k):
    x[...] += k


@l3c.kernel
def count_down(flag: l3c.InOut, counter: l3c.InOut):
    counter[...] += 1
    flag[...] = np.where(counter >= 3, 0, flag)


def program(x, flag, counter):
    for i in l3c.range(4):
        l3c.group(add, [(x[i, 2 * r:2 * r + 2], i + r) for r in range(2)])
    for k in l3c.while_loop(flag):
        add.on(1)(x[k, 0:1], 100)
        count_down(flag, counter)
    return x


def main() -> None:
    rank = MPI.COMM_WORLD.Get_rank()
    inputs = (np.zeros((4, 4)), np.array([1]), np.zeros(1, int))
    if rank:
        inputs = (np.full((4, 4), 7.0), np.array([0]), np.full(1, 9))
    expected = program(*(a.copy() for a in (np.zeros((4, 4)), np.array([1]), np.zeros(1, int))))
    out = l3c.jit(program, chips=1, hosts=2).eager(*inputs)
    ok = np.array_equal(out, expected) and inputs[2][0] == 3 and inputs[1][0] == 0
    print(f"RESULT {rank} {'ok' if ok else 'FAIL'} {out.tolist()} {inputs[2].tolist()}", flush=True)


if __name__ == "__main__":
    main()
