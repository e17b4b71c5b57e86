"""split: one placed program over several hosts -> one plan per host and the transfers between them.

Every host holds the same arena layout (one global memory plan; inputs staged on every host), but a
tensor's elements are only *current* on the hosts that wrote them or received them. `split` walks the
tasks in program order and tracks, per tensor element, its latest writer and a bit mask of the hosts
holding that value (all hosts at the start: inputs are broadcast, untouched intermediates hold
nothing anyone may rely on). A task on host h that reads elements whose current value is not on h
needs them moved from the writer's host:

    transfer = (producer task w on host a) -> host h: exactly the elements h lacks of w's writes,
               landing after w completes and before h's first task that reads them.

Why element-level and not per edge: the deps pass reduces edges transitively, so a read of `x[4:8]`
may have no edge from its writer (the order comes through another path), and a writer's region may
be partly overwritten later; only the latest writer of each element tells what must move.

Every graph edge between hosts that carries no data (WAR, WAW, memory ordering, a RAW whose data is
already there) still needs the order: it becomes a transfer without pieces (a token message).

On the receiving host the transfers land in one fixed order (producer task id), and the parent
raises the landing counter after each; a consumer waits until the counter reaches its transfer's
position. Deadlock-free: transfer k's producers all precede its consumers in program order, and every
queue and wait points backwards in program order.

At the end of a run every host needs the results and the inputs kernels wrote: `final` lists, per
region of elements not current everywhere, the host that broadcasts it (`root`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..codegen.lower import LoweredProgram, _tensor_bases, lower, region_view, slot_of
from ..ir import Program, Region, ResultRef
from ..runtime.plan import View


@dataclass(frozen=True)
class Piece:
    """Elements of one tensor that move as one message.

    `view`: the elements are exactly this arena view (the same on every host). Otherwise `index`
    holds flat element indices into the tensor starting at byte `base`, gathered into a contiguous
    buffer to send and scattered after receiving."""

    tensor: int
    count: int                            # elements
    itemsize: int
    view: View | None = None
    base: int = 0
    dtype: str = ""
    index: tuple[int, ...] | None = None

    @property
    def nbytes(self) -> int:
        return self.count * self.itemsize

    def __str__(self) -> str:
        if self.view is not None:
            return f"t{self.tensor}@{self.view.offset}:{self.count}"
        return f"t{self.tensor}[{self.count} elements]"


@dataclass(frozen=True)
class Transfer:
    """Task `producer`'s results (`pieces`, maybe none: a token) from host `src` to host `dst`."""

    id: int                               # global index: the MPI tag within a run
    src: int
    dst: int
    producer: int                         # task id on `src`
    src_slot: int                         # the producer's local slot on `src`
    src_count: int                        # ... and the S_DONE value once it completed
    order: int                            # 1-based landing position on `dst`
    consumers: tuple[int, ...]            # tasks on `dst` that wait for it
    pieces: tuple[Piece, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.pieces)


@dataclass(frozen=True)
class FinalPiece:
    """After a run, host `root` broadcasts these elements (a result or a written input)."""

    root: int
    piece: Piece


@dataclass(frozen=True)
class HostPart:
    host: int
    lowered: LoweredProgram               # plan.sub_workers includes the landing slot
    sends: tuple[Transfer, ...]           # by producer id
    recvs: tuple[Transfer, ...]           # in landing order


@dataclass
class DistPlan:
    hosts: int
    parts: tuple[HostPart, ...]
    transfers: tuple[Transfer, ...]
    final: tuple[FinalPiece, ...]
    stats: dict = field(default_factory=dict)


def elements(region: Region) -> np.ndarray:
    """Sorted distinct flat element indices of a region of its base tensor."""
    idx = np.array(region.offset, dtype=np.int64)
    for n, st in zip(region.shape, region.strides):
        idx = idx[..., None] + np.arange(n, dtype=np.int64) * st
    return np.unique(idx.ravel())


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


