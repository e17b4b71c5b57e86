"""The arguments of a jitted function: binding a call to the signature and classifying each value
(arrays become input tensors; scalars and `static_argnames` stay static values, part of the cache
key), with a TraceError at the user's line for anything that cannot be traced."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..ir import input_aliases
from .arrayspec import ArraySpec
from .source import trace_error

SCALARS = (int, float, bool, str, type(None), complex)


# ---- arguments of the jitted function -------------------------------------------------------------
@dataclass(frozen=True)
class BoundArg:
    """One argument of the jitted function after binding: an array (tensor input) or a static."""

    name: str
    value: Any
    is_array: bool
    keyword_only: bool

    def key(self) -> tuple:
        """This argument's part of the cache key: shape and dtype of arrays, type and value of
        statics (so 1, 1.0, True and np.float64(1) differ, as do a numpy scalar and a 0-d array)."""
        if self.is_array:
            return ("array", self.name, tuple(self.value.shape), self.value.dtype.str)
        t = type(self.value)
        return ("static", self.name, f"{t.__module__}.{t.__qualname__}", self.value)

    def describe(self) -> str:
        if self.is_array:
            dims = ",".join(map(str, self.value.shape))
            return f"{self.name}: {self.value.dtype.name}[{dims}]"
        return f"{self.name}={self.value!r}"


def bound_aliases(bound: Sequence[BoundArg], where: tuple[str, int]) -> tuple[int, ...]:
    """`input_aliases` of the jitted function's arguments; a partial overlap is a TraceError at `where`."""
    aliases, overlap = input_aliases([b.value if b.is_array else None for b in bound])
    if overlap is not None:
        a, b = (bound[k].name for k in overlap)
        raise trace_error(f"arguments {a!r} and {b!r} overlap in memory without being the same array",
                          "pass the same array for both, or a copy for one of them", where)
    # an ArraySpec has no memory: it is its own tensor
    return tuple(i if b.is_array and a == -1 else a
                 for i, (a, b) in enumerate(zip(aliases, bound)))


def definition_location(fn: Callable) -> tuple[str, int]:
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return ("<unknown>", 0)
    return (code.co_filename, code.co_firstlineno)


def bind_arguments(fn: Callable, args: Sequence[Any], kwargs: dict[str, Any] | None = None,
                   static_argnames: Iterable[str] = ()) -> list[BoundArg]:
    """Bind a call of the jitted function `fn` and classify each argument, in signature order."""
    where = definition_location(fn)
    signature = inspect.signature(fn)
    names = [p.name for p in signature.parameters.values()]
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise trace_error(f"{fn.__qualname__} has a variadic parameter {p}",
                              "give an l3c.jit function named parameters only", where)
    try:
        bound = signature.bind(*args, **(kwargs or {}))
    except TypeError as exc:
        raise trace_error(f"{fn.__qualname__}({', '.join(names)}) called with {len(args)} positional "
                          f"and {len(kwargs or {})} keyword arguments: {exc}",
                          "pass exactly its parameters", where) from None
    bound.apply_defaults()
    static = set(static_argnames)
    result = []
    for p in signature.parameters.values():
        value = bound.arguments[p.name]
        is_array = isinstance(value, (np.ndarray, ArraySpec)) and p.name not in static
        if is_array and value.dtype.kind not in "biufc":
            raise trace_error(f"argument {p.name!r} is an array of dtype {value.dtype}",
                              "pass numeric or bool arrays", where)
        if not is_array:
            if not (isinstance(value, SCALARS + (np.generic,)) or p.name in static):
                raise trace_error(
                    f"argument {p.name!r} of {fn.__qualname__} is a {type(value).__name__}",
                    "pass a numpy array (a tensor), a Python scalar (static), or name the parameter "
                    "in static_argnames=", where)
            try:
                hash(value)
            except TypeError:
                raise trace_error(f"static argument {p.name!r} ({type(value).__name__}) is not "
                                  "hashable, so it cannot be part of the cache key",
                                  "pass a hashable value such as a tuple", where) from None
        result.append(BoundArg(p.name, value, is_array, p.kind == p.KEYWORD_ONLY))
    return result
