"""Tiled matrix multiply whose tiles are native kernels (numba cfuncs): the chips' step loops call
the compiled tile code directly, with no Python between tasks.

    C = A @ B    with A: (M, K), B: (K, N), tiles of T x T

Native kernels take contiguous tensors (a pointer and an element count each), and a T x T block of
a row-major matrix is not contiguous. So the matrices live *tile-major*: `a_tiles[i, k]` is tile
(i, k) of A, one contiguous T x T block. A native `pack` kernel per tile row copies A and B into that
layout, `tile_gemm` accumulates `C[i, j] += A[i, k] @ B[k, j]` for each k (a chain per C tile, spread
over the chips by the schedule), and a sub worker unpacks C into the row-major result (the unpack
needs strided writes, so it stays a Python kernel: native and Python kernels mix freely).
Needs numba (`pip install -e .[native]`).

    l3c dump-ir examples/native_matmul.py:matmul --arg f64[64,48] --arg f64[48,32]
    python examples/native_matmul.py
"""
import numpy as np
from numba import cfunc, types

import l3c

TILE = 16
f64p, i64 = types.CPointer(types.float64), types.int64


@cfunc(types.int32(f64p, i64, f64p, i64, i64, i64))
def c_pack_rows(src, n_src, dst, n_dst, cols, tile):
    """src: `tile` full rows of a row-major matrix with `cols` columns; dst: those rows' tiles,
    one contiguous tile x tile block after another."""
    if n_src != tile * cols or n_dst != n_src or cols % tile != 0:
        return 1
    for r in range(tile):
        for c in range(cols):
            dst[(c // tile) * tile * tile + r * tile + c % tile] = src[r * cols + c]
    return 0


@l3c.kernel(native=c_pack_rows)
def pack_rows(src: l3c.In, dst: l3c.Out, cols: int, tile: int):
    dst[...] = src.reshape(tile, cols // tile, tile).transpose(1, 0, 2).reshape(dst.shape)


@cfunc(types.int32(f64p, i64, f64p, i64, f64p, i64, i64))
def c_tile_gemm(a, na, b, nb, c, nc, tile):
    """c += a @ b for tile x tile row-major blocks."""
    if na != tile * tile or nb != na or nc != na:
        return 2
    for i in range(tile):
        for k in range(tile):
            aik = a[i * tile + k]
            for j in range(tile):
                c[i * tile + j] += aik * b[k * tile + j]
    return 0


@l3c.kernel(native=c_tile_gemm)
def tile_gemm(a: l3c.In, b: l3c.In, c: l3c.InOut, tile: int):
    c += a @ b


@l3c.kernel(worker="sub")
def unpack(c_tiles: l3c.In, out: l3c.Out):
    ti, tj, t, _ = c_tiles.shape
    out[...] = c_tiles.transpose(0, 2, 1, 3).reshape(ti * t, tj * t)


@l3c.jit(chips=2, sub_workers=1)
def matmul(a, b):
    m, k = a.shape
    n = b.shape[1]
    ti, tk, tj = m // TILE, k // TILE, n // TILE
    a_tiles = l3c.empty((ti, tk, TILE, TILE), a.dtype)
    b_tiles = l3c.empty((tk, tj, TILE, TILE), b.dtype)
    for i in range(ti):
        pack_rows(a[i * TILE:(i + 1) * TILE], a_tiles[i], k, TILE)
    for p in range(tk):
        pack_rows(b[p * TILE:(p + 1) * TILE], b_tiles[p], n, TILE)
    c_tiles = l3c.zeros((ti, tj, TILE, TILE), a.dtype)
    for i in range(ti):
        for j in range(tj):
            for p in range(tk):
                tile_gemm(a_tiles[i, p], b_tiles[p, j], c_tiles[i, j], TILE)
    c = l3c.empty((m, n), a.dtype)
    unpack(c_tiles, c)
    return c


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 48))
    b = rng.standard_normal((48, 32))
    compiled = matmul.lower(a, b)
    print(compiled.dump())
    c = matmul(a, b)
    assert np.allclose(c, a @ b), np.abs(c - a @ b).max()
    assert np.allclose(matmul.eager(a, b), a @ b)
    print("native tiled matmul matches numpy;", compiled.memory)
    l3c.shutdown()
