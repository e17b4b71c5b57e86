"""Each rank's share of a several-host run: MPI detection and rank checks (`launcher`), the control
channel between ranks (`peers`), the agreement on each call (`calls`), the transfer buffers
(`buffers`), the native poll (`poll`) and the run loop (`state`, `loop`). MPI is only a transport:
the plan is `l3c.runtime.hostplan` data. mpi4py is imported only when a several-host run starts."""
