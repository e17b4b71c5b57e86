"""`l3c.ArraySpec(shape, dtype)`: an array argument described by its shape and dtype alone.

Lowering needs only the shapes and dtypes of the array arguments (they and the statics are the
cache key), so `step.lower(l3c.ArraySpec((100_000, 100_000), np.float32))` traces and plans a
production-sized program on a small build machine: nothing of that size is allocated. `l3c dump-ir`
and `l3c compile` turn every `--arg f32[...]` into one. Running needs real arrays: a compiled run
or `.eager` given an ArraySpec says so.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..errors import TraceError


class ArrayFacts:
    """What an array's shape and dtype alone say: shared by `ArraySpec` and the tracer's tensor
    proxies, which have `shape` and `dtype` and no values."""

    __slots__ = ()
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


class ArraySpec(ArrayFacts):
    """The shape and dtype of an array argument, with no data (see the module docstring)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: Any, dtype: Any = np.float64) -> None:
        if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
            shape = (shape,)
        try:
            dims = tuple(shape)
        except TypeError:
            dims = None
        if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                                   and d >= 0 for d in dims):
            raise TraceError(f"l3c.ArraySpec({shape!r}, ...): the shape must be a tuple of "
                             "ints >= 0, like (128, 64)")
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TraceError(f"l3c.ArraySpec(..., {dtype!r}): not a numpy dtype; pass e.g. "
                             "np.float32 or 'float32'") from None
        self.shape: tuple[int, ...] = tuple(int(d) for d in dims)
        self.dtype: np.dtype = dt

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ArraySpec) and self.shape == other.shape
                and self.dtype == other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype.str))

    def __repr__(self) -> str:
        return f"l3c.ArraySpec({self.shape}, {self.dtype.name})"
