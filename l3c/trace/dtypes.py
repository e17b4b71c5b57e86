"""The dtype of a new intermediate: a user's spelling (np.float32, "f4", x.dtype) checked numeric
and turned into a numpy dtype and its name, remembered per hashable spelling, since `np.dtype(...)`
and `.name` cost several microseconds per new tensor."""
from __future__ import annotations

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
