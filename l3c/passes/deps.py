"""deps: order every pair of conflicting accesses, then drop the edges implied by others.

Two accesses of one base tensor conflict when their regions may share an element and at least one
writes. For each conflicting pair (earlier task u, later task v) the program gets an edge u -> v with
the kinds RAW/WAR/WAW and the tensor (`added_by="deps"`), except where the pair is already ordered
through a chain of conflicting pairs: an access hidden behind a later write that covers it entirely
is forgotten, since anything that touches its elements also touches the covering write's and so
waits for that write, which waits for it. Reachability therefore equals the transitive closure of
the conflict relation, with the exact overlap test of `regions` for basic slices.

To stay near-linear, each tensor keeps only its *pending* accesses (not yet covered by a later
write): `conflicts.ConflictSweep` finds each task's conflicts with them in program order.

Writes: edges, `program.reports["edges_before_reduction"]`, `["edges_after_reduction"]`.
Switch: `reduce_edges=False` keeps every edge (no transitive reduction).
"""
from __future__ import annotations

import networkx as nx

from ..errors import TraceError
from ..ir import Access, Program
from . import loopdeps, regions
from .conflicts import ConflictSweep
from .graphs import task_list
from .loopnest import iteration_preds, structure_bounds
from .scopes import TensorUses

ANCESTOR_WINDOW = 8192        # ancestors this close are kept as bit sets

_KIND_NAMES = {1: ("RAW",), 2: ("WAR",), 3: ("RAW", "WAR"), 4: ("WAW",), 5: ("RAW", "WAW"),
               6: ("WAR", "WAW"), 7: ("RAW", "WAR", "WAW")}
# An edge's `kinds` by kind bits: frozen, so every edge of the same kinds shares one set.
_KINDS = {bits: frozenset(names) for bits, names in _KIND_NAMES.items()}


def _conflicts(program: Program, sweep: ConflictSweep | None = None
               ) -> dict[tuple[int, int], list]:
    """Every conflicting pair not already ordered through covering writes:
    `(u, v) -> [kind bits (RAW 1, WAR 2, WAW 4), set of tensor ids]`."""
    sweep = sweep or ConflictSweep(program)
    nodes = program.graph.nodes
    found: dict[tuple[int, int], list] = {}
    for v in sorted(nodes):
        found_bits, found_tensors = sweep.step(v, nodes[v]["task"])
        for u in sorted(found_bits):
            found[u, v] = [found_bits[u], found_tensors[u]]
    return found


def check_groups(program: Program) -> None:
    """Members of a group task run at the same time, so two members that conflict (one writes an
    element the other touches) would race: a TraceError at the group's line. The user layer runs
    it on every traced program (`l3c.jit`, `l3c compile --hosts`); passes on hand-built programs
    leave such members ordered by their edges."""
    pairs = loopdeps.WithinPairs(program, task_list(program)) if program.loops else None
    for members in (program.groups if program.loops else _distinct_groups(program)):
        accesses = [(program.task(m), a) for m in members for a in program.task(m).accesses]
        for i, (t, a) in enumerate(accesses):
            for u, b in accesses[:i]:
                if (u.id != t.id and a.tensor == b.tensor and (a.writes or b.writes)
                        and (regions.overlap(a.region, b.region) if pairs is None
                             else pairs.meet(a.tensor, u.id, b.region, t.id, a.region))):
                    name = program.tensors[a.tensor].name
                    raise TraceError(
                        f"{t.loc}: l3c.group() of {t.short_kernel}: members {u.group_rank} and "
                        f"{t.group_rank} both access {name} (parameters {b.param!r} l3c.{b.mode} "
                        f"and {a.param!r} l3c.{a.mode}, overlapping) and one writes it, but members "
                        "run at the same time; give each member its own part of the tensor (e.g. "
                        "rows x[i::n]), or make separate calls")


