"""Profiling a several-host run: every host records its steps, then they swap their stamps.

`l3c.execute.profile` runs a several-host schedule once (`l3c.execute.hosts.run` with `_stamps`: every step timed
in each host's workers, `layout.RUN_PROFILE`); then `hosts_trace` sends this rank's stamps to every
other on the control channel (the run's epoch keys them) and waits for theirs, bounded like any
wait on another rank, so that every rank returns the same one-timeline trace
(`l3c.profile.build_hosts_trace`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..runtime.hosts import launcher, peers
from ..runtime.hosts.errors import HostLost
from ..runtime.stamps import Events


def hosts_trace(compiled: Any, mine: dict) -> dict:
    """The trace of every host's run, given this host's stamps (`hosts.run(..., _stamps=mine)`)."""
    from ..profile import build_hosts_trace
    dist = mine["dist"]
    comm, ctl = launcher.comms()
    here, size = comm.Get_rank(), comm.Get_size()
    boot = _boot_id()
    record = {"t0": mine["t0"], "t1": mine["t1"], "boot": boot,
              "steps": [_plain(a) for a in mine["steps"]]}
    peers.tell(ctl, [h for h in range(size) if h != here], mine["epoch"], "profile", here, record)
    everyone = {here: record}
    deadline = time.monotonic() + launcher.REMOTE_SILENCE
    while len(everyone) < size:
        for src, message in peers.receive(ctl, launcher.mpi(), mine["epoch"]):
            if message[1] == "profile":
                everyone[message[2]] = message[3]
            elif message[1] == "bye" and src not in everyone:
                raise peers.exited(src, here, mine["epoch"])
        if len(everyone) < size:
            if time.monotonic() >= deadline:
                missing = sorted(set(range(size)) - set(everyone))
                raise HostLost(f"host {missing[0]} did not send its profile to host {here}",
                               host=missing[0])
            time.sleep(0.0005)
    peers.drain(0.5)
    stamps = [dict(everyone[h], same_clock=everyone[h]["boot"] == everyone[0]["boot"])
              for h in range(size)]
    plans = [p.lowered.plan for p in dist.parts]
    if compiled.program.loops:
        from ..profile_loops import build_hosts_loop_trace
        for st in stamps:
            st["steps"] = [Events(np.asarray(e, np.int64).reshape(-1, 3), n, cap)
                           for e, n, cap in st["steps"]]
        return build_hosts_loop_trace(compiled.program, plans, stamps)
    return build_hosts_trace(compiled.program, plans, dist.transfers, stamps)


def _plain(steps: Any) -> Any:
    """One slot's stamps as plain lists (a plan with loops records `Events`)."""
    if isinstance(steps, Events):
        return (steps.events.tolist(), steps.count, steps.capacity)
    return np.asarray(steps).tolist()


def _boot_id() -> str:
    """This machine's boot id: ranks with the same one share CLOCK_MONOTONIC."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
