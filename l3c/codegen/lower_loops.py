"""Lowering a placed program with loops and conds: control steps and relative waits per slot.

Every active slot (one with a task) gets the same control steps in the same order around its own
tasks: `range ... next`, `while test ... again`, `cond ... endcond` (docs/dispatcher.md, "Loops").
Counted control steps (a range loop's tensor bounds, every while test, every cond) complete like a
task on every active slot. Since every slot takes the same decisions, each knows every slot's
count at each control point: the step loop keeps those as anchor rows (`plan.anchor`), and a wait
of a step inside a loop is relative to one of them:

* within one iteration (the IR's ordinary edges): the producer's count at its segment start (the
  last control point at its nesting level before it) + its position in that segment, or, for a
  producer inside a sub-loop or cond the consumer is not in, the count at that construct's exit;
* carried (an instance waits for the latest earlier instance of the producer): when the producer
  comes later in the body, the previous iteration of the innermost common loop - exactly (its
  position after that iteration's start, capped by the current iteration's start, which at
  iteration 0 makes it the loop's entry) when the producer's offset from the iteration start is
  static, else the whole previous iteration (the current iteration's start).

The bound and flag reads are nodes on every active slot: `Loop.reads_after` wait before the read,
`Loop.reads_before` writers wait for every slot's read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..ir import Access, Affine, Program, Region, ScalarArg
from ..runtime.plan import (ANCHOR_CUR, ANCHOR_ZERO, ENTER, EXIT, HEAD, NO_CAP, PREV, Check,
                            ControlStep, LoopValue, MovingView, PlanLoop, Step, View, anchor)

# flattened events: ("task", v) or (control kind, loop id)
Event = tuple[str, int]
READ_KINDS = {"range": "range", "while": "test", "cond": "cond"}


@dataclass
class Node:
    """A task or a bound/flag read, as the waits see it."""

    slots: tuple[int, ...]             # slots it runs on
    path: tuple[int, ...]              # enclosing loop ids, outermost first
    pos: int                           # index in the flattened sequence
    anchor: int                        # anchor id of its segment start
    count: dict[int, int] = field(default_factory=dict)   # per slot: counted steps since the anchor


def _ordered_children(program: Program) -> dict[int | None, list[Event]]:
    children: dict[int | None, list[tuple[tuple, Event]]] = {}
    for lid, loop in program.loops.items():
        children.setdefault(loop.parent, []).append(((loop.first_task, 0, lid), ("loop", lid)))
    for task in program.tasks:
        parent = task.loops[-1] if task.loops else None
        children.setdefault(parent, []).append(((task.id, 1, 0), ("task", task.id)))
    return {k: [e for _, e in sorted(v)] for k, v in children.items()}


def _flatten(program: Program) -> list[Event]:
    children = _ordered_children(program)
    out: list[Event] = []

    def walk(parent: int | None) -> None:
        for kind, ident in children.get(parent, []):
            if kind == "task":
                out.append(("task", ident))
                continue
            loop = program.loops[ident]
            if loop.kind == "range":
                out.append(("range", ident))
                walk(ident)
                out.append(("next", ident))
            elif loop.kind == "while":
                out.extend([("while", ident), ("test", ident)])
                walk(ident)
                out.append(("again", ident))
            else:
                out.append(("cond", ident))
                walk(ident)
                out.append(("endcond", ident))
    walk(None)
    return out


def _path(program: Program, lid: int | None) -> tuple[int, ...]:
    path = []
    while lid is not None:
        path.append(lid)
        lid = program.loops[lid].parent
    return tuple(reversed(path))


class LoopLowering:
    """One placed program with loops -> every slot's queue of steps and control steps."""

    def __init__(self, program: Program, slots: int, slot: dict[int, int],
                 make_step: Callable[[int, tuple], Step]) -> None:
        self.program, self.slots, self.slot = program, slots, slot
        self.make_step = make_step
        self.index = {lid: i for i, lid in enumerate(sorted(program.loops))}
        self.active = tuple(sorted(set(slot.values())))
        self.events = _flatten(program)
        self.nodes: dict[Any, Node] = {}
        self.producers: set[int] = set()             # tasks a wait counts up to: they signal
        self._number()

    def loop_index(self, lid: int) -> int:
        return self.index[lid]

    def _number(self) -> None:
        """Positions, segment anchors and in-segment counts of every node."""
        stack: list[list[Any]] = [[None, ANCHOR_ZERO, {}]]     # (loop, anchor, counts)
        for pos, (kind, ident) in enumerate(self.events):
            if kind == "task":
                t = self.slot[ident]
                top = stack[-1]
                top[2][t] = top[2].get(t, 0) + 1
                self.nodes[ident] = Node((t,), self.program.task(ident).loops, pos, top[1],
                                         {t: top[2][t]})
            elif kind in ("range", "while", "cond"):
                i = self.index[ident]
                parent = _path(self.program, self.program.loops[ident].parent)
                if kind != "while":
                    self.nodes[("read", ident)] = Node(self.active, parent, pos, anchor(i, ENTER))
                stack.append([ident, anchor(i, HEAD), {}])
            elif kind == "test":
                self.nodes[("read", ident)] = Node(self.active, _path(self.program, ident), pos,
                                                   anchor(self.index[ident], HEAD))
            else:                                      # next / again / endcond: back out
                stack.pop()
                stack[-1][1], stack[-1][2] = anchor(self.index[ident], EXIT), {}

    # ---- waits ---------------------------------------------------------------------------
    def wait(self, u: Any, v: Any, t: int, carried: bool) -> tuple[int, int, int, int] | None:
        """The wait of consumer node v for producer node u's instance on slot t."""
        nu, nv = self.nodes[u], self.nodes[v]
        common = 0
        while (common < min(len(nu.path), len(nv.path))
               and nu.path[common] == nv.path[common]):
            common += 1
        if not carried or nu.pos < nv.pos:
            if len(nu.path) > common:                   # u inside a construct v is not in
                return (t, 0, anchor(self.index[nu.path[common]], EXIT), NO_CAP)
            if u in self.slot:
                self.producers.add(u)
            return (t, nu.count.get(t, 0), nu.anchor, NO_CAP)
        loops = [lid for lid in nu.path[:common] if self.program.loops[lid].kind != "cond"]
        if not loops:
            return None                                 # no earlier iteration to wait for
        lid = loops[-1]
        i = self.index[lid]
        if v == ("read", lid) and self.program.loops[lid].kind == "while":
            prev, cur = anchor(i, HEAD), ANCHOR_CUR    # the test runs before the head moves
        else:
            prev, cur = anchor(i, PREV), anchor(i, HEAD)
        if nu.path and nu.path[-1] == lid and nu.anchor == anchor(i, HEAD) and u in self.slot:
            self.producers.add(u)
            return (t, nu.count[t], prev, cur)
        return (t, 0, cur, NO_CAP)

    def edges(self) -> dict[Any, list[tuple[Any, bool]]]:
        """Consumer node -> [(producer node, carried)]: the graph's edges and the loops' reads."""
        preds: dict[Any, list[tuple[Any, bool]]] = {}
        for u, v, data in self.program.graph.edges(data=True):
            preds.setdefault(v, []).append((u, bool(data.get("carried"))))
        for lid, loop in self.program.loops.items():
            read = ("read", lid)
            if read not in self.nodes:
                continue
            for w, carried in loop.reads_after:
                preds.setdefault(read, []).append((w, carried))
            for w, carried in loop.reads_before:
                preds.setdefault(w, []).append((read, carried))
        return preds

    def waits_of(self, preds: list[tuple[Any, bool]], v: Any, s: int) -> list[tuple[int, ...]]:
        best: dict[tuple[int, int, int], int] = {}
        for u, carried in preds:
            for t in self.nodes[u].slots:
                if t == s:
                    continue                            # the slot's own order implies it
                w = self.wait(u, v, t, carried)
                if w is not None:
                    key = (w[0], w[2], w[3])
                    best[key] = max(best.get(key, 0), w[1])
        return [(t, c, base, cap) for (t, base, cap), c in sorted(best.items())]

    # ---- queues --------------------------------------------------------------------------
    def queues(self, checks: dict[tuple[int, int], list[Check]]) -> list[list[Any]]:
        """Every slot's steps; `checks[(slot, loop id)]`: the Checks of the moving views of the
        slot's tasks that the loop's control step makes."""
        program, preds = self.program, self.edges()
        self.bound_checks(checks)
        deltas: dict[int, tuple[int, ...]] = {}
        counts = [0] * self.slots
        for pos, (kind, ident) in enumerate(self.events):
            if kind == "task":
                counts[self.slot[ident]] += 1
            else:
                deltas[pos], counts = tuple(counts), [0] * self.slots
        out: list[list[Any]] = [[] for _ in range(self.slots)]
        for s in self.active:
            where = {}                                  # event position -> queue index
            for pos, (kind, ident) in enumerate(self.events):
                if kind != "task" or self.slot[ident] == s:
                    where[pos] = len(where)
            position = {ev: pos for pos, ev in enumerate(self.events)}
            queue: list[Any] = []
            known: dict[tuple[int, int, int], int] = {}
            for pos, (kind, ident) in enumerate(self.events):
                if kind == "task":
                    if self.slot[ident] != s:
                        continue
                    waits = self._fresh(self.waits_of(preds.get(ident, []), ident, s), known)
                    queue.append(self.make_step(ident, tuple(waits)))
                    continue
                if queue and isinstance(queue[-1], Step):
                    # c = 0 waits on this slot's count at this control point are met by its
                    # last task before it: that task publishes with a wake
                    queue[-1] = _signalled(queue[-1])
                known = {}
                loop = program.loops[ident]
                read = ("read", ident) if READ_KINDS[loop.kind] == kind else None
                waits = self.waits_of(preds.get(read, []), read, s) if read in self.nodes else []
                jump = {"range": ("next", 1), "next": ("range", 1), "test": ("again", 1),
                        "again": ("test", 0), "cond": ("endcond", 1)}.get(kind)
                target = where[position[(jump[0], ident)]] + jump[1] if jump else 0
                queue.append(self._control(kind, loop, ident, target, deltas[pos], tuple(waits),
                                           checks, s))
            out[s] = queue
        self._signal_producers(out)
        return out

    @staticmethod
    def _fresh(waits: list[tuple[int, ...]], known: dict) -> list[tuple[int, ...]]:
        """Drop waits an earlier step of the same segment already waited for."""
        kept = []
        for t, c, base, cap in waits:
            if known.get((t, base, cap), -1) < c:
                known[(t, base, cap)] = c
                kept.append((t, c, base, cap))
        return kept

    def _control(self, kind: str, loop: Any, ident: int, jump: int, delta: tuple[int, ...],
                 waits: tuple, checks: dict, s: int) -> ControlStep:
        mine = tuple(checks.get((s, ident), ()))
        common = dict(kind=kind, loop=self.index[ident], jump=jump, delta=delta, waits=waits, loc=loop.loc)
        if kind == "range":
            bounds = [self.bound(b, loop) for b in (loop.start, loop.stop, loop.step)]
            return ControlStep(**common, counted=any(isinstance(b, View) for b in bounds),
                               start=bounds[0], stop=bounds[1], step=bounds[2], checks=mine)
        if kind == "test":
            cap = -1 if loop.max_iterations is None else int(loop.max_iterations)
            return ControlStep(**common, counted=True, flag=self.bound(loop.flag, loop),
                               max_iterations=cap, checks=mine)
        if kind == "cond":
            return ControlStep(**common, counted=True, flag=self.bound(loop.flag, loop),
                               invert=bool(loop.invert))
        return ControlStep(**common)

    def bound(self, value: Any, loop: Any) -> Any:
        """A bound or flag: an int, or the View of its element (`self.element_view`)."""
        if isinstance(value, Access):
            view = self.element_view(value)
            if value.region.shifts:
                return moving_arg(view, value.region, self.program.tensors[value.tensor].itemsize,
                                  self.index)
            return view
        return int(value)

    def bound_checks(self, checks: dict[tuple[int, int], list[Check]]) -> None:
        """Index checks of bound and flag elements that loop variables move: made at the
        innermost moving loop's control step on every active slot (every slot reads them)."""
        for lid, loop in self.program.loops.items():
            for access in loop.accesses:
                if not access.region.shifts:
                    continue
                name = {"range": "l3c.range", "while": "l3c.while_loop", "cond": "l3c.cond"}
                pseudo = _Reader(-1, _path(self.program, loop.parent), loop.loc, name[loop.kind])
                info = self.program.tensors[access.tensor]
                for moved_by, check in view_checks(pseudo, access, info, self.index):
                    for s in self.active:
                        checks.setdefault((s, moved_by), []).append(check)

    element_view: Callable[[Access], View]

    def _signal_producers(self, out: list[list[Any]]) -> None:
        for q in out:
            for k, st in enumerate(q):
                if isinstance(st, Step) and st.task in self.producers:
                    q[k] = _signalled(st)


