"""What a new user ran into while tracing: every mistake is an l3c error naming the user's line,
proxies answer the static questions numpy answers (strides, reshape views), a group whose members
conflict is refused, jitted methods work, and the default chip count follows CPU affinity."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import l3c

FILE = os.path.basename(__file__)
ROOT = Path(__file__).resolve().parents[1]


@l3c.kernel
def fill(v: float, x: l3c.In, y: l3c.Out):
    y[...] = v + x


@l3c.kernel
def copy(x: l3c.In, y: l3c.Out):
    y[...] = x


def trace_error_of(fn, *args, chips=2):
    with pytest.raises(l3c.TraceError) as info:
        l3c.jit(fn, chips=chips).trace(*(args or (np.zeros(4),)))
    return str(info.value)


# ---- 6. group members that conflict ------------------------------------------------------------
def test_conflicting_group_members_are_a_trace_error_at_the_group_line(line_of):
    def f(x):
        h = l3c.empty_like(x)
        g = l3c.empty_like(x)
        l3c.group(fill, [(1.0, x, h), (2.0, h, g)])  # ERR
        return g

    jitted = l3c.jit(f, chips=2)
    for call in (jitted, jitted.eager, jitted.lower):
        with pytest.raises(l3c.TraceError) as info:
            call(np.zeros(3))
        message = str(info.value)
        assert f"{FILE}:{line_of(f)}: l3c.group() of fill: members 0 and 1 both access t0" in message
        assert "members run at the same time" in message


def test_group_members_writing_disjoint_rows_are_fine():
    @l3c.jit(chips=2)
    def f(x):
        h = l3c.empty_like(x)
        l3c.group(fill, [(float(i), x[i::2], h[i::2]) for i in range(2)])
        return h

    np.testing.assert_array_equal(f(np.zeros(4)), [0.0, 1.0, 0.0, 1.0])


# ---- 7. errors that were not L3CErrors or lacked the user's line --------------------------------
@pytest.mark.parametrize("params, kind", [("*xs", "variadic positional"),
                                          ("x, *, y", "keyword-only"),
                                          ("**kw", "variadic keyword")])
def test_kernel_with_unusable_parameters_is_a_config_error_naming_the_line(params, kind):
    source = f"@l3c.kernel\ndef bad({params}):\n    pass\n"
    with pytest.raises(l3c.ConfigError, match=rf"^/tmp/user_kernels.py:1: @l3c.kernel bad: .* {kind}"):
        exec(compile(source, "/tmp/user_kernels.py", "exec"), {"l3c": l3c})


@pytest.mark.parametrize("pin", [-1, "a", 1.5, True])
def test_bad_pins_are_trace_errors_at_the_line(line_of, pin):
    def f(x):
        y = l3c.empty_like(x)
        copy.on(pin)(x, y)  # ERR
        return y

    message = trace_error_of(f)
    assert f"{FILE}:{line_of(f)}: copy.on({pin!r}): a pin must be an int >= 0" in message


@pytest.mark.parametrize("body, what", [
    (lambda x: np.sin(x), "np.sin()"),
    (lambda x: np.copyto(x, np.ones(4)), "np.copyto()"),
    (lambda x: np.ones(4) + x, "np.add()"),
    (lambda x: np.add.reduce(x), "np.add.reduce()"),
    (lambda x: np.sum(x), "np.sum()"),
    (lambda x: np.concatenate([x, x]), "np.concatenate()"),
])
def test_numpy_functions_on_proxies_are_trace_errors_at_the_line(body, what):
    def f(x):
        body(x)
        return x

    message = trace_error_of(f)
    assert f"{FILE}:" in message and f"{what} needs the values of a float64[4] tensor" in message


class Model:
    def __init__(self, bias):
        self.bias = bias

    @l3c.jit(chips=2)
    def step(self, x):
        y = l3c.empty_like(x)
        fill(self.bias, x, y)
        return y


def test_jit_on_a_method_binds_self_as_a_static():
    x = np.zeros(3)
    a, b = Model(1.0), Model(2.0)
    np.testing.assert_array_equal(a.step(x), [1.0] * 3)
    np.testing.assert_array_equal(b.step(x), [2.0] * 3)
    np.testing.assert_array_equal(a.step.eager(x), [1.0] * 3)
    np.testing.assert_array_equal(b.step.submit(x).result(timeout=60), [2.0] * 3)
    np.testing.assert_array_equal(b.step.lower(x)(b, x), [2.0] * 3)
    assert isinstance(Model.step, l3c.Jitted)
    with pytest.raises(l3c.ScheduleError, match="cannot store static value"):
        a.step.lower(x).save(os.devnull)


# ---- 8. static metadata and reshapes of strided views --------------------------------------------
def test_itemsize_nbytes_strides_match_numpy():
    seen = {}

    @l3c.jit(chips=1)
    def f(x):
        for name, view in (("x", x), ("rows", x[::2]), ("t", x[1:, ::-3].T)):
            seen[name] = (view.itemsize, view.nbytes, view.strides)
        return None

    x = np.zeros((6, 8), np.float32)
    f.trace(x)
    for name, view in (("x", x), ("rows", x[::2]), ("t", x[1:, ::-3].T)):
        assert seen[name] == (view.itemsize, view.nbytes, view.strides), name


def test_reshape_of_a_strided_view_where_numpy_makes_a_view():
    @l3c.jit(chips=1)
    def f(x):
        y = l3c.empty((2, 2), x.dtype)
        copy(x[:8:2].reshape(2, 2), y)
        z = l3c.empty((4, 3), x.dtype)
        copy(x.reshape(4, 6)[:, ::2].reshape(4, 3), z)
        return y, z

    x = np.arange(24.0)
    assert np.shares_memory(x[:8:2].reshape(2, 2), x)             # numpy: views, not copies
    assert np.shares_memory(x.reshape(4, 6)[:, ::2].reshape(4, 3), x)
    y, z = f(x)
    np.testing.assert_array_equal(y, x[:8:2].reshape(2, 2))
    np.testing.assert_array_equal(z, x.reshape(4, 6)[:, ::2].reshape(4, 3))


def test_reshape_that_numpy_would_copy_is_refused_at_the_line(line_of):
    def f(x):
        x.reshape(4, 6)[:, :4:2].reshape(8)  # ERR
        return x

    message = trace_error_of(f, np.zeros(24))
    assert f"{FILE}:{line_of(f)}: reshape of a float64[4,2] tensor with strides [48, 16] bytes" \
        in message and "numpy would copy it" in message


# ---- 10. a failed run writes nothing back ---------------------------------------------------------
@l3c.kernel
def bump(x: l3c.InOut):
    x += 1


@l3c.kernel
def boom(x: l3c.In):
    raise RuntimeError("boom")


def test_a_failed_run_writes_nothing_back_to_the_callers_arrays():
    @l3c.jit(chips=1)
    def f(x):
        bump(x)
        boom(x)
        return None

    x = np.zeros(3)
    for call in (f, f.eager):
        with pytest.raises(l3c.KernelError, match="boom"):
            call(x)
        np.testing.assert_array_equal(x, [0.0, 0.0, 0.0])


# ---- 11. default chip count -------------------------------------------------------------------------
def test_default_chip_count_follows_cpu_affinity():
    script = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); import l3c; "
              "print(l3c.jit(lambda x: x).chips)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"
