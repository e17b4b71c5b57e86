"""Random l3c programs with loops and conditionals in the schedule (SPEC "Loops and conditionals
in the schedule"), for the stress suite and `tests/test_compiled_random.py`.

The loop-free generator (`stress_programs.random_ops`, `Program`) is unchanged: the same seeds
give the same programs. `LoopProgram(seed)` draws from its own generator, which nests the same data
operations inside:

* `l3c.range` with static bounds (negative steps and zero trips included) or a tensor stop: an
  element of the read-only `ctl` input, or an intermediate a kernel fills before the loop (and that
  the body may bump, a write after the loop-start read which must not change the trip count);
* `l3c.while_loop` on a flag that a countdown kernel rewrites somewhere in the body, optionally
  capped by `max_iterations`;
* `with l3c.cond(flag, invert=...)` on the sign of a row of data (int32 or bool flag);
* the loop variable as a kernel scalar (`axpy_k`) and in affine indices and slice bounds of the
  enclosing loops' variables (`x[i]`, `x[:, i + 1]`, `x[2 * i : 2 * i + 2]`, `x[i + j]`);
* intermediates created inside bodies and blocks (they live one iteration), groups, scopes, pinned
  and sub-worker kernels inside loops.

Trip counts that come from tensors are data, like delays and faults: `ctl[BOUNDS_AT + slot]` is
drawn per run (`LoopProgram.ctl`), so one compiled schedule runs with other trip counts (zero
included) without being traced again. The oracle interprets the same ops with numpy, iterating in
Python; `.eager` is checked against it too. A fault goes to a task that runs at least once with
that run's trip counts and data (the oracle records which).
"""
from __future__ import annotations

import os
import random

import numpy as np

import l3c
import stress_programs as sp
from stress_programs import MAX_TASKS, N, inject

BOUNDS_AT = MAX_TASKS - 8          # ctl[BOUNDS_AT + slot]: a run's tensor trip counts
TASK_LIMIT = BOUNDS_AT - 16
MAX_DEPTH = 3


# ---------------------------------------------------------------------------------------- kernels
@l3c.kernel
def set_count(ctl: l3c.In, tag: int, slot: int, n: l3c.Out):
    inject(ctl, tag)
    n[0] = ctl[BOUNDS_AT + slot]


@l3c.kernel
def bump(ctl: l3c.In, tag: int, n: l3c.InOut):
    inject(ctl, tag)
    n[0] += 1


@l3c.kernel
def init_flag(ctl: l3c.In, tag: int, left: l3c.In, flag: l3c.Out):
    inject(ctl, tag)
    flag[0] = 1 if left[0] > 0 else 0


@l3c.kernel
def countdown(ctl: l3c.In, tag: int, left: l3c.InOut, flag: l3c.Out):
    inject(ctl, tag)
    left[0] -= 1
    flag[0] = 1 if left[0] > 0 else 0


@l3c.kernel
def sign_flag(ctl: l3c.In, tag: int, src: l3c.In, flag: l3c.Out):
    inject(ctl, tag)
    flag[0] = src.sum() > 0


@l3c.kernel
def axpy_k(ctl: l3c.In, tag: int, k: int, src: l3c.In, dst: l3c.InOut):
    assert type(k) is int, f"the loop variable reached the kernel as {type(k).__name__}"
    inject(ctl, tag)
    dst += (0.5 * (k % 3) - 0.75) * src


