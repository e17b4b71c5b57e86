"""Lower a placed, memory-planned program over several hosts: one plan per host, the transfers
between hosts and the final broadcasts (`l3c.runtime.hostplan`).

Which elements move, when and who waits for them is decided by the analysis
`l3c.passes.transfers` (see its docstring for the ordering rules); this step describes each move's
elements as arena views where it can and lowers every host's tasks with the waits the moves add.
Every host holds the same arena layout (one global memory plan; inputs staged on every host).
"""
from __future__ import annotations

import numpy as np

from ..ir import Program, Region
from ..passes.regions import elements
from ..passes.transfers import Move, analyse
from ..runtime.hostplan import DistPlan, FinalPiece, HostPart, Piece, Transfer
from ..runtime.plan import View
from .lower import lower, region_view, slot_of


def split(program: Program) -> DistPlan:
    """Per-host plans, transfers and final broadcasts of a placed, memory-planned program (with
    loops: `l3c.codegen.hostloops`)."""
    if program.loops:
        from .hostloops import split_loops
        return split_loops(program, _piece)
    flow = analyse(program)
    bases = flow.bases
    hosts = flow.hosts
    transfers = [_transfer(program, bases, m) for m in flow.moves]
    by_move = {id(m): t for m, t in zip(flow.moves, transfers)}
    final = tuple(FinalPiece(f.root, _piece(program, bases, f.tensor, f.elements, []))
                  for f in flow.final)
    written = frozenset(a.tensor for t in program.tasks for a in t.accesses if a.writes)
    on_host: list[list[int]] = [[] for _ in range(hosts)]
    at: dict[tuple[int, int, int], int] = {}       # (host, slot, queue position) -> task
    for v in program.graph.nodes:
        task = program.task(v)
        h = program.host_of(task)
        on_host[h].append(v)
        at[h, program.slot_of(task), task.queue_pos] = v
    parts = []
    for h in range(hosts):
        sends = tuple(sorted((t for t in transfers if t.src == h), key=lambda t: (t.producer, t.id)))
        recvs = tuple(sorted((t for t in transfers if t.dst == h), key=lambda t: t.order))
        sequence = tuple((kind, by_move[id(m)]) for kind, m in flow.sequences[h])
        # the host's parent must hear at once when these end: a send is due, or a gate opens
        gates = {at[h, s, count - 1] for t in recvs for s, count in t.gate_slots}
        lowered = lower(program, host=h, inbound=flow.inbound[h],
                        signal_tasks=frozenset(t.producer for t in sends) | gates,
                        local_after=flow.local_after[h], host_tasks=on_host[h], written=written)
        parts.append(HostPart(h, lowered, sends, recvs, sequence))
    stats = {"transfers": len(transfers),
             "tokens": sum(1 for t in transfers if not t.pieces),
             "sent_items": sum(1 for t in transfers if t.sent_order),
             "gated": sum(1 for t in transfers if t.gate_slots or t.gate_order),
             "transfer_bytes": sum(t.nbytes for t in transfers),
             "final_bytes": sum(f.piece.nbytes for f in final)}
    return DistPlan(hosts, tuple(parts), tuple(transfers), final, stats)


def _transfer(program: Program, bases: dict[int, int], m: Move) -> Transfer:
    producer = program.task(m.producer)
    return Transfer(
        id=m.id, src=m.src, dst=m.dst, producer=m.producer, src_slot=slot_of(program, m.producer),
        src_count=producer.queue_pos + 1, order=m.order, consumers=tuple(sorted(m.consumers)),
        pieces=tuple(_piece(program, bases, p.tensor, p.elements, p.hints) for p in m.parts),
        sent_order=m.sent_order, sent_waiters=tuple(sorted(m.sent_waiters)),
        gate_slots=tuple(sorted(m.gate.items())), gate_order=m.gate_order)


def _piece(program: Program, bases: dict[int, int], tensor: int, elems: np.ndarray,
           hints: list[Region]) -> Piece:
    """The cheapest description of `elems`: a contiguous range, one of the regions it came from
    (a strided view), or a list of indices."""
    info = program.tensors[tensor]
    item = info.itemsize
    n = int(elems.size)
    if n and int(elems[-1]) - int(elems[0]) + 1 == n:
        lo = int(elems[0])
        return Piece(tensor, n, item, view=View(bases[tensor] + lo * item, (n,), (item,), info.dtype))
    for region in hints:
        if region.size == n and np.array_equal(elements(region), elems):
            return Piece(tensor, n, item, view=region_view(bases[tensor], info, region))
    return Piece(tensor, n, item, base=bases[tensor], dtype=info.dtype,
                 index=tuple(int(i) for i in elems))
