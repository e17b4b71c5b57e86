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

Orderings between hosts without data: none are sent. Each host has its own arena, so a WAR, WAW or
memory-plan edge between tasks on two hosts orders accesses to *different* memory; it only matters
where data moves, and there every hazard is local to one host:

- a landing on host h (transfer X from producer w) must come after every task of h before w in
  program order whose bytes overlap X's (the parent posts X's `Irecv` only once those tasks are done:
  `gate_slots`), and after every earlier item of h's landing sequence with overlapping bytes
  (`gate_order`); tasks of h after w whose bytes overlap wait for X's landing (added to `consumers`);
- a send from host a (X read from a's arena after w) must complete before a later task of a writes
  those bytes, and before a later landing on a overwrites them: such a send gets a *sent item* in
  a's landing sequence (`sent_order`), raised by a's parent when the `Isend`s completed, and those
  tasks wait for it like for a landing (`sent_waiters`).

Local orderings that the program graph implies only through paths across hosts (u -> x on another
host -> v, both u and v on h, the direct edge reduced away) become local waits (`local_after`,
vector clocks over the whole graph), so nothing a host relies on is lost. A host's sequence holds
its inbound transfers and its sent items in producer order; the parent raises the landing counter
over it in order. Deadlock-free: every item's producer precedes, in program order, every task that
waits for it, and every gate points backwards in program order too.

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
    sent_order: int = 0                   # 1-based position of its sent item on `src` (0: none)
    sent_waiters: tuple[int, ...] = ()    # tasks on `src` that wait until the send completed
    gate_slots: tuple[tuple[int, int], ...] = ()   # (local slot, count) on `dst` done before Irecv
    gate_order: int = 0                   # `dst`'s landing counter reached before its Irecv

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
    recvs: tuple[Transfer, ...]           # inbound, in landing order
    sequence: tuple[tuple[str, Transfer], ...] = ()   # ("recv" | "sent", transfer), counter order


@dataclass
class DistPlan:
    hosts: int
    parts: tuple[HostPart, ...]
    transfers: tuple[Transfer, ...]
    final: tuple[FinalPiece, ...]
    stats: dict = field(default_factory=dict)


def elements(region: Region) -> np.ndarray:
    """Sorted distinct flat element indices of a region of its base tensor (cached per region: the
    same regions recur across tasks; callers must not modify the array)."""
    found = _ELEMENTS.get(region)
    if found is None:
        idx = np.array(region.offset, dtype=np.int64)
        for n, st in zip(region.shape, region.strides):
            idx = idx[..., None] + np.arange(n, dtype=np.int64) * st
        idx = idx.ravel()
        if idx.size > 1 and not (idx[1:] > idx[:-1]).all():   # reversed, transposed, overlapping
            idx = np.unique(idx)
        idx.flags.writeable = False
        if len(_ELEMENTS) > 100_000:
            _ELEMENTS.clear()
        found = _ELEMENTS[region] = idx
    return found


_ELEMENTS: dict[Region, np.ndarray] = {}


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
                    entry = pending.get((int(w), h))
                    if entry is None:
                        entry = pending[int(w), h] = {"pieces": {}, "consumers": set()}
                    entry["pieces"].setdefault(a.tensor, []).append((lacking[by == w], a.region))
                    entry["consumers"].add(task.id)
                mask[lacking] |= bit
        for a in task.accesses:
            if a.writes:
                writer, mask = flow.arrays(a.tensor)
                elems = elements(a.region)
                writer[elems] = task.id
                mask[elems] = bit

    # Write regions of each producer: hints for describing pieces as views.
    writes = {t.id: {a.tensor: a.region for a in t.accesses if a.writes} for t in program.tasks}
    drafts = []
    for (w, h), entry in sorted(pending.items()):
        pieces = []
        for tensor, parts in sorted(entry["pieces"].items()):
            elems = np.unique(np.concatenate([e for e, _ in parts]))
            hints = [r for _, r in parts] + ([writes[w][tensor]] if tensor in writes[w] else [])
            pieces.append(_piece(program, bases, tensor, elems, hints))
        drafts.append({"producer": w, "src": host_of[w], "dst": h, "pieces": pieces,
                       "spans": [_piece_span(p) for p in pieces], "consumers": entry["consumers"],
                       "sent_waiters": set(), "gate": {}, "sent": False})
    _order_against_local_tasks(program, host_of, bases, drafts)
    sequences = _sequences(hosts, drafts)

    transfers: list[Transfer] = []
    inbound: list[dict[int, int]] = [{} for _ in range(hosts)]
    position: dict[tuple[int, str, int], int] = {}
    for h, seq in enumerate(sequences):
        for k, (kind, d) in enumerate(seq, start=1):
            position[h, kind, id(d)] = k
    for i, d in enumerate(sorted(drafts, key=lambda d: (d["dst"], d["producer"]))):
        w, order = d["producer"], position[d["dst"], "recv", id(d)]
        sent_order = position.get((d["src"], "sent", id(d)), 0)
        producer = program.task(w)
        transfers.append(Transfer(
            id=i, src=d["src"], dst=d["dst"], producer=w, src_slot=slot_of(program, w),
            src_count=producer.queue_pos + 1, order=order,
            consumers=tuple(sorted(d["consumers"])), pieces=tuple(d["pieces"]),
            sent_order=sent_order, sent_waiters=tuple(sorted(d["sent_waiters"])),
            gate_slots=tuple(sorted(d["gate"].items())), gate_order=d["gate_order"]))
        for v in d["consumers"]:
            inbound[d["dst"]][v] = max(inbound[d["dst"]].get(v, 0), order)
        for v in d["sent_waiters"]:
            inbound[d["src"]][v] = max(inbound[d["src"]].get(v, 0), sent_order)
    by_draft = {id(d): t for d, t in zip(sorted(drafts, key=lambda d: (d["dst"], d["producer"])),
                                         transfers)}

    final = _final_pieces(program, flow, bases, host_of)
    local_after = _local_after(program, host_of)
    written = frozenset(a.tensor for t in program.tasks for a in t.accesses if a.writes)
    on_host: list[list[int]] = [[] for _ in range(hosts)]
    at: dict[tuple[int, int, int], int] = {}       # (host, slot, queue position) -> task
    for v in program.graph.nodes:
        on_host[host_of[v]].append(v)
        at[host_of[v], slot_of(program, v), program.task(v).queue_pos] = v
    parts = []
    for h in range(hosts):
        sends = tuple(sorted((t for t in transfers if t.src == h), key=lambda t: (t.producer, t.id)))
        recvs = tuple(sorted((t for t in transfers if t.dst == h), key=lambda t: t.order))
        sequence = tuple((kind, by_draft[id(d)]) for kind, d in sequences[h])
        # the host's parent must hear at once when these end: a send is due, or a gate opens
        gates = {at[h, s, count - 1] for t in recvs for s, count in t.gate_slots}
        lowered = lower(program, host=h, inbound=inbound[h],
                        signal_tasks=frozenset(t.producer for t in sends) | gates,
                        local_after=local_after[h], host_tasks=on_host[h], written=written)
        parts.append(HostPart(h, lowered, sends, recvs, sequence))
    stats = {"transfers": len(transfers),
             "tokens": sum(1 for t in transfers if not t.pieces),
             "sent_items": sum(1 for t in transfers if t.sent_order),
             "gated": sum(1 for t in transfers if t.gate_slots or t.gate_order),
             "transfer_bytes": sum(t.nbytes for t in transfers),
             "final_bytes": sum(f.piece.nbytes for f in final)}
    return DistPlan(hosts, tuple(parts), tuple(transfers), final, stats)


def _region_span(base: int, item: int, region: Region) -> tuple[int, int]:
    """[first byte, end byte) of the hull of a region of a tensor starting at byte `base`."""
    lo = hi = region.offset
    for n, st in zip(region.shape, region.strides):
        if n == 0:
            return base, base
        reach = (n - 1) * st
        lo, hi = (lo + reach, hi) if reach < 0 else (lo, hi + reach)
    return base + lo * item, base + (hi + 1) * item


def _piece_span(piece: Piece) -> tuple[int, int]:
    if piece.view is not None:
        v = piece.view
        lo = hi = v.offset
        for n, st in zip(v.shape, v.strides):
            if n == 0:
                return v.offset, v.offset
            reach = (n - 1) * st
            lo, hi = (lo + reach, hi) if reach < 0 else (lo, hi + reach)
        return lo, hi + piece.itemsize
    if not piece.index:
        return piece.base, piece.base
    return piece.base + min(piece.index) * piece.itemsize, \
        piece.base + (max(piece.index) + 1) * piece.itemsize


def _piece_bytes(piece: Piece) -> np.ndarray:
    """Sorted first bytes of a piece's elements (each `piece.itemsize` wide)."""
    if piece.view is not None:
        v = piece.view
        idx = np.array(v.offset, dtype=np.int64)
        for n, st in zip(v.shape, v.strides):
            idx = idx[..., None] + np.arange(n, dtype=np.int64) * st
        return np.sort(idx.ravel())
    return piece.base + np.array(sorted(piece.index or ()), dtype=np.int64) * piece.itemsize


def _meet(a: np.ndarray, wa: int, b: np.ndarray, wb: int) -> bool:
    """Do the byte intervals [a_i, a_i + wa) and [b_j, b_j + wb) (sorted starts) intersect?"""
    if not a.size or not b.size:
        return False
    # for each b: the last a starting before b's end must end after b's start
    i = np.searchsorted(a, b + wb, side="left") - 1
    ok = i >= 0
    return bool(np.any(a[i[ok]] + wa > b[ok]))


class _HostBytes:
    """Every element byte interval the tasks of one host access, sorted by first byte, so that the
    accesses meeting a transfer's bytes are found by binary search (exactly, not by hulls)."""

    def __init__(self, rows: list[tuple[int, bool, np.ndarray, int]]) -> None:
        # rows: (task id, writes, first bytes of the access's elements, element width)
        if not rows:
            self.start = self.end = self.task = np.zeros(0, np.int64)
            self.writes = np.zeros(0, bool)
            self.widest = 1
            return
        starts = np.concatenate([b for _, _, b, _ in rows])
        widths = np.concatenate([np.full(b.size, w, np.int64) for _, _, b, w in rows])
        task = np.concatenate([np.full(b.size, t, np.int64) for t, _, b, _ in rows])
        writes = np.concatenate([np.full(b.size, wr, bool) for _, wr, b, _ in rows])
        order = np.argsort(starts, kind="stable")
        self.start, self.end = starts[order], (starts + widths)[order]
        self.task, self.writes = task[order], writes[order]
        self.widest = int(widths.max())

    def meeting(self, first: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(task ids, writes?) of the intervals meeting any [first_i, first_i + width)."""
        lo = np.searchsorted(self.start, first - self.widest, side="right")
        hi = np.searchsorted(self.start, first + width, side="left")
        n = hi - lo
        total = int(n.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        owner = np.repeat(np.arange(first.size), n)
        idx = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(total)
        hit = idx[self.end[idx] > first[owner]]
        return self.task[hit], self.writes[hit]


def _order_against_local_tasks(program: Program, host_of: dict[int, int],
                               bases: dict[int, int], drafts: list[dict]) -> None:
    """Gates, extra consumers and sent waiters of every transfer, from the exact bytes the tasks on
    its two hosts touch."""
    # only accesses whose hull meets a transfer's hull on that host can conflict with it
    spans: dict[int, list[tuple[int, int]]] = {}
    for d in drafts:
        for h in (d["src"], d["dst"]):
            spans.setdefault(h, []).extend(sp for sp in d["spans"] if sp[1] > sp[0])
    merged: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for h, sp in spans.items():
        sp.sort()
        lo, hi = [sp[0][0]], [sp[0][1]]
        for a0, a1 in sp[1:]:
            if a0 <= hi[-1]:
                hi[-1] = max(hi[-1], a1)
            else:
                lo.append(a0)
                hi.append(a1)
        merged[h] = (np.array(lo, np.int64), np.array(hi, np.int64))
    rows: dict[int, list] = {}
    for t in program.tasks:
        h = host_of[t.id]
        if h not in merged:
            continue
        mlo, mhi = merged[h]
        for a in t.accesses:
            info = program.tensors[a.tensor]
            lo, hi = _region_span(bases[a.tensor], info.itemsize, a.region)
            k = int(np.searchsorted(mlo, hi, side="left")) - 1    # last merged span starting < hi
            if hi <= lo or k < 0 or mhi[k] <= lo:
                continue
            rows.setdefault(h, []).append(
                (t.id, bool(a.writes), bases[a.tensor] + elements(a.region) * info.itemsize,
                 info.itemsize))
    index = {h: _HostBytes(r) for h, r in rows.items()}
    nobody = _HostBytes([])

    def touching(d: dict, host: int) -> tuple[np.ndarray, np.ndarray]:
        found = [index.get(host, nobody).meeting(b, p.itemsize)
                 for p, b in zip(d["pieces"], d["bytes"])]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])

    for d in drafts:
        w = d["producer"]
        d["bytes"] = [_piece_bytes(p) for p in d["pieces"]]
        tids, _ = touching(d, d["dst"])
        for t in np.unique(tids[tids < w]):
            task = program.task(int(t))
            s = slot_of(program, int(t))
            d["gate"][s] = max(d["gate"].get(s, 0), task.queue_pos + 1)
        d["consumers"].update(int(t) for t in np.unique(tids[tids > w]))
        tids, wr = touching(d, d["src"])
        later = tids[wr & (tids > w)]
        if later.size:
            d["sent_waiters"].update(int(t) for t in np.unique(later))
            d["sent"] = True


def _sequences(hosts: int, drafts: list[dict]) -> list[list[tuple[str, dict]]]:
    """Each host's landing sequence (its inbound transfers and sent items, by producer), with every
    inbound transfer's `gate_order`: the last earlier item whose bytes overlap its own. A send that a
    later landing would overwrite gets a sent item."""
    inbound: list[list[dict]] = [[] for _ in range(hosts)]
    outbound: list[list[dict]] = [[] for _ in range(hosts)]
    for d in drafts:
        inbound[d["dst"]].append(d)
        outbound[d["src"]].append(d)
    # earlier sends overlapping a landing need a sent item first
    for h in range(hosts):
        for d in inbound[h]:
            for s in outbound[h]:
                if s["producer"] < d["producer"] and not s["sent"] and _spans_meet(s, d):
                    s["sent"] = True
    sequences = []
    for h in range(hosts):
        items = [("recv", d) for d in inbound[h]] + [("sent", d) for d in outbound[h] if d["sent"]]
        items.sort(key=lambda e: (e[1]["producer"], e[1]["dst"], e[0]))
        for k, (kind, d) in enumerate(items):
            if kind != "recv":
                continue
            d["gate_order"] = 0
            for j in range(k - 1, -1, -1):
                if _spans_meet(items[j][1], d):
                    d["gate_order"] = j + 1
                    break
        sequences.append(items)
    return sequences


def _spans_meet(a: dict, b: dict) -> bool:
    """Do two transfers' bytes meet (hulls first, then exactly)?"""
    for (x0, x1), pa, ba in zip(a["spans"], a["pieces"], a["bytes"]):
        for (y0, y1), pb, bb in zip(b["spans"], b["pieces"], b["bytes"]):
            if x0 < y1 and y0 < x1 and _meet(ba, pa.itemsize, bb, pb.itemsize):
                return True
    return False


def _local_after(program: Program, host_of: dict[int, int]) -> list[dict[int, dict[int, int]]]:
    """Per host, per task: (local slot -> count) of the host's own steps that the whole program
    graph orders before the task, including through paths across other hosts (vector clocks over
    every host's slots, one numpy max per task)."""
    cfg = program.config
    width = cfg.chips + cfg.sub_workers
    gslot, row, pos = {}, {}, {}
    for i, t in enumerate(program.tasks):
        gslot[t.id] = host_of[t.id] * width + slot_of(program, t.id)
        row[t.id] = i
        pos[t.id] = t.queue_pos
    after = np.zeros((len(program.tasks), cfg.hosts * width), dtype=np.int32)
    last: dict[int, int] = {}
    out: list[dict[int, dict[int, int]]] = [{} for _ in range(cfg.hosts)]
    graph = program.graph
    for t in program.tasks:
        v, h, g = t.id, host_of[t.id], gslot[t.id]
        rows = [row[u] for u in graph.predecessors(v)]
        if g in last:
            rows.append(last[g])
        known = after[rows].max(axis=0) if rows else np.zeros(after.shape[1], np.int32)
        mine = known[h * width:(h + 1) * width]
        need = {s: int(c) for s, c in enumerate(mine) if c and s != g - h * width}
        if need:
            out[h][v] = need
        known[g] = max(known[g], pos[v] + 1)
        after[row[v]] = known
        last[g] = row[v]
    return out


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
