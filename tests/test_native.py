"""Native kernels (`@l3c.kernel(native=...)`): compiled runs, `.eager` and loaded schedules call the
C function (the Python bodies in tests/_native_kernels.py write -1, so results show which ran);
statuses, crashes, mixing with Python kernels, the checks at decoration and at the call, and a
ctypes function from a shared library built with the C compiler."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import l3c

pytest.importorskip("numba")
from numba import cfunc, types  # noqa: E402

import _native_kernels as nk  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS_FILE = os.path.basename(__file__)


@l3c.jit(chips=2)
def rows_axpy(alpha, x, y):
    for i in range(x.shape[0]):
        nk.axpy(alpha, x[i], y[i])
    return y


def test_outside_a_trace_the_python_body_runs():
    y = np.ones(4, np.float32)
    nk.axpy(2.0, np.ones(4, np.float32), y)
    assert y.tolist() == [-1.0] * 4


def test_compiled_eager_and_lowered_runs_call_the_c_function():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.ones((3, 4), np.float32)
    expected = 1 + 2.5 * x
    assert np.array_equal(rows_axpy(2.5, x, y.copy()), expected)
    assert np.array_equal(rows_axpy.eager(2.5, x, y.copy()), expected)
    assert np.array_equal(rows_axpy.lower(2.5, x, y)(2.5, x, y.copy()), expected)


def test_int_and_float_scalars_reach_c_as_int64_and_double():
    @l3c.jit(chips=1)
    def prog(x):
        nk.fill(x[:3], 10, 0.5)
        nk.fill(x[3:], -(2**40), 0.25)
        return x

    expected = [10.0, 10.5, 11.0] + [-(2.0**40) + k * 0.25 for k in range(3)]
    assert prog(np.zeros(6)).tolist() == expected
    assert prog.eager(np.zeros(6)).tolist() == expected

    @l3c.jit(chips=1)
    def flags(x):
        nk.fill(x[:2], True, 1.0)                    # a bool is an int64 (1)
        nk.fill(x[2:], np.int16(3), np.float32(0.5))  # numpy scalars: their Python values
        return x

    assert flags(np.zeros(4)).tolist() == [1.0, 2.0, 3.0, 3.5]


def test_a_native_kernel_on_a_sub_worker():
    fill_sub = l3c.kernel(worker="sub", native=nk.c_fill)(nk.fill.fn)

    @l3c.jit(chips=1, sub_workers=1)
    def prog(x):
        fill_sub(x, 4, 2.0)
        nk.add_into(x, x)
        return x

    assert prog(np.zeros(3)).tolist() == [8.0, 12.0, 16.0]


def test_native_and_python_kernels_mix_in_groups_and_scopes():
    x, y = np.arange(8.0).reshape(2, 4), np.ones((2, 4))
    compiled = nk.mixed.lower(x, y)
    assert len(compiled.groups) >= 2                 # the native groups stayed groups
    assert np.array_equal(nk.mixed(x, y.copy()), nk.mixed_reference(x, y))
    assert np.array_equal(nk.mixed.eager(x, y.copy()), nk.mixed_reference(x, y))


def test_a_chain_alternating_native_and_python_steps_on_one_worker():
    """Each switch between kinds releases or takes the GIL in the step loop."""
    @l3c.jit(chips=1)
    def prog(x, y):
        for _ in range(50):
            nk.add_into(x, y)
            nk.py_double(y)
        return y

    x, y = np.full(3, 1.0), np.zeros(3)
    expected = y.copy()
    for _ in range(50):
        expected = 2 * (expected + x)
    assert np.array_equal(prog(x, y), expected)


def test_nonzero_status_is_a_kernel_error_naming_kernel_task_line_and_code():
    @l3c.jit(chips=2)
    def prog(x):
        nk.fill(x, 0, 1.0)
        nk.status(x, 42)                             # the failing line
        nk.fill(x, 5, 1.0)                           # never starts
        return x

    line = prog.__wrapped__.__code__.co_firstlineno + 3
    for run in (prog, prog.eager):
        with pytest.raises(l3c.KernelError) as info:
            run(np.zeros(3))
        err = info.value
        assert err.kernel == nk.status.name and err.task == 1
        assert err.loc == f"{THIS_FILE}:{line}"
        assert "returned status 42" in str(err) and f"{THIS_FILE}:{line}" in str(err)
        assert "returned status 42" in err.remote_traceback
    assert rows_axpy(1.0, np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)).sum() == 4


def test_a_segfault_in_native_code_is_worker_crashed_and_the_next_call_works():
    @l3c.jit(chips=2)
    def prog(x):
        nk.segfault(x)
        return x

    for run in (prog, prog.eager):
        with pytest.raises(l3c.WorkerCrashed) as info:
            run(np.zeros(4))
        assert info.value.signal == signal.SIGSEGV
        x = np.arange(4, dtype=np.float32)
        assert np.array_equal(rows_axpy(1.0, x[None], np.ones((1, 4), np.float32))[0], x + 1)


def test_saved_schedule_loaded_in_this_process_calls_the_c_function(tmp_path):
    x, y = np.arange(8.0).reshape(2, 4), np.ones((2, 4))
    path = tmp_path / "mixed.l3c"
    nk.mixed.lower(x, y).save(str(path))
    loaded = l3c.load(str(path))
    assert np.array_equal(loaded(x, y.copy()), nk.mixed_reference(x, y))


def test_l3c_run_resolves_native_kernels_by_import_path_in_a_fresh_interpreter(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                                       os.environ.get("PYTHONPATH", "")]))
    cli = [sys.executable, "-m", "l3c"]
    subprocess.run(cli + ["compile", "_native_kernels:mixed", "--arg", "f64[2,4]", "--arg",
                          "f64[2,4]", "-o", str(tmp_path / "m.l3c")],
                   check=True, timeout=120, env=env, cwd=tmp_path, capture_output=True)
    x, y = np.arange(8.0).reshape(2, 4), np.ones((2, 4))
    np.savez(tmp_path / "in.npz", arg0=x, arg1=y)
    proc = subprocess.run(cli + ["run", str(tmp_path / "m.l3c"), "--input", str(tmp_path / "in.npz"),
                                 "--output", str(tmp_path / "out.npz")],
                          timeout=120, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(tmp_path / "out.npz")["out0"], nk.mixed_reference(x, y))


# ---- checks at the call ----------------------------------------------------------------------
def _trace_error(fn, *args) -> str:
    with pytest.raises(l3c.TraceError) as info:
        l3c.jit(chips=2)(fn).lower(*args)
    return str(info.value)


def test_a_non_contiguous_view_is_a_trace_error_at_the_call():
    def prog(x, y):
        nk.axpy(1.0, x[:, 1:3], y[:, 1:3])
        return y

    line = prog.__code__.co_firstlineno + 1
    text = _trace_error(prog, np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))
    assert f"{THIS_FILE}:{line}" in text and "non-contiguous" in text and "axpy" in text
    assert "contiguous tensors" in text                 # says what to do

    def strided(x, y):
        nk.axpy(1.0, x[::2], y[::2])
        return y

    assert "non-contiguous" in _trace_error(strided, np.ones(8, np.float32), np.ones(8, np.float32))

    def fine(x, y):                                      # whole rows of a matrix are contiguous
        nk.axpy(1.0, x[1:3], y[1:3])
        nk.axpy(1.0, x[2], y[2])
        return y

    l3c.jit(chips=2)(fine).lower(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))


@pytest.mark.parametrize("value, needle", [
    ("fast", "take int and bool scalars"),            # a str: no C type
    (None, "take int and bool scalars"),
    (3, "pass a float (3.0, not 3)"),                  # declared double, got an int
])
def test_a_bad_scalar_is_a_trace_error_that_says_what_to_pass(value, needle):
    def prog(x, y):
        nk.axpy(value, x, y)
        return y

    text = _trace_error(prog, np.ones(4, np.float32), np.ones(4, np.float32))
    assert needle in text and f"{THIS_FILE}:{prog.__code__.co_firstlineno + 1}" in text


def test_a_float_where_c_declares_int64_and_a_dtype_off_the_pointer_are_trace_errors():
    def prog(x):
        nk.fill(x, 1.5, 1.0)
        return x

    assert "pass an int, not 1.5" in _trace_error(prog, np.zeros(3))

    def wrong_dtype(x, y):
        nk.axpy(1.0, x, y)
        return y

    text = _trace_error(wrong_dtype, np.ones(4), np.ones(4))        # float64, C says float*
    assert "float*" in text and "float32" in text


# ---- checks at decoration --------------------------------------------------------------------
def test_declarations_that_cannot_fit_are_config_errors_at_the_decorator():
    @cfunc(types.int32(types.CPointer(types.float64), types.int64))
    def c_one_tensor(x, n):
        return 0

    with pytest.raises(l3c.ConfigError, match=r"takes 2 C parameters.*need 3") as info:
        @l3c.kernel(native=c_one_tensor)
        def k(x: l3c.InOut, alpha: float):
            pass
    assert THIS_FILE in str(info.value)

    with pytest.raises(l3c.ConfigError, match="scalar parameter 'alpha' is C parameter 0 of type "
                                              r"double\*; declare it int64"):
        l3c.kernel(native=c_one_tensor)(lambda alpha, beta: None)

    @cfunc(types.int32(types.int64, types.int64))
    def c_two_ints(a, b):
        return 0

    with pytest.raises(l3c.ConfigError, match="'x' needs C parameters 0 and 1 to be a pointer and"):
        @l3c.kernel(native=c_two_ints)
        def k2(x: l3c.In):
            pass

    @cfunc(types.void(types.CPointer(types.float64), types.int64))
    def c_void(x, n):
        pass

    with pytest.raises(l3c.ConfigError, match="returns void"):
        l3c.kernel(native=c_void)(lambda x: None)

    @cfunc(types.int32(types.float32))
    def c_f32(a):
        return 0

    with pytest.raises(l3c.ConfigError, match="declare it int64.*or float64"):
        l3c.kernel(native=c_f32)(lambda a: None)

    for bad in ("c_axpy", 0, True, 3.5):
        with pytest.raises(l3c.ConfigError, match="native="):
            l3c.kernel(native=bad)(lambda a: None)


def test_an_int_address_works_and_is_not_checked_for_types():
    @l3c.kernel(native=nk.c_axpy.address)
    def by_address(alpha: float, x: l3c.In, y: l3c.InOut):
        y[...] = -1

    @l3c.jit(chips=1)
    def prog(x, y):
        by_address(3.0, x, y)
        return y

    x = np.arange(4, dtype=np.float32)
    assert np.array_equal(prog(x, np.zeros(4, np.float32)), 3 * x)


# ---- a ctypes function from a shared library, no numba involved -------------------------------
C_SOURCE = r"""
#include <stdint.h>
extern int PyGILState_Check(void);
int32_t scale_rows(double alpha, const float *x, int64_t nx, float *y, int64_t ny) {
    if (nx != ny) return 2;
    if (PyGILState_Check()) return 3;        /* native kernels run without the GIL */
    for (int64_t k = 0; k < ny; k++) y[k] = (float)(alpha * x[k]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_library(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    where = tmp_path_factory.mktemp("clib")
    (where / "scale.c").write_text(C_SOURCE)
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(where / "libscale.so"),
                    str(where / "scale.c")], check=True, timeout=60)
    return ctypes.CDLL(str(where / "libscale.so"))


def test_a_ctypes_function_from_a_shared_library_runs_without_the_gil(c_library):
    fn = c_library.scale_rows
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_double, ctypes.POINTER(ctypes.c_float), ctypes.c_int64,
                   ctypes.POINTER(ctypes.c_float), ctypes.c_int64]

    @l3c.kernel(native=fn)
    def scale_rows(alpha: float, x: l3c.In, y: l3c.Out):
        y[...] = -1

    @l3c.jit(chips=2)
    def prog(x, y):
        l3c.group(scale_rows, [(0.5, x[i], y[i]) for i in range(2)])
        return y

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert np.array_equal(prog(x, np.zeros_like(x)), 0.5 * x)
    assert np.array_equal(prog.eager(x, np.zeros_like(x)), 0.5 * x)


