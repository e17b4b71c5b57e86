"""Fast constructors of the frozen IR records the tracer makes once or more per kernel call.

A frozen dataclass's `__init__` sets each field through `object.__setattr__`, which is most of the
cost of building a `Region` or an `Access`. These build the same records (equal, hashable, with
the same fields) by filling the instance dict directly; they take fields already checked by the
tracer, so they validate nothing.
"""
from __future__ import annotations

from ..ir import Access, Region, ScalarArg, Shift

_new = object.__new__


def make_region(offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
                box: tuple[tuple[int, int, int], ...] | None,
                shifts: tuple[Shift, ...] = ()) -> Region:
    """`Region(offset, shape, strides, box, shifts)`."""
    region = _new(Region)
    fields = region.__dict__
    fields["offset"] = offset
    fields["shape"] = shape
    fields["strides"] = strides
    fields["box"] = box
    fields["shifts"] = shifts
    return region


def make_access(param: str, tensor: int, region: Region, mode: str | None) -> Access:
    """`Access(param, tensor, region, mode)`."""
    access = _new(Access)
    fields = access.__dict__
    fields["param"] = param
    fields["tensor"] = tensor
    fields["region"] = region
    fields["mode"] = mode
    return access


def make_scalar(param: str, value: object) -> ScalarArg:
    """`ScalarArg(param, value)`."""
    arg = _new(ScalarArg)
    fields = arg.__dict__
    fields["param"] = param
    fields["value"] = value
    return arg
