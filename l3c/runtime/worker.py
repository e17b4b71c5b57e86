"""The loop a worker process runs: sleep on its mailbox, act on a command, report, repeat.

A worker never returns into the parent's code: `main` ends with `os._exit`. Mailbox protocol and the
state machine are in `layout.py` and `docs/runtime.md`. Install messages and eager tasks (pickled plain
data) arrive on the worker's own pipe; everything else goes through the control block.

Why each wait is bounded: a wait spins briefly, then sleeps on a futex for at most `SLICE_NS`; after
each slice the worker checks that its parent still lives (it also has PR_SET_PDEATHSIG) and, inside a
run, that the run was not aborted (H_ABORT).
"""
from __future__ import annotations

import ctypes
import faulthandler
import os
import pickle
import signal
import struct
import sys
import traceback
from typing import Callable, NoReturn

from . import context, layout, steploop, sync
from .arena import array_in
from .plan import View
from .install_steps import Resolver, control_error
from .steploop import StepTable
from .. import registry
from ..registry import resolve

SLICE_NS = 100_000_000          # futex sleep slice: how quickly an idle worker notices its parent died
PR_SET_PDEATHSIG = 1
TERMINAL = (layout.ST_FINISHED, layout.ST_FAILED, layout.ST_ABORTED)


