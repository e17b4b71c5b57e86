"""The native dispatcher: per plan, llvmlite generates two functions that drive the worker pool.

    void l3c_start(i8* ctrl, i32 plan_id, i32* slot_map)
        Resets S_DONE = 0 and S_EXPECTED of every slot that has steps, then posts CMD_RUN_PLAN to
        each: S_STATE = BUSY, S_COMMAND, S_ARG = plan id, then S_COMMAND_SEQ += 1 (seq_cst) and, if the worker sleeps
        (S_COMMAND_WAITERS != 0), FUTEX_WAKE on it. H_RUN += 1.
    i32 l3c_wait(i8* ctrl, i32* pids, i32* slot_map, i64 deadline_ns, i64 slice_ns, i32* out_slot)
        Waits until every slot with steps is FINISHED (RUN_OK), one is FAILED (RUN_FAILED), a worker
        died (RUN_CRASHED), CLOCK_MONOTONIC passed `deadline_ns` (RUN_TIMEOUT; 0 = no deadline) or
        `slice_ns` elapsed (RUN_PENDING: Python calls again, so Ctrl-C is noticed between slices).
        `*out_slot` receives the pool slot involved.

`slot_map[plan_slot]` is the pool slot running that plan slot (identity when the pool was started
for exactly this plan's chips and sub workers), so the generated code depends on the plan alone:
an AOT file can store its IR text and a loader can regenerate and compare it.

Waiting (docs/dispatcher.md): spin ~20 us on the states (cheap when workers finish quickly), then
FUTEX_WAIT on H_DOORBELL with the value read *before* the states were checked (a worker that
finishes after that read has changed the word, so the futex returns at once: no lost wake-up), with
a timeout of at most FUTEX_SLICE_NS so dead workers (waitid WNOHANG|WNOWAIT, never reaping: the pool
does) and the deadline are checked a few times every millisecond of idle.

Everything plan-specific is baked into the module as constants: the active slots and their expected
step counts. Layout constants come from `l3c.runtime.layout` only.
"""
from __future__ import annotations

import ctypes
import functools
import threading
import weakref
from dataclasses import dataclass, field

import llvmlite.ir as ir

from ..runtime import layout as L
from ..runtime import native
from ..runtime.native import FUTEX_WAIT, FUTEX_WAKE, SYS_FUTEX, SYS_SCHED_YIELD
from ..runtime.plan import Plan

SPIN_NS = 20_000
FUTEX_SLICE_NS = 2_000_000
CLOCK_MONOTONIC = 1
P_PID = 1
WEXITED = 4
WNOHANG = 1
WNOWAIT = 0x01000000
SIGINFO_BYTES = 128
SIGINFO_PID = 16           # offsetof(siginfo_t, si_pid) on x86-64 Linux
INT_MAX = 2**31 - 1

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
P8, P32 = I8.as_pointer(), I32.as_pointer()

START_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p)
WAIT_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)


def _c32(v: int) -> ir.Constant:
    return ir.Constant(I32, v)


def _c64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