def _distinct_groups(program: Program) -> list[list[int]]:
    """One group of each kind: whether members conflict depends only on which members access
    which tensors (up to renaming), through which regions and modes, so a group like one already
    kept (the same `l3c.group` line run in every block of a long trace, whose views share their
    region records) would pass or fail as that one does, at the first one's line."""
    nodes = program.graph._node
    seen: set[tuple] = set()
    distinct: list[list[int]] = []
    for members in program.groups:
        names: dict[int, int] = {}
        shape: list = []            # per member: None, then (tensor, region, mode) per access
        for m in members:
            shape.append(None)
            for a in nodes[m]["task"].args:
                if type(a) is Access:
                    shape += (names.setdefault(a.tensor, len(names)), id(a.region), a.mode)
        key = tuple(shape)          # (ids: the regions live as long as `program`)
        if key not in seen:
            seen.add(key)
            distinct.append(members)
    return distinct


def add_data_edges(program: Program) -> None:
    """Add an edge for every conflicting pair not already ordered through covering writes."""
    _add_edges(program, _conflicts(program))


def _add_edges(program: Program, found: dict[tuple[int, int], list]) -> None:
    """Add the edges of `found` (or merge into existing ones). Both ends are nodes already, so the
    graph's adjacency dicts are written directly (networkx's `add_edges_from` checks and copies
    per edge: a third of this function's time)."""
    graph = program.graph
    succ, pred = graph._succ, graph._pred
    for (u, v), (bits, tensors) in found.items():
        data = succ[u].get(v)
        if data is not None:
            data["kinds"] = data["kinds"] | _KINDS[bits]     # sets shared between edges:
            data["tensors"] = data["tensors"] | tensors     # replaced, never changed in place
        else:
            succ[u][v] = pred[v][u] = {"kinds": _KINDS[bits], "tensors": tensors,
                                       "added_by": "deps", "carried": False}
    nx._clear_cache(graph)


class _Reducer:
    """Transitive reduction of a DAG fed one task at a time in program order (see `reduce_preds`).

    Ancestors within `ANCESTOR_WINDOW` tasks are bit sets: `with_self[u]` is a Python int whose
    bit i is task u-i (bit 0: u itself), so "u and its ancestors, seen from v" is one shift. A
    task's set is dropped once the window has passed it: no later task tests a predecessor that
    far back against it."""

    def __init__(self, bounds: tuple[list[int], list[int]] | None = None,
                 successors: dict[int, dict] | None = None) -> None:
        self.bounds = bounds
        # Without bounds, optionally: u -> the tasks that kept u, kept up to date by the caller
        # (the graph's adjacency as `_run_loop_free` builds it). `kept_preds` then stays empty.
        self.successors = successors
        self.with_self: dict[int, int] = {}
        self.kept_preds: dict[int, list[int]] = {}
        # Without loops (`_step_unbounded`): ancestor sets of the current and the previous block.
        self.block = -2
        self.current: dict[int, int] = {}
        self.previous: dict[int, int] = {}
        self.previous_raw: dict[int, int] = {}      # the previous block's sets, in its frame

    def step(self, v: int, preds) -> list[int]:
        """Task v's predecessors (distinct, all earlier) that no path through the others implies,
        latest first."""
        if self.bounds is None:
            return self._step_unbounded(v, preds)
        with_self, bounds, kept_preds = self.with_self, self.bounds, self.kept_preds
        kept: list[int] = []
        reach = 0                   # bit i: task v-1-i is an ancestor of a kept predecessor
        if preds:
            for u in sorted(preds, reverse=True):
                d = v - u
                if d <= ANCESTOR_WINDOW:
                    if (reach >> (d - 1)) & 1:
                        continue
                    kept.append(u)
                    if v < bounds[1][u] or not bounds[0][u]:
                        reach |= with_self[u] << (d - 1)
                    else:                       # only ancestors inside u's loop/cond
                        reach |= (with_self[u] & ((2 << max(0, u - bounds[0][u])) - 1)) << (d - 1)
                    continue
                # further back (so are all the rest): their bits fall outside the window
                if kept and _far_reachable(u, v, kept, kept_preds, bounds):
                    continue
                kept.append(u)
            reach &= _WINDOW_MASK
        kept_preds[v] = kept
        with_self[v] = (reach << 1) | 1
        with_self.pop(v - ANCESTOR_WINDOW, None)
        return kept

    def _step_unbounded(self, v: int, preds) -> list[int]:
        """`step` without loops, where every predecessor vouches for all its ancestors.

        Sets of a task and its ancestors sit in frames two windows wide: for tasks in block b
        (ids b*W .. b*W+W-1, W = `ANCESTOR_WINDOW`) bit i is task (b-1)*W + i, which covers every
        task one of the block can test. A predecessor from block b is or-ed in as it is; one
        from block b-1 is moved to this frame once, when first used: no shift per edge.
        The sets may hold ancestors further back than the window (never tested): that changes
        no answer."""
        window = ANCESTOR_WINDOW
        block = v // window
        if block != self.block:
            # The previous block's sets move to this frame when first used (mostly by the tasks
            # near the boundary): shifting all of them at once cost more than the lookups.
            self.previous_raw = self.current if block == self.block + 1 else {}
            self.previous = {}
            self.current = {}
            self.block = block
        base = (block - 1) * window
        start = block * window
        current, previous = self.current, self.previous
        if len(preds) <= 1:                         # (most tasks: nothing to reduce)
            kept = list(preds)
            if not kept:
                reach = 0
            else:
                u = kept[0]
                if v - u > window:
                    reach = 0
                elif u >= start:
                    reach = current[u]
                else:
                    reach = previous.get(u)
                    if reach is None:
                        reach = previous[u] = self.previous_raw[u] >> window
            if self.successors is None:
                self.kept_preds[v] = kept
            current[v] = reach | (1 << (v - base))
            return kept
        kept = []
        far: list[int] = []
        reach = 0
        for u in sorted(preds, reverse=True):
            if v - u > window:
                far.append(u)
            elif not (reach >> (u - base)) & 1:     # (reach's top bit is near u: a short shift)
                kept.append(u)
                if u >= start:
                    reach |= current[u]
                else:
                    bits = previous.get(u)
                    if bits is None:
                        bits = previous[u] = self.previous_raw[u] >> window
                    reach |= bits
        if far:
            # further back: outside the window, only `_far_reachable`'s commonest case is seen
            successors, kept_preds = self.successors, self.kept_preds
            for u in far:
                if successors is not None:
                    later = successors[u]
                    for k in kept:
                        if k in later:
                            break
                    else:
                        kept.append(u)
                    continue
                for k in kept:
                    if u in kept_preds[k]:
                        break
                else:
                    kept.append(u)
        if self.successors is None:
            self.kept_preds[v] = kept
        current[v] = reach | (1 << (v - base))
        return kept


