"""Task Bench's floor on two cores (`benchmarks/taskbench.py --runners floor`): the same numba C
calls and the same records layout as the l3c runner, run by two forked processes that each loop over
their block of points, timestep after timestep, and wait for each other on a per-timestep flag in
shared memory: what the best hand-written code could do on this machine, with no runtime around it.

Each process (a "chip": block x in [c * width/2, (c + 1) * width/2), Task Bench's block distribution,
the l3c runner's placement) runs, per timestep t:
  1. if a point of its block at t depends on a point of the other block, it waits until the
     other's flag is >= t (the other finished the points of t-1 it exports): a spin on one u32 with
     an acquire load and `pause`, a `sched_yield` every `sync.YIELD_EVERY` reads (as l3c's waits do,
     so that a waiter whose neighbour lost its core gives the core back), bounded by `SPIN_LIMIT`
     reads, and stopping when the other process failed;
  2. runs first the points the other block reads at t+1 (as the l3c runner orders them), then
     stores its flag = t + 1 (a release store, the flag alone in its 64-byte line), then the rest.
All of this is one numba-compiled function per process. Between runs the processes sleep on a futex
(`l3c.runtime.sync.wait_ge`, checking that the parent lives); the parent posts a run with a counter
and a wake, sleeps until both rang a done counter, and checks that each child lives while it waits:
the same process structure and the same run start and end as an l3c run (a parent and two
workers), so that the two METGs differ by what l3c does per task and per timestep.
"""
from __future__ import annotations

import mmap
import os
import time
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from l3c.runtime import sync

SPIN_LIMIT = 1 << 28          # reads before a flag wait gives up (seconds, far beyond any timestep)
LINE = 64
# the control words, one per 64-byte line (u32 index = line * 16)
GO, DONE, DONE_WAITERS, GO_WAITERS, ABORT, COMMAND = (i * 16 for i in range(6))
FLAG0 = 6 * 16                # flag of chip c at FLAG0 + c * 16
STATUS0 = 8 * 16              # a child's failed task (t * width + x + 1), or -1/-2 for a failed wait
ELAPSED0 = 10 * 16            # a child's time in its loop in the last run, ns
WORDS = 12 * 16
CMD_RUN, CMD_EXIT, CMD_ALONE = 1, 2, 3   # CMD_ALONE: chip 0 runs, the other only answers
SLICE_NS = 50_000_000
PARENT_SPIN = 400             # reads (~20 us, as long as an l3c parent spins) before it sleeps


@intrinsic
def _load_acquire(typingctx: Any, address: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        return builder.zext(builder.load_atomic(ptr, "acquire", 4), ir.IntType(64))
    return types.int64(types.int64), codegen


@intrinsic
def _store_release(typingctx: Any, address: Any, value: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        builder.store_atomic(builder.trunc(args[1], ir.IntType(32)), ptr, "release", 4)
        return context.get_dummy_value()
    return types.none(types.int64, types.int64), codegen


@intrinsic
def _pause(typingctx: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(
            ir.VoidType(), []))
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def _f64p(typingctx: Any, address: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], ir.DoubleType().as_pointer())
    return types.CPointer(types.float64)(types.int64), codegen


@intrinsic
def _i64p(typingctx: Any, address: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], ir.IntType(64).as_pointer())
    return types.CPointer(types.int64)(types.int64), codegen


def _block_source(max_inputs: int) -> str:
    """The loop of one process over its block: `tasks[t, i]` = (x, inputs, out address, input
    addresses...) for its points of timestep t in order, the exported ones first. Returns 0, or the
    failed task + 1, or -1 (the other process failed), -2 (a wait passed SPIN_LIMIT)."""
    lines = ["def block(tasks, n_order, n_export, waits, run, width, mine, other, abort):",
             "    runp = _i64p(run)",
             "    for t in range(tasks.shape[0]):",
             "        if waits[t]:",
             "            spins = 0",
             "            while _load_acquire(other) < t:",
             "                if _load_acquire(abort) != 0:",
             "                    return -1",
             "                _pause()",
             "                spins += 1",
             f"                if spins & {sync.YIELD_EVERY - 1} == 0:",
             "                    sched_yield()",
             f"                if spins > {SPIN_LIMIT}:",
             "                    return -2",
             "        for i in range(n_order[t]):",
             "            if i == n_export[t]:",
             "                _store_release(mine, t + 1)",
             "            task = tasks[t, i]",
             "            x = task[0]",
             "            n = task[1]",
             "            status = 0"]
    for n in range(max_inputs + 1):
        args = "".join(f", _f64p(task[{3 + j}]), 5" for j in range(n))
        lines += [f"            {'if' if n == 0 else 'elif'} n == {n}:",
                  f"                status = C{n}(t, x, runp, 2, _f64p(task[2]), 5{args})"]
    lines += ["            if status != 0:",
              "                _store_release(abort, 1)",
              "                return t * width + x + 1",
              "        if n_export[t] >= n_order[t]:",
              "            _store_release(mine, t + 1)",
              "    return 0"]
    return "\n".join(lines)