# ---------------------------------------------------------------------------------------- generator
class LoopGen:
    """Draws a program of nested blocks. `vars` holds the value range (lo, hi) of each enclosing
    loop variable (outermost first); affine indices built from them stay inside the tensor for
    every iteration that can run, whatever trip counts the runs draw."""

    def __init__(self, rng: random.Random, chips: int, sub: int) -> None:
        self.rng, self.chips, self.sub = rng, chips, sub
        self.gen = sp._Gen(rng)
        self.tasks = 0
        self.slots: list[tuple[int, int]] = []     # per ctl slot: the range its value is drawn from

    def program(self, length: int) -> tuple:
        ops = self.block(2, [], 0, length, p_loop=0.3)
        if not any(op[0] in ("range", "while", "cond") for op in ops):
            ops.append(self.loop_op(self.live, [], 0))
        return tuple(ops)

    def slot(self, lo: int, hi: int) -> int:
        self.slots.append((lo, hi))
        return len(self.slots) - 1

    def block(self, live: int, vars: list, depth: int, length: int, p_loop: float = 0.2) -> list:
        rng, ops = self.rng, []
        for _ in range(length):
            if self.tasks >= TASK_LIMIT:
                break
            r = rng.random()
            if r < p_loop and depth < MAX_DEPTH and len(self.slots) < 8:
                ops.append(self.loop_op(live, vars, depth))
            elif r < p_loop + 0.3 and vars:
                op = self.affine_op(live, vars)
                if op is not None:
                    ops.append(op)
                    self.tasks += 1
            elif r < 0.95:
                picked = sp.data_op(rng, self.gen, rng.random(), live, self.chips, self.sub)
                if picked is not None:
                    op, new, n = picked
                    ops.append(op)
                    live += new
                    self.tasks += n
            else:
                ops += [("open",)] + self.block(live, vars, depth, rng.randint(1, 4)) + [("close",)]
        self.live = live
        return ops

    def loop_op(self, live: int, vars: list, depth: int) -> tuple:
        rng = self.rng
        kind = rng.choice(["range", "range", "while", "cond"])
        length = rng.randint(1, 6)
        if kind == "cond":
            self.tasks += 1
            body = self.block(live, vars, depth + 1, length)
            return ("cond", rng.randrange(live), rng.randrange(N), rng.random() < 0.5,
                    rng.choice(["int32", "bool"]), tuple(body))
        if kind == "while":
            most = rng.randint(0, 4)
            cap = rng.choice([None, None, rng.randint(0, 4)])
            runs = most if cap is None else min(most, cap)
            slot = self.slot(-1, most)
            self.tasks += 3
            body = self.block(live, vars + [(0, max(runs - 1, 0))], depth + 1, length)
            return ("while", slot, cap, rng.randint(0, len(body)), tuple(body))
        if rng.random() < 0.5:
            step = rng.choice([1, 1, 2, -1])
            trips = rng.randint(0, 4)
            start = rng.randint(0, 3) + (trips if step < 0 else 0)
            stop = start + trips * step
            values = range(start, stop, step)
            span = (min(values), max(values)) if values else (start, start)
            spec = ("static", start, stop, step)
        else:
            first, most = rng.randint(0, 1), rng.randint(0, 4)
            via = rng.choice(["ctl", "kernel"])
            bumped = via == "kernel" and rng.random() < 0.5
            spec = ("tensor", self.slot(first - 1, first + most), first, via, bumped)
            span = (first, first + max(most - 1, 0))
            self.tasks += (via == "kernel") + bumped
        body = self.block(live, vars + [span], depth + 1, length)
        return ("range", spec, tuple(body))

    def affine(self, vars: list, limit: int, coefs=(1, 1, 2, -1)):
        """(const, ((var, coef), ...)) with values in [0, limit] for every var value, or None."""
        rng = self.rng
        picks = [rng.randrange(len(vars))]
        if len(vars) > 1 and rng.random() < 0.3:
            picks.append(rng.choice([v for v in range(len(vars)) if v != picks[0]]))
        for tries in range(2):
            terms = tuple((v, rng.choice(coefs) if tries == 0 else 1) for v in picks)
            lo = sum(min(c * vars[v][0], c * vars[v][1]) for v, c in terms)
            hi = sum(max(c * vars[v][0], c * vars[v][1]) for v, c in terms)
            if hi - lo <= limit:
                return rng.randint(-lo, limit - hi), terms
            picks = picks[:1]
        return None

    def index(self, vars: list, form: str, width: int):
        """One side of an affine op: an affine index when it fits, else a static one."""
        rng = self.rng
        if form == "block":
            aff = self.affine(vars, N - width, coefs=(width, 1, 1))
            return ("block", width, aff) if aff else ("sblock", width, rng.randint(0, N - width))
        aff = self.affine(vars, N - 1)
        if aff is None or rng.random() < 0.2:
            return ("s" + form, rng.randrange(N))
        return (form, aff)

    def affine_op(self, live: int, vars: list):
        rng = self.rng
        if live < 2:
            return None
        s, d = rng.sample(range(live), 2)
        if rng.random() < 0.3:
            shape = self.gen.shape()
            k = self.affine(vars, 12) or (0, ())
            k = (k[0] - rng.randint(0, 6), k[1])
            return ("axpy_k", k, s, self.gen.view(shape), d, self.gen.view(shape))
        worker = "sub" if self.sub and rng.random() < 0.2 else "chip"
        alpha = rng.choice([0.5, -1.0, 2.0])
        if rng.random() < 0.4:
            width = rng.choice([1, 2, 4])
            return ("aaxpy", worker, alpha, s, self.index(vars, "block", width), d,
                    self.index(vars, "block", width))
        return ("aaxpy", worker, alpha, s, self.index(vars, rng.choice(["row", "col"]), 1), d,
                self.index(vars, rng.choice(["row", "col"]), 1))


