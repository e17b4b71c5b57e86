"""Run under `mpiexec -n 2 python tests/_loops_hosts_compiled_driver.py` by
tests/test_loops_hosts_compiled.py (not a test module): compiled programs with `l3c.range` (static
and tensor bounds), `while_loop`, `cond` and nesting on 2 hosts of 1 chip each, calls pinned so
that tensors cross hosts inside the bodies (chip g is on host g), each compared on every rank with
the single-host `.eager` of rank 0's inputs; then a kernel that raises inside a loop on host 1 (a
`KernelError` on every rank) and a call after it that works.

Prints `RESULT <rank> <name> ok|FAIL <detail>` per case and `DONE <rank>` at the end.
"""
from __future__ import annotations

import traceback

import numpy as np
from mpi4py import MPI

import l3c

RANK = MPI.COMM_WORLD.Get_rank()


@l3c.kernel
def scale(x: l3c.InOut, k):
    x[...] = x * 0.5 + k


@l3c.kernel
def accumulate(x: l3c.In, acc: l3c.InOut):
    acc[...] += x.sum()


@l3c.kernel
def set_bound(src: l3c.In, bound: l3c.Out):
    bound[0] = int(src[0])


@l3c.kernel
def column_add(col: l3c.In, y: l3c.InOut):
    y[...] += col


@l3c.kernel
def above(x: l3c.In, tol: float, go: l3c.Out):
    go[0] = int(np.abs(x).max() > tol)


@l3c.kernel
def parity(i, flag: l3c.Out):
    flag[0] = i % 2


@l3c.kernel
def countdown(go: l3c.InOut, counter: l3c.InOut):
    counter[0] += 1
    go[0] = int(counter[0] < 3)


@l3c.kernel
def fails_at(x: l3c.InOut, i, bad):
    if i == bad:
        raise ValueError(f"iteration {i} is bad")
    x[...] += i


def relay_range(x, acc):
    """Static range: host 0 updates a row, host 1 sums it into acc (carried) every iteration."""
    for i in l3c.range(6):
        scale.on(0)(x[i], i)
        accumulate.on(1)(x[i], acc)
    return x, acc


def tensor_bounds(x, y, lo, src):
    """Tensor bounds: the stop is written on host 1 before the loop; columns of x (strided views)
    move from host 0 to host 1 every iteration."""
    hi = l3c.empty((1,), np.int64)
    set_bound.on(1)(src, hi)
    for i in l3c.range(lo, hi):
        scale.on(0)(x[:, i], i)
        column_add.on(1)(x[:, i], y)
    return x, y


def converge(x, tol):
    """while_loop: host 0 updates x, host 1 decides; x and the flag cross every iteration."""
    go = l3c.empty((1,), np.int32)
    above.on(1)(x, tol, go)
    for it in l3c.while_loop(go, max_iterations=50):
        scale.on(0)(x, 0)
        above.on(1)(x, tol, go)
    with l3c.cond(go):
        scale.on(1)(x, 1000)
    return x


def conds_in_range(y):
    """cond inside a range, its flag written on the other host."""
    flag = l3c.empty((1,), np.int64)
    for i in l3c.range(5):
        parity.on(0)(i, flag)
        with l3c.cond(flag):
            scale.on(1)(y[i], i)
    return y


def nested(x, y, go, counter):
    """A range with affine slices inside a while loop whose flag host 1 writes."""
    for it in l3c.while_loop(go, max_iterations=10):
        for i in l3c.range(3):
            scale.on(0)(x[i + 1], it)
            column_add.on(1)(x[i + 1], y[i])
        countdown.on(1)(go, counter)
    return x, y


@l3c.kernel
def decide(go: l3c.Out, i, bad):
    if i == bad:
        raise ValueError(f"iteration {i} is bad")
    go[0] = int(i < 4)


def faulty_while(x, go, bad):
    """Host 0 waits for host 1's flag every iteration when host 1 fails."""
    for it in l3c.while_loop(go, max_iterations=8):
        scale.on(0)(x, it)
        decide.on(1)(go, it, bad)
    return x


@l3c.kernel
def copy_into(src: l3c.In, dst: l3c.Out):
    dst[...] = src


