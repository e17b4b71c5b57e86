"""Native code for the step loop's control steps (loops and conds), argument patches and checks.

`steploop.py` builds the loop's llvmlite module; `Emitter` adds the helper functions and the
control-step branch that plans with loops need. The tables they read, and the model, are described
in `steploop_tables.py` and docs/runtime.md ("Loops in the step loop").
"""
from __future__ import annotations

from typing import Any

from .steploop_tables import (C_CHECK_BEGIN, C_CHECK_END, C_COUNTED, C_DELTA, C_ENTER, C_EXIT,
                              C_FLAG, C_FLAG_KIND, C_FRAME, C_HEAD, C_INVERT, C_JUMP, C_KIND, C_MAX,
                              C_PREV, C_START, C_START_KIND, C_STEP, C_STEP_KIND, C_STOP,
                              C_STOP_KIND, CHECK_WORDS, EV_CAP, EV_COUNT, EV_HEADER,
                              EV_WORDS, F_ITER, F_STEP, F_TRIPS, F_VAR, KINDS,
                              PATCH_WORD, PATCH_WORDS, TERM_WORDS, _WIDTHS)


# ---- IR --------------------------------------------------------------------------------------
class Emitter:
    """Helper functions the step loop's module calls for control steps, patches and checks."""

    def __init__(self, ir: Any, mod: Any, pylong: Any, decref: Any) -> None:
        self.ir, self.mod = ir, mod
        i64 = self.i64 = ir.IntType(64)
        self.p64 = i64.as_pointer()
        self.i32 = ir.IntType(32)
        self.add_row = self._rows("l3c_add_row", "add")
        self.inc_row = self._rows("l3c_inc_row", "inc")
        self.copy_row = self._rows("l3c_copy_row", "copy")
        self.read_value = self._read_value()
        self.affine = self._affine()
        self.checks = self._checks()
        self.patches = self._patches(pylong, decref)
        self.stamp = self._stamp()

    def _fn(self, name: str, ret: Any, params: list[Any]) -> tuple[Any, Any]:
        fn = self.ir.Function(self.mod, self.ir.FunctionType(ret, params), name)
        fn.linkage = "internal"
        return fn, self.ir.IRBuilder(fn.append_basic_block("entry"))

    def _rows(self, name: str, op: str) -> Any:
        """dst[t] (+)= src[t] (or += 1) for t < n."""
        ir, i64, p64 = self.ir, self.i64, self.p64
        fn, b = self._fn(name, ir.VoidType(), [p64, p64, i64])
        dst, src, n = fn.args
        head, body, done = (fn.append_basic_block(x) for x in ("head", "body", "done"))
        entry = b.block
        b.branch(head)
        b.position_at_end(head)
        t = b.phi(i64)
        t.add_incoming(i64(0), entry)
        b.cbranch(b.icmp_signed("<", t, n), body, done)
        b.position_at_end(body)
        d = b.gep(dst, [t])
        if op == "copy":
            b.store(b.load(b.gep(src, [t])), d)
        elif op == "add":
            b.store(b.add(b.load(d), b.load(b.gep(src, [t]))), d)
        else:
            b.store(b.add(b.load(d), i64(1)), d)
        t.add_incoming(b.add(t, i64(1)), body)
        b.branch(head)
        b.position_at_end(done)
        b.ret_void()
        return fn

    def _stamp(self) -> Any:
        """stamp(area, k, t, events, end): a profiled step's start (end=0) or end (end=1) at t.

        Loop-free plans: area[2k + end] = t. Plans with loops (events=1, a step runs many times):
        event e = area[EV_COUNT] gets (k, t) at its start and t at its end while e < area[EV_CAP];
        the end counts it, kept or dropped (`steploop_tables.EV_*`)."""
        ir, i64, p64 = self.ir, self.i64, self.p64
        i1 = ir.IntType(1)
        fn, b = self._fn("l3c_stamp", ir.VoidType(), [p64, i64, i64, i1, i64])
        area, k, t, events, end = fn.args
        with b.if_else(events) as (then, otherwise):
            with then:
                e = b.load(b.gep(area, [i64(EV_COUNT)]))
                at = b.add(b.mul(e, i64(EV_WORDS)), i64(EV_HEADER))
                with b.if_then(b.icmp_signed("<", e, b.load(b.gep(area, [i64(EV_CAP)])))):
                    with b.if_else(b.icmp_unsigned("!=", end, i64(0))) as (last, first):
                        with last:
                            b.store(t, b.gep(area, [b.add(at, i64(2))]))
                        with first:
                            b.store(k, b.gep(area, [at]))
                            b.store(t, b.gep(area, [b.add(at, i64(1))]))
                with b.if_then(b.icmp_unsigned("!=", end, i64(0))):
                    b.store(b.add(e, i64(1)), b.gep(area, [i64(EV_COUNT)]))
            with otherwise:
                b.store(t, b.gep(area, [b.add(b.mul(k, i64(2)), end)]))
        b.ret_void()
        return fn

    def _read_value(self) -> Any:
        """A bound or flag: the word itself (VALUE_CONST) or the element at its address."""
        ir, i64 = self.ir, self.i64
        fn, b = self._fn("l3c_read_value", i64, [i64, i64])
        kind, value = fn.args
        out = fn.append_basic_block("const")
        sw = b.switch(kind, out)
        b.position_at_end(out)
        b.ret(value)
        for code, (bits, signed) in _WIDTHS.items():
            bb = fn.append_basic_block(f"load{code}")
            sw.add_case(i64(code), bb)
            b.position_at_end(bb)
            ty = ir.IntType(bits)
            # acquire: the wait before this step saw the writer's count; its data is visible
            v = b.load_atomic(b.inttoptr(value, ty.as_pointer()), "acquire", bits // 8)
            if bits < 64:
                v = b.sext(v, i64) if signed else b.zext(v, i64)
            b.ret(v)
        return fn

    def _affine(self) -> Any:
        """const + sum(coef * *var) over terms [begin, end)."""
        ir, i64, p64 = self.ir, self.i64, self.p64
        fn, b = self._fn("l3c_affine", i64, [i64, p64, i64, i64])
        const, terms, begin, end = fn.args
        entry = b.block
        head, body, done = (fn.append_basic_block(x) for x in ("head", "body", "done"))
        b.branch(head)
        b.position_at_end(head)
        t = b.phi(i64)
        acc = b.phi(i64)
        t.add_incoming(begin, entry)
        acc.add_incoming(const, entry)
        b.cbranch(b.icmp_signed("<", t, end), body, done)
        b.position_at_end(body)
        base = b.mul(t, i64(TERM_WORDS))
        var = b.load(b.inttoptr(b.load(b.gep(terms, [base])), p64))
        coef = b.load(b.gep(terms, [b.add(base, i64(1))]))
        t.add_incoming(b.add(t, i64(1)), body)
        acc.add_incoming(b.add(acc, b.mul(var, coef)), body)
        b.branch(head)
        b.position_at_end(done)
        b.ret(acc)
        return fn

    def _checks(self) -> Any:
        """-1 when every check [begin, end) holds at x = first and x = last, else the failing index."""
        ir, i64, p64 = self.ir, self.i64, self.p64
        fn, b = self._fn("l3c_checks", i64, [p64, p64, i64, i64, i64, i64])
        checks, terms, begin, end, first, last = fn.args
        entry = b.block
        head, body, fail, ok = (fn.append_basic_block(x) for x in ("head", "body", "fail", "ok"))
        b.branch(head)
        b.position_at_end(head)
        j = b.phi(i64)
        j.add_incoming(begin, entry)
        b.cbranch(b.icmp_signed("<", j, end), body, ok)
        b.position_at_end(body)
        base = b.mul(j, i64(CHECK_WORDS))

        def word(k: int) -> Any:
            return b.load(b.gep(checks, [b.add(base, i64(k))]))
        rest = b.call(self.affine, [word(0), terms, word(2), word(3)])
        coef, high = word(1), word(4)
        bad = None
        for x in (first, last):
            v = b.add(rest, b.mul(coef, x))
            out = b.or_(b.icmp_signed("<", v, i64(0)), b.icmp_signed(">", v, high))
            bad = out if bad is None else b.or_(bad, out)
        nxt = fn.append_basic_block("next")
        b.cbranch(bad, fail, nxt)
        b.position_at_end(nxt)
        j.add_incoming(b.add(j, i64(1)), nxt)
        b.branch(head)
        b.position_at_end(fail)
        b.ret(j)
        b.position_at_end(ok)
        b.ret(i64(-1))
        return fn

    def _patches(self, pylong: Any, decref: Any) -> Any:
        """Apply patches [begin, end); 1 if a Python int could not be made (exception set)."""
        ir, i64, p64, i32 = self.ir, self.i64, self.p64, self.i32
        p8 = ir.IntType(8).as_pointer()
        fn, b = self._fn("l3c_patches", i32, [p64, p64, i64, i64])
        patches, terms, begin, end = fn.args
        entry = b.block
        head, body, done = (fn.append_basic_block(x) for x in ("head", "body", "done"))
        b.branch(head)
        b.position_at_end(head)
        j = b.phi(i64)
        j.add_incoming(begin, entry)
        b.cbranch(b.icmp_signed("<", j, end), body, done)
        b.position_at_end(body)
        base = b.mul(j, i64(PATCH_WORDS))

        def word(k: int) -> Any:
            return b.load(b.gep(patches, [b.add(base, i64(k))]))
        value = b.call(self.affine, [word(2), terms, word(3), word(4)])
        where = b.inttoptr(word(1), p64)
        store_bb, int_bb, nxt = (fn.append_basic_block(x) for x in ("store", "int", "next"))
        b.cbranch(b.icmp_signed("==", word(0), i64(PATCH_WORD)), store_bb, int_bb)
        b.position_at_end(store_bb)
        b.store(value, where)
        b.branch(nxt)
        b.position_at_end(int_bb)
        made = b.call(pylong, [value])
        failed = fn.append_basic_block("failed")
        swap = fn.append_basic_block("swap")
        b.cbranch(b.icmp_unsigned("==", b.ptrtoint(made, i64), i64(0)), failed, swap)
        b.position_at_end(failed)
        b.ret(i32(1))
        b.position_at_end(swap)
        old = b.load(where)
        b.store(b.ptrtoint(made, i64), where)
        b.call(decref, [b.inttoptr(old, p8)])
        b.branch(nxt)
        b.position_at_end(nxt)
        j.add_incoming(b.add(j, i64(1)), nxt)
        b.branch(head)
        b.position_at_end(done)
        b.ret(i32(0))
        return fn

    def control(self, b: Any, fn: Any, k: Any, count: Any, row: Any, env: dict) -> dict:
        """Emit control step `row` (a pointer to its words) at step k with own count `count`.

        `env`: anchors/slots/terms/checks values, `publish` (fn, done, waiters). Returns the paths
        out: "next" [(k', count', block)], "check" [(j, count', block)], "zero" [(count, block)]."""
        ir, i64, p64 = self.ir, self.i64, self.p64
        slots, cur = env["slots"], env["cur"]
        out: dict = {"next": [], "check": [], "zero": []}

        def w(k_: int) -> Any:
            return b.load(b.gep(row, [i64(k_)]))

        def ptr(value: Any) -> Any:
            return b.inttoptr(value, p64)

        def copy(dst: int, src: Any) -> None:
            b.call(self.copy_row, [ptr(w(dst)), src, slots])

        def frame(field: int) -> Any:
            return b.gep(ptr(w(C_FRAME)), [i64(field)])

        def count_read() -> Any:
            """A counted read completes like a task: own count + 1, every slot's CUR + 1. Called
            after the element's load: a later writer of it waits for this count."""
            counted = b.icmp_unsigned("!=", w(C_COUNTED), i64(0))
            new = b.add(count, b.zext(counted, i64))
            with b.if_then(counted):
                b.call(self.inc_row, [cur, cur, slots])
                publish, done, waiters = env["publish"]
                b.call(publish, [done, b.trunc(new, self.i32), waiters])
            return new

        delta = w(C_DELTA)
        with b.if_then(b.icmp_unsigned("!=", delta, i64(0))):
            b.call(self.add_row, [cur, ptr(delta), slots])
        k1 = b.add(k, i64(1))
        kinds = {name: fn.append_basic_block(f"ctl.{name}") for name in KINDS}
        bad = fn.append_basic_block("ctl.bad")
        sw = b.switch(w(C_KIND), bad)
        for name, bb in kinds.items():
            sw.add_case(i64(KINDS[name]), bb)
        b.position_at_end(bad)                      # never built by StepTable
        out["zero"].append((count, b.block))

        def checks(first: Any, last: Any, count_: Any, then: Any) -> None:
            j = b.call(self.checks, [env["checks"], env["terms"], w(C_CHECK_BEGIN),
                                     w(C_CHECK_END), first, last])
            failing = fn.append_basic_block("ctl.check.fail")
            b.cbranch(b.icmp_signed(">=", j, i64(0)), failing, then)
            b.position_at_end(failing)
            out["check"].append((j, count_, failing))

        # range: read the bounds, count the trips, run the checks, enter or skip
        b.position_at_end(kinds["range"])
        start = b.call(self.read_value, [w(C_START_KIND), w(C_START)])
        stop = b.call(self.read_value, [w(C_STOP_KIND), w(C_STOP)])
        step = b.call(self.read_value, [w(C_STEP_KIND), w(C_STEP)])
        zero_bb, go_bb = fn.append_basic_block("ctl.range.zero"), fn.append_basic_block("ctl.range.go")
        b.cbranch(b.icmp_signed("==", step, i64(0)), zero_bb, go_bb)
        b.position_at_end(zero_bb)
        out["zero"].append((count, zero_bb))
        b.position_at_end(go_bb)
        up = b.icmp_signed(">", step, i64(0))
        span = b.select(up, b.sub(stop, start), b.sub(start, stop))
        mag = b.select(up, step, b.sub(i64(0), step))
        trips = b.select(b.icmp_signed(">", span, i64(0)),
                         b.sdiv(b.add(span, b.sub(mag, i64(1))), mag), i64(0))
        new = count_read()
        b.store(start, frame(F_VAR))
        b.store(i64(0), frame(F_ITER))
        b.store(trips, frame(F_TRIPS))
        b.store(step, frame(F_STEP))
        for which in (C_ENTER, C_HEAD, C_PREV):
            copy(which, cur)
        empty, run = fn.append_basic_block("ctl.range.empty"), fn.append_basic_block("ctl.range.run")
        b.cbranch(b.icmp_signed("==", trips, i64(0)), empty, run)
        b.position_at_end(empty)
        copy(C_EXIT, cur)
        out["next"].append((w(C_JUMP), new, b.block))
        b.position_at_end(run)
        entered = fn.append_basic_block("ctl.range.entered")
        checks(start, b.add(start, b.mul(b.sub(trips, i64(1)), step)), new, entered)
        b.position_at_end(entered)
        out["next"].append((k1, new, entered))

        # next: one more iteration (back to the body) or out
        b.position_at_end(kinds["next"])
        it = b.add(b.load(frame(F_ITER)), i64(1))
        b.store(it, frame(F_ITER))
        again, leave = fn.append_basic_block("ctl.next.again"), fn.append_basic_block("ctl.next.out")
        b.cbranch(b.icmp_signed("<", it, b.load(frame(F_TRIPS))), again, leave)
        b.position_at_end(again)
        b.store(b.add(b.load(frame(F_VAR)), b.load(frame(F_STEP))), frame(F_VAR))
        copy(C_PREV, ptr(w(C_HEAD)))
        copy(C_HEAD, cur)
        out["next"].append((w(C_JUMP), count, b.block))
        b.position_at_end(leave)
        copy(C_EXIT, cur)
        out["next"].append((k1, count, b.block))

        # while: the loop starts (its test follows)
        b.position_at_end(kinds["while"])
        b.store(i64(0), frame(F_ITER))
        b.store(i64(0), frame(F_VAR))
        for which in (C_ENTER, C_HEAD, C_PREV):
            copy(which, cur)
        out["next"].append((k1, count, b.block))

        # test: read the flag; stop at zero or at max_iterations, else start iteration `iter`
        b.position_at_end(kinds["test"])
        flag = b.call(self.read_value, [w(C_FLAG_KIND), w(C_FLAG)])
        new = count_read()
        it = b.load(frame(F_ITER))
        cap = w(C_MAX)
        under = b.or_(b.icmp_signed("<", cap, i64(0)), b.icmp_signed("<", it, cap))
        go = b.and_(b.icmp_unsigned("!=", flag, i64(0)), under)
        body, stop_bb = fn.append_basic_block("ctl.test.body"), fn.append_basic_block("ctl.test.out")
        b.cbranch(go, body, stop_bb)
        b.position_at_end(stop_bb)
        copy(C_EXIT, cur)
        out["next"].append((w(C_JUMP), new, b.block))
        b.position_at_end(body)
        first_iteration = b.icmp_signed("==", it, i64(0))
        copy(C_PREV, b.select(first_iteration, cur, ptr(w(C_HEAD))))
        copy(C_HEAD, cur)
        b.store(it, frame(F_VAR))
        started = fn.append_basic_block("ctl.test.started")
        checks(it, it, new, started)
        b.position_at_end(started)
        out["next"].append((k1, new, started))

        # again: end of a while iteration, back to the test
        b.position_at_end(kinds["again"])
        b.store(b.add(b.load(frame(F_ITER)), i64(1)), frame(F_ITER))
        out["next"].append((w(C_JUMP), count, b.block))

        # cond: read the flag; run the block or skip it
        b.position_at_end(kinds["cond"])
        flag = b.call(self.read_value, [w(C_FLAG_KIND), w(C_FLAG)])
        new = count_read()
        copy(C_ENTER, cur)
        runs = b.xor(b.icmp_unsigned("!=", flag, i64(0)),
                     b.icmp_unsigned("!=", w(C_INVERT), i64(0)))
        block, skip = fn.append_basic_block("ctl.cond.run"), fn.append_basic_block("ctl.cond.skip")
        b.cbranch(runs, block, skip)
        b.position_at_end(block)
        copy(C_HEAD, cur)
        out["next"].append((k1, new, b.block))
        b.position_at_end(skip)
        copy(C_EXIT, cur)
        out["next"].append((w(C_JUMP), new, b.block))

        b.position_at_end(kinds["endcond"])
        copy(C_EXIT, cur)
        out["next"].append((k1, count, b.block))
        return out