def count_tasks(ops) -> int:
    """Tasks (graph nodes) the ops record: a body counts once, whatever its trip count."""
    n = 0
    for op in ops:
        kind = op[0]
        if kind == "group":
            n += op[-1]
        elif kind in ("open", "close"):
            pass
        elif kind == "range":
            spec = op[1]
            n += count_tasks(op[2]) + (spec[0] == "tensor" and (spec[3] == "kernel") + spec[4])
        elif kind == "while":
            n += 3 + count_tasks(op[4])
        elif kind == "cond":
            n += 1 + count_tasks(op[5])
        else:
            n += 1
    return n


# ---------------------------------------------------------------------------------------- interpreter
class LoopInterpreter(sp.Interpreter):
    """`sp.Interpreter` plus loops: with numpy the bodies run iteration after iteration in Python
    (each iteration's calls reuse the body's task ids, as in the schedule); with l3c they are
    traced once inside `l3c.range` / `l3c.while_loop` / `l3c.cond`."""

    def __init__(self, ctl, x, y, *, numpy: bool) -> None:
        super().__init__(ctl, x, y, numpy=numpy)
        self.vars: list = []             # enclosing loop variables (ints, or l3c loop variables)
        self.whiles: list = []           # enclosing while loops' (left, flag) tensors
        self.executed: set[int] = set()  # numpy: the task ids that ran at least once
        if numpy:
            self.oracle_ctl = ctl.copy()
            self.oracle_ctl[:BOUNDS_AT] = 0

    def kernel_ctl(self):
        return self.oracle_ctl

    def call(self, kernel, *args, pin=None) -> None:
        self.executed.add(self.tag)
        super().call(kernel, *args, pin=pin)

    def ints(self, dtype="int64"):
        return np.zeros((1,), dtype) if self.numpy else l3c.empty((1,), np.dtype(dtype))

    def value(self, aff):
        const, terms = aff
        expr = None
        for var, coef in terms:
            term = self.vars[var] if coef == 1 else coef * self.vars[var]
            expr = term if expr is None else expr + term
        if expr is None:
            return const
        return expr - (-const) if const < 0 else expr + const if const else expr

    def index(self, t, spec):
        kind = spec[0]
        if kind == "row":
            return t[self.value(spec[1])]
        if kind == "col":
            return t[:, self.value(spec[1])]
        if kind == "srow":
            return t[spec[1]]
        if kind == "scol":
            return t[:, spec[1]]
        if kind == "block":
            start = self.value(spec[2])
            return t[start:start + spec[1]]
        return t[spec[2]:spec[2] + spec[1]]

    def op_aaxpy(self, worker, alpha, s, sidx, d, didx):
        self.call(sp.sub_axpy if worker == "sub" else sp.axpy, alpha,
                  self.index(self.ts[s], sidx), self.index(self.ts[d], didx))

    def op_axpy_k(self, k, s, sv, d, dv):
        self.call(axpy_k, self.value(k), sp.view(self.ts[s], sv), sp.view(self.ts[d], dv))

    def iterate(self, values, body, before=(), var: bool = True) -> None:
        """Run `body` once per element of `values` (numpy: the iteration values; l3c: the loop
        object, which yields once while tracing). Body intermediates die with each iteration."""
        first, live = self.tag, len(self.ts)
        for value in values:
            self.tag = first
            if var:
                self.vars.append(value)
            for op in before:
                op()
            self.run(body)
            if var:
                self.vars.pop()
            del self.ts[live:]
        self.tag = first + count_tasks(body) + len(before)

    def op_range(self, spec, body):
        before = ()
        if spec[0] == "static":
            start, stop, step = spec[1:]
        else:
            slot, start, via, bumped = spec[1:]
            step = 1
            if via == "ctl":
                stop = self.ctl[BOUNDS_AT + slot:BOUNDS_AT + slot + 1]
            else:
                stop = self.ints()
                self.call(set_count, slot, stop)
                if bumped:
                    before = (lambda n=stop: self.call(bump, n),)
            if self.numpy:
                stop = int(stop[0])
        if self.numpy:
            self.iterate(range(start, stop, step), body, before)
        elif start == 0 and step == 1:
            self.iterate(l3c.range(stop), body, before)
        else:
            self.iterate(l3c.range(start, stop, step), body, before)

    def op_while(self, slot, cap, pos, body):
        left, flag = self.ints(), self.ints()
        self.call(set_count, slot, left)
        self.call(init_flag, left, flag)
        self.whiles.append((left, flag))
        body = body[:pos] + (("countdown",),) + body[pos:]
        if self.numpy:
            def values():
                k = 0
                while flag[0] != 0 and (cap is None or k < cap):
                    yield k
                    k += 1
            self.iterate(values(), body)
        else:
            self.iterate(l3c.while_loop(flag, max_iterations=cap), body)
        self.whiles.pop()

    def op_countdown(self):
        self.call(countdown, *self.whiles[-1])

    def op_cond(self, src, row, invert, dtype, body):
        flag = self.ints(dtype)
        self.call(sign_flag, self.ts[src][row], flag)
        if self.numpy:
            self.iterate([None] if bool(flag[0]) != invert else [], body, var=False)
        else:
            with l3c.cond(flag, invert=invert):
                self.iterate([None], body, var=False)


