"""What a new intermediate (`l3c.empty(shape, dtype)`) is given, checked: its shape as a tuple of
ints, and its dtype (np.float32, "f4", x.dtype) as a numeric numpy dtype and its name, remembered
per hashable spelling, since `np.dtype(...)` and `.name` cost several microseconds per new tensor."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .source import trace_error

DTYPES: dict[Any, tuple[np.dtype, str]] = {}     # spelling -> (dtype, name)


def dtype_and_name(dtype: Any) -> tuple[np.dtype, str]:
    """`np.dtype(dtype)` and its name, or the TraceError of a spelling that is no numeric dtype."""
    try:
        return DTYPES[dtype]
    except (KeyError, TypeError):              # new, or an unhashable spelling
        pass
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise trace_error(f"dtype {dtype!r} is not a numpy dtype",
                          "pass e.g. np.float32 or x.dtype") from None
    if dt.kind not in "biufc":
        raise trace_error(f"dtype {dt} is not numeric", "use a numeric or bool dtype")
    known = (dt, dt.name)
    try:
        DTYPES[dtype] = known
    except TypeError:
        pass
    return known


def checked_shape(shape: Any) -> tuple[int, ...]:
    """`shape` as a tuple of ints, or the TraceError."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        ok = all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0
                 for d in shape)
    except TypeError:
        ok = False
    if not ok:
        raise trace_error(f"shape {shape!r} for a new tensor is not a tuple of ints >= 0",
                          "pass a shape like (128, 64) or x.shape")
    return tuple(int(d) for d in shape)
