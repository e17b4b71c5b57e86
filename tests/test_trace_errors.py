"""Every way an orchestration function can misuse the tracer raises TraceError naming file:line."""
from __future__ import annotations

import numpy as np
import pytest

import l3c

FILE = "test_trace_errors.py"


@l3c.kernel
def copy(x: l3c.In, y: l3c.Out):
    y[...] = x


@l3c.kernel
def untyped(x, y: l3c.Out):
    y[...] = x


@l3c.kernel(worker="sub")
def on_host(x: l3c.In):
    pass


def x44():
    return np.zeros((4, 4), np.float32)


def expect_error(fn, line_of, *fragments, args=None, line=None, **jit_options):
    """`line`: the expected line when the innermost user frame is a helper (a lambda)."""
    jitted = l3c.jit(fn, chips=jit_options.pop("chips", 2), **jit_options)
    with pytest.raises(l3c.TraceError) as info:
        jitted.trace(*(args if args is not None else (x44(),)))
    message = str(info.value)
    assert f"{FILE}:{line or line_of(fn)}: " in message, message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_bool_of_a_proxy(line_of):
    def f(x):
        if x:  # ERR
            pass
    expect_error(f, line_of, "bool()", "float32[4,4]", "inside an @l3c.kernel")


@pytest.mark.parametrize("read", [
    lambda x: float(x[0, 0]), lambda x: int(x[0, 0]), lambda x: np.asarray(x),
    lambda x: x + 1, lambda x: 2 * x, lambda x: x < 0, lambda x: x == x, lambda x: -x,
    lambda x: np.sum(x), lambda x: x.sum(), lambda x: np.float32(2) * x, lambda x: x @ x,
    lambda x: abs(x), lambda x: range(10)[x[0, 0]],
])
def test_reading_values(read, line_of):
    def f(x):
        read(x)  # ERR
    message = expect_error(f, line_of, "while tracing", line=read.__code__.co_firstlineno)
    assert "float32" in message


def test_assigning_into_a_proxy(line_of):
    def f(x):
        x[0] = 1  # ERR
    expect_error(f, line_of, "assigning", "l3c.Out")


def test_tensor_to_unannotated_parameter(line_of):
    def f(x):
        y = l3c.empty_like(x)
        untyped(x, y)  # ERR
    expect_error(f, line_of, "'x'", "no access annotation", "l3c.In")


def test_scalar_to_annotated_parameter(line_of):
    def f(x):
        copy(1.0, x)  # ERR
    expect_error(f, line_of, "annotated l3c.In", "float")


def test_numpy_array_passed_inside_trace(line_of):
    def f(x):
        copy(np.ones((4, 4)), x)  # ERR
    expect_error(f, line_of, "numpy array", "l3c.empty")


@pytest.mark.parametrize("call", [lambda x: copy(x), lambda x: copy(x, x, x),
                                  lambda x: copy(x, z=x)])
def test_wrong_number_of_kernel_arguments(call, line_of):
    def f(x):
        call(x)  # ERR
    expect_error(f, line_of, "kernel copy(x, y)", "takes 2 arguments",
                 line=call.__code__.co_firstlineno)


def test_dead_scope_tensor_used(line_of):
    def f(x):
        with l3c.scope():
            t = l3c.empty_like(x)
            copy(x, t)
        copy(t, x)  # ERR
    expect_error(f, line_of, "t0", "after its l3c.scope() ended", "before the `with l3c.scope():`")


def test_dead_scope_tensor_sliced(line_of):
    def f(x):
        with l3c.scope():
            with l3c.scope():
                t = l3c.zeros((4,), x.dtype)
            t[1:]  # ERR
    expect_error(f, line_of, "after its l3c.scope() ended")


def test_dead_scope_tensor_returned(line_of):
    def f(x):
        with l3c.scope():
            t = l3c.empty_like(x)
            copy(x, t)
        return x, t  # ERR
    expect_error(f, line_of, "returned tensor t0", "is dead")


def test_group_larger_than_pool(line_of):
    def f(x):
        y = l3c.empty_like(x)
        l3c.group(copy, [(x[i], y[i]) for i in range(4)])  # ERR
    expect_error(f, line_of, "4 members", "2 chips", "chips=4")


def test_group_of_pinned_or_sub_kernel(line_of):
    def f(x):
        l3c.group(on_host, [(x,)])  # ERR
    expect_error(f, line_of, "sub worker", sub_workers=1)


@pytest.mark.parametrize("index", [lambda x: x[4], lambda x: x[-5], lambda x: x[0, 0, 0],
                                   lambda x: x[..., ...],
                                   lambda x: x[[0, 1]], lambda x: x[x], lambda x: x[::0],
                                   lambda x: x[0.5]])
def test_bad_slicing(index, line_of):
    def f(x):
        index(x)  # ERR
    expect_error(f, line_of, "float32[4,4]", line=index.__code__.co_firstlineno)


def test_out_of_bounds_index_message_names_axis_and_size(line_of):
    def f(x):
        x[:, 4]  # ERR
    expect_error(f, line_of, "index 4 is out of bounds for axis 1 of size 4", "[-4, 4)")


def test_non_tensor_result(line_of):
    def f(x):
        return x, 3  # ERR
    expect_error(f, line_of, "returned a int", "tuple/list/dict of tensors")


def test_sub_kernel_without_sub_workers(line_of):
    def f(x):
        on_host(x)  # ERR
    expect_error(f, line_of, "sub_workers=0", "sub_workers=1")


def test_pin_beyond_the_pool(line_of):
    def f(x):
        y = l3c.empty_like(x)
        copy.on(2)(x, y)  # ERR
    expect_error(f, line_of, "on(2)", "2 chips")


def test_reshape_of_non_contiguous_view(line_of):
    def f(x):
        x.T.reshape(16)  # ERR
    expect_error(f, line_of, "is not a view (numpy would copy it)")


def test_bad_empty_shape_and_dtype(line_of):
    def f(x):
        l3c.empty((4, -1), x.dtype)  # ERR
    expect_error(f, line_of, "(4, -1)")

    def g(x):
        l3c.empty((4,), object)  # ERR
    expect_error(g, line_of, "not numeric")


def test_proxy_kept_from_a_finished_trace(line_of):
    kept = []

    def first(x):
        kept.append(x)

    l3c.jit(first, chips=1).trace(x44())

    def second(x):
        copy(kept[0], x)  # ERR
    expect_error(second, line_of, "another trace")


def test_wrong_number_of_jit_arguments_names_the_definition(line_of):
    def f(x, w):  # ERR
        pass
    expect_error(f, line_of, "f(x, w)", "pass exactly its parameters")


def test_unsupported_jit_argument_type(line_of):
    def f(x, tiles):  # ERR
        pass
    expect_error(f, line_of, "'tiles'", "static_argnames", args=(x44(), [1, 2]))


def test_traceback_hides_l3c_frames():
    def f(x):
        bool(x)
    with pytest.raises(l3c.TraceError) as info:
        l3c.jit(f, chips=1).trace(x44())
    files = [entry.path for entry in info.traceback]
    # the jit entry point that re-raised stays; the tracer's internals are filtered out
    assert not any("/l3c/trace/" in str(p) for p in files), files
