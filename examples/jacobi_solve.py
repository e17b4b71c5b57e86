"""Jacobi iteration on a 2-D grid until it converges, as one compiled schedule with `l3c.while_loop`.

The grid is split into row bands over two chips (as in `jacobi.py`); each iteration of the loop is
two sweeps (a -> b, then b -> a) and a sub-worker kernel that writes the flag `go`: 1 while the
largest change of the last sweep is above the tolerance. The loop tests `go` before every
iteration, after its writer, so the decision to go on is taken in the workers: no return to Python
per iteration. `max_iterations` caps the loop whatever the data; the count of sweeps done is a
result.

    l3c dump-ir examples/jacobi_solve.py:solve --arg f64[34,16]
    l3c profile examples/jacobi_solve.py:solve --arg f64[34,16] -o solve.html   # one bar per iteration
    python examples/jacobi_solve.py
"""
import numpy as np

import l3c


@l3c.kernel
def copy(src: l3c.In, dst: l3c.Out):
    dst[...] = src


@l3c.kernel
def smooth(src: l3c.In, dst: l3c.Out):
    """dst = the 4-neighbour average of src's inner rows; the edge columns are kept as they are.
    src has one halo row above and below dst."""
    dst[:, 1:-1] = 0.25 * (src[:-2, 1:-1] + src[2:, 1:-1] + src[1:-1, :-2] + src[1:-1, 2:])
    dst[:, 0] = src[1:-1, 0]
    dst[:, -1] = src[1:-1, -1]


@l3c.kernel(worker="sub")
def not_converged(tol: float, new: l3c.In, old: l3c.In, go: l3c.Out, sweeps: l3c.InOut):
    """go[0] = 1 while the last sweep changed some value by more than tol."""
    go[0] = np.abs(new - old).max() > tol
    sweeps[0] += 2


@l3c.kernel(worker="sub")
def start(go: l3c.Out, sweeps: l3c.Out):
    go[0] = 1
    sweeps[0] = 0


@l3c.jit(chips=2, sub_workers=1)
def solve(u0, tol: float = 1e-4, max_iterations: int = 2000):
    rows = u0.shape[0] - 2                     # rows 0 and -1 are fixed boundary rows
    edges = [1 + i * rows // 2 for i in range(3)]
    bands = list(zip(edges, edges[1:]))
    a, b = l3c.empty_like(u0), l3c.empty_like(u0)
    copy(u0, a)
    copy(u0, b)
    go = l3c.empty((1,), np.int32)
    sweeps = l3c.empty((1,), np.int64)
    start(go, sweeps)
    for _ in l3c.while_loop(go, max_iterations=max_iterations):
        l3c.group(smooth, [(a[lo - 1:hi + 1], b[lo:hi]) for lo, hi in bands])
        l3c.group(smooth, [(b[lo - 1:hi + 1], a[lo:hi]) for lo, hi in bands])
        not_converged(tol, a, b, go, sweeps)
    return a, sweeps


def reference(u0, tol=1e-4, max_iterations=2000):
    a, sweeps = u0.copy(), 0
    for _ in range(max_iterations):
        for _ in range(2):
            old = a.copy()
            a[1:-1, 1:-1] = 0.25 * (old[:-2, 1:-1] + old[2:, 1:-1] + old[1:-1, :-2] + old[1:-1, 2:])
        sweeps += 2
        if not np.abs(a - old).max() > tol:
            break
    return a, sweeps


if __name__ == "__main__":
    u0 = np.zeros((34, 16))
    u0[0, :] = 1.0                              # a hot top edge
    u0[:, 0] = np.linspace(1.0, 0.0, 34)        # and a warm left edge
    for tol, cap in ((1e-3, 2000), (1e-5, 2000), (1e-5, 10)):
        u, sweeps = solve(u0, tol, cap)
        ref_u, ref_sweeps = reference(u0, tol, cap)
        assert sweeps[0] == ref_sweeps and np.allclose(u, ref_u), (tol, cap, sweeps, ref_sweeps)
    compiled = solve.lower(u0, 1e-5)
    print(compiled.dump())
    print("loops:", compiled.loops)
    print(f"jacobi_solve matches numpy; tolerance 1e-5 reached after {ref_sweeps} sweeps "
          f"(capped run), {reference(u0, 1e-5)[1]} uncapped")
    l3c.shutdown()
