"""The SPEC's orchestration example: a group over interleaved rows, a scoped temporary, a report.

    l3c dump-ir examples/axpy_rows.py:step --arg f32[8,8] --arg f32[8,8]
    python examples/axpy_rows.py
"""
import numpy as np

import l3c


@l3c.kernel
def matmul(x: l3c.In, w: l3c.In, out: l3c.Out):
    np.matmul(x, w, out=out)


@l3c.kernel
def relu(x: l3c.In, out: l3c.Out):
    np.maximum(x, 0, out=out)


@l3c.kernel
def axpy(alpha: float, x: l3c.In, y: l3c.InOut):
    y += alpha * x


@l3c.kernel(worker="sub")
def report(x: l3c.In, out: l3c.Out):
    out[...] = x.mean()


@l3c.jit(chips=2, sub_workers=1)
def step(x, w):
    h = l3c.empty(x.shape, x.dtype)
    l3c.group(matmul, [(x[i::2], w, h[i::2]) for i in range(2)])   # rows 0,2,.. and 1,3,.. disjoint
    with l3c.scope():
        t = l3c.empty_like(h)
        relu(h, t)
        axpy(0.5, t, h)
    out = l3c.empty((1,), x.dtype)
    report(h, out)
    return h, out


def reference(x, w):
    h = x @ w
    h = h + 0.5 * np.maximum(h, 0)
    return h, np.array([h.mean()], dtype=x.dtype)


if __name__ == "__main__":
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    h, out = step(x, w)
    ref_h, ref_out = reference(x, w)
    assert np.allclose(h, ref_h, atol=1e-5) and np.allclose(out, ref_out, atol=1e-5)
    print(step.lower(x, w).dump())
    print("step matches numpy")
    l3c.shutdown()