class _Gen:
    """Helpers shared by the two functions: libc declarations and control-block addressing."""

    def __init__(self, module: ir.Module) -> None:
        self.module = module
        self.syscall = ir.Function(module, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
        self.clock_gettime = ir.Function(module, ir.FunctionType(I32, [I32, I64.as_pointer()]),
                                         "clock_gettime")
        self.waitid = ir.Function(module, ir.FunctionType(I32, [I32, I32, P8, I32]), "waitid")
        self.pause = ir.Function(module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")

    @staticmethod
    def word(b: ir.IRBuilder, base: ir.Value, offset: ir.Value | int) -> ir.Value:
        """i32* to the u32 at byte `offset` from `base` (an i8*)."""
        off = _c64(offset) if isinstance(offset, int) else offset
        return b.bitcast(b.gep(base, [off], inbounds=True), P32)

    @staticmethod
    def slot_base(b: ir.IRBuilder, ctrl: ir.Value, slot_map: ir.Value, plan_slot: ir.Value
                  ) -> tuple[ir.Value, ir.Value]:
        """(pool slot, i8* to that slot's mailbox) for a plan slot."""
        pool_slot = b.load(b.gep(slot_map, [plan_slot]))
        off = b.add(_c64(L.SLOT_BASE), b.mul(b.zext(pool_slot, I64), _c64(L.SLOT_BYTES)))
        return pool_slot, b.gep(ctrl, [off], inbounds=True)

    def now(self, b: ir.IRBuilder, ts: ir.Value) -> ir.Value:
        """CLOCK_MONOTONIC in ns; `ts` is an i64[2] stack slot (timespec)."""
        tsp = b.bitcast(ts, I64.as_pointer())
        b.call(self.clock_gettime, [_c32(CLOCK_MONOTONIC), tsp])
        sec = b.load(tsp)
        nsec = b.load(b.gep(tsp, [_c64(1)]))
        return b.add(b.mul(sec, _c64(1_000_000_000)), nsec)


def _table(module: ir.Module, name: str, values: list[int]) -> ir.GlobalVariable:
    ty = ir.ArrayType(I32, len(values))
    g = ir.GlobalVariable(module, ty, name)
    g.global_constant = True
    g.linkage = "private"
    g.initializer = ir.Constant(ty, [_c32(v) for v in values])
    return g


def _for_each_active(b: ir.IRBuilder, fn: ir.Function, count: int, body) -> None:
    """Emit `for i in 0..count: body(b, i)`; `body` may branch out of the loop itself."""
    head = fn.append_basic_block("loop")
    step = fn.append_basic_block("loop.next")
    done = fn.append_basic_block("loop.end")
    pre = b.block
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I32, "i")
    i.add_incoming(_c32(0), pre)
    body(b, i)
    b.branch(step)
    b.position_at_end(step)
    nxt = b.add(i, _c32(1))
    i.add_incoming(nxt, step)
    b.cbranch(b.icmp_signed("<", nxt, _c32(count)), head, done)
    b.position_at_end(done)


def generate_ir(plan: Plan) -> str:
    """The LLVM IR text of the dispatcher for `plan` (deterministic: a function of the plan only)."""
    active = plan.active
    expected = plan.expected           # 0 in plans with loops: trip counts decide
    return _generate_ir(active, tuple(expected[s] for s in active))


@functools.lru_cache(maxsize=64)
def _generate_ir(active: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """The dispatcher IR depends on the plan only through its active slots and their step counts
    (building the text with llvmlite's IR builder costs tens of milliseconds, so it is memoised)."""
    module = ir.Module(name="l3c_dispatch")
    module.triple = "x86_64-unknown-linux-gnu"
    g = _Gen(module)
    n = len(active)
    if n:
        active_tab = _table(module, "active_slots", active)
        expected_tab = _table(module, "expected_steps", expected)

    # ---- l3c_start -------------------------------------------------------------------------
    start = ir.Function(module, ir.FunctionType(ir.VoidType(), [P8, I32, P32]), "l3c_start")
    ctrl, plan_id, slot_map = start.args
    ctrl.name, plan_id.name, slot_map.name = "ctrl", "plan_id", "slot_map"
    b = ir.IRBuilder(start.append_basic_block("entry"))
    b.atomic_rmw("add", g.word(b, ctrl, L.H_RUN), _c32(1), "monotonic")
    if n:
        # Every counter is reset before any worker is posted: a worker that starts early must never
        # see the previous run's S_DONE of a slot it waits on.
        def reset(b: ir.IRBuilder, i: ir.Value) -> None:
            plan_slot = b.load(b.gep(active_tab, [_c32(0), i]))
            _, base = g.slot_base(b, ctrl, slot_map, plan_slot)
            want = b.load(b.gep(expected_tab, [_c32(0), i]))
            b.store_atomic(_c32(0), g.word(b, base, L.S_DONE), "monotonic", 4)
            b.store_atomic(want, g.word(b, base, L.S_EXPECTED), "monotonic", 4)
        _for_each_active(b, start, n, reset)

        def post(b: ir.IRBuilder, i: ir.Value) -> None:
            plan_slot = b.load(b.gep(active_tab, [_c32(0), i]))
            _, base = g.slot_base(b, ctrl, slot_map, plan_slot)
            b.store_atomic(_c32(L.ST_BUSY), g.word(b, base, L.S_STATE), "monotonic", 4)
            b.store_atomic(_c32(L.CMD_RUN_PLAN), g.word(b, base, L.S_COMMAND), "monotonic", 4)
            b.store_atomic(plan_id, g.word(b, base, L.S_ARG), "monotonic", 4)
            seq = g.word(b, base, L.S_COMMAND_SEQ)
            b.atomic_rmw("add", seq, _c32(1), "seq_cst")       # orders the stores above
            # the worker registers in S_COMMAND_WAITERS before it sleeps: wake only a sleeper
            sleeping = b.load_atomic(g.word(b, base, L.S_COMMAND_WAITERS), "seq_cst", 4)
            with b.if_then(b.icmp_unsigned("!=", sleeping, _c32(0))):
                b.call(g.syscall, [_c64(SYS_FUTEX), seq, _c64(FUTEX_WAKE), _c64(INT_MAX)])
        _for_each_active(b, start, n, post)
    b.ret_void()

    # ---- l3c_wait --------------------------------------------------------------------------
    wait = ir.Function(module, ir.FunctionType(I32, [P8, P32, P32, I64, I64, P32]), "l3c_wait")
    ctrl, pids, slot_map, deadline, slice_ns, out_slot = wait.args
    for arg, name in zip(wait.args, ("ctrl", "pids", "slot_map", "deadline_ns", "slice_ns",
                                     "out_slot")):
        arg.name = name
    entry = wait.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    if not n:
        b.ret(_c32(L.RUN_OK))
        return str(module)
    ts = b.alloca(ir.ArrayType(I64, 2), name="ts")
    siginfo = b.alloca(ir.ArrayType(I8, SIGINFO_BYTES), name="siginfo")
    bell_slot = b.alloca(I32, name="bell")
    pending = b.alloca(I32, name="pending")      # active slots not yet FINISHED in this scan
    slice_end = b.add(g.now(b, ts), slice_ns, name="slice_end")
    doorbell = g.word(b, ctrl, L.H_DOORBELL)

    round_ = wait.append_basic_block("round")        # one round: spin, then one bounded sleep
    spin = wait.append_basic_block("spin")
    scan_done = wait.append_basic_block("scan.done")
    ok = wait.append_basic_block("all.finished")
    spin_more = wait.append_basic_block("spin.more")
    idle = wait.append_basic_block("idle")
    failed = wait.append_basic_block("failed")
    crashed = wait.append_basic_block("crashed")
    not_ok = wait.append_basic_block("not.finished")
    aborted_all = wait.append_basic_block("aborted")
    aborted = b.alloca(I32, name="aborted")      # active slots that stopped ABORTED in this scan
    b.branch(round_)

    b.position_at_end(round_)
    spin_end = b.add(g.now(b, ts), _c64(SPIN_NS), name="spin_end")
    b.branch(spin)

    # spin: read the doorbell once, then scan the states of every active slot
    b.position_at_end(spin)
    b.store(b.load_atomic(doorbell, "seq_cst", 4), bell_slot)
    b.store(_c32(0), pending)
    b.store(_c32(0), aborted)

    def scan(b: ir.IRBuilder, i: ir.Value) -> None:
        plan_slot = b.load(b.gep(active_tab, [_c32(0), i]))
        pool_slot, base = g.slot_base(b, ctrl, slot_map, plan_slot)
        state = b.load_atomic(g.word(b, base, L.S_STATE), "acquire", 4)
        is_failed = b.icmp_unsigned("==", state, _c32(L.ST_FAILED))
        with b.if_then(is_failed, likely=False):
            b.store(pool_slot, out_slot)
            b.branch(failed)
            b.position_at_end(b.append_basic_block("unreachable"))  # the if_then join is dead
        not_done = b.zext(b.icmp_unsigned("!=", state, _c32(L.ST_FINISHED)), I32)
        b.store(b.add(b.load(pending), not_done), pending)
        is_aborted = b.icmp_unsigned("==", state, _c32(L.ST_ABORTED))
        with b.if_then(is_aborted, likely=False):
            b.store(pool_slot, out_slot)
            b.store(b.add(b.load(aborted), _c32(1)), aborted)

    _for_each_active(b, wait, n, scan)
    b.branch(scan_done)
    b.position_at_end(scan_done)
    b.cbranch(b.icmp_unsigned("==", b.load(pending), _c32(0)), ok, not_ok)
    # every unfinished slot stopped ABORTED (none FAILED): the run cannot complete
    b.position_at_end(not_ok)
    b.cbranch(b.icmp_unsigned("==", b.load(pending), b.load(aborted)), aborted_all, spin_more)
    b.position_at_end(aborted_all)
    b.ret(_c32(L.RUN_ABORTED))

    b.position_at_end(ok)
    b.ret(_c32(L.RUN_OK))
    b.position_at_end(failed)
    b.ret(_c32(L.RUN_FAILED))
    b.position_at_end(crashed)
    b.ret(_c32(L.RUN_CRASHED))

    b.position_at_end(spin_more)
    now = g.now(b, ts)
    keep_spinning = b.icmp_signed("<", now, spin_end)
    pause_bb = wait.append_basic_block("pause")
    b.cbranch(keep_spinning, pause_bb, idle)
    b.position_at_end(pause_bb)
    b.call(g.pause, [])
    # give the core to a worker that shares it (workers may outnumber cores)
    b.call(g.syscall, [_c64(SYS_SCHED_YIELD)])
    b.branch(spin)

    # idle: look for dead workers, the deadline and the slice, then one bounded futex sleep
    b.position_at_end(idle)

    def check_pid(b: ir.IRBuilder, i: ir.Value) -> None:
        plan_slot = b.load(b.gep(active_tab, [_c32(0), i]))
        pool_slot = b.load(b.gep(slot_map, [plan_slot]))
        pid = b.load(b.gep(pids, [pool_slot]))
        with b.if_then(b.icmp_signed(">", pid, _c32(0))):
            info = b.bitcast(siginfo, P8)
            pid_field = g.word(b, info, SIGINFO_PID)
            b.store(_c32(0), pid_field)
            rc = b.call(g.waitid, [_c32(P_PID), pid, info, _c32(WEXITED | WNOHANG | WNOWAIT)])
            exited = b.or_(b.icmp_signed("<", rc, _c32(0)),
                           b.icmp_unsigned("!=", b.load(pid_field), _c32(0)))
            with b.if_then(exited, likely=False):
                b.store(pool_slot, out_slot)
                b.branch(crashed)
                b.position_at_end(b.append_basic_block("unreachable"))

    _for_each_active(b, wait, n, check_pid)
    now = g.now(b, ts)
    has_deadline = b.icmp_signed(">", deadline, _c64(0))
    timed_out = b.and_(has_deadline, b.icmp_signed(">=", now, deadline))
    timeout_bb = wait.append_basic_block("timeout")
    not_timed_out = wait.append_basic_block("check.slice")
    b.cbranch(timed_out, timeout_bb, not_timed_out)
    b.position_at_end(timeout_bb)
    b.store(_c32(-1), out_slot)
    b.ret(_c32(L.RUN_TIMEOUT))

    b.position_at_end(not_timed_out)
    pending_bb = wait.append_basic_block("pending")
    sleep_bb = wait.append_basic_block("sleep")
    b.cbranch(b.icmp_signed(">=", now, slice_end), pending_bb, sleep_bb)
    b.position_at_end(pending_bb)
    b.store(_c32(-1), out_slot)
    b.ret(_c32(L.RUN_PENDING))

    b.position_at_end(sleep_bb)
    nap = b.sub(slice_end, now)
    nap = b.select(b.icmp_signed("<", nap, _c64(FUTEX_SLICE_NS)), nap, _c64(FUTEX_SLICE_NS))
    to_deadline = b.sub(deadline, now)
    nap = b.select(b.and_(has_deadline, b.icmp_signed("<", to_deadline, nap)), to_deadline, nap)
    tsp = b.bitcast(ts, I64.as_pointer())
    b.store(b.sdiv(nap, _c64(1_000_000_000)), tsp)
    b.store(b.srem(nap, _c64(1_000_000_000)), b.gep(tsp, [_c64(1)]))
    # Register as a sleeper (workers ring the doorbell with a wake only when H_DOORBELL_WAITERS is
    # nonzero; seq_cst on both sides means a ring we miss here changes the word before the futex
    # compares it). Variadic call: every integer goes as i64, as syscall() reads longs.
    waiters = g.word(b, ctrl, L.H_DOORBELL_WAITERS)
    b.atomic_rmw("add", waiters, _c32(1), "seq_cst")
    b.call(g.syscall, [_c64(SYS_FUTEX), doorbell, _c64(FUTEX_WAIT), b.zext(b.load(bell_slot), I64),
                       tsp, ir.Constant(P8, None), _c64(0)])
    b.atomic_rmw("sub", waiters, _c32(1), "seq_cst")
    b.branch(round_)
    return str(module)


@dataclass(eq=False)
class Dispatcher:
    """A JIT-compiled dispatcher for one plan. Keep it alive while its functions are in use."""

    ir_text: str = field(repr=False)
    start: START_TYPE
    wait: WAIT_TYPE
    _engine: object            # the MCJIT engine owning the machine code


# Dispatchers alive in this process, by IR text. The IR depends only on which worker slots have
# steps and how many, so signatures of one function that differ in shapes alone get the same text
# and share one engine (each MCJIT engine holds ~1.4 MB). Weak values: an engine is freed with the
# last compiled program that uses it (the jit's bounded cache evicts old ones).
_alive: "weakref.WeakValueDictionary[str, Dispatcher]" = weakref.WeakValueDictionary()
_alive_lock = threading.Lock()


def compile_ir(ir_text: str) -> Dispatcher:
    """JIT-compile dispatcher IR (from `generate_ir`) and return its ctypes entry points (the
    dispatcher already compiled from the same text, while one is alive).

    ctypes calls through CFUNCTYPE release the GIL, so other Python threads run while `wait` blocks.
    """
    with _alive_lock:
        known = _alive.get(ir_text)
        if known is not None:
            return known
        engine = native.compile_module(ir_text, native.libc("syscall", "clock_gettime", "waitid"))
        start = START_TYPE(engine.get_function_address("l3c_start"))
        wait = WAIT_TYPE(engine.get_function_address("l3c_wait"))
        dispatcher = Dispatcher(ir_text=ir_text, start=start, wait=wait, _engine=engine)
        _alive[ir_text] = dispatcher
        return dispatcher


def build(plan: Plan) -> Dispatcher:
    """Generate and compile the dispatcher for `plan`."""
    return compile_ir(generate_ir(plan))
