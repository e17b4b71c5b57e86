"""Random l3c programs with fault injection, for the stress suite (`test_stress.py`).

A program is a random tuple of operations (a static argument of one orchestration function): strided,
reversed, transposed and interleaved 2-D views, in-place updates of the inputs, copies into `l3c.empty`
tensors, `l3c.zeros`, explicit groups over interleaved rows or column blocks, nested scopes, kernels
pinned with `.on(chip)`, sub-worker kernels, and 1-D strided views of a reshaped tensor. The same tuple
is interpreted by plain numpy: that is the oracle (independent of l3c), and `Jitted.eager` is checked
against it too.

Faults and delays are *data*, not part of the program: every kernel also reads an input `ctl`
(int64[MAX_TASKS], read-only, so it adds no dependency) and its own task id `tag`. `ctl[tag]` is
0 (run normally), DELAY_* (sleep a little, so workers finish in varying orders), or a FAULT_* code:
raise, SIGKILL itself, `os._exit(7)`, or hang far past the timeout. One compiled schedule therefore
runs with any mix of delays and faults without being traced again.
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import time

import numpy as np

import l3c

N = 8                          # tensors are N x N float64 (square, so .T views fit anywhere)
MAX_TASKS = 96
TIMEOUT = 2.0                  # seconds per run (the hang fault sleeps far longer)
DELAY_SHORT, DELAY_LONG = 1, 2
FAULT_RAISE, FAULT_SIGKILL, FAULT_EXIT, FAULT_HANG = 100, 101, 102, 103
FAULTS = (FAULT_RAISE, FAULT_SIGKILL, FAULT_EXIT, FAULT_HANG)
FAULT_NAMES = {FAULT_RAISE: "raise", FAULT_SIGKILL: "SIGKILL", FAULT_EXIT: "os._exit",
               FAULT_HANG: "hang"}


class InjectedFault(RuntimeError):
    """What the raise fault raises inside a kernel."""


def inject(ctl: np.ndarray, tag: int) -> None:
    """Run in every kernel before its work: act on `ctl[tag]`."""
    code = int(ctl[tag])
    if code == 0:
        return
    if code == DELAY_SHORT:
        time.sleep(0.0003)
    elif code == DELAY_LONG:
        time.sleep(0.003)
    elif code == FAULT_RAISE:
        raise InjectedFault(f"injected fault in task {tag}")
    elif code == FAULT_SIGKILL:
        os.kill(os.getpid(), signal.SIGKILL)
    elif code == FAULT_EXIT:
        os._exit(7)
    elif code == FAULT_HANG:
        time.sleep(3600)


# ---------------------------------------------------------------------------------------- kernels
@l3c.kernel
def axpy(ctl: l3c.In, tag: int, alpha: float, src: l3c.In, dst: l3c.InOut):
    inject(ctl, tag)
    dst += alpha * src


@l3c.kernel(worker="sub")
def sub_axpy(ctl: l3c.In, tag: int, alpha: float, src: l3c.In, dst: l3c.InOut):
    inject(ctl, tag)
    dst += alpha * src


@l3c.kernel
def scale(ctl: l3c.In, tag: int, x: l3c.InOut, alpha: float):
    inject(ctl, tag)
    x *= alpha


@l3c.kernel
def copy(ctl: l3c.In, tag: int, src: l3c.In, dst: l3c.Out):
    inject(ctl, tag)
    dst[...] = src


@l3c.kernel(worker="sub")
def sub_sum(ctl: l3c.In, tag: int, src: l3c.In, dst: l3c.Out):
    inject(ctl, tag)
    dst[...] = src.sum(axis=0)


# ---------------------------------------------------------------------------------------- views
def axis_slice(start: int, step: int, count: int) -> slice:
    """`count` elements from `start` by `step` (negative steps too) as a slice valid for numpy
    and for l3c proxies (which do not clip, so the stop must stay in range or be None)."""
    stop = start + (count - 1) * step + (1 if step > 0 else -1)
    return slice(start, None if stop < 0 else stop, step)


def view(t, spec):
    """spec = (transposed, (r0, rstep, rn), (c0, cstep, cn)): t[rows, cols], then .T if transposed."""
    transposed, (r0, rs, rn), (c0, cs, cn) = spec
    v = t[axis_slice(r0, rs, rn), axis_slice(c0, cs, cn)]
    return v.T if transposed else v


def flat_view(t, spec):
    """A 1-D strided view of the reshaped (contiguous, N*N) tensor: crosses row boundaries."""
    return t.reshape(N * N)[axis_slice(*spec)]


class _Gen:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def line(self, count: int, size: int = N) -> tuple[int, int, int]:
        rng = self.rng
        max_step = max(1, (size - 1) // max(1, count - 1)) if count > 1 else 1
        step = rng.randint(1, max_step) if rng.random() < 0.7 else 1
        if rng.random() < 0.25:
            step = -step
        span = (count - 1) * abs(step)
        start = rng.randint(0, size - 1 - span)
        if step < 0:
            start += span
        return start, step, count

    def view(self, shape: tuple[int, int]):
        """A view spec whose shape (after the optional .T) is `shape`."""
        transposed = self.rng.random() < 0.2
        rn, cn = (shape[1], shape[0]) if transposed else shape
        return (transposed, self.line(rn), self.line(cn))

    def shape(self) -> tuple[int, int]:
        if self.rng.random() < 0.3:
            return (N, N)
        return self.rng.randint(1, N), self.rng.randint(1, N)


def data_op(rng: random.Random, gen: _Gen, r: float, live: int, chips: int, sub: int):
    """The operation random draw `r` picks among those that touch data, as (op, new tensors,
    tasks), or None when `r` falls to a scope boundary (the caller's choice). Shared by the
    loop-free generator and the loop bodies of `loop_programs.py`."""
    if r < 0.10 or live < 3:
        return ("zeros",), 1, 1
    if r < 0.16:
        return ("empty_copy", rng.randrange(live)), 1, 1
    if r < 0.40:
        s, d = rng.sample(range(live), 2) if rng.random() < 0.85 else (rng.randrange(live),) * 2
        shape = gen.shape()
        if s == d:   # same tensor: read and write views must not overlap partially; use rows
            shape = (rng.randint(1, N // 2), rng.randint(1, N))
            sv = (False, (0, 2, shape[0]), gen.line(shape[1]))
            dv = (False, (1, 2, shape[0]), sv[2])
        else:
            sv, dv = gen.view(shape), gen.view(shape)
        worker = "sub" if sub and rng.random() < 0.2 else "chip"
        limit = chips if worker == "chip" else sub
        pin = rng.randrange(limit) if rng.random() < 0.2 else None
        return ("axpy", worker, rng.choice([0.5, -1.0, 2.0]), s, sv, d, dv, pin), 0, 1
    if r < 0.52:
        return ("scale", rng.choice([0.5, 3.0, -1.0]), rng.randrange(live), gen.view(gen.shape())), 0, 1
    if r < 0.60:
        n = rng.randint(1, N * N)
        return ("flat_scale", rng.choice([0.5, 2.0]), rng.randrange(live), gen.line(n, N * N)), 0, 1
    if r < 0.68:
        s, d = rng.sample(range(live), 2)
        shape = gen.shape()
        return ("copy", s, gen.view(shape), d, gen.view(shape)), 0, 1
    if r < 0.72 and sub:
        s, d = rng.sample(range(live), 2)
        return ("sub_sum", s, d, rng.randrange(N)), 0, 1
    if r < 0.84 and chips >= 2:
        s, d = rng.sample(range(live), 2)
        m = rng.choice([m for m in (2, 3, 4) if m <= chips])
        return ("group", rng.choice(["rows", "cols"]), rng.choice([1.0, -0.5]), s, d, m), 0, m
    return None


def random_ops(rng: random.Random, chips: int, sub: int, length: int) -> tuple:
    """A random program of about `length` operations for a pool of `chips` chips and `sub` sub workers."""
    gen, ops, live, depth, tasks = _Gen(rng), [], 2, [], 0
    for _ in range(length):
        if tasks >= MAX_TASKS - 8:
            break
        r = rng.random()
        picked = data_op(rng, gen, r, live, chips, sub)
        if picked is not None:
            op, new, n = picked
            ops.append(op)
            live += new
            tasks += n
        elif r < 0.92 and len(depth) < 3:
            ops.append(("open",))
            depth.append(live)
        elif depth:
            ops.append(("close",))
            live = depth.pop()
    while depth:
        ops.append(("close",))
        live = depth.pop()
    return tuple(ops)


class Interpreter:
    """Runs ops with l3c calls (inside a trace) or with numpy (the oracle), one method per kind
    (`op_<kind>`), so the loop generator (`loop_programs.py`) adds kinds without a second copy.
    `tag` is the next task id: l3c records one task per call (a fill task for `l3c.zeros`)."""

    def __init__(self, ctl, x, y, *, numpy: bool) -> None:
        self.ctl, self.numpy = ctl, numpy
        self.ts = [x, y]
        self.scopes: list = []
        self.tag = 0

    def kernel_ctl(self):
        """What kernels get as `ctl` in the numpy oracle: no delays, no faults."""
        return np.zeros(MAX_TASKS, np.int64)

    def call(self, kernel, *args, pin=None) -> None:
        if self.numpy:
            kernel.fn(self.kernel_ctl(), self.tag, *args)
        else:
            (kernel.on(pin) if pin is not None else kernel)(self.ctl, self.tag, *args)
        self.tag += 1

    def run(self, ops) -> None:
        for op in ops:
            getattr(self, "op_" + op[0])(*op[1:])

    def results(self) -> tuple:
        """The tensors live at the end except y, then x (so results include intermediates and an
        input)."""
        return tuple(self.ts[2:]) + (self.ts[0],)

    def op_zeros(self):
        x = self.ts[0]
        self.ts.append(np.zeros((N, N)) if self.numpy else l3c.zeros((N, N), x.dtype))
        self.tag += 1

    def op_empty_copy(self, s):
        t = np.empty((N, N)) if self.numpy else l3c.empty((N, N), self.ts[0].dtype)
        self.call(copy, self.ts[s], t)
        self.ts.append(t)

    def op_axpy(self, worker, alpha, s, sv, d, dv, pin):
        ts = self.ts
        self.call(sub_axpy if worker == "sub" else axpy, alpha, view(ts[s], sv), view(ts[d], dv),
                  pin=pin)

    def op_scale(self, alpha, d, dv):
        self.call(scale, view(self.ts[d], dv), alpha)

    def op_flat_scale(self, alpha, d, spec):
        self.call(scale, flat_view(self.ts[d], spec), alpha)

    def op_copy(self, s, sv, d, dv):
        self.call(copy, view(self.ts[s], sv), view(self.ts[d], dv))

    def op_sub_sum(self, s, d, row):
        self.call(sub_sum, self.ts[s], self.ts[d][row])

    def op_group(self, how, alpha, s, d, m):
        ts = self.ts
        if how == "rows":
            parts = [(ts[s][i::m], ts[d][i::m]) for i in range(m)]
        else:
            w = N // m
            parts = [(ts[s][:, i * w:(i + 1) * w], ts[d][:, i * w:(i + 1) * w]) for i in range(m)]
        if self.numpy:
            for src, dst in parts:
                self.call(axpy, alpha, src, dst)
        else:
            l3c.group(axpy, [(self.ctl, self.tag + i, alpha, src, dst)
                             for i, (src, dst) in enumerate(parts)])
            self.tag += m

    def op_open(self):
        cm = None if self.numpy else l3c.scope()
        if cm is not None:
            cm.__enter__()
        self.scopes.append((cm, len(self.ts)))

    def op_close(self):
        cm, n = self.scopes.pop()
        if cm is not None:
            cm.__exit__(None, None, None)
        del self.ts[n:]


def interpret(ctl, x, y, ops, *, numpy: bool):
    """Run `ops` with l3c calls (inside a trace) or with numpy (the oracle). Returns the tensors
    live at the end except y, then x."""
    it = Interpreter(ctl, x, y, numpy=numpy)
    it.run(ops)
    return it.results()


def kernel_tasks(ops: tuple) -> tuple[int, list[int]]:
    """(number of tasks, ids of the tasks that run one of our kernels, i.e. can take a fault)."""
    n, ours = 0, []
    for op in ops:
        if op[0] == "zeros":
            n += 1
        elif op[0] in ("empty_copy", "axpy", "scale", "flat_scale", "copy", "sub_sum"):
            ours.append(n)
            n += 1
        elif op[0] == "group":
            ours.extend(range(n, n + op[-1]))
            n += op[-1]
    return n, ours


def orchestrate(ctl, x, y, ops):
    return interpret(ctl, x, y, ops, numpy=False)


_jits: dict = {}


def jitted(chips: int, sub: int, fuse: bool):
    key = (chips, sub, fuse)
    if key not in _jits:
        _jits[key] = l3c.jit(chips=chips, sub_workers=sub, static_argnames=("ops",),
                             fuse_groups=fuse, timeout=TIMEOUT)(orchestrate)
    return _jits[key]


# ---------------------------------------------------------------------------------------- runs
@dataclasses.dataclass
class Stats:
    programs: int = 0
    tasks: int = 0
    runs: int = 0
    eager_runs: int = 0
    aot_runs: int = 0
    faults: dict = dataclasses.field(default_factory=lambda: {name: 0 for name in FAULT_NAMES.values()})

    def line(self) -> str:
        total = sum(self.faults.values())
        kinds = ", ".join(f"{k} {v}" for k, v in self.faults.items())
        return (f"stress: {self.programs} programs ({self.tasks} tasks), {self.runs} compiled runs, "
                f"{self.eager_runs} eager runs, {self.aot_runs} loaded-schedule runs, "
                f"{total} faults injected ({kinds}), every fault followed by a correct run")


STATS = Stats()


def check_equal(got, expected, what: str) -> None:
    assert len(got) == len(expected), what
    for i, (a, b) in enumerate(zip(got, expected)):
        assert isinstance(a, np.ndarray) and a.shape == b.shape, (what, i)
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: result {i}")


class Program:
    """One random program: its ops, its jitted function, and the oracle for given inputs."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.chips, self.sub = rng.choice([(1, 0), (2, 0), (2, 1), (3, 1), (4, 2)])
        self.ops = random_ops(rng, self.chips, self.sub, rng.randint(3, 40))
        self.ntasks, self.faultable = kernel_tasks(self.ops)
        self.fn = jitted(self.chips, self.sub, fuse=rng.random() < 0.8)
        self.data = np.random.default_rng(seed)

    def inputs(self):
        return self.data.standard_normal((N, N)), self.data.standard_normal((N, N))

    def ctl(self, delays: bool = True) -> np.ndarray:
        ctl = np.zeros(MAX_TASKS, np.int64)
        if delays and self.ntasks:
            for t in range(self.ntasks):
                r = self.rng.random()
                ctl[t] = DELAY_SHORT if r < 0.15 else DELAY_LONG if r < 0.2 else 0
        return ctl

    def oracle(self, x0, y0, ctl):
        """numpy's results and written x, y for inputs x0, y0 (`ctl`: the run's control data)."""
        x, y = x0.copy(), y0.copy()
        results = interpret(None, x, y, self.ops, numpy=True)
        return results, x, y

    def fault_task(self, ctl, x0, y0, task: int) -> int | None:
        """The task to fault in a run with `ctl` on x0, y0 (None: no task of ours runs)."""
        return task

    def check_run(self, run, what: str, delays: bool = True) -> None:
        """One clean run through `run(ctl, x, y)`: results and written inputs equal numpy."""
        x0, y0 = self.inputs()
        ctl = self.ctl(delays)
        expected, x_np, y_np = self.oracle(x0, y0, ctl)
        x, y = x0.copy(), y0.copy()
        got = run(ctl, x, y)
        check_equal(got, expected, f"seed {self.seed} {what}")
        np.testing.assert_array_equal(x, x_np, err_msg=f"seed {self.seed} {what}: x written back")
        np.testing.assert_array_equal(y, y_np, err_msg=f"seed {self.seed} {what}: y written back")

    def compiled_run(self, ctl, x, y):
        STATS.runs += 1
        return self.fn(ctl, x, y, ops=self.ops)

    def eager_run(self, ctl, x, y):
        STATS.eager_runs += 1
        return self.fn.eager(ctl, x, y, ops=self.ops)

    def fault_run(self, run, fault: int, task: int) -> None:
        """A run with `fault` at `task`: the matching l3c error, and the caller's arrays unchanged."""
        ctl = self.ctl()
        x0, y0 = self.inputs()
        task = self.fault_task(ctl, x0, y0, task)
        if task is None:
            return
        ctl[task] = fault
        x, y = x0.copy(), y0.copy()
        STATS.faults[FAULT_NAMES[fault]] += 1
        expected = {FAULT_RAISE: l3c.KernelError, FAULT_SIGKILL: l3c.WorkerCrashed,
                    FAULT_EXIT: l3c.WorkerCrashed, FAULT_HANG: l3c.Timeout}[fault]
        try:
            run(ctl, x, y)
        except expected as exc:
            if fault == FAULT_RAISE:
                assert exc.task == task, (self.seed, exc.task, task)
                assert "InjectedFault" in exc.remote_traceback
            elif fault == FAULT_SIGKILL:
                assert exc.signal == signal.SIGKILL, (self.seed, exc.signal)
            elif fault == FAULT_EXIT:
                assert exc.exitcode == 7, (self.seed, exc.exitcode)
        else:
            raise AssertionError(f"seed {self.seed}: {FAULT_NAMES[fault]} at task {task} raised nothing")
        # A failed run never writes back into the caller's arrays.
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)


