"""The fork server: workers are forked by a single-threaded process that holds no lock when it forks.

Why: the user's process has other threads (the user's own, OpenBLAS's helpers, a thread building a
native dispatcher with llvmlite). Forking such a process hangs in two known ways: the child inherits
a lock another thread held (llvmlite's global lock, then taken by a garbage collection in the child
that runs an inherited llvmlite finalizer), and OpenBLAS's pre-fork handler joins a helper thread
that another thread's `a @ a` keeps busy, forever, holding the GIL. Python 3.14 made `forkserver`
multiprocessing's default on Linux for the same reason.

Who forks whom:

    user process --fork_clean--> server     once per pool start; again when the workers must see
                                             newer state (kernels registered later, a new host
                                             numbering) or new mappings (growth)
    server --fork_sibling--> worker          first start, replacement, re-fork

`fork_clean` is the one fork of a multithreaded process. It uses glibc's `_Fork`, which runs no
pthread_atfork handler (OpenBLAS's cannot wait), does Python's own fork work around it
(`PyOS_BeforeFork` / `PyOS_AfterFork_*`: the import lock, the GIL, `os.register_at_fork` hooks) in
native code, as os.fork does in C (see `_module_ir`), and holds l3c's and llvmlite's locks across
it, so the server inherits them free. In the server,
OpenBLAS's record of helper threads that did not come along is cleared, native thread pools are
limited once for every worker (`worker.limit_native_threads`), and every inherited object is frozen
out of the cyclic garbage collector (`gc.freeze`), so no inherited finalizer runs there or in a worker.

`fork_sibling` forks with clone(CLONE_PARENT): a worker is the *user process's* child, not the
server's. So the pool reaps it, the native dispatcher's liveness check (waitid WNOWAIT) sees it,
the pool keeps its /proc/<pid>/stat open without a race (nobody else can reap it), and its
PR_SET_PDEATHSIG fires with the user process's forking thread. The server only forks.

Kernels registered before the server was forked are inherited as before (`__main__` ones included,
nothing pickled); for a kernel registered later the pool starts a new server (`Pool._refork`).

Lifetime and ownership: the server is a child of the user process's lasting thread (`lasting`),
with PR_SET_PDEATHSIG(SIGKILL), blocked on its socket (EOF when the pool closes it or the process
dies). `ForkServer.stop` closes the socket and reaps it within a bound, SIGKILL after. It holds the
pool's two anonymous mappings (inherited), which vanish with the last process mapping them.
"""
from __future__ import annotations

import ctypes
import gc
import os
import queue
import select
import signal
import socket
import struct
import sys
import threading
import time
from typing import Callable

from ..errors import L3CError
from . import native, sharedmem, worker

SYS_CLONE = 56                      # x86-64
SYS_GETTID = 186
CLONE_PARENT = 0x00008000
CLONE_CHILD_SETTID = 0x01000000
CLONE_CHILD_CLEARTID = 0x00200000
PTHREAD_TID_OFFSET = 0x2D0          # glibc x86-64 `struct pthread.tid`: checked before use
LOCK_WAIT = 10.0                    # how long fork_clean waits for each lock another thread holds
SERVER_START = 10.0                 # bound on the server's start (fork, thread limits, gc.freeze)
REPLY_WAIT = 5.0                    # bound on one fork request
STOP_GRACE = 1.0                    # how long the server gets to exit on EOF before SIGKILL

_api = ctypes.pythonapi
_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.pthread_self.restype = ctypes.c_void_p
_engine = None
_fork_clean_native = _clone_native = None          # set by ensure()


class ServerLost(L3CError):
    """The fork server died or stopped answering; the pool starts a new one."""


