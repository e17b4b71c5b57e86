"""What the tracer records: tasks, accesses, scalars, groups, scopes, zeros, results, locations."""
from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest

import l3c
from l3c import registry
from l3c.ir import Access, ResultRef, ScalarArg


@l3c.kernel
def scale(alpha: float, x: l3c.In, y: l3c.Out):
    y[...] = alpha * x


@l3c.kernel(worker="sub")
def total(x: l3c.In, out: l3c.InOut):
    out[...] += x.sum()


def test_kernel_outside_a_trace_runs_the_function():
    x = np.arange(4.0)
    y = np.zeros(4)
    assert scale(2.0, x, y) is None
    np.testing.assert_array_equal(y, 2 * x)
    out = np.zeros(1)
    total.on(0)(x, out)
    assert out[0] == 6.0


def test_kernel_metadata_and_registry_key():
    assert scale.__wrapped__ is scale.fn and scale.__name__ == "scale"
    assert scale.name == f"{__name__}:scale"
    assert registry.resolve(scale.name) is scale.fn
    assert scale.modes == {"alpha": None, "x": "In", "y": "Out"}
    assert total.worker == "sub" and total.modes["out"] == "InOut"


@pytest.mark.parametrize("decorator", [l3c.kernel, l3c.jit], ids=["kernel", "jit"])
def test_kernels_and_jitted_functions_wrap_their_function_like_functools_wraps(decorator):
    def fn(a: l3c.In, n):
        """Scale a."""
    fn.custom = {"kept": True}
    k = decorator(fn)
    for attr in functools.WRAPPER_ASSIGNMENTS:
        assert getattr(k, attr) == getattr(fn, attr), attr
    assert k.__doc__ == "Scale a." and k.custom is fn.custom
    assert k.__wrapped__ is fn and inspect.unwrap(k) is fn


def test_kernel_rejects_variadic_parameters():
    with pytest.raises(l3c.ConfigError, match=r"test_trace.py:\d+: .*'xs' is variadic positional"):
        l3c.kernel(lambda *xs: None)


def test_helpers_outside_a_trace_are_numpy():
    assert l3c.zeros((2, 3), np.float32).dtype == np.float32
    assert l3c.empty_like(np.zeros((2, 2), np.int8)).dtype == np.int8
    with l3c.scope():
        pass
    y = np.zeros((2, 2))
    l3c.group(scale, [(1.0, np.ones(2), y[i]) for i in range(2)])
    assert y.sum() == 4


def trace(fn, *args, **options):
    options.setdefault("chips", 2)
    options.setdefault("sub_workers", 1)
    return l3c.jit(fn, **options).trace(*args)


def test_tasks_record_accesses_scalars_and_locations(line_of):
    def f(x):
        y = l3c.empty_like(x)
        scale(0.5, x[1:], y[:-1])  # ERR
        return y

    program = trace(f, np.zeros((4, 3), np.float32))
    (task,) = program.tasks
    assert task.kernel == scale.name and task.worker == "chip" and task.id == 0
    assert task.loc == f"test_trace.py:{line_of(f)}"
    alpha, x, y = task.args
    assert alpha == ScalarArg("alpha", 0.5)
    assert isinstance(x, Access) and x.tensor == 0 and x.mode == "In" and x.param == "x"
    assert x.region.box == ((1, 3, 1), (0, 3, 1)) and x.region.offset == 3
    assert y.tensor == 1 and y.mode == "Out" and y.region.box == ((0, 3, 1), (0, 3, 1))
    t_in, t_mid = program.tensors
    assert (t_in.name, t_in.kind, t_in.shape, t_in.dtype) == ("arg0", "input", (4, 3), "float32")
    assert (t_mid.name, t_mid.kind) == ("t0", "intermediate")
    assert program.results == ResultRef(1, t_mid and y.region.__class__.whole((4, 3)), "float32")
    assert program.graph.nodes[0]["kernel"] == scale.name
    assert program.graph.nodes[0]["loc"] == task.loc
    assert program.passes_run == ["trace"] and program.graph.number_of_edges() == 0