def read_message(fd: int, parent: int) -> object:
    """Read one length-prefixed pickle from the pipe. A small message is in the pipe before the
    command is posted; a large one arrives while we read. A blocking read is still bounded, because the
    pipe reaches EOF when the parent dies (and a worker stuck here while its parent lives is BUSY, so
    the parent's recovery replaces it)."""
    def read_exact(n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = os.read(fd, n - got)
            if not chunk:
                os._exit(3)                      # the parent closed our pipe: it is gone
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    (length,) = struct.unpack("<Q", read_exact(8))
    return pickle.loads(read_exact(length))


def kernel_traceback(exc: BaseException) -> str:
    """The traceback of a kernel's exception from the kernel's own frame down: the worker's frames
    above it say nothing to the user."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _OWN_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


_OWN_FILES = (__file__, steploop.__file__, registry.__file__)   # registry: native eager calls


class Worker:
    """State of one worker process (lives only in the child)."""

    def __init__(self, slot: int, slots: int, chip: int, ctl_address: int, words: memoryview,
                 arena_u8, pipe_fd: int, parent: int, seq: int) -> None:
        self.slot, self.slots, self.chip = slot, slots, chip
        self.ctl, self.words, self.arena = ctl_address, words, arena_u8
        self.pipe_fd, self.parent, self.seq = pipe_fd, parent, seq
        base = layout.slot_offset(slot)
        self.base = base
        self.state_idx = (base + layout.S_STATE) // 4
        self.done_addr = ctl_address + base + layout.S_DONE
        self.done_waiters_addr = ctl_address + base + layout.S_DONE_WAITERS
        self.abort_addr = ctl_address + layout.H_ABORT
        self.doorbell = ctl_address + layout.H_DOORBELL
        self._never = ctypes.c_uint32(0)       # an abort word that stays 0 (waits for commands)
        self.never_addr = ctypes.addressof(self._never)
        self.plans: dict[int, tuple[StepTable, list, tuple]] = {}   # plan id -> (table, steps, loops)
        self.kernels: dict[str, object] = {}

    # --- waiting ------------------------------------------------------------------------------------
    def next_command(self, spin: int) -> tuple[int, int]:
        """Wait for the parent's next command (waits inside a run are the step loop's): spin up to
        `spin` reads, then futex slices, checking after each that the parent still lives."""
        base = self.ctl + self.base
        while sync.wait_ge(base + layout.S_COMMAND_SEQ, self.seq + 1, base + layout.S_COMMAND_WAITERS,
                           self.never_addr, spin, SLICE_NS) != sync.WAIT_OK:
            if os.getppid() != self.parent:
                os._exit(3)
        self.seq += 1
        return self.words[(self.base + layout.S_COMMAND) // 4], self.words[(self.base + layout.S_ARG) // 4]

    # --- reporting ----------------------------------------------------------------------------------
    def finish(self, state: int) -> None:
        self.words[self.state_idx] = state
        sync.ring(self.ctl + layout.H_DOORBELL, self.ctl + layout.H_DOORBELL_WAITERS)

    def fail(self, task: int, text: str) -> None:
        """Publish a failure: error text, abort the run, wake every waiter, then the FAILED state.

        H_ABORT is stored *before* FAILED: the parent recovers (and finally clears H_ABORT) as soon
        as it sees FAILED, so a worker preempted between the two stores must not set H_ABORT after
        that; a stale H_ABORT would make every worker of the next run stop as ABORTED, and the run
        end in a Timeout with no hung worker (found by the long stress run)."""
        data = text.encode("utf-8", "replace")[: layout.ERROR_BYTES]
        start = layout.error_offset(self.slots, self.slot)
        ctypes.memmove(self.ctl + start, data, len(data))
        self.words[(self.base + layout.S_ERROR_LEN) // 4] = len(data)
        self.words[(self.base + layout.S_FAILED_TASK) // 4] = task & 0xFFFFFFFF
        sync.store_u32(self.abort_addr, 1)
        for s in range(self.slots):
            sync.futex_wake(self.ctl + layout.slot_offset(s) + layout.S_DONE, sync.WAKE_ALL)
        sync.store_u32(self.ctl + self.state_idx * 4, layout.ST_FAILED)
        sync.ring(self.ctl + layout.H_DOORBELL, self.ctl + layout.H_DOORBELL_WAITERS)

    # --- commands -----------------------------------------------------------------------------------
    def kernel(self, key: str):
        fn = self.kernels.get(key)
        if fn is None:
            fn = self.kernels[key] = resolve(key)
        return fn

    def build_args(self, args: tuple) -> tuple:
        return tuple(array_in(self.arena, a) if isinstance(a, View) else a for a in args)

    def install(self) -> None:
        plan_id, steps, pool_slots, loops = read_message(self.pipe_fd, self.parent)
        resolver = Resolver(self.ctl, self.arena, pool_slots, self.doorbell, self.kernel)
        prepared = []
        for step in steps:
            try:
                prepared.append(resolver.entry(step))
            except LookupError as exc:
                self.fail(step.task, f"L3C-RESOLVE {step.kernel}\ncannot resolve kernel {step.kernel!r} "
                                     f"in worker {self.slot}: {exc}")
                return
            except (TypeError, ValueError) as exc:
                self.fail(step.task, f"cannot install plan {plan_id}: {exc}")
                return
        try:
            table = StepTable(prepared, len(pool_slots), len(loops))
        except TypeError as exc:       # a native kernel's arguments off its convention (a file)
            self.fail(steps[0].task if steps else 0, f"cannot install plan {plan_id}: {exc}")
            return
        self.plans[plan_id] = (table, list(steps), loops)
        self.finish(layout.ST_FINISHED)

    def run_plan(self, plan_id: int) -> None:
        """Run the installed queue natively (`steploop.py`); come back to Python only to check the
        parent between futex slices and to report a kernel's exception."""
        stamps = 0
        if plan_id & layout.RUN_PROFILE:       # `l3c profile`: time every step (see layout.py)
            plan_id &= ~layout.RUN_PROFILE
            stamps = self.ctl + layout.profile_offset(self.slots, self.slot)
        installed = self.plans.get(plan_id)
        if installed is None:
            self.fail(0xFFFFFFFF, f"plan {plan_id} is not installed in worker {self.slot}")
            return
        table, steps, loops = installed
        if table.n > layout.PROFILE_STEPS:     # the parent refuses to profile such plans anyway
            stamps = 0
        k, out_k = 0, ctypes.c_int64(0)
        while True:
            try:
                status = table.run(k, self.abort_addr, self.done_addr, self.done_waiters_addr,
                                   context.TASK_ADDRESS, stamps, sync.RUN_SPIN, SLICE_NS, out_k)
            except BaseException as exc:  # noqa: BLE001 - a kernel failure is reported, never kills the worker
                self.fail(steps[out_k.value].task, kernel_traceback(exc))
                return
            if status in (steploop.STEPS_CHECK, steploop.STEPS_ZERO_STEP,
                          steploop.STEPS_COUNT_LIMIT):
                self.fail(*control_error(steps[out_k.value], status, table, out_k.value, loops))
                return
            if status == steploop.STEPS_AGAIN:  # a futex slice elapsed: is the parent alive?
                if os.getppid() != self.parent:
                    os._exit(3)
                k = out_k.value
                continue
            self.finish(layout.ST_ABORTED if status == steploop.STEPS_ABORTED else layout.ST_FINISHED)
            return

    def run_task(self) -> None:
        task, kernel, args, rank, size = read_message(self.pipe_fd, self.parent)
        try:
            fn = self.kernel(kernel)
            call_args = self.build_args(args)
            context.set_task(self.chip, rank, size)
            fn(*call_args)
        except BaseException as exc:  # noqa: BLE001
            self.fail(task, kernel_traceback(exc))
            return
        self.finish(layout.ST_FINISHED)

    def loop(self) -> None:
        context.set_task(self.chip, 0, 1)      # the native loop sets rank and size per step
        spin = sync.IDLE_SPIN
        while True:
            command, arg = self.next_command(spin)
            # an eager run posts task after task: between them, wait like inside a run
            spin = sync.RUN_SPIN if command == layout.CMD_RUN_TASK else sync.IDLE_SPIN
            if command == layout.CMD_EXIT:
                return
            if command == layout.CMD_INSTALL:
                self.install()
            elif command == layout.CMD_RUN_PLAN:
                self.run_plan(arg)
            elif command == layout.CMD_RUN_TASK:
                self.run_task()
            else:
                self.fail(0xFFFFFFFF, f"unknown command {command}")