def run_program(seed: int, *, faults: int, allow_hang: bool, tmp_dir: str | None = None,
                program: Program | None = None, compiled: bool = True, aot: bool = True) -> None:
    """Everything the stress suite does with one random program (see module docstring):
    `Program(seed)`, or `program` (a loop program); `compiled=False` runs the same checks with
    `.eager` in place of compiled runs (an l3c without compiled loops); `aot=False` leaves out
    the saved-and-loaded run (an l3c whose schedule files cannot hold loops yet)."""
    p = program if program is not None else Program(seed)
    rng = p.rng
    STATS.programs += 1
    STATS.tasks += p.ntasks
    main_run = p.compiled_run if compiled else p.eager_run
    if compiled:
        compiled_ = p.fn.lower(np.zeros(MAX_TASKS, np.int64), np.zeros((N, N)), np.zeros((N, N)),
                               ops=p.ops)
        assert compiled_.graph.number_of_nodes() == p.ntasks, "task ids must follow program order"
        p.check_run(p.compiled_run, "compiled")
        if rng.random() < 0.3:
            p.check_run(p.eager_run, "eager")
        if tmp_dir is not None and rng.random() < 0.1 and aot:
            path = os.path.join(tmp_dir, f"stress-{seed}.l3c")
            compiled_.save(path)
            loaded = l3c.load(path)

            def aot_run(ctl, x, y):
                STATS.aot_runs += 1
                return loaded(ctl, x, y, p.ops)
            p.check_run(aot_run, "loaded schedule")
    else:
        p.check_run(p.eager_run, "eager")
    if not p.faultable:
        return
    for _ in range(faults):
        kinds = [f for f in FAULTS if f != FAULT_HANG or allow_hang]
        fault = rng.choice(kinds)
        run = p.eager_run if rng.random() < 0.15 else main_run
        p.fault_run(run, fault, rng.choice(p.faultable))
        p.check_run(main_run if rng.random() < 0.8 else p.eager_run, "after a fault")
