"""`@l3c.kernel`: a Python function that runs in a worker on numpy views and static scalars.

Parameters annotated `l3c.In` / `l3c.Out` / `l3c.InOut` take tensors (read / written / both); every
other parameter takes a static scalar. Inside a trace (`l3c.jit`) a call records a task; outside it
runs the plain function here. At decoration the function is registered in `l3c.registry` and the key
it returns (its import path "module:qualname", made unique) becomes `kernel.name`, the IR's
`Task.kernel`, which is how forked workers and schedule files find the function again.

With `native=` (a numba cfunc, a ctypes function or an address; `native.py`) workers call that C
function instead of the Python body, which still runs outside a trace.
"""
from __future__ import annotations

import functools
import inspect
import numbers
import sys
from typing import Any, Callable

from .. import registry
from ..errors import ConfigError
from .context import _local
from .native import NativeSpec, check_call, native_spec
from .source import _CODES, frame_loc, trace_error, user_location

_getframe = sys._getframe


class _Mode:
    """Base of the three access annotations; a class so `x: l3c.In` reads as a type."""

    mode = ""


class In(_Mode):
    """The kernel reads this tensor."""

    mode = "In"


class Out(_Mode):
    """The kernel writes this tensor and does not read its prior content."""

    mode = "Out"


class InOut(_Mode):
    """The kernel reads and writes this tensor."""

    mode = "InOut"


_MODES = {"In": In, "Out": Out, "InOut": InOut}


def _mode_of(annotation: Any, fn: Callable) -> str | None:
    """"In"/"Out"/"InOut" for an access annotation, else None.

    String annotations (`from __future__ import annotations`) are evaluated in the function's
    globals; if that fails (a name not yet defined), "l3c.In" / "In" style spellings still count.
    """
    for _ in range(2):      # twice: `x: "l3c.In"` under the future import is a quoted string
        if not isinstance(annotation, str):
            break
        try:
            annotation = eval(annotation, getattr(fn, "__globals__", {}), {})  # noqa: S307
        except Exception:  # noqa: BLE001 - an unresolvable annotation is not an access mode
            tail = annotation.strip().strip("'\"").rsplit(".", 1)[-1]
            return tail if tail in _MODES else None
    if isinstance(annotation, type) and issubclass(annotation, _Mode) and annotation.mode:
        return annotation.mode
    return None


def access_modes(fn: Callable) -> dict[str, str | None]:
    """Each parameter of kernel function `fn`, in order, with its access mode ("In", "Out",
    "InOut") or None for a scalar parameter. Schedule files record this and compare it at load.

    Raises ConfigError at the user's line for a parameter that is not plain positional: workers
    call kernels positionally in parameter order, where *args, keyword-only and **kw parameters
    have no place."""
    modes: dict[str, str | None] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            file, line = user_location()
            raise ConfigError(f"{file}:{line}: @l3c.kernel {fn.__qualname__}: parameter "
                              f"{p.name!r} is {p.kind.description}; kernels take plain positional "
                              f"parameters (write `def {fn.__name__}(a: l3c.In, b: l3c.Out, n)`)")
        modes[p.name] = _mode_of(p.annotation, fn)
    return modes


def wrap_like(wrapper: object, fn: Callable) -> None:
    """`functools.update_wrapper(wrapper, fn)` without reading `wrapper.__dict__`: reading it makes
    the instance's attribute dict a real dict, and every later attribute read a slow dictionary
    lookup (the tracer reads a kernel's params, name, worker and native on every call; a jitted
    function's call path reads its own fields on every run)."""
    for attr in functools.WRAPPER_ASSIGNMENTS:
        if hasattr(fn, attr):
            setattr(wrapper, attr, getattr(fn, attr))
    for attr, value in getattr(fn, "__dict__", {}).items():
        setattr(wrapper, attr, value)
    wrapper.__wrapped__ = fn


