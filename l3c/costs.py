"""Measured kernel costs: what `l3c profile --save-costs FILE` writes and a later compile reads.

The schedule's cost model (`l3c.ir.CostModel`, docs/passes.md "Costs") estimates each call of a
kernel at `@l3c.kernel(cost=...)` or 1.0. A profiled run measures every call; `measured_costs`
takes the median duration per kernel (microseconds) from its Chrome trace, `save_costs` writes
them as JSON, and `l3c.jit(costs=FILE)` (or `l3c dump-ir/compile --costs FILE`) hands them to the
passes, where they replace the hints of the kernels they name. Kernels the profile did not run
cost the median of the measured ones, so the units stay comparable.

File format (JSON): {"format": "l3c-costs", "version": 1, "unit": "us", "program": NAME,
"kernel_costs": {"module:qualname": MICROSECONDS, ...}, "default_cost": MICROSECONDS}.
"""
from __future__ import annotations

import json
import os
import statistics
from typing import Any

from .errors import L3CError

FORMAT, VERSION = "l3c-costs", 1


def measured_costs(trace: dict[str, Any]) -> dict[str, float]:
    """Median duration (us) of each kernel's calls in a profile trace (`l3c.profile.build_trace`)."""
    durations: dict[str, list[float]] = {}
    for event in trace.get("traceEvents", ()):
        if event.get("ph") == "X" and "kernel" in event.get("args", {}):
            durations.setdefault(event["args"]["kernel"], []).append(float(event["dur"]))
    return {kernel: max(statistics.median(times), 1e-3) for kernel, times in
            sorted(durations.items())}


def save_costs(path: str | os.PathLike, costs: dict[str, float], program: str = "") -> None:
    """Write `costs` (kernel -> us) as a costs file."""
    default = statistics.median(costs.values()) if costs else 1.0
    data = {"format": FORMAT, "version": VERSION, "unit": "us", "program": program,
            "kernel_costs": costs, "default_cost": default}
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")


def save_measured(trace: dict[str, Any], path: str) -> str:
    """`l3c profile --save-costs PATH`: write the trace's measured costs; returns what to print."""
    costs = measured_costs(trace)
    try:
        save_costs(path, costs, program=trace.get("metadata", {}).get("program", ""))
    except OSError as exc:
        raise L3CError(f"cannot write {path}: {exc.strerror or exc}") from None
    return (f"wrote {path}: median time of {len(costs)} kernels (us); compile with --costs "
            f"{path} to place by them\n")


def load_costs(path: str | os.PathLike) -> dict[str, Any]:
    """`{"kernel_costs": {...}, "default_cost": float}` from a costs file; L3CError if it is not
    one."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise L3CError(f"cannot read costs file {os.fspath(path)}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise L3CError(f"costs file {os.fspath(path)} is not JSON: {exc}") from None
    costs = data.get("kernel_costs") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("format") != FORMAT
            or data.get("version") != VERSION or not isinstance(costs, dict)
            or not all(isinstance(k, str) and _positive(v) for k, v in costs.items())
            or not _positive(data.get("default_cost", 1.0))):
        raise L3CError(f"{os.fspath(path)} is not an l3c costs file (version {VERSION}); write "
                       "one with `l3c profile TARGET ... --save-costs FILE`")
    return {"kernel_costs": {k: float(v) for k, v in costs.items()},
            "default_cost": float(data.get("default_cost", 1.0))}


def _positive(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 < value < float("inf"))


def resolve(costs: Any) -> dict[str, Any]:
    """`l3c.jit(costs=...)`: None, a costs file path, or a dict kernel -> cost; as the pass
    options' `kernel_costs` / `default_cost`."""
    if costs is None:
        return {}
    if isinstance(costs, (str, os.PathLike)):
        return load_costs(costs)
    if isinstance(costs, dict) and all(isinstance(k, str) and _positive(v)
                                       for k, v in costs.items()):
        return {"kernel_costs": {k: float(v) for k, v in costs.items()}}
    raise L3CError(f"costs={costs!r}: pass a costs file path (from `l3c profile --save-costs`) "
                   "or a dict of kernel name -> cost > 0")
