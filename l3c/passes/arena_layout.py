"""The arena's byte layout a memory plan implies: where every tensor starts.

Inputs first, one aligned block per tensor parameter in parameter order (the staging area); then
the planned intermediates at `staging + arena_offset`; then anything the plan left unplaced. Code
generation builds its views from these bases, and the several-host analysis compares the bytes
transfers and tasks touch with them (`l3c.passes.transfers`).
"""
from __future__ import annotations

from ..ir import Program

ALIGNMENT = 64          # of every arena block: a cache line, so two workers never share one


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


def staging_layout(program: Program) -> tuple[dict[int, int], int]:
    """Byte base of each tensor parameter's block in the staging area (parameter order, each
    block aligned), and the staging area's size."""
    bases: dict[int, int] = {}
    cursor = 0
    for param in program.params:
        if param.tensor is None or param.tensor in bases:
            continue
        info = program.tensors[param.tensor]
        bases[info.id] = cursor
        cursor = aligned(cursor + max(info.nbytes, 1))
    return bases, cursor


def tensor_bases(program: Program, host: int | None = None) -> tuple[dict[int, int], int, int]:
    """Byte base of every tensor in the arena, the staging size and the arena size.

    Inputs first, one aligned block per tensor parameter in parameter order; then the planned
    intermediates at `staging + arena_offset`; then anything the plan left unplaced. With `host`,
    the arena size is that host's: the plan sized each host's by the tensors it holds
    (`reports["host_arena_bytes"]`); bases of tensors on other hosts lie beyond it."""
    bases, staging = staging_layout(program)
    end = staging + program.memory.arena_bytes
    beyond = False                          # some tensor lies past the planned arena
    for info in program.tensors:
        if info.kind == "input":
            if info.id not in bases:        # an input no parameter names: give it staging room
                bases[info.id] = end
                end = aligned(end + max(info.nbytes, 1))
                beyond = True
        elif info.arena_offset is not None:
            bases[info.id] = staging + info.arena_offset
            end = max(end, staging + info.arena_offset + info.nbytes)
        else:
            bases[info.id] = aligned(end)
            end = bases[info.id] + info.nbytes
            beyond = True
    host_ends = program.reports.get("host_arena_bytes") if host is not None else None
    if host_ends and not beyond:            # every host sees the same bases, and its own size
        end = staging + host_ends[host]
    return bases, staging, aligned(end)