def _module_ir(with_fork: bool) -> str:
    """Two native functions: what os.fork does (PyOS_BeforeFork, fork, PyOS_AfterFork_Child or
    _Parent), around glibc's _Fork or a raw clone.

    Native, not ctypes calls from Python: between the fork and PyOS_AfterFork_Child not one bytecode
    may run in the child. A thread of the parent waiting for the GIL may have asked for it
    (gil_drop_request); the child would honour that at its next bytecode and wait forever for a
    thread that was not copied. PyOS_AfterFork_Child re-creates the GIL and clears the request."""
    from llvmlite import ir

    i32, i64, void = ir.IntType(32), ir.IntType(64), ir.VoidType()
    mod = ir.Module(name="l3c_fork")
    before = ir.Function(mod, ir.FunctionType(void, []), name="PyOS_BeforeFork")
    child = ir.Function(mod, ir.FunctionType(void, []), name="PyOS_AfterFork_Child")
    parent = ir.Function(mod, ir.FunctionType(void, []), name="PyOS_AfterFork_Parent")
    errno_at = ir.Function(mod, ir.FunctionType(i32.as_pointer(), []), name="__errno_location")
    syscall = ir.Function(mod, ir.FunctionType(i64, [i64], var_arg=True), name="syscall")

    def define(name: str, params: list, do_fork: Callable) -> None:
        fn = ir.Function(mod, ir.FunctionType(i64, params), name=name)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        b.call(before, [])
        pid = do_fork(b, fn.args)
        in_child = fn.append_basic_block("child")
        in_parent = fn.append_basic_block("parent")
        failed = fn.append_basic_block("failed")
        forked = fn.append_basic_block("forked")
        b.cbranch(b.icmp_signed("==", pid, i64(0)), in_child, in_parent)
        b.position_at_end(in_child)
        b.call(child, [])
        b.ret(i64(0))
        b.position_at_end(in_parent)
        b.cbranch(b.icmp_signed("<", pid, i64(0)), failed, forked)
        b.position_at_end(failed)
        err = b.load(b.call(errno_at, []))          # before PyOS_AfterFork_Parent may change it
        b.call(parent, [])
        b.ret(b.neg(b.sext(err, i64)))
        b.position_at_end(forked)
        b.call(parent, [])
        b.ret(pid)

    if with_fork:
        fork = ir.Function(mod, ir.FunctionType(i32, []), name="_Fork")
        define("l3c_fork_clean", [], lambda b, args: b.sext(b.call(fork, []), i64))
    define("l3c_clone_sibling", [i64, i64], lambda b, args: b.call(
        syscall, [i64(SYS_CLONE), args[0], i64(0), i64(0), args[1], i64(0)]))
    return str(mod)


def ensure() -> None:
    """Build the fork functions once per process, before the first fork (the server inherits them).
    Without glibc's _Fork (glibc < 2.34) the server is forked with os.fork, with the hazards named
    above."""
    global _engine, _fork_clean_native, _clone_native
    if _engine is not None:
        return
    with_fork = hasattr(_libc, "_Fork")
    symbols = {name: native.address(getattr(_api, name))
               for name in ("PyOS_BeforeFork", "PyOS_AfterFork_Child", "PyOS_AfterFork_Parent")}
    symbols.update(native.libc("syscall", "__errno_location", *(["_Fork"] if with_fork else [])))
    engine = native.compile_module(_module_ir(with_fork), symbols)
    # PYFUNCTYPE: the GIL stays held across the call, as os.fork holds it
    if with_fork:
        _fork_clean_native = ctypes.PYFUNCTYPE(ctypes.c_int64)(
            engine.get_function_address("l3c_fork_clean"))
    _clone_native = ctypes.PYFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)(
        engine.get_function_address("l3c_clone_sibling"))
    _engine = engine


def _checked(pid: int) -> int:
    if pid < 0:
        raise OSError(-pid, os.strerror(-pid))
    return pid


def _held_locks() -> list:
    """Locks a thread of the user process may hold that the server or a worker could take: held by
    the forking thread across the fork, they are free in the child."""
    from .. import registry
    locks = [registry._lock, native._lock]
    llvm = sys.modules.get("llvmlite.binding.ffi")
    if llvm is not None:
        locks.append(llvm.lib._lock._lock)
    return locks


def fork_clean() -> int:
    """Fork this (possibly multithreaded) process for the server; 0 in the child. See module doc."""
    locks, taken = _held_locks(), []
    try:
        for lock in locks:
            if not lock.acquire(timeout=LOCK_WAIT):
                break                      # forked anyway: the child replaces the lock (_renew_locks)
            taken.append(lock)
        pid = _checked(_fork_clean_native()) if _fork_clean_native is not None else os.fork()
    finally:
        for lock in reversed(taken):       # parent and child alike: the forking thread holds them
            lock.release()
    if pid == 0 and len(taken) < len(locks):
        _renew_locks()
    return pid


def _renew_locks() -> None:
    """In the server: fresh l3c and llvmlite locks in place of ones another thread held at the fork."""
    from .. import registry
    registry._lock = threading.Lock()
    native._lock = threading.Lock()
    llvm = sys.modules.get("llvmlite.binding.ffi")
    if llvm is not None:
        llvm.lib._lock._lock = threading.RLock()


def _tid_address() -> int:
    """Where glibc keeps this thread's tid (which a raw clone does not update), if it is where glibc
    x86-64 keeps it; else 0 (the child then keeps the server's tid there, which glibc >= 2.34 uses
    only for other threads)."""
    where = _libc.pthread_self() + PTHREAD_TID_OFFSET
    tid = _libc.syscall(ctypes.c_long(SYS_GETTID))
    return where if ctypes.c_int.from_address(where).value == tid else 0


def fork_sibling() -> int:
    """In the single-threaded server: fork a process whose parent is the server's parent."""
    tid = _tid_address()
    flags = CLONE_PARENT | ((CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID) if tid else 0)
    return _checked(_clone_native(flags, tid))