@dataclass
class _Reader:
    """A bound or flag read, as `view_checks` names it."""

    id: int
    loops: tuple[int, ...]
    loc: str
    short_kernel: str


def _signalled(step: Step) -> Step:
    from dataclasses import replace
    return step if step.signal else replace(step, signal=True)


def plan_loops(program: Program, index: dict[int, int]) -> tuple[PlanLoop, ...]:
    return tuple(PlanLoop(program.loops[lid].kind, program.loops[lid].loc, lid)
                 for lid in sorted(index, key=index.get))


def loop_scalar(value: Affine, index: dict[int, int]) -> LoopValue:
    return LoopValue(int(value.const), tuple((index[lid], int(c)) for lid, c in value.terms))


def moving_arg(view: View, region: Region, itemsize: int, index: dict[int, int]) -> MovingView:
    return MovingView(view, tuple((index[s.loop], s.offset * itemsize) for s in region.shifts))


def view_checks(task: Any, access: Access, info: Any, index: dict[int, int]
                ) -> list[tuple[int, Check]]:
    """(loop id, Check) per moved axis of a moving view: checked at the innermost loop's control
    step it moves with."""
    region = access.region
    depth = {lid: k for k, lid in enumerate(task.loops)}
    inner = max((s.loop for s in region.shifts), key=lambda lid: depth.get(lid, -1))
    what = (f"{info.name}{list(info.shape)} (argument {access.param} of {task.short_kernel}, "
            f"called at {task.loc})")
    out = []

    def check(const: int, high: int, per_loop: dict[int, int]) -> None:
        coef = per_loop.pop(inner, 0)
        terms = tuple((index[lid], c) for lid, c in sorted(per_loop.items()) if c)
        out.append((inner, Check(task.id, const, coef, terms, high, what)))

    if region.box is not None:
        for axis, (start, count, step) in enumerate(region.box):
            moves = {s.loop: s.box[axis] for s in region.shifts if s.box[axis]}
            if moves and count > 0:
                check(start, info.shape[axis] - 1 - (count - 1) * step, moves)
    else:
        lo = sum(min(0, (n - 1) * st) for n, st in zip(region.shape, region.strides))
        hi = sum(max(0, (n - 1) * st) for n, st in zip(region.shape, region.strides))
        size = 1
        for d in info.shape:
            size *= d
        check(region.offset + lo, size - 1 - (hi - lo), {s.loop: s.offset for s in region.shifts})
    return out


def scalar_value(arg: ScalarArg, index: dict[int, int]) -> Any:
    return loop_scalar(arg.value, index) if isinstance(arg.value, Affine) else arg.value
