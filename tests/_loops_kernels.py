"""Kernels and looped programs importable by path (tests/test_loops_dumps.py saves a schedule of
one, and `l3c.load` resolves kernels by import path), and the SPEC's `relax` and `solve` examples
(compiled in tests/test_loops_compiled.py, their edges in tests/test_passes_loops.py)."""
from __future__ import annotations

import numpy as np

import l3c


@l3c.kernel
def bump(x: l3c.InOut, k):
    x[...] += k


@l3c.kernel
def clear_after(flag: l3c.InOut, counter: l3c.InOut):
    counter[...] += 1
    flag[...] = np.where(counter >= 3, 0, flag)


def looped(x, flag, counter):
    for i in l3c.range(1, 4):
        bump(x[i - 1, 2 * i:2 * i + 2], i)
    for k in l3c.while_loop(flag, max_iterations=10):
        bump(x[3, k:k + 1], 100)
        clear_after(flag, counter)
    with l3c.cond(flag, invert=True):
        bump(x, 0.5)
    return x


@l3c.kernel
def smooth(u: l3c.In, v: l3c.Out):
    v[...] = 0.5 * u[::2] + 0.25


@l3c.kernel
def copy_into(v: l3c.In, u: l3c.Out):
    u[...] = v


@l3c.kernel
def not_converged(tol: float, x: l3c.In, go: l3c.Out):
    go[0] = int(abs(x).max() > tol)


@l3c.kernel
def update(x: l3c.InOut):
    x *= 0.5


@l3c.kernel
def report_failure(x: l3c.InOut):
    x[...] = -1.0


def relax(u, steps):
    v = l3c.empty_like(u)
    for i in l3c.range(steps):
        l3c.group(smooth, [(u, v[p::2]) for p in range(2)])
        copy_into(v, u)
    return u


def solve(x, tol):
    go = l3c.empty((1,), np.int32)
    not_converged(tol, x, go)
    for it in l3c.while_loop(go, max_iterations=1000):
        update(x)
        not_converged(tol, x, go)
    with l3c.cond(go):
        report_failure(x)
    return x