def test_a_ctypes_function_without_argtypes_is_trusted_to_the_convention(c_library):
    @l3c.kernel(native=c_library.scale_rows)             # restype c_int (int32), no argtypes
    def scale_rows(alpha: float, x: l3c.In, y: l3c.Out):
        y[...] = -1

    @l3c.jit(chips=1)
    def prog(x, y):
        scale_rows(2.0, x, y)
        return y

    x = np.arange(4, dtype=np.float32)
    assert np.array_equal(prog(x, np.zeros_like(x)), 2 * x)


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec")
def test_native_kernels_across_two_hosts():
    pytest.importorskip("mpi4py")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable,
                           os.path.join(ROOT, "tests", "_native_kernels.py")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.count("RESULT ok") == 2, proc.stdout + proc.stderr


def test_tests_kernels_module_is_importable_by_path():
    assert textwrap.dedent(nk.__doc__).startswith("Native kernels")


def test_a_schedule_whose_kernel_became_native_fails_at_install_not_in_c(tmp_path):
    """A file saved while `half` was a Python kernel on a strided view; the module now declares it
    native: the worker refuses the non-contiguous view at install, with an l3c error."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT,
                                                       os.environ.get("PYTHONPATH", "")]))
    python_version = textwrap.dedent('''
        import l3c

        @l3c.kernel
        def half(x: l3c.InOut):
            x *= 0.5

        @l3c.jit(chips=1)
        def prog(x):
            half(x[::2])
            return x
    ''')
    native_version = textwrap.dedent('''
        import l3c
        from numba import cfunc, types

        @cfunc(types.int32(types.CPointer(types.float64), types.int64))
        def c_half(x, n):
            for k in range(n):
                x[k] *= 0.5
            return 0

        @l3c.kernel(native=c_half)
        def half(x: l3c.InOut):
            x *= 0.5

        @l3c.jit(chips=1)
        def prog(x):
            half(x)
            return x
    ''')
    (tmp_path / "became_native.py").write_text(python_version)
    cli = [sys.executable, "-m", "l3c"]
    subprocess.run(cli + ["compile", "became_native:prog", "--arg", "f64[8]", "-o",
                          str(tmp_path / "s.l3c")], check=True, timeout=120, env=env, cwd=tmp_path,
                   capture_output=True)
    (tmp_path / "became_native.py").write_text(native_version)
    np.savez(tmp_path / "in.npz", arg0=np.ones(8))
    proc = subprocess.run(cli + ["run", str(tmp_path / "s.l3c"), "--input", str(tmp_path / "in.npz")],
                          timeout=120, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "non-contiguous" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
