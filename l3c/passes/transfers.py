"""Which elements move between hosts, when, and who waits for them (an analysis of a placed,
memory-planned program over several hosts; code generation turns it into per-host plans:
`l3c.codegen.hosts`).

Every host holds the same arena layout (one global memory plan; inputs staged on every host), but a
tensor's elements are only *current* on the hosts that wrote them or received them. `analyse` walks the
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

from ..errors import L3CError
from ..ir import Program, Region
from .arena_layout import tensor_bases
from .loopnest import iteration_preds
from .regions import byte_span, elements
from .results import result_refs


@dataclass
class Part:
    """Elements of one tensor that move as one message: `elements` (sorted flat indices), the
    regions they came from (`hints`: code generation may describe them as one view), and their
    first bytes in the arena (`first`, sorted; each `itemsize` wide)."""

    tensor: int
    elements: np.ndarray
    hints: list[Region]
    itemsize: int
    first: np.ndarray
    span: tuple[int, int] = (0, 0)        # [first byte, end byte) of the part's hull

    def __post_init__(self) -> None:
        if self.first.size:
            self.span = (int(self.first[0]), int(self.first[-1]) + self.itemsize)

    @property
    def count(self) -> int:
        return int(self.elements.size)

    @property
    def nbytes(self) -> int:
        return self.count * self.itemsize


@dataclass
class Move:
    """Task `producer`'s results (`parts`) from host `src` to host `dst`, and what orders it."""

    producer: int
    src: int
    dst: int
    parts: list[Part]
    consumers: set[int] = field(default_factory=set)      # tasks on `dst` that wait for it
    sent_waiters: set[int] = field(default_factory=set)   # tasks on `src` that wait for the send
    gate: dict[int, int] = field(default_factory=dict)    # local slot -> count on `dst` before Irecv
    sent: bool = False                                    # has a sent item on `src`
    gate_order: int = 0                                   # `dst`'s landing counter before Irecv
    id: int = -1                                          # index in (dst, producer) order
    order: int = 0                                        # 1-based landing position on `dst`
    sent_order: int = 0                                   # 1-based sent-item position on `src`

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    @property
    def pieces(self) -> list[Part]:
        return self.parts


@dataclass
class FinalMove:
    """After a run, host `root` broadcasts these elements of `tensor` (a result or written input)."""

    root: int
    tensor: int
    elements: np.ndarray


@dataclass
class HostFlow:
    """Everything code generation needs to lower each host: the moves (by id), each host's landing
    sequence, per host the landing count each task waits for (`inbound`), its local orderings
    implied through other hosts (`local_after`), and the final broadcasts."""

    hosts: int
    bases: dict[int, int]
    moves: list[Move]
    sequences: list[list[tuple[str, Move]]]
    inbound: list[dict[int, int]]
    local_after: list[dict[int, dict[int, int]]]
    final: list[FinalMove]


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


