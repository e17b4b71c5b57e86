"""The arguments of a compiled run: bound to parameters, checked against the compiled signature
(one `ScheduleError` per mistake, whichever run checks them: single host, several hosts, eager)."""
from __future__ import annotations

import numpy as np

from ..errors import ScheduleError
from ..ir import Program
from ..ir import input_aliases


def describe_signature(program: Program) -> str:
    parts = []
    for p in program.params:
        if p.tensor is None:
            parts.append(f"{p.name}={p.static!r}")
        else:
            info = program.tensors[p.tensor]
            parts.append(f"{p.name}: {info.dtype}{list(info.shape)}")
    return "(" + ", ".join(parts) + ")"


def _describe_given(args: tuple) -> str:
    parts = []
    for a in args:
        if isinstance(a, np.ndarray):
            parts.append(f"{a.dtype}{list(a.shape)}")
        else:
            parts.append(repr(a) if len(repr(a)) < 40 else type(a).__name__)
    return "(" + ", ".join(parts) + ")"


def bind_args(program: Program, args: tuple, kwargs: dict, defaults: dict) -> tuple:
    """The arguments in parameter order, bound as `step.lower(*args, **kwargs)` bound them: keywords
    by name, then `defaults` (the jitted function's; empty for a loaded schedule) for parameters not
    given. What stays wrong (a missing array, a static that differs) is left for `check_args`."""
    params = program.params
    names = {p.name for p in params}
    unknown = [k for k in kwargs if k not in names]
    given = [p.name for p in params[:len(args)] if p.name in kwargs]
    if unknown or given:
        why = (f"got an unexpected keyword argument {unknown[0]!r}" if unknown
               else f"got multiple values for argument {given[0]!r}")
        raise ScheduleError(f"{program.name}: {why}\n  expected {describe_signature(program)}\n"
                            f"  given    {_describe_given(args)} {sorted(kwargs)}")
    bound = list(args)
    for p in params[len(args):]:
        if p.name in kwargs:
            bound.append(kwargs[p.name])
        elif p.name in defaults:
            bound.append(defaults[p.name])
        else:                                              # missing: check_args says so
            break
    return tuple(bound)


def check_args(program: Program, args: tuple) -> list[np.ndarray | None]:
    """The tensor arguments as arrays (None for statics); ScheduleError on any mismatch."""
    def mismatch(why: str) -> ScheduleError:
        return ScheduleError(f"{program.name}: {why}\n  expected {describe_signature(program)}\n"
                             f"  given    {_describe_given(args)}")

    if len(args) != len(program.params):
        raise mismatch(f"takes {len(program.params)} arguments, {len(args)} given")
    arrays: list[np.ndarray | None] = []
    for p, a in zip(program.params, args):
        if p.tensor is None:
            if type(a) is not type(p.static) or a != p.static:
                if not (isinstance(a, float) and isinstance(p.static, float)
                        and np.isnan(a) and np.isnan(p.static)):
                    raise mismatch(f"static argument {p.name!r} was {p.static!r} when compiled, "
                                   f"{a!r} given")
            arrays.append(None)
            continue
        info = program.tensors[p.tensor]
        if not isinstance(a, np.ndarray):
            raise mismatch(f"argument {p.name!r} must be a numpy array {info.dtype}"
                           f"{list(info.shape)}, got {type(a).__name__}")
        if a.shape != tuple(info.shape) or a.dtype.newbyteorder("=") != np.dtype(info.dtype):
            raise mismatch(f"argument {p.name!r} must be {info.dtype}{list(info.shape)}, got "
                           f"{a.dtype}{list(a.shape)}")
        arrays.append(a)
    aliases, overlap = input_aliases(arrays)
    if overlap is not None:
        raise mismatch(f"arguments {program.params[overlap[0]].name!r} and "
                       f"{program.params[overlap[1]].name!r} overlap in memory without being the "
                       "same array")
    first_param = {}
    for i, p in enumerate(program.params):
        if p.tensor is None:
            continue
        want = first_param.setdefault(p.tensor, i)
        if aliases[i] != want:
            a, b = program.params[want].name, p.name
            raise mismatch(f"arguments {a!r} and {b!r} must be the same array (as when compiled)"
                           if want != i else
                           f"argument {p.name!r} must be its own array, not the same as "
                           f"{program.params[aliases[i]].name!r}")
    return arrays


def checked_args(program: Program, args: tuple, art: dict) -> list[np.ndarray | None]:
    """`check_args`, answered by comparisons only when the call looks like the compiled signature
    (the statics equal, each array of the right type, shape and dtype, at most one array so that
    nothing can alias); anything else goes through `check_args` and its messages."""
    expected = art.get("expected_args")
    if expected is None:
        expected = art["expected_args"] = [
            (None, p.static) if p.tensor is None else
            (tuple(program.tensors[p.tensor].shape), np.dtype(program.tensors[p.tensor].dtype))
            for p in program.params]
        art["one_array"] = sum(p.tensor is not None for p in program.params) <= 1
    if art["one_array"] and len(args) == len(expected):
        arrays: list[np.ndarray | None] = []
        for a, (shape, want) in zip(args, expected):
            if shape is None:
                if type(a) is not type(want) or a != want:
                    break
                arrays.append(None)
            elif type(a) is np.ndarray and a.shape == shape and a.dtype == want:
                arrays.append(a)
            else:
                break
        else:
            return arrays
    return check_args(program, args)


def readonly_error(program: Program, param_index: int) -> ScheduleError:
    """The error for a read-only array passed where a kernel writes: raised before any worker runs
    (writing the results back would fail after the run, or be skipped silently)."""
    param = program.params[param_index]
    writer = next((t for t in program.tasks for a in t.accesses
                   if a.writes and a.tensor == param.tensor), None)
    by = f"kernel {writer.kernel} (task {writer.id}, called at {writer.loc})" if writer else "a kernel"
    return ScheduleError(f"{program.name}: argument {param.name!r} is a read-only array, but {by} "
                         f"writes it; pass a writable array (e.g. {param.name}.copy())")
