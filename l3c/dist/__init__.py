"""l3c over several hosts: one schedule split per host, run by one MPI rank per host.

`launcher` (MPI detection, rank checks, trace agreement) -> `split` (per-host plans and the transfers
between hosts) -> `run` (each rank's run loop: its own native dispatcher plus non-blocking MPI).
See docs/distributed.md. mpi4py is imported only when a multi-host function runs.
"""
from .errors import HostFailed, HostLost  # noqa: F401
