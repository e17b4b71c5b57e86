"""Tiled matrix multiply on a pool of chips, with a scoped temporary and a sub-worker reduction.

    y = relu(a @ b + bias), sums = y.sum(axis=0)

The K dimension is split in two halves. Each half is one group task (row block i on chip i); the
second half's partial product lives in a scoped temporary whose arena space is free again after the
`with l3c.scope():` block. Adding the halves and the bias+relu are per-block calls the fuse pass turns
into group tasks. A sub worker (a host process, not a chip) reduces the columns.

    l3c dump-ir examples/tiled_matmul.py:tiled_matmul --arg f32[64,32] --arg f32[32,64]
    l3c dump-ir examples/tiled_matmul.py:tiled_matmul --arg f32[64,32] --arg f32[32,64] --format dot
    python examples/tiled_matmul.py
"""
import numpy as np

import l3c


@l3c.kernel
def matmul_tile(a: l3c.In, b: l3c.In, c: l3c.Out):
    np.matmul(a, b, out=c)


@l3c.kernel
def add_into(x: l3c.In, acc: l3c.InOut):
    acc += x


@l3c.kernel
def bias_relu(x: l3c.In, bias: float, y: l3c.Out):
    np.maximum(x + bias, 0, out=y)


@l3c.kernel(worker="sub")
def column_sums(y: l3c.In, out: l3c.Out):
    out[...] = y.sum(axis=0)


@l3c.jit(chips=2, sub_workers=1)
def tiled_matmul(a, b, tiles: int = 2, bias: float = 0.5):
    m, k = a.shape
    n = b.shape[1]
    rows = [slice(i * m // tiles, (i + 1) * m // tiles) for i in range(tiles)]
    half = k // 2

    c = l3c.empty((m, n), a.dtype)
    l3c.group(matmul_tile, [(a[r, :half], b[:half], c[r]) for r in rows])
    with l3c.scope():
        partial = l3c.empty((m, n), a.dtype)          # dead after this block: arena reused
        l3c.group(matmul_tile, [(a[r, half:], b[half:], partial[r]) for r in rows])
        for r in rows:
            add_into(partial[r], c[r])

    y = l3c.empty_like(c)
    for r in rows:
        bias_relu(c[r], bias, y[r])
    sums = l3c.empty((n,), a.dtype)
    column_sums(y, sums)
    return y, sums


def reference(a, b, bias=0.5):
    y = np.maximum(a @ b + bias, 0)
    return y, y.sum(axis=0)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 32)).astype(np.float32)
    b = rng.standard_normal((32, 64)).astype(np.float32)
    compiled = tiled_matmul.lower(a, b)
    print(compiled.dump())
    y, sums = tiled_matmul(a, b)
    ref_y, ref_sums = reference(a, b)
    assert np.allclose(y, ref_y, atol=1e-4) and np.allclose(sums, ref_sums, atol=1e-3)
    print("tiled_matmul matches numpy;", compiled.memory)
    l3c.shutdown()
