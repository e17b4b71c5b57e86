"""What a tensor proxy cannot do while tracing: anything that needs its values.

Truth tests, conversions, arithmetic, comparisons, numpy functions and ufuncs, assignment and
numpy's other attributes (`.sum()`, `.copy()`, `.flat`) raise a TraceError at the user's line
that says to do it inside a kernel. `Tensor` (`proxy.py`) inherits these after its own attributes
and `ArrayFacts`' (shape, dtype, ndim, size, slicing, .T, .reshape).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .arrayspec import ArrayFacts
from .source import trace_error

_OPERATORS = [
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
    "lshift", "rshift", "divmod",
]


class Valueless:
    """The TraceErrors of a proxy's value operations (`_desc()` is the proxy's description)."""

    __slots__ = ()

    def _desc(self) -> str:
        raise NotImplementedError

    def _no_values(self, what: str) -> Any:
        raise trace_error(
            f"{what} needs the values of a {self._desc()}, which do not exist while tracing",
            "compute on values inside an @l3c.kernel; branch only on shapes and static arguments")

    def __bool__(self) -> bool:
        return self._no_values("bool()")

    def __int__(self) -> int:
        return self._no_values("int()")

    def __float__(self) -> float:
        return self._no_values("float()")

    def __complex__(self) -> complex:
        return self._no_values("complex()")

    def __index__(self) -> int:
        return self._no_values("using a tensor as an index")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        return self._no_values("converting to a numpy array")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        return self._no_values(f"np.{name}()")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return self._no_values(f"np.{func.__name__}()")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise trace_error(f"assigning into a {self._desc()} in the orchestration function",
                          "write tensors inside an @l3c.kernel (an l3c.Out parameter), or use "
                          "l3c.zeros for a zero-filled tensor")

    def _needs_values(self, name: str) -> Any:
        raise trace_error(f".{name} of a {self._desc()} needs its values, which do not exist "
                          "while tracing",
                          "do it inside an @l3c.kernel; proxies have shape, dtype, ndim, size, "
                          "itemsize, nbytes, strides, slicing, .T and .reshape")

    def __round__(self, ndigits: Any = None) -> Any:
        return self._no_values("round()")


def _make_operator(name: str) -> Any:
    def op(self: Valueless, other: Any) -> Any:
        return self._no_values(f"arithmetic ({name})")
    op.__name__ = name
    return op


def _make_value_attribute(name: str) -> property:
    def get(self: Valueless) -> Any:
        return self._needs_values(name)
    return property(get, doc=f"numpy's .{name}: needs values, a TraceError while tracing")


def _make_unary(label: str) -> Any:
    def op(self: Valueless, *unused: Any) -> Any:
        return self._no_values(label)
    return op


for _name in _OPERATORS:
    for _form in ("__{}__", "__r{}__", "__i{}__"):
        if _form == "__i{}__" and _name == "divmod":
            continue
        setattr(Valueless, _form.format(_name), _make_operator(_form.format(_name)))
# Comparisons and unary operators need values too (`__eq__` also keeps proxies out of `==` tests).
for _name, _label in (("eq", "'=='"), ("ne", "'!='"), ("lt", "'<'"), ("le", "'<='"), ("gt", "'>'"),
                      ("ge", "'>='"), ("neg", "unary '-'"), ("pos", "unary '+'"),
                      ("abs", "abs()"), ("invert", "'~'")):
    setattr(Valueless, f"__{_name}__", _make_unary(_label))
# numpy's other attributes (`.sum`, `.copy`, `.flat`, ...) raise the TraceError that says they need
# values. As properties rather than a `__getattr__`: a class with `__getattr__` takes the slow
# path on every attribute access, and the tracer reads a proxy's attributes many times per call.
# (The proxy's own attributes, `.shape`, `.T`, `.reshape`, ..., and ArrayFacts' come first.)
for _name in dir(np.ndarray):
    if not _name.startswith("__") and not hasattr(ArrayFacts, _name):
        setattr(Valueless, _name, _make_value_attribute(_name))