def prepare_process(parent: int) -> None:
    """First thing in the fork server and in a worker: die with the user process (`parent`), and own
    signal dispositions (Ctrl-C is the user process's business)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - the getppid checks still bound every wait
        pass
    if os.getppid() != parent:               # the parent died before prctl took effect
        os._exit(3)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A crash reaches the caller as WorkerCrashed with its signal. An inherited faulthandler (pytest
    # and `python -X faulthandler` enable one) would also print a stack whose outer frames are the
    # user process's at the time the fork server was forked: noise that points at the wrong code.
    faulthandler.disable()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGALRM, signal.SIGCHLD):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def limit_native_threads() -> None:
    """Run once in the fork server; every worker inherits the result.

    Each worker stands for one chip: its BLAS/OpenMP calls run on one thread (or
    $L3C_WORKER_THREADS). Left alone, every worker's OpenBLAS starts a thread per core and they spin
    against each other: the bundled demo ran 20-100x slower on 2 cores with 3 workers.

    The server was forked without OpenBLAS's fork handler (`forkserver.fork_clean`), so OpenBLAS
    still believes in helper threads that were not copied: mark its thread server down first, as
    that handler would have. Setting a thread count starts the server again, and the fork server
    must stay single-threaded, so stop it (the function OpenBLAS's fork handler calls). One-thread
    calls never restart it; with L3C_WORKER_THREADS > 1 a worker's first call does."""
    from threadpoolctl import ThreadpoolController
    threads = int(os.environ.get("L3C_WORKER_THREADS", "1"))
    controller = ThreadpoolController()
    openblas = [lib.dynlib for lib in controller.lib_controllers if lib.internal_api == "openblas"]
    for dynlib in openblas:
        try:
            ctypes.c_int.in_dll(dynlib, "blas_server_avail").value = 0
        except ValueError:                     # a build without the symbol
            pass
    controller.limit(limits=threads)
    for dynlib in openblas:
        shutdown = getattr(dynlib, "blas_thread_shutdown_", None)
        if shutdown is not None:
            shutdown()


def main(slot: int, slots: int, chip: int, ctl_address: int, words: memoryview, arena_u8,
         pipe_fd: int, parent: int, seq: int) -> NoReturn:
    """Entry point in a worker forked by the fork server (`forkserver.py`); never returns.
    Reports ready by storing its pid in S_PID and ringing the doorbell: the pool waits for that."""
    def live() -> None:
        prepare_process(parent)
        base = layout.slot_offset(slot)
        sync.store_u32(ctl_address + base + layout.S_PID, os.getpid())
        sync.ring(ctl_address + layout.H_DOORBELL, ctl_address + layout.H_DOORBELL_WAITERS)
        Worker(slot, slots, chip, ctl_address, words, arena_u8, pipe_fd, parent, seq).loop()

    live_then_exit(live)


def live_then_exit(life: Callable[[], None]) -> NoReturn:
    """Run a forked process's whole `life`, then leave with `os._exit`: never return into the
    stack it was forked from. Status 0, or 70 after printing the traceback of what ended it."""
    code = 0
    try:
        life()
    except BaseException:  # noqa: BLE001
        code = 70
        try:
            traceback.print_exc()
        except Exception:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)
