"""A two-stage pipeline over two chips, one micro-batch per iteration of `l3c.range`.

A batch of B*M rows goes through two layers: stage 1 (`x @ w1`, then relu) is pinned to chip 0,
stage 2 (`h @ w2`) to chip 1. Iteration b works on rows `b*M : (b+1)*M` of `x`, `h` and `y` (affine
slices of the loop variable), so iterations touch disjoint rows: the only dependency is stage 2 of
micro-batch b on stage 1 of the same b. Iterations overlap: chip 0 runs stage 1 of micro-batch b+1
while chip 1 runs stage 2 of micro-batch b. The body is traced once whatever the number of
micro-batches (`compiled.graph` has one node per stage; see the dump's `loops` column).

    l3c dump-ir examples/microbatch_pipeline.py:pipeline --arg f32[64,32] --arg f32[32,48] --arg f32[48,16]
    python examples/microbatch_pipeline.py
"""
import numpy as np

import l3c


@l3c.kernel
def stage1(x: l3c.In, w1: l3c.In, h: l3c.Out):
    np.maximum(x @ w1, 0, out=h)


@l3c.kernel
def stage2(h: l3c.In, w2: l3c.In, y: l3c.Out):
    np.matmul(h, w2, out=y)


@l3c.jit(chips=2)
def pipeline(x, w1, w2, micro: int = 8):
    batches = x.shape[0] // micro
    h = l3c.empty((x.shape[0], w1.shape[1]), x.dtype)
    y = l3c.empty((x.shape[0], w2.shape[1]), x.dtype)
    for b in l3c.range(batches):
        rows = slice(b * micro, (b + 1) * micro)
        stage1.on(0)(x[rows], w1, h[rows])
        stage2.on(1)(h[rows], w2, y[rows])
    return y


def reference(x, w1, w2):
    return np.maximum(x @ w1, 0) @ w2


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    w1 = rng.standard_normal((32, 48)).astype(np.float32)
    w2 = rng.standard_normal((48, 16)).astype(np.float32)
    for micro in (8, 16, 64):
        y = pipeline(x, w1, w2, micro)
        assert np.allclose(y, reference(x, w1, w2), rtol=1e-4, atol=1e-4), micro
    compiled = pipeline.lower(x, w1, w2)
    assert compiled.graph.number_of_nodes() == 2        # one node per stage, not per micro-batch
    print(compiled.dump())
    carried = [(u, v) for u, v, d in compiled.graph.edges(data=True) if d.get("carried")]
    print(f"microbatch_pipeline matches numpy; {len(compiled.loops)} loop, "
          f"{compiled.graph.number_of_nodes()} nodes for {64 // 8} micro-batches, "
          f"carried edges {carried}")
    l3c.shutdown()