class _LastingThread:
    """Runs every fork of the server on a thread that lives as long as the process.

    Why: PR_SET_PDEATHSIG fires when the *thread* that forked a process exits, not the process, and a
    worker's is the thread that forked the server (CLONE_PARENT). A pool first used from a
    short-lived thread would otherwise lose the server and every worker when that thread ended. The
    main thread lasts, so it forks directly; any other thread hands the fork to one daemon thread
    started on first need (and again in a forked child, where threads do not survive)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue | None = None
        self._pid = 0

    def call(self, fn: Callable[[], int]) -> int:
        if threading.current_thread() is threading.main_thread():
            return fn()
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._queue, self._pid = queue.SimpleQueue(), os.getpid()
                threading.Thread(target=self._serve, args=(self._queue,), name="l3c-forker",
                                 daemon=True).start()
            requests = self._queue
        done = threading.Event()
        box: list = []
        requests.put((fn, box, done))
        if not done.wait(LOCK_WAIT + SERVER_START):
            raise L3CError("the l3c fork thread did not answer in time")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    @staticmethod
    def _serve(requests: queue.SimpleQueue) -> None:
        while True:
            fn, box, done = requests.get()
            try:
                box.append(fn())
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box.append(exc)
            done.set()


lasting = _LastingThread().call


REQUEST = struct.Struct("<iiiI")           # slot, slots, chip, command sequence
REPLY = struct.Struct("<i")                # pid, or -errno


def _serve(sock: socket.socket, parent: int, ctl_address: int, words: memoryview, arena,
           close_fds: list[int]) -> None:
    """The server's whole life (never returns): fork a worker per request on `sock`."""
    def life() -> None:
        gc.freeze()                                # first: no inherited finalizer may ever run here
        worker.prepare_process(parent)
        sharedmem.drop_inherited()                 # l3c.shared memory: workers map it on purpose
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        worker.limit_native_threads()
        gc.freeze()                                # and what the server made, for its workers
        sock.send(b"R")
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, REQUEST.size, 1)
            except OSError:
                break
            if not data or len(data) != REQUEST.size or len(fds) != 1:
                break                              # EOF: the pool closed us (or the process died)
            slot, slots, chip, seq = REQUEST.unpack(data)
            try:
                pid = fork_sibling()
            except OSError as exc:
                pid = -(exc.errno or 1)
            if pid == 0:
                sock.close()
                worker.main(slot, slots, chip, ctl_address, words, arena, fds[0], parent, seq)
            os.close(fds[0])
            sock.send(REPLY.pack(pid))

    worker.live_then_exit(life)


class ForkServer:
    """The user process's handle on its fork server (one per pool start). Not thread-safe: the pool
    calls it under its lock."""

    def __init__(self) -> None:
        self.pid = 0
        self._sock: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._sock is not None

    def start(self, ctl_address: int, words: memoryview, arena, close_fds: list[int]) -> None:
        """Fork the server from this process (mappings must exist: it inherits them) and wait until
        it is ready. Raises ServerLost if it is not ready within SERVER_START."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent = os.getpid()

        def fork_server() -> int:
            pid = fork_clean()
            if pid == 0:
                ours.close()
                _serve(theirs, parent, ctl_address, words, arena, close_fds)
            return pid

        try:
            self.pid = lasting(fork_server)
        except BaseException as exc:
            ours.close()
            theirs.close()
            if isinstance(exc, OSError):
                raise L3CError(f"cannot fork the l3c fork server: {exc}") from None
            raise
        theirs.close()
        self._sock = ours
        if self._receive(1, SERVER_START) != b"R":
            self.stop()
            raise ServerLost("the l3c fork server did not start")

    def spawn(self, slot: int, slots: int, chip: int, seq: int, pipe_read: int) -> int:
        """Have the server fork the worker of `slot` (reading commands from `pipe_read`, which the
        caller keeps and closes); its pid. Raises ServerLost if the server is gone or silent."""
        if self._sock is None:
            raise ServerLost("the l3c fork server is not running")
        try:
            socket.send_fds(self._sock, [REQUEST.pack(slot, slots, chip, seq)], [pipe_read])
        except OSError as exc:
            raise ServerLost(f"the l3c fork server is gone ({exc})") from None
        reply = self._receive(REPLY.size, REPLY_WAIT)
        if len(reply) != REPLY.size:
            raise ServerLost("the l3c fork server did not answer a fork request")
        (pid,) = REPLY.unpack(reply)
        if pid < 0:
            raise L3CError(f"the l3c fork server could not fork a worker: {os.strerror(-pid)}")
        return pid

    def _receive(self, n: int, within: float) -> bytes:
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            try:
                ready, _, _ = select.select([self._sock], [], [], remaining)
            except InterruptedError:
                continue
            if ready:
                try:
                    return self._sock.recv(n)
                except OSError:
                    return b""

    def stop(self) -> None:
        """Close the socket (the server exits on EOF) and reap the server; SIGKILL after STOP_GRACE.
        Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        pid, self.pid = self.pid, 0
        if not pid:
            return
        deadline = time.monotonic() + STOP_GRACE
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            if time.monotonic() >= deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                return
            time.sleep(0.001)