_WINDOW_MASK = (1 << ANCESTOR_WINDOW) - 1


def reduce_preds(preds: dict[int, list[int]], nodes,
                 bounds: tuple[list[int], list[int]] | None = None) -> dict[int, list[int]]:
    """Transitive reduction of a DAG given as `v -> predecessors` (every u < v) over `nodes`
    (ascending ids: a topological order); returns `v -> kept predecessors` (latest first).
    With loops, `bounds` are the tasks' innermost loop/cond bodies (`loopnest.structure_bounds`): a
    path through k vouches only for part of k's ancestors (`loopnest.vouched`), so only those make
    an edge redundant.

    For each v, its predecessors are tried from the latest down: u is redundant when one of the
    predecessors kept so far has it as an ancestor (lower ones cannot reach it). Ancestors within
    `ANCESTOR_WINDOW` tasks are bit sets (`_Reducer`): the test is one shift, so dense conflict
    graphs cost O(edges). A predecessor further back is dropped only when `_far_reachable` sees it
    at once.
    """
    reducer = _Reducer(bounds)
    for v in nodes:
        reducer.step(v, set(preds.get(v, ())))
    return reducer.kept_preds


def _far_reachable(u: int, v: int, kept: list[int], kept_preds: dict[int, list[int]],
                   bounds: tuple[list[int], list[int]] | None = None) -> bool:
    """Is u, further back than the ancestor window, an ancestor of one of `kept`? Only the
    commonest case is looked for, u a kept predecessor of one of them (a write read by a task
    this one also waits for). Otherwise the edge is kept: reachability stays exact, the graph is
    just not fully reduced. (A search that far costs more than the edge it could save: in a
    program whose tensors are each touched every few thousand calls, a bounded backward search
    per far predecessor took ~20 s of a 100k-call lowering.)"""
    return any(u in kept_preds[k] and (bounds is None or v < bounds[1][k] or u >= bounds[0][k])
               for k in kept)


