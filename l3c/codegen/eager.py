"""Lower a traced Program to the eager runtime's calls: the reference semantics of `Jitted.eager`
(run by `l3c.execute.eager`).

Every tensor (inputs and intermediates) gets its own place in the arena (no reuse: this path must not
depend on the memory plan it is the reference for), inputs are staged, each task becomes a plain-data
`runtime.eager.Call`, and the dynamic runtime runs them. Afterwards input arrays that kernels wrote are
updated and results are copied out into fresh arrays.

"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Access, Program, Region, build_results
from ..passes.arena_layout import ALIGNMENT, aligned
from ..passes.regions import byte_span
from ..runtime.eager import Call
from ..runtime.plan import View


def layout_tensors(program: Program) -> tuple[dict[int, int], int]:
    """Arena offset of every tensor (in id order, 64-byte aligned, no reuse) and the bytes spanned."""
    offsets, end = {}, 0
    for t in program.tensors:
        end = aligned(end)
        offsets[t.id] = end
        end += t.nbytes
    return offsets, max(aligned(end), ALIGNMENT)


def region_view(base: int, region: Region, dtype: str) -> View:
    size = np.dtype(dtype).itemsize
    return View(base + region.offset * size, tuple(region.shape),
                tuple(s * size for s in region.strides), dtype)


def to_calls(program: Program, offsets: dict[int, int]) -> list[Call]:
    calls = []
    for task in program.tasks:
        args, accesses = [], []
        for arg in task.args:
            if isinstance(arg, Access):
                info = program.tensors[arg.tensor]
                args.append(region_view(offsets[arg.tensor], arg.region, info.dtype))
                lo, hi = byte_span(offsets[arg.tensor], info.itemsize, arg.region)
                accesses.append((arg.tensor, lo, hi, arg.writes))
            else:
                args.append(arg.value)
        size = len(program.groups[task.group]) if task.group is not None else 1
        calls.append(Call(task.id, task.kernel, tuple(args), task.worker, tuple(accesses), task.pin,
                          task.group, task.group_rank, size, task.loc))
    return calls


def results(tree: Any, read) -> Any:
    """The results as Python values, each `ResultRef` read by `read`."""
    return build_results(tree, read)