class Kernel:
    """A decorated kernel. Call it like the function; `kernel.on(chip)` pins its task to a chip."""

    def __init__(self, fn: Callable, worker: str = "chip", native: Any = None,
                 cost: float | None = None) -> None:
        if worker not in ("chip", "sub"):
            file, line = user_location()
            raise ConfigError(f"{file}:{line}: @l3c.kernel(worker={worker!r}): worker must be "
                              "'chip' or 'sub'")
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))
                                 or not 0 < cost < float("inf")):
            file, line = user_location()
            raise ConfigError(f"{file}:{line}: @l3c.kernel(cost={cost!r}): cost must be a number "
                              "> 0 (the time of one call, in the unit of the program's other "
                              "costs; kernels without one cost 1.0)")
        self.cost = None if cost is None else float(cost)   # a hint for the schedule's cost model
        if not callable(fn):
            file, line = user_location()
            raise ConfigError(f"{file}:{line}: @l3c.kernel needs a function, got "
                              f"{type(fn).__name__}")
        self.fn = fn
        self.worker = worker
        self.signature = inspect.signature(fn)
        self.modes: dict[str, str | None] = access_modes(fn)
        # (name, mode) per parameter, what the tracer walks on every call
        self.params: tuple[tuple[str, str | None], ...] = tuple(self.modes.items())
        wrap_like(self, fn)
        self.native: NativeSpec | None = None
        key = f"{fn.__module__}:{fn.__qualname__}"
        runs = None
        if native is not None:
            self.native = native_spec(native, fn, self.modes)
            runs = registry.NativeFunction(self.native.address, key, self.native.keep)
        self.name = registry.register(fn, key, runs)

    def check_native_call(self, arguments: dict[str, Any]) -> None:
        """Raise TraceError at the user's line if a native kernel cannot take these arguments
        (tensor proxies and scalars by parameter name); nothing for a Python kernel."""
        if self.native is not None:
            check_call(self.native, self.fn.__qualname__, self.modes, arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = getattr(_local, "tracer", None)
        if tracer is None:
            return self.fn(*args, **kwargs)
        # `frame_loc(caller)` where the caller's line was seen before (the usual case), inline
        frame = _getframe(1)
        entry = _CODES.get(id(frame.f_code))
        loc = entry[2].get(frame.f_lasti) if entry is not None and not entry[1] else None
        tracer.record_call(self, args, kwargs, loc if loc is not None else frame_loc(frame))
        return None

    def on(self, chip: int) -> "PinnedKernel":
        """A callable that records this kernel's task pinned to `chip` (a sub worker index for
        `worker="sub"` kernels)."""
        if isinstance(chip, bool) or not isinstance(chip, numbers.Integral) or chip < 0:
            raise trace_error(f"{self.fn.__qualname__}.on({chip!r}): a pin must be an int >= 0",
                              f"pin to a {self.worker} index 0, 1, ...")
        return PinnedKernel(self, int(chip))

    def __repr__(self) -> str:
        return f"<l3c.kernel {self.name} worker={self.worker}>"


class PinnedKernel:
    """`kernel.on(chip)`: calls record a task that must run on `chip`."""

    def __init__(self, kernel: Kernel, chip: int) -> None:
        self.kernel = kernel
        self.chip = chip

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = getattr(_local, "tracer", None)
        if tracer is None:
            return self.kernel.fn(*args, **kwargs)
        tracer.record_call(self.kernel, args, kwargs, frame_loc(sys._getframe(1)), pin=self.chip)
        return None

    def __repr__(self) -> str:
        return f"<l3c.kernel {self.kernel.name} on {self.kernel.worker} {self.chip}>"


def kernel(fn: Callable | None = None, *, worker: str = "chip", native: Any = None,
           cost: float | None = None) -> Any:
    """Decorate a kernel: `@l3c.kernel`, `@l3c.kernel(worker="sub")`,
    `@l3c.kernel(native=c_function)` for a kernel whose workers call C code (see `native.py`), or
    `@l3c.kernel(cost=4.0)` (how long one call takes relative to others, for placement;
    docs/passes.md)."""
    if fn is None:
        return lambda f: Kernel(f, worker, native, cost)
    return Kernel(fn, worker, native, cost)
