"""Native kernels (numba cfuncs) for tests/test_native.py, importable by path so that a fresh
interpreter (`l3c run`, an `mpiexec` job) resolves them in its workers. Each Python body differs from
its C function on purpose (it writes -1): a result shows which of the two ran.

    mpiexec -n 2 python tests/_native_kernels.py      # several hosts: prints "RESULT ok" per rank
"""
from __future__ import annotations

import sys

import numpy as np
from numba import cfunc, types

import l3c

f64p, f32p, i64 = types.CPointer(types.float64), types.CPointer(types.float32), types.int64


@cfunc(types.int32(types.float64, f32p, i64, f32p, i64))
def c_axpy(alpha, x, nx, y, ny):
    for k in range(ny):
        y[k] += alpha * x[k]
    return 0


@l3c.kernel(native=c_axpy)
def axpy(alpha: float, x: l3c.In, y: l3c.InOut):
    y[...] = -1                                   # not y += alpha * x: shows the C code ran


@cfunc(types.int32(f64p, i64, i64, types.float64))
def c_fill(x, n, start, step):
    for k in range(n):
        x[k] = start + k * step
    return 0


@l3c.kernel(native=c_fill)
def fill(x: l3c.Out, start: int, step: float):
    x[...] = -1


@cfunc(types.int32(f64p, i64, i64))
def c_status(x, n, code):
    x[0] = 1.0                                    # a failing kernel may have written
    return code


@l3c.kernel(native=c_status)
def status(x: l3c.InOut, code: int):
    x[...] = -1


@cfunc(types.int32(f64p, i64))
def c_segfault(x, n):
    x[n * 1_000_000_000_000] = 1.0               # ~8 TB past the arena: unmapped, SIGSEGV
    return 0


@l3c.kernel(native=c_segfault)
def segfault(x: l3c.InOut):
    x[...] = -1


@cfunc(types.int32(f64p, i64, f64p, i64))
def c_add_into(src, ns, dst, nd):
    for k in range(nd):
        dst[k] += src[k]
    return 0


@l3c.kernel(native=c_add_into)
def add_into(src: l3c.In, dst: l3c.InOut):
    dst[...] = -1


@l3c.kernel
def py_double(x: l3c.InOut):
    x *= 2


@l3c.jit(chips=2)
def mixed(x, y):
    """Native and Python kernels, a native group, a scoped temporary: y = 2 * (x + y) + x rows."""
    l3c.group(add_into, [(x[i], y[i]) for i in range(2)])
    py_double(y)
    with l3c.scope():
        t = l3c.empty_like(x)
        l3c.group(fill, [(t[i], 0, 0.0) for i in range(2)])
        add_into(x, t)
        add_into(t, y)
    return y


def mixed_reference(x, y):
    return 2 * (x + y) + x


@l3c.jit(hosts=2, chips=1)
def across_hosts(x, y):
    """A native producer on host 0, a Python step and a native consumer on host 1."""
    add_into.on(0)(x, y)
    py_double.on(1)(y)
    add_into.on(1)(x, y)
    return y


if __name__ == "__main__":
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    x, y = np.arange(8.0), np.ones(8)
    got = across_hosts(x, y.copy())
    ok = np.array_equal(got, 2 * (x + 1) + x)
    eager = across_hosts.eager(x, y.copy())
    ok = ok and np.array_equal(eager, got)
    print(f"RESULT {'ok' if ok else 'bad'} rank {rank} {got.tolist()}", flush=True)
    l3c.shutdown()
    sys.exit(0 if ok else 1)
