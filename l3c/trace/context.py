"""The user-facing tracing helpers: `l3c.empty/zeros/empty_like`, `l3c.scope()`, `l3c.group()`.

Each works in two modes. Inside a trace (the current thread is running an `l3c.jit` trace) it records
into the active `Tracer`. Outside one it does the plain-numpy thing (`np.empty`, a no-op scope, the
group's calls one after another), so an orchestration function also runs as ordinary Python.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .tracer import Tracer

_local = threading.local()


def current_tracer() -> "Tracer | None":
    """The tracer recording on this thread, or None outside a trace. (`empty`, `zeros` and
    `empty_like` below read `_local` themselves: a new tensor per call is a hot path.)"""
    return getattr(_local, "tracer", None)


def _set_tracer(tracer: "Tracer | None") -> "Tracer | None":
    previous = current_tracer()
    _local.tracer = tracer
    return previous


def empty(shape: Any, dtype: Any = np.float64) -> Any:
    """A new intermediate tensor of `shape` and `dtype` (uninitialised), planned in the arena."""
    tracer = getattr(_local, "tracer", None)
    if tracer is None:
        return np.empty(shape, dtype)
    return tracer.new_tensor(shape, dtype)


def zeros(shape: Any, dtype: Any = np.float64) -> Any:
    """A new zero-filled intermediate; the fill is recorded as a task, so memory reuse stays exact."""
    tracer = getattr(_local, "tracer", None)
    if tracer is None:
        return np.zeros(shape, dtype)
    return tracer.new_tensor(shape, dtype, zero_init=True)


def empty_like(t: Any, dtype: Any = None) -> Any:
    """A new intermediate with `t`'s shape and (unless given) dtype."""
    tracer = getattr(_local, "tracer", None)
    if tracer is None:
        return np.empty_like(t, dtype=dtype)
    shape = getattr(t, "shape", None)
    if shape is None:
        from .source import trace_error
        raise trace_error(f"l3c.empty_like() of a {type(t).__name__}", "pass a tensor")
    return tracer.new_tensor(shape, dtype if dtype is not None else t.dtype)


class scope:  # noqa: N801 - used as `with l3c.scope():`, like a function
    """`with l3c.scope():` ends the lifetime of the intermediates created inside it at its end.

    Using or returning such a tensor after the block raises TraceError. Scopes nest. Outside a
    trace it does nothing. (A class rather than contextlib, so no stdlib frame sits between the
    user's line and l3c when an error is reported.)
    """

    __slots__ = ("_tracer", "id")

    def __init__(self) -> None:
        self._tracer: "Tracer | None" = None
        self.id: int | None = None

    def __enter__(self) -> "scope":
        tracer = self._tracer = getattr(_local, "tracer", None)
        if tracer is not None:
            self.id = tracer.open_scope()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._tracer is not None:
            self._tracer.close_scope(self.id)


def group(kernel: Any, args_list: Sequence[Any]) -> None:
    """Record one group task: `kernel` called once per entry of `args_list`, each on its own chip.

    An entry is a tuple/list of positional arguments, a dict of keyword arguments, or one argument.
    Outside a trace the calls simply run one after another.
    """
    tracer = current_tracer()
    entries = [e if isinstance(e, (tuple, list, dict)) else (e,) for e in args_list]
    if tracer is None:
        fn = getattr(kernel, "fn", kernel)
        for e in entries:
            fn(**e) if isinstance(e, dict) else fn(*e)
        return None
    tracer.record_group(kernel, entries)
    return None
