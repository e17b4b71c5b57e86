"""A kernel call's arguments off the tracer's fast path: bound by keyword, and every argument that
is not a live tensor of the trace nor a plain scalar (loop variables, numpy scalars, and the
TraceErrors of what a kernel cannot take)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..ir import Access, ScalarArg
from .arguments import SCALARS
from .kernel import Kernel
from .loops import LoopIndex
from .proxy import Tensor
from .source import trace_error


def bind_call(kernel: Kernel, args: Sequence[Any], kwargs: dict[str, Any]) -> list:
    """The arguments of a call with keywords (or too few or many) in parameter order."""
    params = list(kernel.modes)
    try:
        bound = kernel.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise trace_error(f"kernel {kernel.fn.__qualname__}({', '.join(params)}) takes "
                          f"{len(params)} arguments, called with {len(args) + len(kwargs)}: "
                          f"{exc}", "pass one argument per kernel parameter") from None
    bound.apply_defaults()
    return [bound.arguments[name] for name in params]

def _unannotated(kernel: Kernel, name: str, value: Tensor) -> None:
    raise trace_error(f"a {value._desc()} is passed to parameter {name!r} of kernel "
                      f"{kernel.fn.__qualname__}, which has no access annotation",
                      f"annotate it `{name}: l3c.In`, `l3c.Out` or `l3c.InOut`")

def other_argument(kernel: Kernel, name: str, mode: str | None, value: Any) -> Any:
    """The task argument for anything but a live tensor of this trace (or the TraceError)."""
    what = f"kernel {kernel.fn.__qualname__}"
    if isinstance(value, Tensor):
        value._check_alive()                  # raises: another trace's, or after its scope
        if mode is None:
            _unannotated(kernel, name, value)
        return Access(name, value._tensor, value.region, mode)
    if type(value) is LoopIndex:
        value.check_live()
        if mode is not None:
            raise trace_error(f"parameter {name!r} of {what} is annotated l3c.{mode} but got "
                              f"the loop variable {value}",
                              "pass a tensor (index one with the loop variable: x[i]), or drop "
                              "the annotation for a scalar")
        return ScalarArg(name, value.affine)
    if isinstance(value, np.ndarray):
        raise trace_error(f"a numpy array {value.dtype}{list(value.shape)} is passed to "
                          f"parameter {name!r} of {what} inside a trace",
                          "pass arrays as arguments of the l3c.jit function, or create "
                          "intermediates with l3c.empty/l3c.zeros")
    if isinstance(value, SCALARS + (np.generic,)):
        if isinstance(value, np.generic):
            value = value.item()
        if mode is not None and value is not None:
            raise trace_error(f"parameter {name!r} of {what} is annotated l3c.{mode} but "
                              f"got {type(value).__name__} {value!r}",
                              "pass a tensor, or drop the annotation for a scalar")
        return ScalarArg(name, value)
    raise trace_error(f"parameter {name!r} of {what} got a {type(value).__name__}",
                      "kernels take tensors and Python scalars (int, float, bool, str, "
                      "None)")
