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

from . import context, layout, serve, sharedmem, steploop, sync
from .arena import array_in
from .plan import View
from .install_steps import Resolver, control_error
from .steploop import StepTable
from .. import registry
from ..registry import NativeStatusError, resolve, status_message

SLICE_NS = 100_000_000          # futex sleep slice: how quickly an idle worker notices its parent died
SERVED_PLANS = 64               # installed plans the native server runs without Python
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


_OWN_FILES = (__file__, steploop.__file__, serve.__file__, registry.__file__)  # registry: eager


class Worker:
    """State of one worker process (lives only in the child)."""

    def __init__(self, slot: int, slots: int, chip: int, ctl_address: int, words: memoryview,
                 arena_u8, pipe_fd: int, parent: int, seq: int) -> None:
        self.slot, self.slots, self.chip = slot, slots, chip
        self.ctl, self.words, self.arena = ctl_address, words, arena_u8
        self.pipe_fd, self.parent = pipe_fd, parent
        base = layout.slot_offset(slot)
        self.base = base
        self.state_idx = (base + layout.S_STATE) // 4
        self.done_addr = ctl_address + base + layout.S_DONE
        self.done_waiters_addr = ctl_address + base + layout.S_DONE_WAITERS
        self.abort_addr = ctl_address + layout.H_ABORT
        self.doorbell = ctl_address + layout.H_DOORBELL
        self._never = ctypes.c_uint32(0)       # an abort word that stays 0 (waits for commands)
        self.never_addr = ctypes.addressof(self._never)
        # waits for commands and runs installed plans in native code (`serve.py`); it keeps the
        # command sequence number
        self.server = serve.Server(ctl_address + base, self.never_addr, self.abort_addr,
                                   self.doorbell, self.done_addr, self.done_waiters_addr,
                                   context.TASK_ADDRESS, seq)
        self.plans: dict[int, tuple[StepTable, list, tuple]] = {}   # plan id -> (table, steps, loops)
        self.prepared: dict[int, list[tuple]] = {}    # plan id -> the entries its table was built from
        self.kernels: dict[str, object] = {}
        # shared memory key -> [mapping, its bytes, ids of the bound variants with views into it]
        self.maps: dict[int, list] = {}

    @property
    def seq(self) -> int:
        return self.server.seq.value

    @seq.setter
    def seq(self, value: int) -> None:
        self.server.seq.value = value

    # --- waiting ------------------------------------------------------------------------------------
    def serve_natively(self) -> tuple[int, int] | None:
        """Wait for commands and run plans in native code (`serve.py`) until a command needs
        Python: (command, argument), or None when there is nothing to act on."""
        server = self.server
        try:
            got = server.serve(sync.IDLE_SPIN, sync.RUN_SPIN, SLICE_NS)
        except BaseException as exc:  # noqa: BLE001 - a Python kernel raised in a run
            self.fail(self.plans[server.out[2]][1][server.out[0]].task, kernel_traceback(exc))
            return None
        if got == serve.SERVE_COMMAND:
            return server.out[1], server.out[2]
        if os.getppid() != self.parent:       # a futex slice elapsed: is the parent alive?
            os._exit(3)
        if got == serve.SERVE_RUN:
            plan_id, k = server.out[2], server.out[0]
            table, steps, loops = self.plans[plan_id]
            status = server.out[1]
            if status == steploop.STEPS_STATUS:
                error = NativeStatusError(status_message(table.names[k], server.out[3]))
                self.fail(steps[k].task, kernel_traceback(error))
            elif status in (steploop.STEPS_CHECK, steploop.STEPS_ZERO_STEP,
                            steploop.STEPS_COUNT_LIMIT):
                self.fail(*control_error(steps[k], status, table, k, loops))
            else:                             # STEPS_AGAIN: go on with the run from step k
                self.run_plan(plan_id, first=k)
        return None

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
        self.prepared[plan_id] = prepared
        self.plans_changed()
        self.finish(layout.ST_FINISHED)

    def plans_changed(self) -> None:
        """Give the native server the installed plans (the most recent ones, if there are many:
        the others run through Python)."""
        recent = list(self.plans.items())[-SERVED_PLANS:]
        self.server.set_plans({plan_id: table for plan_id, (table, *_) in recent})

    def bind(self) -> None:
        """Install a bound variant of an installed plan: map the shared memories not mapped yet,
        and build a step table whose patched arguments are views into them (`runtime.bindings`)."""
        vid, plan_id, parent, maps, patches = read_message(self.pipe_fd, self.parent)
        try:
            for key, fd, nbytes in maps:
                if key not in self.maps:
                    self.maps[key] = [*sharedmem.map_in_worker(parent, fd, nbytes), set()]
            table, steps, loops = self.plans[plan_id]
            if patches:
                prepared = list(self.prepared[plan_id])
                for k, j, key, view in patches:
                    entry = list(prepared[k])
                    args = list(entry[1])
                    args[j] = array_in(self.maps[key][1], view)
                    entry[1] = tuple(args)
                    prepared[k] = tuple(entry)
                table = StepTable(prepared, table.tables.slots, len(loops))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, the worker stays
            self.fail(0xFFFFFFFF, f"cannot bind plan {plan_id} to shared memory: "
                                  f"{type(exc).__name__}: {exc}")
            return
        self.plans[vid] = (table, steps, loops)
        for _, _, key, _ in patches:
            self.maps[key][2].add(vid)
        self.plans_changed()
        self.finish(layout.ST_FINISHED)

    def release(self) -> None:
        """Drop bound variants and shared memories the parent no longer uses (a memory goes with
        the last view of it, so with the variants pointing into it)."""
        vids, keys = read_message(self.pipe_fd, self.parent)
        for key in keys:
            entry = self.maps.pop(key, None)
            if entry is not None:
                vids = [*vids, *entry[2]]
        for vid in vids:
            self.plans.pop(vid, None)
        for entry in self.maps.values():
            entry[2].difference_update(vids)
        self.plans_changed()
        self.finish(layout.ST_FINISHED)

    def run_plan(self, plan_id: int, first: int = 0) -> None:
        """Run the installed queue natively (`steploop.py`) from step `first`; come back to Python
        only to check the parent between futex slices and to report a kernel's exception."""
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
        k, out_k = first, ctypes.c_int64(0)
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
            os.sched_yield()                   # the process waiting for the run, if on this core
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
            if spin == sync.IDLE_SPIN:
                got = self.serve_natively()
                if got is None:
                    continue
                command, arg = got
            else:
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
            elif command == layout.CMD_BIND:
                self.bind()
            elif command == layout.CMD_RELEASE:
                self.release()
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
