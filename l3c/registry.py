"""Kernel registry: maps a stable string key to the Python callable a worker runs.

Why a registry: plans and schedule files name kernels by string. A worker forked after a kernel was
defined finds it here (fork copies this dict); a kernel defined later, or a schedule loaded in a fresh
interpreter, is found by importing its "module:qualname" path. `generation()` tells the pool whether
its workers were forked before a kernel existed, so it can restart them instead of resolving a stale
or missing function. This module imports nothing from l3c (the tracer and the runtime both use it).

A kernel declared with `native=` resolves to a `NativeFunction` instead of its Python body: the
address of a C function of the native calling convention (`c_arguments`), which is the one home of
that convention: the tracer checks calls against it, the workers' step loop packs its argument
blocks with it, and `NativeFunction.__call__` (a worker's eager task) calls through ctypes with it.
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import struct
import threading
from typing import Any, Callable, Sequence

import numpy as np

_lock = threading.Lock()
_by_key: dict[str, Callable] = {}
_native_by_key: dict[str, "NativeFunction"] = {}
_generation_of: dict[str, int] = {}
_generation = 0


def _unwrap(fn: Callable) -> Callable:
    seen = 0
    while hasattr(fn, "__wrapped__") and seen < 100:
        fn = fn.__wrapped__
        seen += 1
    return fn


class NativeStatusError(RuntimeError):
    """A native kernel returned a nonzero status (raised in the worker; the parent's `KernelError`
    carries its message)."""


def c_arguments(args: Sequence[Any]) -> list[tuple[str, int | float]]:
    """The C arguments of a native kernel call, in order, as (kind, value): kind "i" is an int64
    (a tensor's address or element count, an int or bool scalar), "d" a double (a float scalar).
    Each tensor (a numpy array) becomes its first element's address and its element count, and must
    be C-contiguous. Raises TypeError for anything else; tracing rejects such calls earlier with the
    user's line, so this is the last guard (schedule files, direct calls in workers)."""
    out: list[tuple[str, int | float]] = []
    for a in args:
        if isinstance(a, np.ndarray):
            if not a.flags.c_contiguous:
                raise TypeError(f"a native kernel got a non-contiguous {a.dtype}{list(a.shape)} "
                                "tensor; native kernels take contiguous tensors")
            out += [("i", a.__array_interface__["data"][0]), ("i", int(a.size))]
        elif isinstance(a, (bool, int, np.integer, np.bool_)):
            out.append(("i", int(a)))
        elif isinstance(a, (float, np.floating)):
            out.append(("d", float(a)))
        else:
            raise TypeError(f"a native kernel got a {type(a).__name__} argument {a!r}; native "
                            "kernels take tensors, ints, bools and floats")
    return out


def pack_words(arguments: Sequence[tuple[str, int | float]]) -> list[int]:
    """`c_arguments` as the signed 64-bit words of an argument block (doubles by their bits)."""
    return [struct.unpack("<q", struct.pack("<d", v))[0] if kind == "d"
            else struct.unpack("<q", struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF))[0]
            for kind, v in arguments]


class NativeFunction:
    """What a worker runs for a kernel declared with `native=`: the C function at `address`
    (int32 status, the arguments of `c_arguments`). `keep` holds the object that owns the machine
    code (a numba cfunc, a ctypes function) alive as long as the kernel."""

    def __init__(self, address: int, name: str, keep: Any = None) -> None:
        self.address, self.name, self.keep = address, name, keep

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NativeFunction) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)

    def __call__(self, *args: Any) -> None:
        """Call the C function through ctypes (an eager task; compiled runs use the step loop)."""
        arguments = c_arguments(args)
        prototype = _prototype("".join(kind for kind, _ in arguments))
        status = prototype(self.address)(*[v for _, v in arguments])
        if status != 0:
            raise NativeStatusError(status_message(self.name, status))

    def __repr__(self) -> str:
        return f"<native kernel {self.name} at {self.address:#x}>"


@functools.lru_cache(maxsize=None)
def _prototype(kinds: str) -> Any:
    """The ctypes function type of a C signature ("i" int64, "d" double per parameter)."""
    return ctypes.CFUNCTYPE(ctypes.c_int32, *[ctypes.c_int64 if kind == "i" else ctypes.c_double
                                              for kind in kinds])


def status_message(name: str, status: int) -> str:
    """The error text of a native kernel's nonzero status (the step loop's and the eager call's)."""
    return f"native kernel {name} returned status {status} (0 is success)"


def register(fn: Callable, name: str, native: NativeFunction | None = None) -> str:
    """Register `fn` under `name` and return its key: `name`, or `name#2`, `name#3`, ... when a
    *different* function already holds `name`. Registering the same function again (with the same
    native function, if any) returns its key. With `native`, workers run that instead of `fn`."""
    global _generation
    target = _unwrap(fn)
    with _lock:
        key, n = name, 1
        while key in _by_key:
            if _unwrap(_by_key[key]) is target and _native_by_key.get(key) == native:
                return key
            n += 1
            key = f"{name}#{n}"
        _generation += 1
        _by_key[key] = fn
        if native is not None:
            _native_by_key[key] = native
        _generation_of[key] = _generation
        return key


def resolve(key: str) -> Callable:
    """What a worker runs for `key`: the kernel's `NativeFunction` if it has one, else the plain
    function; from the registry, else by importing "module:qualname" (a "#N" suffix is stripped).
    `__wrapped__` is followed so a worker calls the undecorated function.
    An imported object must be a registered kernel (importing its module ran `@l3c.kernel`): a
    schedule file naming `os:system` must not make a worker call it. Raises LookupError (with the
    reason) when none of this works."""
    fn, native = _lookup(key)
    return native or fn


def resolve_function(key: str) -> Callable:
    """The Python function of kernel `key` (its parameters and annotations), native or not;
    found as `resolve` finds it."""
    return _lookup(key)[0]


def _lookup(key: str) -> tuple[Callable, NativeFunction | None]:
    fn = _by_key.get(key)
    if fn is not None:
        return _unwrap(fn), _native_by_key.get(key)
    path = key.split("#", 1)[0]
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise LookupError(f"kernel {key!r} is not registered and is not an import path 'module:qualname'")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - report any import failure as a lookup failure
        raise LookupError(f"kernel {key!r}: cannot import module {module_name!r}: {exc!r}") from None
    for part in qualname.split("."):
        if part == "<locals>" or not hasattr(obj, part):
            raise LookupError(f"kernel {key!r}: module {module_name!r} has no attribute path {qualname!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise LookupError(f"kernel {key!r} resolves to a non-callable {type(obj).__name__}")
    fn = _unwrap(obj)
    with _lock:
        found = next((k for k, f in _by_key.items() if _unwrap(f) is fn), None)
        native = _native_by_key.get(found) if found is not None else None
    if found is None:        # a schedule file may name anything importable: run only kernels
        raise LookupError(f"kernel {key!r} resolves to {type(obj).__name__} "
                          f"{getattr(obj, '__qualname__', '?')}, which is not an l3c kernel "
                          "(only functions decorated with @l3c.kernel run in workers)")
    return fn, native


def generation() -> int:
    """A counter bumped on every new registration."""
    return _generation


def generation_of(key: str) -> int | None:
    """The generation at which `key` was registered (None: not registered in this process)."""
    return _generation_of.get(key)
