"""`@l3c.kernel(native=...)`: what the C function is, and checks of every call against its convention.

The convention (one home: `l3c.registry.c_arguments`): in parameter order, each tensor is a pointer
to its first element followed by its element count (int64), each int or bool scalar an int64 and
each float a double; the function returns int32 (0 = success). A worker's step loop calls it with
no Python in between, so nothing can convert or check an argument at run time: whatever the
declaration and the call can tell is checked here, with the user's line and what to change.

`native=` takes a numba `cfunc` (its `.address`; `.ctypes` declares the C types), a ctypes function
(its address; `argtypes` / `restype` if the user set them) or an int address (nothing declared).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from ..ir import Region
from .loops import LoopIndex
from .source import trace_error, user_location

_INT64 = ctypes.sizeof(ctypes.c_int64)


@dataclass(frozen=True)
class NativeSpec:
    """The C function behind a native kernel, as far as its object declares it."""

    address: int
    keep: Any                              # the object owning the machine code (kept alive)
    argtypes: tuple[Any, ...] | None       # ctypes types of the C parameters, if declared
    what: str                              # how messages name it: "numba cfunc c_axpy", ...


def _describe(native: Any) -> str:
    name = getattr(native, "__name__", None) or getattr(getattr(native, "_pyfunc", None),
                                                        "__name__", None)
    kind = "numba cfunc" if hasattr(native, "address") and hasattr(native, "ctypes") else (
        "ctypes function" if isinstance(native, ctypes._CFuncPtr) else type(native).__name__)
    return f"{kind} {name}" if name else kind


def _is_int64(t: Any) -> bool:
    return t is not None and issubclass(t, ctypes._SimpleCData) and t._type_ in "qQlL" \
        and ctypes.sizeof(t) == _INT64


def _is_pointer(t: Any) -> bool:
    return t is ctypes.c_void_p or (isinstance(t, type) and issubclass(t, ctypes._Pointer))


def _c_name(t: Any) -> str:
    if isinstance(t, type) and issubclass(t, ctypes._Pointer):
        return f"{_c_name(t._type_)}*"
    return getattr(t, "__name__", repr(t)).replace("LP_", "").removeprefix("c_")


def native_spec(native: Any, fn: Callable, modes: dict[str, str | None]) -> NativeSpec:
    """Read `native=`; raise ConfigError at the decorator's line when it cannot be a native kernel
    of `fn` (not a function address, a return type other than int32, C parameters that do not
    match the annotated tensors and scalars)."""
    file, line = user_location()
    where = f"{file}:{line}: @l3c.kernel(native=...) of {fn.__qualname__}"
    declared = None
    if isinstance(native, bool):
        address = 0
    elif isinstance(native, int):
        address = native
    elif isinstance(native, ctypes._CFuncPtr):
        address = ctypes.cast(native, ctypes.c_void_p).value or 0
        declared = native
    elif isinstance(getattr(native, "address", None), int):
        address = native.address
        declared = getattr(native, "ctypes", None)
    else:
        raise ConfigError(f"{where}: got a {type(native).__name__}; pass a numba cfunc, a ctypes "
                          "function or the C function's address as an int")
    if address <= 0:
        raise ConfigError(f"{where}: {native!r} is not a function address")
    what = _describe(native) if not isinstance(native, int) else f"the C function at {address:#x}"
    argtypes = getattr(declared, "argtypes", None)
    restype = getattr(declared, "restype", ctypes.c_int32) if declared is not None else ctypes.c_int32
    if restype is None or not (issubclass(restype, ctypes._SimpleCData) and restype._type_ in "il"
                               and ctypes.sizeof(restype) == 4):
        raise ConfigError(f"{where}: {what} returns {_c_name(restype) if restype else 'void'}; a "
                          "native kernel returns int32 (0 on success, another value is an error)")
    if argtypes is not None:
        _check_declaration(tuple(argtypes), modes, f"{where}: {what}")
    return NativeSpec(address, native, tuple(argtypes) if argtypes is not None else None, what)


def _expected(modes: dict[str, str | None]) -> list[str]:
    out = []
    for name, mode in modes.items():
        out += [f"{name} (pointer)", f"{name} (int64 count)"] if mode else [f"{name} (int64/double)"]
    return out


def _check_declaration(argtypes: tuple[Any, ...], modes: dict[str, str | None], where: str) -> None:
    expected = _expected(modes)
    if len(argtypes) != len(expected):
        raise ConfigError(f"{where} takes {len(argtypes)} C parameters, but the kernel's parameters "
                          f"need {len(expected)}: {', '.join(expected)}; each tensor is a pointer "
                          "and an int64 element count, each scalar an int64 or a double")
    j = 0
    for name, mode in modes.items():
        if mode:
            if not _is_pointer(argtypes[j]) or not _is_int64(argtypes[j + 1]):
                raise ConfigError(f"{where}: tensor parameter {name!r} needs C parameters "
                                  f"{j} and {j + 1} to be a pointer and an int64 count, they are "
                                  f"{_c_name(argtypes[j])} and {_c_name(argtypes[j + 1])}")
            j += 2
        else:
            if not (_is_int64(argtypes[j]) or argtypes[j] is ctypes.c_double):
                raise ConfigError(f"{where}: scalar parameter {name!r} is C parameter {j} of type "
                                  f"{_c_name(argtypes[j])}; declare it int64 (ints and bools) or "
                                  "float64/double (floats)")
            j += 1


def contiguous(region: Region) -> bool:
    """Whether a region is one C-contiguous run of its base tensor's elements."""
    if region.size == 0:
        return True
    expected = 1
    for n, s in zip(reversed(region.shape), reversed(region.strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def check_call(spec: NativeSpec, kernel_name: str, modes: dict[str, str | None],
               arguments: dict[str, Any]) -> None:
    """Raise TraceError at the user's line for a call the C function cannot take: a
    non-contiguous tensor, a tensor whose dtype is not the declared pointer's, a scalar that is not
    an int, bool or float (or not the declared one), an int beyond int64."""
    what = f"native kernel {kernel_name} ({spec.what})"
    j = 0
    for name, mode in modes.items():
        value = arguments[name]
        c_type = spec.argtypes[j] if spec.argtypes is not None else None
        if mode:
            if not contiguous(value.region):
                raise trace_error(f"{what} gets a non-contiguous view {value._desc()} for "
                                  f"{name!r} (strides {list(value.region.strides)} elements)",
                                  "native kernels take contiguous tensors: slice whole rows "
                                  "(x[a:b], not x[:, a:b] or x[::2]), or copy the view into an "
                                  "l3c.empty tensor first")
            pointee = getattr(c_type, "_type_", None)
            if isinstance(pointee, type) and issubclass(pointee, ctypes._SimpleCData) \
                    and np.dtype(pointee) != value.dtype:
                raise trace_error(f"{what} declares {name!r} as {_c_name(c_type)}, but gets a "
                                  f"{value._desc()}", f"pass a {np.dtype(pointee).name} tensor or "
                                  f"declare the C parameter as a pointer to {value.dtype.name}")
            j += 2
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, LoopIndex):
            kind = "int"                   # a loop variable: an int64 each iteration
        elif isinstance(value, (bool, int)):
            kind = "int"
            if not -2**63 <= value < 2**63:
                raise trace_error(f"{what} gets {name}={value}, beyond int64",
                                  "pass an int in the int64 range")
        elif isinstance(value, float):
            kind = "float"
        else:
            raise trace_error(f"{what} gets a {type(value).__name__} for scalar {name!r} "
                              f"({value!r})", "native kernels take int and bool scalars (int64 in "
                              "C) and float scalars (double); pass one of those, or drop native=")
        if c_type is not None and (kind == "float") != (c_type is ctypes.c_double):
            fix = (f"pass an int, not {value!r}" if kind == "float"
                   else "declare it int64 (a loop variable is an int)"
                   if isinstance(value, LoopIndex)
                   else f"pass a float ({float(value)!r}, not {value!r})")
            raise trace_error(f"{what} declares {name!r} as {_c_name(c_type)}, but gets the "
                              f"{type(value).__name__} {value!r}", fix)
        j += 1
