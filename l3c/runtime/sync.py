"""Native atomics and futex waits for shared-memory words, built once per process with llvmlite.

Why native: Python has no atomic read-modify-write on shared memory, and the futex is the only way
for a process to sleep on a word of a MAP_SHARED mapping and be woken by another process. The module
is tiny (a handful of functions), JIT-compiled on first use and called through ctypes (which releases
the GIL). Forked children inherit the compiled code at the same addresses.

Futexes are *shared* (not FUTEX_PRIVATE), because the words live in memory shared across processes.
Lost-wakeup rule (docs/runtime.md): a waiter reads the word once, decides, and passes that same value to
FUTEX_WAIT; the kernel re-checks it atomically. Every wait has a timeout, so every wait is bounded.

Functions (addresses are plain ints):
    load_u32(addr) -> int                     seq_cst atomic load
    store_u32(addr, value)                    seq_cst atomic store
    add_u32(addr, delta) -> int               seq_cst fetch-add, returns the old value
    futex_wake(addr, n) -> int                wake up to n sleepers on addr
    futex_wait(addr, expected, timeout_ns)    sleep while *addr == expected, at most timeout_ns
    publish(word, value, waiters)             store value; wake all sleepers if *waiters != 0
    ring(word, waiters)                       fetch-add 1; wake all sleepers if *waiters != 0
    wait_ge(word, target, waiters, abort, spin_iters, timeout_ns) -> WAIT_*
        spin up to spin_iters reads for *word >= target, then register in *waiters and futex-sleep
        once (at most timeout_ns). Returns WAIT_OK, WAIT_ABORT (*abort != 0) or WAIT_AGAIN (the
        slice elapsed or a wake-up came for a smaller value: the caller checks liveness and calls again).
"""
from __future__ import annotations

import ctypes
import threading

from . import native
from .native import FUTEX_WAIT, FUTEX_WAKE, SYS_FUTEX, SYS_SCHED_YIELD

WAIT_OK = 0
WAIT_ABORT = 1
WAIT_AGAIN = 2

YIELD_EVERY = 64         # spin reads between sched_yield calls (a power of two)
WAKE_ALL = 0x7FFFFFFF

# Spin reads (each a load, an abort check and a `pause`; a sched_yield every YIELD_EVERY) before
# sleeping. Inside a run a waiter spins about 200 us: longer than a futex wake-up (docs/runtime.md),
# so two workers that hand work back and forth (group tasks) do not fall into a cycle of sleeping
# on each other; the yields keep that spin cheap when workers outnumber cores. An idle
# worker waiting for its next command spins only ~15 us.
RUN_SPIN = 4000
IDLE_SPIN = 500

_lock = threading.Lock()
_engine = None
load_u32 = store_u32 = add_u32 = futex_wake = futex_wait = publish = ring = wait_ge = None  # set by _build


