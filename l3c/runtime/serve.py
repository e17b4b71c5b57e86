"""A worker's wait for its next command and the runs it is given, in native code, run after run.

Going back to Python between two runs (report the end of the run, go round the command loop, read
the next command, look the plan up, call the step loop) costs about 8 us on each side of a run.
`l3c_serve` does that in native code: it waits for the next command (the usual bounded
spin, then a futex slice, with the GIL released), and as long as the command is "run plan P" for a
plan in its table, it runs P's queue through the step loop (`steploop.l3c_run_steps`, by address),
stores the terminal state, rings the parent's doorbell and waits again. A worker that finished a
run is still spinning when the next run is posted shortly after, so a run costs the step loop and
two cache-line hand-offs. How long it spins adapts: `idle_spin` reads (~15 us) normally, `run_spin`
(~200 us, yielding the core every 64 reads) while commands come less than BUSY_GAP_NS apart. A
worker called back to back keeps spinning from one call to the next instead of paying a futex
wake-up for each, and one that is called now and then spins only briefly after each run.

It returns to Python for everything else:
    SERVE_IDLE      the futex slice elapsed with no command: check the parent, call again
    SERVE_COMMAND   a command Python handles (install, bind, eager task, exit, a profiled run, a
                    plan not in the table); out[1] = command, out[2] = argument. The command's
                    sequence number is taken: Python acts on it as `next_command` would have.
    SERVE_RUN       a run that needs Python to go on: out[2] = plan id, out[0] = step k,
                    out[1] = the step loop's status (STEPS_AGAIN: a wait's futex slice elapsed,
                    check the parent and continue from k; STEPS_STATUS: native kernel k returned
                    out[3]). A Python kernel's exception is left set, so the ctypes call raises it
                    (out[0], out[2] say where).

After a run it stores the state, rings the doorbell and yields the core once (the parent may share
it), then waits again.

    i32 l3c_serve(slot_base, seq*, plans*, n_plans, never, abort, doorbell, done, done_waiters,
                  task_ctx*, idle_spin, run_spin, slice_ns, out*)
    plans: n_plans entries of 5 i64 words: plan id, steps table, step count, waits table, loop header.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

from . import layout, native, steploop, sync

SERVE_IDLE = 0
SERVE_COMMAND = 1
SERVE_RUN = 2
PLAN_WORDS = 5
CLOCK_MONOTONIC = 1
BUSY_GAP_NS = 200_000           # a command came this soon after the one before: spin longer next

_lock = threading.Lock()
_engine: Any = None
_serve = None


def _module_ir() -> str:
    from llvmlite import ir

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    p8, p32, p64 = i8.as_pointer(), i32.as_pointer(), i64.as_pointer()
    mod = ir.Module(name="l3c_serve")
    save_thread = ir.Function(mod, ir.FunctionType(p8, []), "PyEval_SaveThread")
    restore_thread = ir.Function(mod, ir.FunctionType(ir.VoidType(), [p8]), "PyEval_RestoreThread")
    wait_ge = ir.Function(mod, ir.FunctionType(i32, [i64, i32, i64, i64, i32, i64]), "l3c_wait_ge")
    ring = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i64, i64]), "l3c_ring")
    clock = ir.Function(mod, ir.FunctionType(i32, [i32, p64]), "clock_gettime")
    sched_yield = ir.Function(mod, ir.FunctionType(i32, []), "sched_yield")
    run_steps = ir.Function(mod, ir.FunctionType(i32, [p64, i64, i64, p64, i64, i64, i64, p64, p64,
                                                       i32, i64, p64, p64, p64]), "l3c_run_steps")
    names = ("slot_base", "seq", "plans", "n_plans", "never", "abort", "doorbell", "done",
             "done_waiters", "task_ctx", "idle_spin", "run_spin", "slice_ns", "out")
    fn = ir.Function(mod, ir.FunctionType(i32, [i64, p32, p64, i64, i64, i64, i64, i64, i64, p64,
                                                i32, i32, i64, p64]), "l3c_serve")
    for arg, name in zip(fn.args, names):
        arg.name = name
    (slot_base, seq, plans, n_plans, never, abort, doorbell, done, done_waiters, task_ctx,
     idle_spin, run_spin, slice_ns, out) = fn.args

    def word(b: ir.IRBuilder, offset: int) -> ir.Value:
        return b.inttoptr(b.add(slot_base, i64(offset)), p32)

    entry = fn.append_basic_block("entry")
    top = fn.append_basic_block("wait")
    got = fn.append_basic_block("command")
    search = fn.append_basic_block("search")
    compare = fn.append_basic_block("compare")
    found = fn.append_basic_block("run")
    finished = fn.append_basic_block("finished")
    other = fn.append_basic_block("other")
    idle = fn.append_basic_block("idle")
    needs_python = fn.append_basic_block("needs_python")

    b = ir.IRBuilder(entry)
    ts = b.alloca(ir.ArrayType(i64, 2), name="ts")
    spin = b.alloca(i32, name="spin")          # the next wait's spin: see the module docstring
    b.store(idle_spin, spin)
    b.branch(top)

    def now(b: ir.IRBuilder) -> ir.Value:
        tsp = b.bitcast(ts, p64)
        b.call(clock, [i32(CLOCK_MONOTONIC), tsp])
        return b.add(b.mul(b.load(tsp), i64(1_000_000_000)), b.load(b.gep(tsp, [i64(1)])))

    b.position_at_end(top)
    target = b.add(b.load(seq), i32(1))
    saved = b.call(save_thread, [])
    began = now(b)
    r = b.call(wait_ge, [b.add(slot_base, i64(layout.S_COMMAND_SEQ)), target,
                         b.add(slot_base, i64(layout.S_COMMAND_WAITERS)), never, b.load(spin),
                         slice_ns])
    soon = b.icmp_signed("<", b.sub(now(b), began), i64(BUSY_GAP_NS))
    b.store(b.select(soon, run_spin, idle_spin), spin)
    b.call(restore_thread, [saved])
    b.cbranch(b.icmp_unsigned("==", r, i32(sync.WAIT_OK)), got, idle)

    b.position_at_end(got)
    b.store(target, seq)
    command = b.load_atomic(word(b, layout.S_COMMAND), "acquire", 4)
    arg = b.load_atomic(word(b, layout.S_ARG), "acquire", 4)
    b.store(b.zext(command, i64), b.gep(out, [i64(1)]))
    b.store(b.zext(arg, i64), b.gep(out, [i64(2)]))
    b.cbranch(b.icmp_unsigned("==", command, i32(layout.CMD_RUN_PLAN)), search, other)

    b.position_at_end(search)
    j = b.phi(i64, "j")
    j.add_incoming(i64(0), got)
    b.cbranch(b.icmp_signed("<", j, n_plans), compare, other)
    b.position_at_end(compare)
    base = b.mul(j, i64(PLAN_WORDS))
    plan_id = b.load(b.gep(plans, [base]))
    j.add_incoming(b.add(j, i64(1)), compare)
    b.cbranch(b.icmp_unsigned("==", plan_id, b.zext(arg, i64)), found, search)

    b.position_at_end(found)
    steps = b.inttoptr(b.load(b.gep(plans, [b.add(base, i64(1))])), p64)
    n = b.load(b.gep(plans, [b.add(base, i64(2))]))
    waits = b.inttoptr(b.load(b.gep(plans, [b.add(base, i64(3))])), p64)
    hdr = b.inttoptr(b.load(b.gep(plans, [b.add(base, i64(4))])), p64)
    status = b.call(run_steps, [steps, n, i64(0), waits, abort, done, done_waiters, task_ctx,
                                ir.Constant(p64, None), run_spin, slice_ns, out,
                                b.gep(out, [i64(3)]), hdr])
    b.store(b.zext(status, i64), b.gep(out, [i64(1)]))
    ok = b.icmp_unsigned("==", status, i32(steploop.STEPS_DONE))
    stopped = b.icmp_unsigned("==", status, i32(steploop.STEPS_ABORTED))
    b.cbranch(b.or_(ok, stopped), finished, needs_python)

    b.position_at_end(finished)
    state = b.select(ok, i32(layout.ST_FINISHED), i32(layout.ST_ABORTED))
    b.store_atomic(state, word(b, layout.S_STATE), "seq_cst", 4)
    b.call(ring, [doorbell, b.add(doorbell, i64(layout.H_DOORBELL_WAITERS - layout.H_DOORBELL))])
    b.call(sched_yield, [])
    b.branch(top)

    b.position_at_end(other)
    b.ret(i32(SERVE_COMMAND))
    b.position_at_end(idle)
    b.ret(i32(SERVE_IDLE))
    b.position_at_end(needs_python)
    b.ret(i32(SERVE_RUN))
    return str(mod)


def _build() -> None:
    global _engine, _serve
    steploop.ensure()
    addresses = sync.function_addresses()
    symbols = {"PyEval_SaveThread": native.address(ctypes.pythonapi.PyEval_SaveThread),
               "PyEval_RestoreThread": native.address(ctypes.pythonapi.PyEval_RestoreThread),
               "l3c_wait_ge": addresses["wait_ge"], "l3c_ring": addresses["ring"],
               "l3c_run_steps": steploop._compiled.get_function_address("l3c_run_steps"),
               **native.libc("clock_gettime", "sched_yield")}
    engine = native.compile_module(_module_ir(), symbols)
    u64, i64, p = ctypes.c_uint64, ctypes.c_int64, ctypes.c_void_p
    # PYFUNCTYPE: entered and left holding the GIL (the step loop calls Python kernels); a
    # kernel's exception left set is raised by the call.
    _serve = ctypes.PYFUNCTYPE(ctypes.c_int32, u64, p, p, i64, u64, u64, u64, u64, u64, p,
                               ctypes.c_int32, ctypes.c_int32, i64, p)(
        engine.get_function_address("l3c_serve"))
    _engine = engine


def ensure() -> None:
    """Compile once per process (the pool calls this before it forks its workers)."""
    if _engine is None:
        with _lock:
            if _engine is None:
                _build()


class Server:
    """A worker's side of `l3c_serve`: the table of its installed plans and the call."""

    def __init__(self, slot_base: int, never: int, abort: int, doorbell: int, done: int,
                 done_waiters: int, task_ctx: int, seq: int) -> None:
        ensure()
        self.args = (slot_base, never, abort, doorbell, done, done_waiters)
        self.task_ctx = task_ctx
        self.seq = ctypes.c_uint32(seq)
        self.out = (ctypes.c_int64 * 4)()
        self.plans = (ctypes.c_int64 * PLAN_WORDS)()
        self.n_plans = 0
        self.keep: list[Any] = []

    def set_plans(self, tables: dict[int, Any]) -> None:
        """The plans `l3c_serve` runs by itself: {plan id: `steploop.StepTable`}."""
        self.keep = list(tables.values())
        words = (ctypes.c_int64 * max(1, PLAN_WORDS * len(tables)))()
        for i, (plan_id, table) in enumerate(tables.items()):
            words[PLAN_WORDS * i:PLAN_WORDS * (i + 1)] = [
                plan_id, ctypes.addressof(table.steps), table.n, ctypes.addressof(table.waits),
                ctypes.addressof(table.tables.hdr)]
        self.plans, self.n_plans = words, len(tables)

    def serve(self, idle_spin: int, run_spin: int, slice_ns: int) -> int:
        """Wait for commands and run plans until something needs Python (`SERVE_*`); raises what
        a Python kernel raised."""
        slot_base, never, abort, doorbell, done, done_waiters = self.args
        return _serve(slot_base, ctypes.byref(self.seq), self.plans, self.n_plans, never, abort,
                      doorbell, done, done_waiters, self.task_ctx, idle_spin, run_spin, slice_ns,
                      self.out)