class _Flow:
    """Latest writer and holder mask of every element, tensor by tensor (created on first use)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.hosts = program.config.hosts
        self.writer: dict[int, np.ndarray] = {}
        self.mask: dict[int, np.ndarray] = {}
        self.everywhere = np.uint64((1 << self.hosts) - 1)

    def arrays(self, tensor: int) -> tuple[np.ndarray, np.ndarray]:
        if tensor not in self.writer:
            size = int(np.prod(self.program.tensors[tensor].shape, dtype=np.int64))
            self.writer[tensor] = np.full(size, -1, dtype=np.int64)
            self.mask[tensor] = np.full(size, self.everywhere, dtype=np.uint64)
        return self.writer[tensor], self.mask[tensor]


def split(program: Program) -> DistPlan:
    """Per-host plans, transfers and final broadcasts of a placed, memory-planned program."""
    cfg = program.config
    hosts = cfg.hosts
    host_of = {t.id: program.host_of(t) for t in program.tasks}
    bases = _tensor_bases(program)[0]
    flow = _Flow(program)
    # (producer, dst) -> {"pieces": {tensor: [(elements, hint regions)]}, "consumers": set}
    pending: dict[tuple[int, int], dict] = {}

    def need(w: int, h: int) -> dict:
        entry = pending.get((w, h))
        if entry is None:
            entry = pending[w, h] = {"pieces": {}, "consumers": set()}
        return entry

    for task in program.tasks:
        h = host_of[task.id]
        bit = np.uint64(1 << h)
        for a in task.accesses:
            if not a.reads:
                continue
            writer, mask = flow.arrays(a.tensor)
            elems = elements(a.region)
            lacking = elems[(mask[elems] & bit) == 0]
            if lacking.size:
                by = writer[lacking]
                for w in np.unique(by):
                    entry = need(int(w), h)
                    entry["pieces"].setdefault(a.tensor, []).append((lacking[by == w], a.region))
                    entry["consumers"].add(task.id)
                mask[lacking] |= bit
        for a in task.accesses:
            if a.writes:
                writer, mask = flow.arrays(a.tensor)
                elems = elements(a.region)
                writer[elems] = task.id
                mask[elems] = bit
        for u in program.graph.predecessors(task.id):
            if host_of[u] != h:                       # order across hosts, data or not
                need(u, h)["consumers"].add(task.id)

    # Write regions of each producer: hints for describing pieces as views.
    writes = {t.id: {a.tensor: a.region for a in t.accesses if a.writes} for t in program.tasks}
    by_dst: dict[int, list[tuple[int, dict]]] = {h: [] for h in range(hosts)}
    for (w, h), entry in pending.items():
        by_dst[h].append((w, entry))
    transfers: list[Transfer] = []
    inbound: list[dict[int, int]] = [{} for _ in range(hosts)]
    for h in range(hosts):
        for order, (w, entry) in enumerate(sorted(by_dst[h], key=lambda e: e[0]), start=1):
            pieces = []
            for tensor, parts in sorted(entry["pieces"].items()):
                elems = np.unique(np.concatenate([e for e, _ in parts]))
                hints = [r for _, r in parts] + ([writes[w][tensor]] if tensor in writes[w] else [])
                pieces.append(_piece(program, bases, tensor, elems, hints))
            producer = program.task(w)
            transfers.append(Transfer(
                id=len(transfers), src=host_of[w], dst=h, producer=w,
                src_slot=slot_of(program, w), src_count=producer.queue_pos + 1, order=order,
                consumers=tuple(sorted(entry["consumers"])), pieces=tuple(pieces)))
            for v in entry["consumers"]:
                inbound[h][v] = max(inbound[h].get(v, 0), order)

    final = _final_pieces(program, flow, bases, host_of)
    parts = []
    for h in range(hosts):
        sends = tuple(sorted((t for t in transfers if t.src == h), key=lambda t: (t.producer, t.id)))
        recvs = tuple(sorted((t for t in transfers if t.dst == h), key=lambda t: t.order))
        lowered = lower(program, host=h, inbound=inbound[h],
                        signal_tasks=frozenset(t.producer for t in sends))
        parts.append(HostPart(h, lowered, sends, recvs))
    stats = {"transfers": len(transfers),
             "tokens": sum(1 for t in transfers if not t.pieces),
             "transfer_bytes": sum(t.nbytes for t in transfers),
             "final_bytes": sum(f.piece.nbytes for f in final)}
    return DistPlan(hosts, tuple(parts), tuple(transfers), final, stats)


def _result_regions(tree, out: list[ResultRef]) -> None:
    if tree is None:
        return
    if isinstance(tree, ResultRef):
        out.append(tree)
        return
    for item in tree[1]:
        _result_regions(item[1] if tree[0] == "dict" else item, out)


def _final_pieces(program: Program, flow: _Flow, bases: dict[int, int],
                  host_of: dict[int, int]) -> tuple[FinalPiece, ...]:
    """What each host broadcasts after the run so that every host holds every result and every
    input a kernel wrote."""
    wanted: dict[int, list[np.ndarray]] = {}
    refs: list[ResultRef] = []
    _result_regions(program.results, refs)
    for ref in refs:
        wanted.setdefault(ref.tensor, []).append(elements(ref.region))
    written = {a.tensor for t in program.tasks for a in t.accesses if a.writes}
    for p in program.params:
        if p.tensor is not None and p.tensor in written:
            wanted.setdefault(p.tensor, []).append(elements(Region.whole(program.tensors[p.tensor].shape)))
    task_host = np.zeros(max(host_of, default=-1) + 2, dtype=np.int64)
    for t, h in host_of.items():
        task_host[t] = h
    final = []
    for tensor in sorted(wanted):
        if tensor not in flow.writer:
            continue                                   # never written: the same everywhere
        writer, mask = flow.writer[tensor], flow.mask[tensor]
        elems = np.unique(np.concatenate(wanted[tensor]))
        missing = elems[mask[elems] != flow.everywhere]
        if not missing.size:
            continue
        roots = task_host[writer[missing]]
        for root in np.unique(roots):
            sel = missing[roots == root]
            final.append(FinalPiece(int(root), _piece(program, bases, tensor, sel, [])))
    return tuple(final)