def _shared(nbytes: int) -> np.ndarray:
    """Anonymous shared memory (inherited by fork, gone with the last process mapping it)."""
    return np.frombuffer(mmap.mmap(-1, max(nbytes, mmap.PAGESIZE)), np.uint8)


class Floor:
    """The floor runner (see the module docstring)."""

    name, cores, start_iterations, runs = "floor", 2, 4096, 1

    def prepare(self, graph: Any) -> None:
        import ctypes

        from taskbench import RECORD, c_point
        sync.ensure()
        libc = ctypes.CDLL(None)
        sched_yield = libc.sched_yield
        sched_yield.restype, sched_yield.argtypes = ctypes.c_int, []
        scope = {f"C{n}": c_point(n) for n in range(graph.max_inputs + 1)}
        scope.update(_load_acquire=_load_acquire, _store_release=_store_release, _pause=_pause,
                     _f64p=_f64p, _i64p=_i64p, sched_yield=sched_yield)
        exec(_block_source(graph.max_inputs), scope)        # noqa: S102 - generated above
        loop = njit(scope["block"])

        steps, width = graph.steps, graph.width
        per_chip = -(-width // self.cores)
        owner = [x // per_chip for x in range(width)]
        rows = graph.rows
        self.records = _shared(rows * width * RECORD * 8).view(np.float64)[:rows * width * RECORD]
        self.records = self.records.reshape(rows, width, RECORD)
        self.params = _shared(16).view(np.int64)[:2]
        self.words = _shared(WORDS * 4).view(np.uint32)
        self.base = self.words.ctypes.data
        address = self.records.ctypes.data
        record = RECORD * 8

        def at(t: int, x: int) -> int:
            return address + ((t % rows) * width + x) * record
        tables = []
        for c in range(self.cores):
            tasks = np.zeros((steps, per_chip, 3 + graph.max_inputs), np.int64)
            n_order, n_export = np.zeros(steps, np.int64), np.zeros(steps, np.int64)
            waits = np.zeros(steps, np.int64)
            for t in range(steps):
                mine = [x for x in range(width) if owner[x] == c and graph.deps[t][x] is not None]
                read = {d for x, ds in enumerate(graph.deps[t + 1]) if owner[x] != c
                        for d in ds or ()} if t + 1 < steps else set()
                if graph.depth:       # rows are reused: also first the points reading the other's
                    read |= {x for x in mine if any(owner[d] != c for d in graph.deps[t][x])}
                exported = [x for x in mine if x in read]
                for i, x in enumerate(exported + [x for x in mine if x not in read]):
                    deps = graph.deps[t][x]
                    tasks[t, i, :3 + len(deps)] = [x, len(deps), at(t, x)] + [at(t - 1, d)
                                                                               for d in deps]
                n_order[t], n_export[t] = len(mine), len(exported)
                # with reused rows, also before overwriting what the other read a timestep ago
                read_mine = t > 0 and any(owner[x] != c and owner[d] == c
                                          for x, ds in enumerate(graph.deps[t - 1]) for d in ds or ())
                waits[t] = any(owner[d] != c for x in mine for d in graph.deps[t][x]) or (
                    graph.depth > 0 and read_mine)
            tables.append((tasks, n_order, n_export, waits))
        self.loop, self.tables, self.width = loop, tables, width
        # compile in the parent before forking: the other's flag already past every timestep
        self.words[FLAG0 + 16] = steps + 1
        self._block(0)
        self.words[:] = 0
        self.pids = [self._fork(c) for c in range(self.cores)]
        self.posted = 0

    def _block(self, chip: int) -> int:
        tasks, n_order, n_export, waits = self.tables[chip]
        return self.loop(tasks, n_order, n_export, waits, self.params.ctypes.data, self.width,
                         self.base + 4 * (FLAG0 + 16 * chip),
                         self.base + 4 * (FLAG0 + 16 * (1 - chip)), self.base + 4 * ABORT)

    def _fork(self, chip: int) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        try:                                             # the child: serve runs until told to exit
            seen = 0
            while True:
                while sync.wait_ge(self.base + 4 * GO, seen + 1, self.base + 4 * GO_WAITERS,
                                   self.base + 4 * ABORT + 4, sync.IDLE_SPIN, SLICE_NS) != sync.WAIT_OK:
                    if os.getppid() != parent:
                        os._exit(3)
                seen += 1
                if self.words[COMMAND] == CMD_EXIT:
                    os._exit(0)
                t0 = time.perf_counter_ns()
                if chip == 0 or self.words[COMMAND] == CMD_RUN:
                    self.words[STATUS0 + 16 * chip] = self._block(chip) & 0xFFFFFFFF
                self.words[ELAPSED0 + 16 * chip] = min(time.perf_counter_ns() - t0, 2**32 - 1)
                sync.ring(self.base + 4 * DONE, self.base + 4 * DONE_WAITERS)
        finally:
            os._exit(4)

    def _post(self, command: int) -> None:
        self.words[COMMAND] = command
        self.posted += 1
        sync.publish(self.base + 4 * GO, self.posted, self.base + 4 * GO_WAITERS)

    def run(self, iterations: int, epoch: int, command: int = CMD_RUN) -> np.ndarray:
        self.params[:] = iterations, epoch
        self.words[FLAG0] = self.words[FLAG0 + 16] = 0
        self.words[ABORT] = 0
        self.words[STATUS0:STATUS0 + 16 * self.cores:16] = 0
        self._post(command)
        target = self.cores * self.posted
        deadline = time.monotonic() + 600
        while sync.wait_ge(self.base + 4 * DONE, target, self.base + 4 * DONE_WAITERS,
                           self.base + 4 * ABORT + 4, PARENT_SPIN, SLICE_NS) != sync.WAIT_OK:
            dead = [pid for pid in self.pids if os.waitpid(pid, os.WNOHANG)[0]]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"floor: child {dead} died" if dead else "floor: run timed out")
        statuses = [int(self.words[STATUS0 + 16 * c]) for c in range(self.cores)]
        if any(statuses):
            raise AssertionError(f"floor: a child failed (task + 1 or wait code): {statuses}")
        return self.records

    def close(self) -> None:
        if getattr(self, "pids", None):
            self._post(CMD_EXIT)
            for pid in self.pids:
                os.waitpid(pid, 0)
            self.pids = []


class HostCheck:
    """How the host runs two processes at once against one: the floor's two loops on `no_comm`
    (no waits at all: two independent numba loops over 16 points a timestep each) timed inside the
    children, against the first child's loop run alone (the other child idle; the same process, so
    its records stay in its core's cache), at the same kernel iterations, on a graph of the
    measured one's width, steps and depth (so the same working set).
    The ratio of the slower child's time to the loop's time alone is 1.0 when each process has a
    core of its own, more when the host shares the physical cores (SMT siblings, other tenants):
    a two-chip runner's time per task is bounded below by that ratio x the one-chip time."""

    def __init__(self, width: int = 32, steps: int = 100, depth: int = 0) -> None:
        from taskbench import Graph
        self.floor = Floor()
        self.floor.prepare(Graph.make("no_comm", width, steps, depth=depth))
        self.epoch = 0

    def times(self, iterations: int) -> tuple[float, float, float]:
        """(seconds of the loop alone, seconds of the slower of the pair, the pair's rate per core
        in kernel iterations per second) at `iterations`."""
        floor = self.floor
        tasks = sum(int(n) for n in floor.tables[0][1])
        self.epoch += 1
        floor.run(iterations, self.epoch, CMD_ALONE)
        alone = int(floor.words[ELAPSED0]) * 1e-9
        self.epoch += 1
        floor.run(iterations, self.epoch)
        pair = max(int(floor.words[ELAPSED0 + 16 * c]) for c in range(floor.cores)) * 1e-9
        return alone, pair, tasks * iterations / pair

    def close(self) -> None:
        self.floor.close()
