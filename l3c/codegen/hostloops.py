"""Lower a placed, memory-planned program with loops over several hosts: one plan per host, whose
landing slot's queue (the loops' control steps, the sends and the landings) the host's parent runs.

`l3c.passes.looptransfers` decides what moves (every instance of a producer whose writes another
host may read) and builds each host's program with its sends and landings in sequential order;
here each host's program is lowered like a single host's program with loops
(`lower_loops.LoopLowering`), with the sends and landings on the landing slot. The workers' plan
keeps that slot's queue empty (no worker runs it); `HostPart.comm` holds it for the parent
(`l3c.runtime.hosts.looprun`). Every worker counts the landing slot's steps in its rows like any
slot's, so a wait on a landing is an ordinary relative wait.
"""
from __future__ import annotations

from typing import Any

from ..ir import Access, Program
from ..passes.looptransfers import LoopFlow, analyse_loops
from ..passes.regions import elements
from ..runtime.hostplan import CommPiece, CommStep, DistPlan, FinalPiece, HostPart, Transfer
from ..runtime.plan import Plan
from . import lower_loops
from .lower import (LoweredProgram, _step, _task_args, _tensor_bases, _views_tree, landing_slot,
                    region_view, slot_of)


def split_loops(program: Program, piece: Any) -> DistPlan:
    """Per-host plans and comm queues, the transfers and the final broadcasts (`piece(program,
    bases, tensor, elements, hints)` describes a final broadcast's elements)."""
    flow = analyse_loops(program)
    written = frozenset(a.tensor for t in program.tasks for a in t.accesses if a.writes)
    parts = []
    for hs in flow.parts:
        lowered, comm = _lower_host(program, flow, hs, written)
        parts.append(HostPart(hs.host, lowered, (), (), (), comm))
    transfers = tuple(Transfer(id=tr.id, src=tr.src, dst=tr.dst, producer=tr.producer,
                               src_slot=slot_of(program, tr.producer), src_count=0, order=0,
                               consumers=()) for tr in flow.transfers)
    final = tuple(FinalPiece(root, piece(program, flow.bases, tensor, elements(region), [region]))
                  for root, tensor, region in flow.final)
    per_instance = sum(sum(program.tensors[a.tensor].itemsize * a.region.size for a in tr.accesses)
                       for tr in flow.transfers)
    stats = {"transfers": len(transfers), "tokens": 0, "sent_items": 0, "gated": 0,
             "transfer_bytes": per_instance, "final_bytes": sum(f.piece.nbytes for f in final),
             "per_instance": True}
    return DistPlan(flow.hosts, tuple(parts), transfers, final, stats)


def _lower_host(program: Program, flow: LoopFlow, hs: Any, written: frozenset[int]
                ) -> tuple[LoweredProgram, tuple]:
    config = program.config
    sub = hs.program
    land = landing_slot(program)
    slots = land + 1
    bases, staging_views, staging, arena_bytes = _tensor_bases(program)
    index = {lid: i for i, lid in enumerate(sorted(sub.loops))}
    slot: dict[int, int] = {}
    args: dict[int, tuple] = {}
    checks: dict[tuple[int, int], list] = {}
    for v, (kind, ident) in enumerate(hs.origin):
        if kind != "task":
            slot[v] = land
            continue
        task = program.task(ident)
        slot[v] = program.slot_of(task)
        found: list = []
        args[v] = _task_args(program, task, bases, index, found)
        for lid, check in found:
            checks.setdefault((slot[v], lid), []).append(check)

    def make_step(v: int, waits: tuple) -> Any:
        kind, ident = hs.origin[v]
        if kind == "task":
            # the parent may wait on any of them (a send is due, a landing's bytes are free)
            return _step(program, ident, args[v], waits, True, True)
        tr = flow.transfers[ident]
        pieces = tuple(_comm_piece(program, bases, a, index) for a in tr.accesses)
        return CommStep(kind, tr.id, tr.dst if kind == "send" else tr.src, tr.producer, pieces,
                        waits, program.task(tr.producer).loc)

    lowering = lower_loops.LoopLowering(sub, slots, slot, make_step)

    def element(access: Access) -> Any:
        return region_view(bases[access.tensor], program.tensors[access.tensor], access.region)
    lowering.element_view = element
    queues = lowering.queues(checks)
    comm = tuple(queues[land])
    queues[land] = []
    plan = Plan(chips=config.chips, sub_workers=slots - config.chips,
                queues=tuple(tuple(q) for q in queues), arena_bytes=arena_bytes,
                loops=lower_loops.plan_loops(sub, index))
    input_views = tuple(staging_views[p.tensor] if p.tensor is not None else None
                        for p in program.params)
    written_inputs = tuple(i for i, p in enumerate(program.params)
                           if p.tensor is not None and p.tensor in written)
    lowered = LoweredProgram(plan=plan, input_views=input_views, written_inputs=written_inputs,
                             results=_views_tree(program.results, program, bases),
                             staging_bytes=staging, arena_bytes=arena_bytes)
    return lowered, comm


def _comm_piece(program: Program, bases: dict[int, int], access: Access,
                index: dict[int, int]) -> CommPiece:
    info = program.tensors[access.tensor]
    view: Any = region_view(bases[access.tensor], info, access.region)
    if access.region.shifts:
        view = lower_loops.moving_arg(view, access.region, info.itemsize, index)
    return CommPiece(view, bases[access.tensor], bases[access.tensor] + info.nbytes)
