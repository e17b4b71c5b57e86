"""A call's arguments that are used in place: arrays (or views) in `l3c.shared` memory.

Such an argument is neither copied into the arena before the run nor back after it: the workers'
views of it point into its own memory (`l3c.codegen.rebind` moves them, `runtime.bindings`
installs the moved plan). Per compiled signature, the moved plan is computed once per layout of
the shared arguments (which memory, where in it, with which strides), so a call whose shared
arguments sit where an earlier call's did costs a few attribute reads per array.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codegen.lower import LoweredProgram
from ..codegen.rebind import Placement, Rebinding, rebind, result_view
from ..passes.results import build_results, result_refs
from ..runtime import sharedmem

MAX_LAYOUTS = 32                 # layouts of shared arguments remembered per compiled signature


@dataclass(frozen=True)
class InPlace:
    """How one call's shared arguments are used in place."""

    layout_key: tuple                         # what the variant is cached under
    rebinding: Rebinding
    params: frozenset[int]                    # parameter indices not staged
    memories: dict[int, tuple[int, int]]      # key -> (fd, nbytes) of each memory used
    placed: dict[int, Placement]              # tensor -> where it lies
    result_refs: tuple[int, ...]              # indices of results that are views of those


def in_place(compiled: Any, lowered: LoweredProgram, arrays: list) -> InPlace | None:
    """The in-place use of the call's shared arguments, or None when none can be used in place.

    Plans with loops stage their shared arguments: their step tables move views per iteration
    relative to the arena, which a bound variant's views into other memory would not follow."""
    if lowered.plan.loops:
        return None
    items = None
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.base is None:     # statics (None or a value) too
            continue
        mem = sharedmem.owner(a)
        if mem is None or not a.dtype.isnative:
            continue
        if items is None:
            items = []
        items.append((i, mem.key, sharedmem.offset_in(a, mem), a.strides,
                      a.flags.c_contiguous, mem))
    if items is None:
        return None
    layout_key = tuple(item[:5] for item in items)
    cache = compiled.artifacts.get("in_place")
    if cache is None:
        cache = compiled.artifacts["in_place"] = collections.OrderedDict()
    found = cache.get(layout_key)
    if found is None:
        found = cache[layout_key] = _layout(compiled.program, lowered, items, layout_key)
        while len(cache) > MAX_LAYOUTS:
            cache.popitem(last=False)
    else:
        cache.move_to_end(layout_key)
    return found if found.params else None


def _layout(program: Any, lowered: LoweredProgram, items: list, layout_key: tuple) -> InPlace:
    placed: dict[int, Placement] = {}
    memories = {}
    for i, key, offset, strides, contiguous, mem in items:
        tensor = program.params[i].tensor
        where = Placement(key, offset, tuple(strides), bool(contiguous))
        if placed.setdefault(tensor, where) != where:     # one tensor, two places: cannot be
            raise AssertionError("an aliased argument lies in two places")
        memories[key] = (mem.fd, mem.nbytes)
    rebinding = rebind(program, lowered.plan, placed)
    placed = {t: p for t, p in placed.items() if t in rebinding.tensors}
    params = frozenset(i for i, p in enumerate(program.params) if p.tensor in rebinding.tensors)
    refs = tuple(n for n, ref in enumerate(result_refs(program.results))
                 if ref.tensor in rebinding.tensors)
    return InPlace(layout_key, rebinding, params,
                   {k: v for k, v in memories.items() if k in rebinding.keys}, placed, refs)


def results(bound: InPlace, program: Any, lowered: LoweredProgram, arena_results: Any,
            arrays: list) -> Any:
    """The results tree of arrays when some results are views of arguments used in place: those
    are read from the argument's memory, the rest from the arena."""
    memory = {}
    for a in arrays:
        if isinstance(a, np.ndarray):
            mem = sharedmem.owner(a)
            if mem is not None:
                memory[mem.key] = mem
    refs = result_refs(program.results)
    leaves = result_refs(arena_results)
    for n in bound.result_refs:
        ref = refs[n]
        where = bound.placed[ref.tensor]
        view = result_view(program, ref, where)
        leaves[n] = np.ndarray(view.shape, np.dtype(view.dtype), buffer=memory[where.key],
                               offset=view.offset, strides=view.strides)
    it = iter(leaves)
    return build_results(arena_results, lambda _: next(it))