def crossing_temporaries(x, acc):
    """A body intermediate that crosses to host 1 and back every iteration; then a loop with no
    task of host 1 whose writes host 1 reads after it (its landings run inside that loop)."""
    for i in l3c.range(4):
        t = l3c.empty((4,), np.float64)
        copy_into.on(0)(x[i], t)
        scale.on(1)(t, i)
        copy_into.on(0)(t, x[i])
    for i in l3c.range(2):
        scale.on(0)(x[2 * i + 1], 1)
    accumulate.on(1)(x, acc)
    return x, acc


def faulty(x, bad):
    for i in l3c.range(6):
        scale.on(0)(x[i], i)
        fails_at.on(1)(x[i], i, bad)
    return x


def inputs(rng: np.random.Generator) -> dict:
    return {
        "relay_range": (rng.standard_normal((6, 4)), np.zeros(1)),
        "tensor_bounds": (rng.standard_normal((3, 8)), np.zeros(3), np.array([2]), np.array([7])),
        "converge": (rng.standard_normal(5) * 8, 0.5),
        "conds_in_range": (rng.standard_normal((5, 3)),),
        "nested": (rng.standard_normal((4, 4)), np.zeros((3, 4)), np.array([1], np.int32),
                   np.zeros(1, np.int64)),
        "crossing_temporaries": (rng.standard_normal((4, 4)), np.zeros(1)),
    }


def report(name: str, ok: bool, detail: str = "") -> None:
    detail = detail.replace("\n", " | ")[:3000]
    print(f"\nRESULT {RANK} {name} {'ok' if ok else 'FAIL'} {detail}", flush=True)


def garbage(args: tuple) -> tuple:
    """What the other ranks pass: inputs must come from rank 0."""
    return tuple(a * 0 + 3 if isinstance(a, np.ndarray) else a for a in args)


def same(got, want) -> bool:
    if isinstance(want, tuple):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    return np.allclose(got, want)


def main() -> None:
    cases = inputs(np.random.default_rng(7))
    for fn in (relay_range, tensor_bounds, converge, conds_in_range, nested, crossing_temporaries):
        name = fn.__name__
        args = cases[name]
        try:
            want = l3c.jit(fn, chips=2).eager(*(a.copy() if isinstance(a, np.ndarray) else a
                                                  for a in args))
            mine = args if RANK == 0 else garbage(args)
            got = l3c.jit(fn, chips=1, hosts=2, timeout=30)(*mine)
            moved = l3c.jit(fn, chips=1, hosts=2).lower(*args)
            from l3c.codegen.hosts import split
            transfers = split(moved.program).stats["transfers"]
            report(name, same(got, want) and transfers > 0, f"transfers={transfers}")
        except Exception:  # noqa: BLE001
            report(name, False, traceback.format_exc())
    # a profile: one slice per executed instance, each host one process of the timeline
    try:
        args = cases["relay_range"]
        _, trace = l3c.jit(relay_range, chips=1, hosts=2).lower(*args).profile(*args)
        slices = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
        per_host = sorted({e["pid"] for e in slices})
        report("profile", len(slices) == 12 and per_host == [1, 2], f"{len(slices)} {per_host}")
    except Exception:  # noqa: BLE001
        report("profile", False, traceback.format_exc())
    # a kernel raising inside a loop on host 1: a KernelError on every rank, then a call that works
    for fn, args in ((faulty, (np.zeros((6, 2)),)),
                     (faulty_while, (np.zeros(3), np.array([1], np.int32)))):
        name = fn.__name__
        jitted = l3c.jit(fn, chips=1, hosts=2, timeout=30)
        try:
            jitted(*(a.copy() for a in args), 3)
            report(name, False, "no error")
        except l3c.KernelError as exc:
            report(name, "iteration 3 is bad" in str(exc) and getattr(exc, "host", None) == 1,
                   f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001
            report(name, False, traceback.format_exc())
        try:
            got = jitted(*(a.copy() for a in args), 99)
            want = l3c.jit(fn, chips=2).eager(*(a.copy() for a in args), 99)
            report(f"{name}_after", same(got, want))
        except Exception:  # noqa: BLE001
            report(f"{name}_after", False, traceback.format_exc())
    print(f"\nDONE {RANK}", flush=True)


if __name__ == "__main__":
    main()
