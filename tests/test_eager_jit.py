"""End to end: @l3c.jit functions through Jitted.eager (tracer -> codegen.eager -> runtime.eager)."""
import numpy as np
import pytest

import l3c


@l3c.kernel
def axpy(alpha: float, x: l3c.In, y: l3c.InOut):
    y += alpha * x


@l3c.kernel
def matmul(x: l3c.In, w: l3c.In, out: l3c.Out):
    out[...] = x @ w


@l3c.kernel
def relu(x: l3c.In, out: l3c.Out):
    np.maximum(x, 0, out=out)


@l3c.kernel(worker="sub")
def report(x: l3c.In, out: l3c.Out):
    out[...] = x.mean()


@l3c.kernel
def where(out: l3c.Out):
    out[...] = (l3c.chip_id(), l3c.group_rank(), l3c.group_size())


@l3c.kernel
def fails(x: l3c.InOut):
    raise RuntimeError("kernel says no")


@l3c.jit(chips=2, sub_workers=1)
def step(x, w):
    h = l3c.empty(x.shape, x.dtype)
    l3c.group(matmul, [(x[i::2], w, h[i::2]) for i in range(2)])
    with l3c.scope():
        t = l3c.empty_like(h)
        relu(h, t)
        axpy(0.5, t, h)
    out = l3c.zeros((1,), x.dtype)
    report(h, out)
    axpy(1.0, h, x)                 # writes the caller's array
    return h, out


@l3c.jit(chips=2)
def placement():
    out = l3c.empty((3, 3), "int64")
    l3c.group(where, [(out[i],) for i in range(2)])
    where.on(1)(out[2])
    return out


@l3c.jit(chips=2)
def broken(x):
    axpy(1.0, x, x)
    fails(x)
    return x


def test_eager_matches_numpy_and_updates_inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    x0 = x.copy()
    h = x0 @ w
    h = h + 0.5 * np.maximum(h, 0)
    got_h, got_mean = step.eager(x, w)
    np.testing.assert_allclose(got_h, h, rtol=1e-5)
    np.testing.assert_allclose(got_mean, [h.mean()], rtol=1e-5)
    np.testing.assert_allclose(x, x0 + h, rtol=1e-5)


def test_eager_context_in_groups_and_pins():
    out = placement.eager()
    assert out.tolist() == [[0, 0, 2], [1, 1, 2], [1, 0, 1]]


def test_eager_kernel_error_names_call_site():
    with pytest.raises(l3c.KernelError) as info:
        broken.eager(np.ones(3))
    assert info.value.kernel.endswith("fails") and "test_eager_jit.py:" in info.value.loc
    assert "kernel says no" in info.value.remote_traceback
    assert placement.eager()[2].tolist() == [1, 0, 1]


def test_eager_and_compiled_fork_again_for_a_kernel_defined_after_the_pool_started():
    @l3c.jit(chips=2)
    def warm(x):
        axpy(1.0, x, x)
        return x

    warm.eager(np.ones(2))                      # the pool now runs, forked before `triple` exists

    @l3c.kernel
    def triple(x: l3c.InOut):
        x *= 3

    @l3c.jit(chips=2)
    def late(x):
        triple(x)
        return x

    assert np.array_equal(late.eager(np.ones(3)), [3, 3, 3])
    assert np.array_equal(late(np.full(3, 2.0)), [6, 6, 6])


@l3c.kernel
def blas_threads(out: l3c.Out):
    from threadpoolctl import threadpool_info
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    out[...] = max(blas) if blas else -1          # numpy's BLAS is loaded in every worker


def test_each_worker_runs_native_libraries_on_one_thread():
    """A worker stands for one chip: BLAS threads per worker would oversubscribe the cores."""
    @l3c.jit(chips=2)
    def probe(x):
        blas_threads.on(0)(x[0:1])
        blas_threads.on(1)(x[1:2])
        return x

    assert np.array_equal(probe(np.zeros(2)), [1, 1])
    assert np.array_equal(probe.eager(np.zeros(2)), [1, 1])