def orchestrate_loops(ctl, x, y, ops):
    it = LoopInterpreter(ctl, x, y, numpy=False)
    it.run(ops)
    return it.results()


_jits: dict = {}


def jitted(chips: int, sub: int, fuse: bool):
    key = (chips, sub, fuse)
    if key not in _jits:
        _jits[key] = l3c.jit(chips=chips, sub_workers=sub, static_argnames=("ops",),
                             fuse_groups=fuse, timeout=sp.TIMEOUT)(orchestrate_loops)
    return _jits[key]


class LoopProgram(sp.Program):
    """One random program with loops (see the module docstring); runs like `sp.Program`."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = rng = random.Random(seed)
        self.chips, self.sub = rng.choice([(1, 0), (2, 0), (2, 1), (3, 1), (4, 2)])
        gen = LoopGen(rng, self.chips, self.sub)
        self.ops = gen.program(rng.randint(2, 14))
        self.slots = gen.slots
        self.ntasks = count_tasks(self.ops)
        self.faultable = list(range(self.ntasks))    # narrowed per run by `fault_task`
        self.fn = jitted(self.chips, self.sub, fuse=rng.random() < 0.8)
        self.data = np.random.default_rng(seed)

    def ctl(self, delays: bool = True) -> np.ndarray:
        ctl = super().ctl(delays)
        for slot, (lo, hi) in enumerate(self.slots):
            ctl[BOUNDS_AT + slot] = self.rng.randint(lo, hi)
        return ctl

    def interpret(self, ctl, x0, y0):
        x, y = x0.copy(), y0.copy()
        it = LoopInterpreter(ctl, x, y, numpy=True)
        it.run(self.ops)
        return it, x, y

    def oracle(self, x0, y0, ctl):
        it, x, y = self.interpret(ctl, x0, y0)
        return it.results(), x, y

    def fault_task(self, ctl, x0, y0, task: int) -> int | None:
        executed = self.interpret(ctl, x0, y0)[0].executed
        if task in executed:
            return task
        return self.rng.choice(sorted(executed)) if executed else None


_compiled_loops: list[bool] = []


def compiled_loops() -> bool:
    """Whether this l3c runs loops as compiled schedules, or only through `.eager` (an l3c whose
    lowering refuses loops says so with an `L3CError` naming `.eager`): a one-loop program tells.
    Any other failure propagates."""
    if not _compiled_loops:
        n = np.zeros(1, np.int64)
        try:
            _probe(np.zeros(MAX_TASKS, np.int64), n)
        except l3c.L3CError as exc:
            if ".eager" not in str(exc):
                raise
            _compiled_loops.append(False)
        else:
            assert n[0] == 3, n
            _compiled_loops.append(True)
    return _compiled_loops[0]


_schedule_files: list[str] = []


def schedule_files_with_loops(tmp_dir: str) -> str:
    """Why this l3c cannot save a compiled schedule with loops to a file ("" when it can): the
    one-loop probe saved, loaded and run. Only saving is excused (a lowering whose plan the
    schedule format does not hold yet); a file that saves must load and run correctly."""
    if not _schedule_files:
        path = os.path.join(tmp_dir, "probe-loops.l3c")
        ctl = np.zeros(MAX_TASKS, np.int64)
        compiled = _probe.lower(ctl, np.zeros(1, np.int64))
        try:
            compiled.save(path)
        except Exception as exc:  # noqa: BLE001 - reported by the caller as the reason to skip
            _schedule_files.append(f"{type(exc).__name__}: {exc}")
        else:
            n = np.zeros(1, np.int64)
            l3c.load(path)(ctl, n)
            assert n[0] == 3, n
            _schedule_files.append("")
    return _schedule_files[0]


@l3c.jit(chips=1)
def _probe(ctl, n):
    for _ in l3c.range(3):
        bump(ctl, 0, n)