def transitive_reduction(program: Program) -> int:
    """Remove every edge u -> v of the graph implied by another path from u to v (see
    `reduce_preds`); returns how many went."""
    g = program.graph
    n = g.number_of_nodes()
    preds = dict(enumerate(iteration_preds(program, n)))
    bounds = structure_bounds(program, task_list(program)) if program.loops else None
    kept = reduce_preds(preds, range(n), bounds)
    drop = [(u, v) for v, us in preds.items() for u in set(us) - set(kept[v])]
    g.remove_edges_from(drop)
    return len(drop)


def run(program: Program, *, reduce_edges: bool = True) -> Program:
    """The deps pass: data edges, then (unless switched off) transitive reduction; with loops,
    also the carried edges and the bound/flag reads' dependencies (`loopdeps`).

    Without loops, each task's conflicts are reduced as soon as they are found and only the kept
    edges enter the networkx graph (adding and then removing them there costs more than finding
    them, and the full conflict set of a large program takes more memory than its graph)."""
    return run_recording(program, reduce_edges=reduce_edges)[0]


def run_recording(program: Program, *, reduce_edges: bool = True) -> tuple[Program, TensorUses]:
    """`run`, and the tensors' uses its walk over the tasks recorded for the scopes pass
    (`scopes.run(program, uses)`, valid while the program's tasks stay as they are)."""
    graph = program.graph
    sweep = ConflictSweep(program)
    if not program.loops and reduce_edges and not any(graph._succ.values()):
        _run_loop_free(program, sweep)
        return program, sweep.uses
    found = _conflicts(program, sweep)
    tasks = task_list(program) if program.loops else None
    carried = loopdeps.carried_conflicts(program, tasks, found) if tasks else {}
    if graph.number_of_edges() or not reduce_edges:
        _add_edges(program, found)
        program.reports["edges_before_reduction"] = graph.number_of_edges() + len(carried)
        if reduce_edges:
            transitive_reduction(program)
    else:
        program.reports["edges_before_reduction"] = len(found) + len(carried)
        preds: dict[int, list[int]] = {}
        for u, v in found:
            preds.setdefault(v, []).append(u)
        bounds = structure_bounds(program, tasks) if tasks else None
        kept = reduce_preds(preds, sorted(graph.nodes), bounds)
        succ, pred = graph._succ, graph._pred
        for v, us in kept.items():                   # ascending v; each `us` latest first
            for u in reversed(us):
                bits, tensors = found[u, v]
                succ[u][v] = pred[v][u] = {"kinds": _KINDS[bits], "tensors": tensors,
                                           "added_by": "deps", "carried": False}
        nx._clear_cache(graph)
    for (u, v), (bits, tensors) in sorted(carried.items()):
        for kind in _KIND_NAMES[bits]:
            for tensor in tensors:
                program.add_dependency(u, v, kind, tensor, carried=True)
    if tasks:
        loopdeps.bound_reads(program, tasks)
    program.reports["edges_after_reduction"] = graph.number_of_edges()
    return program, sweep.uses


def _run_loop_free(program: Program, sweep: ConflictSweep) -> None:
    """`run` of a program without loops or edges: find, reduce and add each task's edges in one
    walk in program order (the graph's adjacency dicts are written directly; networkx's
    `add_edges_from` checks and copies per edge). Each edge's dict is a copy of one template, its
    kinds and tensors frozen sets shared with other edges."""
    graph = program.graph
    succ, pred = graph._succ, graph._pred
    reducer = _Reducer(successors=succ)
    kinds = _KINDS
    template = {"kinds": None, "tensors": None, "added_by": "deps", "carried": False}
    found = kept_count = 0
    reduce = reducer._step_unbounded
    for task in task_list(program):
        v = task.id
        found_bits, found_tensors = sweep.step(v, task)
        if not found_bits:
            reduce(v, ())
            continue
        found += len(found_bits)
        kept = reduce(v, found_bits)
        kept_count += len(kept)
        waits = pred[v]
        for u in reversed(kept):                    # ascending u
            data = template.copy()
            data["kinds"] = kinds[found_bits[u]]
            data["tensors"] = found_tensors[u]
            succ[u][v] = waits[u] = data
    nx._clear_cache(graph)
    program.reports["edges_before_reduction"] = found
    program.reports["edges_after_reduction"] = kept_count