def analyse(program: Program) -> HostFlow:
    """The moves between hosts of a placed, memory-planned program, ordered and numbered."""
    hosts = program.config.hosts
    if program.loops:           # views moved by loop variables have no fixed elements to move
        raise L3CError(f"{program.name} (defined at {program.loc}) has loops or conds: its "
                       "moves between hosts are per instance (l3c.passes.looptransfers)")
    host_of = {t.id: program.host_of(t) for t in program.tasks}
    bases = tensor_bases(program)[0]
    flow = _Flow(program)
    # (producer, dst) -> ({tensor: [(elements, hint region)]}, consumers)
    pending: dict[tuple[int, int], tuple[dict[int, list], set[int]]] = {}

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
                    parts, consumers = pending.setdefault((int(w), h), ({}, set()))
                    parts.setdefault(a.tensor, []).append((lacking[by == w], a.region))
                    consumers.add(task.id)
                mask[lacking] |= bit
        for a in task.accesses:
            if a.writes:
                writer, mask = flow.arrays(a.tensor)
                elems = elements(a.region)
                writer[elems] = task.id
                mask[elems] = bit

    # Write regions of each producer: hints for describing parts as views.
    writes = {t.id: {a.tensor: a.region for a in t.accesses if a.writes} for t in program.tasks}
    moves = []
    for (w, h), (found, consumers) in sorted(pending.items()):
        parts = []
        for tensor, got in sorted(found.items()):
            elems = np.unique(np.concatenate([e for e, _ in got]))
            hints = [r for _, r in got] + ([writes[w][tensor]] if tensor in writes[w] else [])
            item = program.tensors[tensor].itemsize
            parts.append(Part(tensor, elems, hints, item, bases[tensor] + elems * item))
        moves.append(Move(w, host_of[w], h, parts, set(consumers)))
    _order_against_local_tasks(program, host_of, bases, moves)
    sequences = _sequences(hosts, moves)

    moves.sort(key=lambda m: (m.dst, m.producer))
    inbound: list[dict[int, int]] = [{} for _ in range(hosts)]
    for h, seq in enumerate(sequences):
        for k, (kind, m) in enumerate(seq, start=1):
            if kind == "recv":
                m.order = k
            else:
                m.sent_order = k
    for i, m in enumerate(moves):
        m.id = i
        for v in m.consumers:
            inbound[m.dst][v] = max(inbound[m.dst].get(v, 0), m.order)
        for v in m.sent_waiters:
            inbound[m.src][v] = max(inbound[m.src].get(v, 0), m.sent_order)
    return HostFlow(hosts, bases, moves, sequences, inbound, _local_after(program, host_of),
                    _final(program, flow, host_of))


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
                               bases: dict[int, int], moves: list[Move]) -> None:
    """Gates, extra consumers and sent waiters of every move, from the exact bytes the tasks on
    its two hosts touch."""
    # only accesses whose hull meets a move's hull on that host can conflict with it
    spans: dict[int, list[tuple[int, int]]] = {}
    for m in moves:
        for h in (m.src, m.dst):
            spans.setdefault(h, []).extend(sp for sp in (p.span for p in m.parts) if sp[1] > sp[0])
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
            lo, hi = byte_span(bases[a.tensor], info.itemsize, a.region)
            k = int(np.searchsorted(mlo, hi, side="left")) - 1    # last merged span starting < hi
            if hi <= lo or k < 0 or mhi[k] <= lo:
                continue
            rows.setdefault(h, []).append(
                (t.id, bool(a.writes), bases[a.tensor] + elements(a.region) * info.itemsize,
                 info.itemsize))
    index = {h: _HostBytes(r) for h, r in rows.items()}
    nobody = _HostBytes([])

    def touching(m: Move, host: int) -> tuple[np.ndarray, np.ndarray]:
        found = [index.get(host, nobody).meeting(p.first, p.itemsize) for p in m.parts]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])

    for m in moves:
        w = m.producer
        tids, _ = touching(m, m.dst)
        for t in np.unique(tids[tids < w]):
            task = program.task(int(t))
            s = program.slot_of(task)
            m.gate[s] = max(m.gate.get(s, 0), task.queue_pos + 1)
        m.consumers.update(int(t) for t in np.unique(tids[tids > w]))
        tids, wr = touching(m, m.src)
        later = tids[wr & (tids > w)]
        if later.size:
            m.sent_waiters.update(int(t) for t in np.unique(later))
            m.sent = True


def _sequences(hosts: int, moves: list[Move]) -> list[list[tuple[str, Move]]]:
    """Each host's landing sequence (its inbound moves and sent items, by producer), with every
    inbound move's `gate_order`: the last earlier item whose bytes overlap its own. A send that a
    later landing would overwrite gets a sent item."""
    inbound: list[list[Move]] = [[] for _ in range(hosts)]
    outbound: list[list[Move]] = [[] for _ in range(hosts)]
    for m in moves:
        inbound[m.dst].append(m)
        outbound[m.src].append(m)
    # earlier sends overlapping a landing need a sent item first
    for h in range(hosts):
        for m in inbound[h]:
            for s in outbound[h]:
                if s.producer < m.producer and not s.sent and _bytes_meet(s, m):
                    s.sent = True
    sequences = []
    for h in range(hosts):
        items = [("recv", m) for m in inbound[h]] + [("sent", m) for m in outbound[h] if m.sent]
        items.sort(key=lambda e: (e[1].producer, e[1].dst, e[0]))
        for k, (kind, m) in enumerate(items):
            if kind != "recv":
                continue
            m.gate_order = 0
            for j in range(k - 1, -1, -1):
                if _bytes_meet(items[j][1], m):
                    m.gate_order = j + 1
                    break
        sequences.append(items)
    return sequences


def _bytes_meet(a: Move, b: Move) -> bool:
    """Do two moves' bytes meet (hulls first, then exactly)?"""
    for pa in a.parts:
        x0, x1 = pa.span
        for pb in b.parts:
            y0, y1 = pb.span
            if x0 < y1 and y0 < x1 and _meet(pa.first, pa.itemsize, pb.first, pb.itemsize):
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
        gslot[t.id] = host_of[t.id] * width + program.slot_of(t)
        row[t.id] = i
        pos[t.id] = t.queue_pos
    after = np.zeros((len(program.tasks), cfg.hosts * width), dtype=np.int32)
    last: dict[int, int] = {}
    out: list[dict[int, dict[int, int]]] = [{} for _ in range(cfg.hosts)]
    preds = iteration_preds(program, len(program.tasks))   # a carried edge is no count of now
    for t in program.tasks:
        v, h, g = t.id, host_of[t.id], gslot[t.id]
        rows = [row[u] for u in preds[v]]
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


def _final(program: Program, flow: _Flow, host_of: dict[int, int]) -> list[FinalMove]:
    """What each host broadcasts after the run so that every host holds every result and every
    input a kernel wrote."""
    wanted: dict[int, list[np.ndarray]] = {}
    for ref in result_refs(program.results):
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
            final.append(FinalMove(int(root), tensor, missing[roots == root]))
    return final