def _module_ir() -> str:
    from llvmlite import ir

    i32, i64, void = ir.IntType(32), ir.IntType(64), ir.VoidType()
    mod = ir.Module(name="l3c_sync")
    syscall = ir.Function(mod, ir.FunctionType(i64, [i64], var_arg=True), name="syscall")
    pause = ir.Function(mod, ir.FunctionType(void, []), name="llvm.x86.sse2.pause")

    def ptr(b, addr):
        return b.inttoptr(addr, i32.as_pointer())

    def atomic_load(b, addr):
        v = b.load_atomic(ptr(b, addr), "seq_cst", 4)
        return v

    def define(name, ret, params):
        fn = ir.Function(mod, ir.FunctionType(ret, params), name=name)
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    fn, b = define("load_u32", i32, [i64])
    b.ret(atomic_load(b, fn.args[0]))

    fn, b = define("store_u32", void, [i64, i32])
    b.store_atomic(fn.args[1], ptr(b, fn.args[0]), "seq_cst", 4)
    b.ret_void()

    fn, b = define("add_u32", i32, [i64, i32])
    b.ret(b.atomic_rmw("add", ptr(b, fn.args[0]), fn.args[1], "seq_cst"))

    wake, b = define("futex_wake", i64, [i64, i32])
    zero = i64(0)
    b.ret(b.call(syscall, [i64(SYS_FUTEX), wake.args[0], i64(FUTEX_WAKE), b.zext(wake.args[1], i64),
                           zero, zero, zero]))

    wait, b = define("futex_wait", i64, [i64, i32, i64])
    ts = b.alloca(ir.ArrayType(i64, 2))
    sec = b.udiv(wait.args[2], i64(1_000_000_000))
    nsec = b.urem(wait.args[2], i64(1_000_000_000))
    b.store(sec, b.gep(ts, [i32(0), i32(0)]))
    b.store(nsec, b.gep(ts, [i32(0), i32(1)]))
    b.ret(b.call(syscall, [i64(SYS_FUTEX), wait.args[0], i64(FUTEX_WAIT), b.zext(wait.args[1], i64),
                           b.ptrtoint(ts, i64), zero, zero]))

    fn, b = define("publish", void, [i64, i32, i64])
    word, value, waiters = fn.args
    b.store_atomic(value, ptr(b, word), "seq_cst", 4)
    n = atomic_load(b, waiters)
    with b.if_then(b.icmp_unsigned("!=", n, i32(0))):
        b.call(wake, [word, i32(WAKE_ALL)])
    b.ret_void()

    fn, b = define("ring", void, [i64, i64])
    word, waiters = fn.args
    b.atomic_rmw("add", ptr(b, word), i32(1), "seq_cst")
    n = atomic_load(b, waiters)
    with b.if_then(b.icmp_unsigned("!=", n, i32(0))):
        b.call(wake, [word, i32(WAKE_ALL)])
    b.ret_void()

    fn, b = define("wait_ge", i32, [i64, i32, i64, i64, i32, i64])
    word, target, waiters, abort, spin, timeout = fn.args
    entry = b.block
    loop = fn.append_basic_block("spin")
    check_abort = fn.append_basic_block("check_abort")
    spin_next = fn.append_basic_block("spin_next")
    sleep = fn.append_basic_block("sleep")
    do_wait = fn.append_basic_block("do_wait")
    undo_ok = fn.append_basic_block("undo_ok")
    after = fn.append_basic_block("after")
    ok = fn.append_basic_block("ok")
    aborted = fn.append_basic_block("aborted")
    again = fn.append_basic_block("again")
    b.branch(loop)

    b.position_at_end(loop)
    i = b.phi(i32)
    i.add_incoming(i32(0), entry)
    v = atomic_load(b, word)
    b.cbranch(b.icmp_unsigned(">=", v, target), ok, check_abort)
    b.position_at_end(check_abort)
    b.cbranch(b.icmp_unsigned("!=", atomic_load(b, abort), i32(0)), aborted, spin_next)
    b.position_at_end(spin_next)
    b.call(pause, [])
    # Every YIELD_EVERY reads, offer the core to a runnable process (the producer we wait for, when
    # workers outnumber cores): a spinning waiter then costs its producer almost nothing.
    yield_now = b.icmp_unsigned("==", b.and_(i, i32(YIELD_EVERY - 1)), i32(YIELD_EVERY - 1))
    with b.if_then(yield_now):
        b.call(syscall, [i64(SYS_SCHED_YIELD)])
    i_next = b.add(i, i32(1))
    i.add_incoming(i_next, b.block)
    b.cbranch(b.icmp_unsigned("<", i_next, spin), loop, sleep)

    b.position_at_end(sleep)
    b.atomic_rmw("add", ptr(b, waiters), i32(1), "seq_cst")
    seen = atomic_load(b, word)   # read once; this exact value goes to FUTEX_WAIT
    b.cbranch(b.icmp_unsigned(">=", seen, target), undo_ok, do_wait)
    b.position_at_end(do_wait)
    with b.if_then(b.icmp_unsigned("!=", atomic_load(b, abort), i32(0))):
        b.atomic_rmw("sub", ptr(b, waiters), i32(1), "seq_cst")
        b.ret(i32(WAIT_ABORT))
    b.call(wait, [word, seen, timeout])
    b.atomic_rmw("sub", ptr(b, waiters), i32(1), "seq_cst")
    b.cbranch(b.icmp_unsigned(">=", atomic_load(b, word), target), ok, after)
    b.position_at_end(after)
    b.cbranch(b.icmp_unsigned("!=", atomic_load(b, abort), i32(0)), aborted, again)
    b.position_at_end(undo_ok)
    b.atomic_rmw("sub", ptr(b, waiters), i32(1), "seq_cst")
    b.branch(ok)
    b.position_at_end(ok)
    b.ret(i32(WAIT_OK))
    b.position_at_end(aborted)
    b.ret(i32(WAIT_ABORT))
    b.position_at_end(again)
    b.ret(i32(WAIT_AGAIN))
    return str(mod)


def _build() -> None:
    global _engine, load_u32, store_u32, add_u32, futex_wake, futex_wait, publish, ring, wait_ge
    engine = native.compile_module(_module_ir(), native.libc("syscall"))

    def f(name, restype, *argtypes):
        return ctypes.CFUNCTYPE(restype, *argtypes)(engine.get_function_address(name))

    u32, u64, i64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64
    load_u32 = f("load_u32", u32, u64)
    store_u32 = f("store_u32", None, u64, u32)
    add_u32 = f("add_u32", u32, u64, u32)
    futex_wake = f("futex_wake", i64, u64, u32)
    futex_wait = f("futex_wait", i64, u64, u32, u64)
    publish = f("publish", None, u64, u32, u64)
    ring = f("ring", None, u64, u64)
    wait_ge = f("wait_ge", u32, u64, u32, u64, u64, u32, u64)
    _engine = engine


def ensure() -> None:
    """Build the native functions once per process (the pool calls this before it forks)."""
    if _engine is None:
        with _lock:
            if _engine is None:
                _build()


def function_addresses() -> dict[str, int]:
    """Addresses of the compiled functions (for generated code that wants to call them)."""
    ensure()
    engine = _engine
    return {name: engine.get_function_address(name)
            for name in ("load_u32", "store_u32", "add_u32", "futex_wake", "futex_wait", "publish",
                         "ring", "wait_ge")}
