"""The worker's run loop in native code: wait, call the kernel, publish, for every step of a plan.

One llvmlite-compiled function walks a table of steps: a Python kernel is called with
`PyObject_Call` under the GIL, a native one through its signature's trampoline (`nativecall.py`)
with the GIL released (docs/runtime.md, "The step loop").

Tables (built once per installed plan by `StepTable`; i64 words):
    step k:  kind, target, args, invoke, wait_begin, wait_end, publish, rank, size, ring,
             patch_begin, patch_end
             STEP_PYTHON: target/args are the addresses of the kernel function and its prebuilt
             argument tuple (kept alive by the table); STEP_NATIVE: target is the C function, args
             its argument block, invoke its trampoline; STEP_CONTROL: target is the row of a loop
             or cond control step (`steploop_tables.py`). waits[wait_begin:wait_end] must hold
             first; patches[patch_begin:patch_end] rebuild loop-dependent arguments before the
             call; publish (PUBLISH_*) is what becomes of S_DONE after the step; ring != 0 is the
             doorbell to ring after a wake (H_DOORBELL; its waiters word follows).
    wait j:  word, waiters, count, base, cap   wait until the u32 at `word` >= min(count + *base,
             *cap) (base and cap point into the anchor rows, or at a zero and a maximal word)

    i32 l3c_run_steps(steps, n, first, waits, abort, done, done_waiters, task_ctx, stamps,
                      spin, slice_ns, out_k, out_status, hdr)
        Runs steps first..n-1: STEPS_DONE; STEPS_ABORTED (H_ABORT seen); STEPS_AGAIN with
        *out_k = k (a wait's futex slice elapsed: the caller checks its parent, calls again from
        k); STEPS_RAISED with *out_k = k (kernel k raised; its exception is left set, so the ctypes
        call raises it); STEPS_STATUS with *out_k = k, *out_status = the status of native kernel
        k; STEPS_CHECK / STEPS_ZERO_STEP from a control step. Before each call it stores the
        step's group rank and size into task_ctx[0..1]. S_DONE (the slot's count of completed
        steps) is published with a wake after a step another slot or the parent waits for and
        after the last; after the other steps, a table with loops stores it (release) and a
        loop-free one leaves it; every other way out stores it, exact. `hdr`: the table's loop
        state (`steploop_tables.HDR_WORDS`). With `stamps` (a profiled run) it records
        CLOCK_MONOTONIC before calls (step 0 and steps with waits; layout.py) and after.

Every wait is `sync.wait_ge`: the same bounded spin-then-futex as everywhere else.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Sequence

from ..registry import NativeFunction, NativeStatusError, status_message
from . import layout, native, sync
from . import steploop_control, steploop_tables as control
from .nativecall import NativeCall

STEPS_DONE, STEPS_ABORTED, STEPS_AGAIN, STEPS_RAISED, STEPS_STATUS = range(5)
STEPS_CHECK = 5          # a moving view would leave its tensor: *out_k = the control step
STEPS_ZERO_STEP = 6      # a range loop's step read as 0: *out_k = the control step
STEPS_COUNT_LIMIT = 7    # the slot's u32 count of completed steps would wrap: *out_k = the step

STEP_PYTHON, STEP_NATIVE, STEP_CONTROL = range(3)

PUBLISH_NONE, PUBLISH_STORE, PUBLISH_WAKE = range(3)    # W_PUBLISH: nothing, a release store, a wake

STEP_WORDS = 12
(W_KIND, W_TARGET, W_ARGS, W_INVOKE, W_WAIT_BEGIN, W_WAIT_END, W_PUBLISH, W_RANK, W_SIZE,
 W_RING, W_PATCH_BEGIN, W_PATCH_END) = range(STEP_WORDS)
WAIT_WORDS = 5
CLOCK_MONOTONIC = 1
DOORBELL_WAITERS = layout.H_DOORBELL_WAITERS - layout.H_DOORBELL

_lock = threading.Lock()
_compiled: Any = None            # the MCJIT engine owning the loop's code
_run_steps = None


def _module_ir() -> str:
    from llvmlite import ir

    i8, i32, i64, void = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.VoidType()
    p8, p64 = i8.as_pointer(), i64.as_pointer()
    mod = ir.Module(name="l3c_steploop")
    call_obj = ir.Function(mod, ir.FunctionType(p8, [p8, p8, p8]), "PyObject_Call")
    decref = ir.Function(mod, ir.FunctionType(void, [p8]), "Py_DecRef")
    pylong = ir.Function(mod, ir.FunctionType(p8, [i64]), "PyLong_FromLongLong")
    save_thread = ir.Function(mod, ir.FunctionType(p8, []), "PyEval_SaveThread")
    restore_thread = ir.Function(mod, ir.FunctionType(void, [p8]), "PyEval_RestoreThread")
    clock = ir.Function(mod, ir.FunctionType(i32, [i32, p64]), "clock_gettime")
    wait_ge = ir.Function(mod, ir.FunctionType(i32, [i64, i32, i64, i64, i32, i64]), "l3c_wait_ge")
    publish = ir.Function(mod, ir.FunctionType(void, [i64, i32, i64]), "l3c_publish")
    ring = ir.Function(mod, ir.FunctionType(void, [i64, i64]), "l3c_ring")
    invoke_type = ir.FunctionType(i32, [i64, p64])        # nativecall's trampolines
    em = steploop_control.Emitter(ir, mod, pylong, decref)

    names = ("steps", "n", "first", "waits", "abort", "done", "done_waiters", "task_ctx", "stamps",
             "spin", "slice_ns", "out_k", "out_status", "hdr")
    fn = ir.Function(mod, ir.FunctionType(i32, [p64, i64, i64, p64, i64, i64, i64, p64, p64, i32,
                                                i64, p64, p64, p64]), "l3c_run_steps")
    for arg, name in zip(fn.args, names):
        arg.name = name
    (steps, n, first, waits, abort, done, done_waiters, task_ctx, stamps, spin, slice_ns,
     out_k, out_status, hdr) = fn.args
    entry = fn.append_basic_block("entry")
    head = fn.append_basic_block("step")
    wait_head = fn.append_basic_block("wait")
    wait_body = fn.append_basic_block("wait.check")
    wait_slow = fn.append_basic_block("wait.slow")
    wait_next = fn.append_basic_block("wait.next")
    call_bb = fn.append_basic_block("call")
    python_bb = fn.append_basic_block("call.python")
    native_bb = fn.append_basic_block("call.native")
    control_bb = fn.append_basic_block("control")
    control_join = fn.append_basic_block("control.join")
    stepped = fn.append_basic_block("stepped")
    finished_ctl = fn.append_basic_block("finished.control")
    finished = fn.append_basic_block("finished")
    aborted = fn.append_basic_block("aborted")
    again = fn.append_basic_block("again")
    raised = fn.append_basic_block("raised")
    failed = fn.append_basic_block("failed")
    check_failed = fn.append_basic_block("check.failed")
    zero_step = fn.append_basic_block("zero.step")

    def hfield(b: ir.IRBuilder, index: int) -> ir.Value:
        return b.load(b.gep(hdr, [i64(index)]))

    b = ir.IRBuilder(entry)
    ts = b.alloca(ir.ArrayType(i64, 2), name="ts")
    released = b.alloca(p8, name="released")      # the thread state while the GIL is released
    b.store(ir.Constant(p8, None), released)
    has_stamps = b.icmp_unsigned("!=", b.ptrtoint(stamps, i64), i64(0))
    has_events = b.and_(has_stamps, b.icmp_signed(">", hfield(b, control.H_LOOPS), i64(0)))
    abort_ptr = b.inttoptr(abort, i32.as_pointer())
    done_ptr = b.inttoptr(done, i32.as_pointer())
    count_ptr = b.gep(hdr, [i64(control.H_COUNT)])
    slots = hfield(b, control.H_SLOTS)
    cur = b.gep(b.inttoptr(hfield(b, control.H_ANCHORS), p64), [slots])    # the CUR row
    ctl_table = b.inttoptr(hfield(b, control.H_CONTROLS), p64)
    patches = b.inttoptr(hfield(b, control.H_PATCHES), p64)
    terms = b.inttoptr(hfield(b, control.H_TERMS), p64)
    check_table = b.inttoptr(hfield(b, control.H_CHECKS), p64)
    # A run starts from count 0 and CUR all zeros; a resumed one (after a futex slice) where it was.
    starting = b.icmp_signed("==", first, i64(0))
    with b.if_then(starting):
        b.store(i64(0), count_ptr)
        with b.if_then(b.icmp_signed(">", hfield(b, control.H_LOOPS), i64(0))):
            b.call(em.copy_row, [cur, b.inttoptr(hfield(b, control.H_ANCHORS), p64), slots])
    count0 = b.load(count_ptr)
    entry_end = b.block
    b.cbranch(b.icmp_signed("<", first, n), head, finished)

    def field(b: ir.IRBuilder, table: ir.Value, index: ir.Value, width: int, offset: int) -> ir.Value:
        return b.load(b.gep(table, [b.add(b.mul(index, i64(width)), i64(offset))]))

    def now(b: ir.IRBuilder) -> ir.Value:
        tsp = b.bitcast(ts, p64)
        b.call(clock, [i32(CLOCK_MONOTONIC), tsp])
        return b.add(b.mul(b.load(tsp), i64(1_000_000_000)), b.load(b.gep(tsp, [i64(1)])))

    def take_gil(b: ir.IRBuilder) -> None:
        state = b.load(released)
        with b.if_then(b.icmp_unsigned("!=", b.ptrtoint(state, i64), i64(0))):
            b.call(restore_thread, [state])
            b.store(ir.Constant(p8, None), released)

    def release_gil(b: ir.IRBuilder) -> None:
        with b.if_then(b.icmp_unsigned("==", b.ptrtoint(b.load(released), i64), i64(0))):
            b.store(b.call(save_thread, []), released)

    # ---- step k: its waits -----------------------------------------------------------------
    b.position_at_end(head)
    k = b.phi(i64, "k")
    count = b.phi(i64, "count")                  # this slot's counted steps so far (its S_DONE)
    k.add_incoming(first, entry_end)
    count.add_incoming(count0, entry_end)
    w_begin = field(b, steps, k, STEP_WORDS, W_WAIT_BEGIN)
    w_end = field(b, steps, k, STEP_WORDS, W_WAIT_END)
    b.branch(wait_head)

    b.position_at_end(wait_head)
    j = b.phi(i64, "j")
    j.add_incoming(w_begin, head)
    b.cbranch(b.icmp_signed("<", j, w_end), wait_body, call_bb)

    b.position_at_end(wait_body)
    word = field(b, waits, j, WAIT_WORDS, 0)
    # count + the anchor's entry for the slot, capped by another anchor's (docs/runtime.md); a
    # loop-free table's anchors are a row of zeros and a cap that never binds
    target = b.add(field(b, waits, j, WAIT_WORDS, 2),
                   b.load(b.inttoptr(field(b, waits, j, WAIT_WORDS, 3), p64)))
    cap = b.load(b.inttoptr(field(b, waits, j, WAIT_WORDS, 4), p64))
    target = b.trunc(b.select(b.icmp_signed("<", cap, target), cap, target), i32)
    seen = b.load_atomic(b.inttoptr(word, i32.as_pointer()), "acquire", 4)
    b.cbranch(b.icmp_unsigned(">=", seen, target), wait_next, wait_slow)

    b.position_at_end(wait_slow)
    waiters = field(b, waits, j, WAIT_WORDS, 1)
    r = b.call(wait_ge, [word, target, waiters, abort, spin, slice_ns])
    is_ok = b.icmp_unsigned("==", r, i32(sync.WAIT_OK))
    not_ok = fn.append_basic_block("wait.not_ok")
    b.cbranch(is_ok, wait_next, not_ok)
    b.position_at_end(not_ok)
    b.store(k, out_k)
    b.store(count, count_ptr)
    b.cbranch(b.icmp_unsigned("==", r, i32(sync.WAIT_ABORT)), aborted, again)

    b.position_at_end(wait_next)
    j.add_incoming(b.add(j, i64(1)), wait_next)
    b.branch(wait_head)

    # ---- step k: the call ------------------------------------------------------------------
    b.position_at_end(call_bb)
    stop = b.load_atomic(abort_ptr, "monotonic", 4)
    go = fn.append_basic_block("go")
    b.cbranch(b.icmp_unsigned("!=", stop, i32(0)), aborted, go)
    b.position_at_end(go)
    b.store(field(b, steps, k, STEP_WORDS, W_RANK), task_ctx)
    b.store(field(b, steps, k, STEP_WORDS, W_SIZE), b.gep(task_ctx, [i64(1)]))
    stamp_start = b.and_(has_stamps, b.or_(b.or_(b.icmp_signed("<", w_begin, w_end),
                                                 b.icmp_signed("==", k, first)), has_events))
    with b.if_then(stamp_start, likely=False):
        b.call(em.stamp, [stamps, k, now(b), has_events, i64(0)])
    target = field(b, steps, k, STEP_WORDS, W_TARGET)
    args = field(b, steps, k, STEP_WORDS, W_ARGS)
    p_begin = field(b, steps, k, STEP_WORDS, W_PATCH_BEGIN)
    p_end = field(b, steps, k, STEP_WORDS, W_PATCH_END)
    has_patches = b.icmp_signed("<", p_begin, p_end)
    dispatch = b.switch(field(b, steps, k, STEP_WORDS, W_KIND), python_bb)
    dispatch.add_case(i64(STEP_NATIVE), native_bb)
    dispatch.add_case(i64(STEP_CONTROL), control_bb)

    b.position_at_end(python_bb)
    take_gil(b)
    with b.if_then(has_patches, likely=False):        # loop-dependent arguments, under the GIL
        made = b.call(em.patches, [patches, terms, p_begin, p_end])
        no_int = fn.append_basic_block("patched")
        b.cbranch(b.icmp_unsigned("!=", made, i32(0)), raised, no_int)
        b.position_at_end(no_int)
    result = b.call(call_obj, [b.inttoptr(target, p8), b.inttoptr(args, p8), ir.Constant(p8, None)])
    ok_bb = fn.append_basic_block("returned")
    b.cbranch(b.icmp_unsigned("==", b.ptrtoint(result, i64), i64(0)), raised, ok_bb)
    b.position_at_end(ok_bb)
    b.call(decref, [result])
    b.branch(stepped)

    b.position_at_end(native_bb)
    release_gil(b)
    with b.if_then(has_patches, likely=False):
        b.call(em.patches, [patches, terms, p_begin, p_end])    # words only: never fails
    invoke = b.inttoptr(field(b, steps, k, STEP_WORDS, W_INVOKE), invoke_type.as_pointer())
    status = b.call(invoke, [target, b.inttoptr(args, p64)])
    b.cbranch(b.icmp_signed("==", status, i32(0)), stepped, failed)

    b.position_at_end(stepped)
    with b.if_then(has_stamps, likely=False):
        b.call(em.stamp, [stamps, k, now(b), has_events, i64(1)])
    k_next = b.add(k, i64(1))
    count_next = b.add(count, i64(1))
    value = b.trunc(count_next, i32)
    how = field(b, steps, k, STEP_WORDS, W_PUBLISH)
    wake = b.or_(b.icmp_signed("==", how, i64(PUBLISH_WAKE)), b.icmp_signed("==", k_next, n))
    with b.if_else(wake) as (then, otherwise):
        with then:
            b.call(publish, [done, value, done_waiters])
            doorbell = field(b, steps, k, STEP_WORDS, W_RING)
            with b.if_then(b.icmp_unsigned("!=", doorbell, i64(0)), likely=False):
                b.call(ring, [doorbell, b.add(doorbell, i64(DOORBELL_WAITERS))])
        with otherwise:
            with b.if_then(b.icmp_signed("==", how, i64(PUBLISH_STORE))):
                b.store_atomic(value, done_ptr, "release", 4)
    k.add_incoming(k_next, b.block)
    count.add_incoming(count_next, b.block)
    b.cbranch(b.icmp_signed("<", k_next, n), head, finished)

    # ---- a control step (docs/runtime.md, "Loops in the step loop") -------------------------
    b.position_at_end(control_bb)
    # S_DONE is a u32: stop before the steps up to the next control point could wrap it
    limit = b.sub(i64(2**32 - 1), n)
    with b.if_then(b.icmp_signed(">", count, limit), likely=False):
        b.store(k, out_k)
        take_gil(b)
        b.ret(i32(STEPS_COUNT_LIMIT))
    with b.if_then(has_patches, likely=False):      # bound or flag elements the loops move
        b.call(em.patches, [patches, terms, p_begin, p_end])
    row = b.gep(ctl_table, [b.mul(target, i64(control.CTL_WORDS))])
    env = {"slots": slots, "cur": cur, "terms": terms, "checks": check_table,
           "publish": (publish, done, done_waiters)}
    paths = em.control(b, fn, k, count, row, env)
    b.position_at_end(control_join)
    k_ctl = b.phi(i64, "k.ctl")
    count_ctl = b.phi(i64, "count.ctl")
    for k_value, count_value, block in paths["next"]:
        k_ctl.add_incoming(k_value, block)
        count_ctl.add_incoming(count_value, block)
        b.position_at_end(block)
        b.branch(control_join)
    b.position_at_end(control_join)
    b.store(count_ctl, count_ptr)
    with b.if_then(has_events, likely=False):
        b.call(em.stamp, [stamps, k, now(b), has_events, i64(1)])
    k.add_incoming(k_ctl, b.block)
    count.add_incoming(count_ctl, b.block)
    b.cbranch(b.icmp_signed("<", k_ctl, n), head, finished_ctl)

    b.position_at_end(check_failed)
    failing = b.phi(i64, "check")
    count_failed = b.phi(i64, "count.failed")
    for j_value, count_value, block in paths["check"]:
        failing.add_incoming(j_value, block)
        count_failed.add_incoming(count_value, block)
        b.position_at_end(block)
        b.branch(check_failed)
    b.position_at_end(check_failed)
    b.store(failing, b.gep(hdr, [i64(control.H_FAILED)]))
    b.store(count_failed, count_ptr)
    b.store(k, out_k)
    take_gil(b)
    b.ret(i32(STEPS_CHECK))

    b.position_at_end(zero_step)
    for _, block in paths["zero"]:
        b.position_at_end(block)
        b.branch(zero_step)
    b.position_at_end(zero_step)
    b.store(k, out_k)
    take_gil(b)
    b.ret(i32(STEPS_ZERO_STEP))

    # a queue that ends with a control step publishes its final count with a wake here
    b.position_at_end(finished_ctl)
    b.call(publish, [done, b.trunc(count_ctl, i32), done_waiters])
    b.branch(finished)

    # S_DONE exact on every way out (a failed run's rest is chosen by it); these blocks are reached
    # only from within step k, where `count` is the steps completed before it
    def exact_done(b: ir.IRBuilder) -> None:
        b.store_atomic(b.trunc(count, i32), done_ptr, "release", 4)

    b.position_at_end(raised)                  # only Python steps raise: the GIL is held
    exact_done(b)
    b.store(k, out_k)
    b.ret(i32(STEPS_RAISED))
    b.position_at_end(failed)
    exact_done(b)
    b.store(k, out_k)
    b.store(b.sext(status, i64), out_status)
    take_gil(b)
    b.ret(i32(STEPS_STATUS))
    for block, code in ((finished, STEPS_DONE), (aborted, STEPS_ABORTED), (again, STEPS_AGAIN)):
        b.position_at_end(block)
        if block is not finished:
            exact_done(b)
        take_gil(b)
        b.ret(i32(code))
    return str(mod)


def _build() -> None:
    global _compiled, _run_steps
    sync.ensure()
    addresses = sync.function_addresses()
    symbols = {"PyObject_Call": native.address(ctypes.pythonapi.PyObject_Call),
               "Py_DecRef": native.address(ctypes.pythonapi.Py_DecRef),
               "PyEval_SaveThread": native.address(ctypes.pythonapi.PyEval_SaveThread),
               "PyEval_RestoreThread": native.address(ctypes.pythonapi.PyEval_RestoreThread),
               "PyLong_FromLongLong": native.address(ctypes.pythonapi.PyLong_FromLongLong),
               "l3c_wait_ge": addresses["wait_ge"], "l3c_publish": addresses["publish"],
               "l3c_ring": addresses["ring"],
               **native.libc("clock_gettime")}
    engine = native.compile_module(_module_ir(), symbols)
    # PYFUNCTYPE: the GIL is held on entry and exit (the loop calls Python, and releases it only
    # around native steps) and an exception the loop leaves set is raised by the call.
    u64, p = ctypes.c_uint64, ctypes.c_void_p
    _run_steps = ctypes.PYFUNCTYPE(ctypes.c_int32, p, ctypes.c_int64, ctypes.c_int64, p, u64, u64,
                                   u64, p, p, ctypes.c_int32, ctypes.c_int64, p, p, p)(
        engine.get_function_address("l3c_run_steps"))
    _compiled = engine


def ensure() -> None:
    """Compile the loop once per process (the pool calls this before it forks its workers)."""
    if _compiled is None:
        with _lock:
            if _compiled is None:
                _build()


class StepTable:
    """One installed plan's queue as the native loop reads it; owns the objects the table points to.

    `steps`: task entries (fn, args, waits, publish: another slot or the parent waits for it,
    rank, size, doorbell[, moving]) and, with loops, `steploop_control.Control` entries. Waits:
    (word address, waiters address, count) or (word, waiters, count, slot, base anchor, cap
    anchor) (`plan.Wait`); moving: ((arg index, const, terms), ...) (`argument_patches`). fn: a
    Python callable, or a `registry.NativeFunction` whose C arguments are built here (TypeError
    off its convention). `slots`, `loops`: the plan's, for the anchor rows and frames."""

    def __init__(self, steps: Sequence[Any], slots: int = 1, loops: int = 0) -> None:
        from .plan import anchor_count
        ensure()
        self.keep: list[Any] = []           # the table holds borrowed addresses of these
        n_waits = sum(len(s.waits if isinstance(s, control.Control) else s[2]) for s in steps)
        self.n = len(steps)
        self.steps = (ctypes.c_int64 * max(1, STEP_WORDS * self.n))()
        self.waits = (ctypes.c_int64 * max(1, WAIT_WORDS * n_waits))()
        self.names: list[str] = []          # native kernel names, for status messages
        self.status = ctypes.c_int64(0)
        self.tables = tables = control.Tables(slots, loops, anchor_count(loops))
        # a loop-free table leaves S_DONE alone after steps no one waits for, so a neighbour
        # polling its line takes it once per awaited step (loop tables' waits move with anchors)
        quiet = PUBLISH_STORE if loops or any(isinstance(s, control.Control) for s in steps) \
            else PUBLISH_NONE
        j = 0
        for k, entry in enumerate(steps):
            p_begin = len(tables.patches) // control.PATCH_WORDS
            if isinstance(entry, control.Control):
                head = [STEP_CONTROL, tables.add_control(entry), 0, 0]
                waits, publish, rank, size, doorbell = entry.waits, True, 0, 1, 0
                self.names.append("")
            else:
                fn, args, waits, publish, rank, size, doorbell = entry[:7]
                moving = entry[7] if len(entry) > 7 else ()
                if isinstance(fn, NativeFunction):
                    try:
                        call = NativeCall(fn, args)
                    except TypeError as exc:
                        raise TypeError(f"{fn.name} (step {k} of this worker's queue): {exc}") from None
                    self.keep.append(call)
                    head = [STEP_NATIVE, fn.address, call.block_address, call.invoke]
                else:
                    call = None
                    args = control.own_args(args, moving)
                    self.keep.append((fn, args))
                    head = [STEP_PYTHON, id(fn), id(args), 0]
                control.argument_patches(tables, call is not None, args, moving, call)
                self.names.append(getattr(fn, "name", ""))
            base = STEP_WORDS * k
            self.steps[base:base + STEP_WORDS] = head + [
                j, j + len(waits), PUBLISH_WAKE if publish or doorbell else quiet, rank, size,
                doorbell, p_begin, len(tables.patches) // control.PATCH_WORDS]
            for wait in waits:
                self.waits[WAIT_WORDS * j:WAIT_WORDS * (j + 1)] = tables.wait_words(wait)
                j += 1
        tables.finish()

    def run(self, first: int, abort: int, done: int, done_waiters: int, task_ctx: int, stamps: int,
            spin: int, slice_ns: int, out_k: ctypes.c_int64) -> int:
        """Run steps first..n-1 (see the module docstring); raises what a Python kernel raised, and
        NativeStatusError (out_k = the step) for a native kernel's nonzero status."""
        status = _run_steps(self.steps, self.n, first, self.waits, abort, done, done_waiters,
                            task_ctx, stamps or None, spin, slice_ns, ctypes.byref(out_k),
                            ctypes.byref(self.status), self.tables.hdr)
        if status == STEPS_STATUS:
            raise NativeStatusError(status_message(self.names[out_k.value], self.status.value))
        return status
