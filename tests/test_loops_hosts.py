"""Loops across hosts: real `mpiexec -n 2` jobs running random programs with loops, while loops
and conds (tests/_loops_hosts_driver.py) compiled, every rank's results equal to numpy's on rank
0's inputs. Skipped when mpi4py or mpiexec is missing."""
from __future__ import annotations

import os

from test_dist import HERE, mpiexec, needs_mpi, results

DRIVER = os.path.join(HERE, "_loops_hosts_driver.py")


@needs_mpi
def test_random_loop_programs_on_two_hosts_equal_numpy():
    proc = mpiexec(2, DRIVER, "2", "2", "1", "30000", "8", timeout=240)
    found = results(proc.stdout)
    failures = [f"rank {r} {name}: {detail}" for (r, name), (ok, detail) in found.items() if not ok]
    assert not failures, "\n".join(failures) + proc.stderr[-3000:]
    assert len(found) == 2 * 8, proc.stdout[-3000:] + proc.stderr[-3000:]
    # loops across hosts run compiled (the driver falls back to .eager only where they are refused)
    assert all(detail.startswith("compiled") for _, detail in found.values()), found
    assert "DONE 0" in proc.stdout and "DONE 1" in proc.stdout
