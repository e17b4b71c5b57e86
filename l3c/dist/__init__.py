"""The several-host errors under their public names (`l3c.dist.HostFailed`, `l3c.dist.HostLost`).

The several-host path itself is part of each stage: `l3c.passes.transfers` (what moves between
hosts), `l3c.codegen.hosts` (per-host plans), `l3c.runtime.hosts` (each rank's MPI loop) and
`l3c.execute.hosts` (a run on every rank). See docs/distributed.md.
"""
from ..runtime.hosts.errors import HostFailed, HostLost  # noqa: F401
