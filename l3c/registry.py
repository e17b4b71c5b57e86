"""Kernel registry: maps a stable string key to the Python callable a worker runs.

Why a registry: plans and schedule files name kernels by string. A worker forked after a kernel was
defined finds it here (fork copies this dict); a kernel defined later, or a schedule loaded in a fresh
interpreter, is found by importing its "module:qualname" path. `generation()` tells the pool whether
its workers were forked before a kernel existed, so it can restart them instead of resolving a stale
or missing function. This module imports nothing from l3c (the tracer and the runtime both use it).
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable

_lock = threading.Lock()
_by_key: dict[str, Callable] = {}
_generation_of: dict[str, int] = {}
_generation = 0


def _unwrap(fn: Callable) -> Callable:
    seen = 0
    while hasattr(fn, "__wrapped__") and seen < 100:
        fn = fn.__wrapped__
        seen += 1
    return fn


def register(fn: Callable, name: str) -> str:
    """Register `fn` under `name` and return its key: `name`, or `name#2`, `name#3`, ... when a
    *different* function already holds `name`. Registering the same function again returns its key."""
    global _generation
    target = _unwrap(fn)
    with _lock:
        key, n = name, 1
        while key in _by_key:
            if _unwrap(_by_key[key]) is target:
                return key
            n += 1
            key = f"{name}#{n}"
        _generation += 1
        _by_key[key] = fn
        _generation_of[key] = _generation
        return key


def resolve(key: str) -> Callable:
    """The plain function for `key`: from the registry, else by importing "module:qualname"
    (a "#N" suffix is stripped). `__wrapped__` is followed so a worker calls the undecorated function.
    An imported object must be a registered kernel (importing its module ran `@l3c.kernel`): a
    schedule file naming `os:system` must not make a worker call it. Raises LookupError (with the
    reason) when none of this works."""
    fn = _by_key.get(key)
    if fn is not None:
        return _unwrap(fn)
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
        registered = any(_unwrap(f) is fn for f in _by_key.values())
    if not registered:       # a schedule file may name anything importable: run only kernels
        raise LookupError(f"kernel {key!r} resolves to {type(obj).__name__} "
                          f"{getattr(obj, '__qualname__', '?')}, which is not an l3c kernel "
                          "(only functions decorated with @l3c.kernel run in workers)")
    return fn


def generation() -> int:
    """A counter bumped on every new registration."""
    return _generation


def generation_of(key: str) -> int | None:
    """The generation at which `key` was registered (None: not registered in this process)."""
    return _generation_of.get(key)
