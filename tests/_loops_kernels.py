"""Kernels and a looped program importable by path (tests/test_loops_dumps.py saves a schedule of
it, and `l3c.load` resolves kernels by import path)."""
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