def test_numpy_scalars_become_python_scalars():
    def f(x):
        scale(np.float32(2.0), x, x)

    (task,) = trace(f, np.zeros(2)).tasks
    assert type(task.args[0].value) is float


def test_zeros_records_a_fill_task():
    def f(x):
        z = l3c.zeros((3,), np.int32)
        return z

    program = trace(f, np.zeros(1))
    (task,) = program.tasks
    assert task.kernel == "l3c.trace.builtins:fill_zeros"
    assert task.accesses[0].mode == "Out" and task.accesses[0].tensor == 1
    assert program.tensors[1].zero_init


def test_group_members_and_pins():
    def f(x):
        y = l3c.empty_like(x)
        l3c.group(scale, [(1.0, x[i::2], y[i::2]) for i in range(2)])
        scale.on(1)(2.0, y, x)
        out = l3c.zeros((1,), x.dtype)
        total.on(0)(x, out)
        return out

    program = trace(f, np.zeros((4, 4)))
    tasks = program.tasks
    assert program.groups == [[0, 1]]
    assert [(t.group, t.group_rank) for t in tasks[:2]] == [(0, 0), (0, 1)]
    assert tasks[2].pin == 1 and tasks[2].group is None
    assert tasks[4].worker == "sub" and tasks[4].pin == 0
    assert tasks[0].accesses[0].region.box == ((0, 2, 2), (0, 4, 1))
    assert tasks[1].accesses[0].region.box == ((1, 2, 2), (0, 4, 1))


def test_scopes_nest_and_tensors_remember_them():
    def f(x):
        a = l3c.empty_like(x)
        with l3c.scope():
            b = l3c.empty_like(x)
            scale(1.0, x, b)
            with l3c.scope():
                c = l3c.empty_like(x)
                scale(1.0, b, c)
            with l3c.scope():
                scale(1.0, b, a)
        return a

    program = trace(f, np.zeros(2))
    assert program.scopes == {0: (0,), 1: (0, 1), 2: (0, 2)}
    assert [t.scope for t in program.tensors] == [(), (), (0,), (0, 1)]
    assert [t.scope for t in program.tasks] == [(0,), (0, 1), (0, 2)]
    assert program.tensors[3].dead_after == 1 and program.tensors[2].dead_after == 2
    assert program.tensors[1].dead_after is None


def test_result_structures():
    def f(x):
        y = l3c.empty_like(x)
        return {"a": (x, [y[0]]), "b": y.T}

    program = trace(f, np.zeros((2, 3)))
    kind, items = program.results
    assert kind == "dict" and [k for k, _ in items] == ["a", "b"]
    a = items[0][1]
    assert a[0] == "tuple" and a[1][0].tensor == 0 and a[1][1][0] == "list"
    assert items[1][1].region.shape == (3, 2) and items[1][1].region.strides == (1, 3)


def test_no_result_is_allowed():
    assert trace(lambda x: None, np.zeros(1)).results is None


def test_static_arguments_unroll_loops_and_are_params():
    def f(x, n, name):
        for i in range(n):
            scale(float(i), x[i], x[i])

    program = trace(f, np.zeros((5, 2)), 3, "s")
    assert len(program.tasks) == 3
    assert [(p.name, p.tensor, p.static) for p in program.params] == [
        ("x", 0, None), ("n", None, 3), ("name", None, "s")]


def test_iteration_yields_row_views_and_len_is_static():
    def f(x):
        assert len(x) == 3
        for row in x:
            scale(1.0, row, row)

    program = trace(f, np.zeros((3, 2)))
    assert [t.args[1].region.offset for t in program.tasks] == [0, 2, 4]


def test_proxy_shape_facts():
    seen = {}

    def f(x):
        v = x[:, None, 1::2]
        seen.update(shape=v.shape, ndim=v.ndim, size=v.size, dtype=v.dtype, nbytes=v.nbytes)

    trace(f, np.zeros((3, 5), np.int16))
    assert seen == dict(shape=(3, 1, 2), ndim=3, size=6, dtype=np.dtype(np.int16), nbytes=12)
