"""Compiled loops across hosts: a real `mpiexec -n 2` job (tests/_loops_hosts_compiled_driver.py)
running `l3c.range` with static and tensor bounds, `while_loop`, `cond` and nesting with tensors
crossing hosts inside the bodies (a body intermediate too, and landings inside a loop where the
host has no task), each equal on every rank to the single-host `.eager` of rank 0's
inputs; a profile with every host's instances; and kernels raising inside loops on host 1 (with
host 0 waiting for its flag, or not), a `KernelError` on every rank, after which the next call
works. Skipped without mpi4py/mpiexec."""
from __future__ import annotations

import os

from test_dist import HERE, mpiexec, needs_mpi, results

DRIVER = os.path.join(HERE, "_loops_hosts_compiled_driver.py")
LOOPED = ("relay_range", "tensor_bounds", "converge", "conds_in_range", "nested",
          "crossing_temporaries")
CASES = LOOPED + ("profile", "faulty", "faulty_after", "faulty_while", "faulty_while_after")


@needs_mpi
def test_compiled_loops_across_two_hosts_equal_eager_and_faults_reach_every_rank():
    proc = mpiexec(2, DRIVER, timeout=120)
    found = results(proc.stdout)
    failures = [f"rank {r} {name}: {detail}" for (r, name), (ok, detail) in found.items() if not ok]
    assert not failures, "\n".join(failures) + proc.stderr[-3000:]
    missing = [(r, c) for r in range(2) for c in CASES if (r, c) not in found]
    assert not missing, f"missing {missing}: " + proc.stdout[-3000:] + proc.stderr[-3000:]
    # every looped program moved data between the hosts inside its loops
    for r in range(2):
        for name in LOOPED:
            assert int(found[r, name][1].split("transfers=")[1]) > 0
    assert "DONE 0" in proc.stdout and "DONE 1" in proc.stdout
