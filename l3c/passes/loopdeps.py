"""loopdeps: the dependencies a program's loops and conds add to the deps pass.

Each body is traced once, so a task stands for one instance per iteration. The deps pass finds
conflicts within one iteration with its usual search, asking `WithinPairs` whether two accesses
meet (all loops enclosing both at the same iteration, other loops free: `shifts.may_meet`) and
whether a covering write may hide an earlier access (only when the writer's structure encloses it:
otherwise the writer may not run between them). This module adds:

* carried conflicts (`carried_conflicts`): for tasks a, b sharing a loop (a == b included), an
  instance of a and an instance of b at a later iteration of a common loop L conflict. For each
  level L: the loops outside L are tied, L is at distance d >= 1, loops inside L are free. Such a
  conflict becomes an edge a -> b with `carried=True`, unless a comes before b in program order and
  reaches b within one iteration by a sound path (`loopnest.valid_ancestors`): b's instance then
  waits for a's instance of its own iteration, which follows every earlier one.
* the reads of range bounds and while/cond flags (`bound_reads`): each loop's read is placed as a
  pseudo-task just before its body (range, cond: in the enclosing context, read once; while: in
  the loop's own context, read before every iteration, the last read ending the loop). Its
  `reads_after` are the writers it must wait for (earlier in program order: `carried=False`;
  instances in earlier iterations of a common loop only: `carried=True`), its `reads_before` the
  writers that must wait for it, in the same way.
"""
from __future__ import annotations

from ..ir import Access, Loop, Program, Region, Task
from . import shifts
from .loopnest import chain, common_prefix, repeating, structure_bounds, valid_ancestors


class WithinPairs:
    """The deps search's questions about two accesses of one iteration, in a program with loops."""

    def __init__(self, program: Program, tasks: list[Task]) -> None:
        self.program = program
        self.facts = shifts.loop_facts(program)
        self.loops = [t.loops for t in tasks]
        self.first, _ = structure_bounds(program, tasks)
        self.shapes = [t.shape for t in program.tensors]
        self._tied: dict[tuple[tuple[int, ...], tuple[int, ...]], frozenset[int]] = {}

    def tied(self, u: int, v: int) -> frozenset[int]:
        key = (self.loops[u], self.loops[v])
        found = self._tied.get(key)
        if found is None:
            found = self._tied[key] = frozenset(
                repeating(self.program, common_prefix(*key)))
        return found

    def meet(self, tensor: int, u: int, a: Region, v: int, b: Region) -> bool:
        """May task u's view `a` and task v's view `b` meet in one iteration (u < v)?"""
        return shifts.may_meet(a, b, self.shapes[tensor], self.tied(u, v), self.facts)

    def forgets(self, u: int, old: Region, v: int, writer: Region, whole: bool) -> bool:
        """May v's write of `writer` hide u's access of `old` (u < v) from later tasks? Only if v
        runs after every instance of u in its context (v's structure encloses u) and covers it,
        and `meet` answers for `writer` no more precisely than for `old` (a whole tensor meets
        everything): beside a moving view, a view without a box may meet what a covering box is
        known to miss (both in fact miss it, but verify, asking of `old`, would find the pair
        unordered)."""
        if u < self.first[v]:
            return False
        if whole:
            return True
        if old.box is None and writer.box is not None:
            return False
        return shifts.covers_always(writer, old, self.tied(u, v))


def carried_conflicts(program: Program, tasks: list[Task],
                      within: dict[tuple[int, int], list]) -> dict[tuple[int, int], list]:
    """`(a, b) -> [kind bits, tensor ids]` for every carried conflict an edge must order (see the
    module docstring), leaving out those a within-iteration path a -> b already orders."""
    facts = shifts.loop_facts(program)
    first, end = structure_bounds(program, tasks)
    sources: list[list[int]] = [[] for _ in tasks]
    for u, v in within:
        sources[v].append(u)
    reach = valid_ancestors(sources, first, end)
    shapes = [t.shape for t in program.tensors]
    per_tensor: dict[int, list[tuple[int, Access]]] = {}
    for t in tasks:
        if repeating(program, t.loops):
            for a in t.accesses:
                if a.region.size:
                    per_tensor.setdefault(a.tensor, []).append((t.id, a))
    found: dict[tuple[int, int], list] = {}
    for tid, items in per_tensor.items():
        for i, (u, x) in enumerate(items):
            for j in range(i, len(items)):
                v, y = items[j]
                if not (x.writes or y.writes):
                    continue
                levels = repeating(program, common_prefix(tasks[u].loops, tasks[v].loops))
                if not levels:
                    continue
                # an access against itself at a later iteration, or two accesses either way round
                for a, ra, b, rb in ((u, x, v, y),) if i == j else ((u, x, v, y), (v, y, u, x)):
                    rec = found.get((a, b))
                    if rec is not None and tid in rec[1] or a < b and (reach[b] >> a) & 1:
                        continue
                    if _carried(ra.region, rb.region, shapes[tid], levels, facts):
                        bits = ((1 if ra.writes and rb.reads else 0)
                                | (2 if ra.reads and rb.writes else 0)
                                | (4 if ra.writes and rb.writes else 0))
                        rec = found.setdefault((a, b), [0, set()])
                        rec[0] |= bits
                        rec[1].add(tid)
    return found


def _carried(a: Region, b: Region, shape: tuple[int, ...], levels: tuple[int, ...],
             facts: dict[int, shifts.LoopFacts]) -> bool:
    """May `b`, at a later iteration of one of `levels` (loops outside it tied), meet `a`?"""
    for j, lid in enumerate(levels):
        if shifts.may_meet(a, b, shape, frozenset(levels[:j]), facts, distance=lid):
            return True
    return False


def _read_context(program: Program, loop: Loop) -> tuple[int, ...]:
    """The loops the bound/flag read of `loop` sits in (a while loop reads in its own body)."""
    return chain(program, loop.id if loop.kind == "while" else loop.parent)


def bound_reads(program: Program, tasks: list[Task]) -> None:
    """Fill `Loop.reads_after` and `Loop.reads_before` of every loop (see the module docstring)."""
    for lid, (after, before) in required_reads(program, tasks).items():
        program.loops[lid].reads_after, program.loops[lid].reads_before = after, before


def required_reads(program: Program, tasks: list[Task]) -> dict[int, tuple[tuple, tuple]]:
    """Per loop id: the `(reads_after, reads_before)` its bound/flag read needs."""
    found: dict[int, tuple[tuple, tuple]] = {}
    facts = shifts.loop_facts(program)
    shapes = [t.shape for t in program.tensors]
    writers: dict[int, list[tuple[int, Access]]] = {}
    for t in tasks:
        for a in t.accesses:
            if a.writes and a.region.size:
                writers.setdefault(a.tensor, []).append((t.id, a))
    for loop in program.loops.values():
        context = _read_context(program, loop)
        after: dict[int, bool] = {}
        before: dict[int, bool] = {}
        for read in loop.accesses:
            shape = shapes[read.tensor]
            for w, access in writers.get(read.tensor, ()):
                common = common_prefix(context, tasks[w].loops)
                levels = repeating(program, common)
                if shifts.may_meet(access.region, read.region, shape, frozenset(levels), facts):
                    (after if w < loop.first_task else before)[w] = False
                # an instance in an earlier iteration of a common loop than the read, or later
                if after.get(w) is not False and _carried(access.region, read.region, shape,
                                                          levels, facts):
                    after[w] = True
                if before.get(w) is not False and _carried(read.region, access.region, shape,
                                                           levels, facts):
                    before[w] = True
        found[loop.id] = (tuple(sorted(after.items())), tuple(sorted(before.items())))
    return found


def missing_reads(program: Program, tasks: list[Task]) -> list[str]:
    """The bound/flag-read dependencies the loops' `reads_after`/`reads_before` lack (a pair
    `(w, False)` also stands for `(w, True)`: a wait within the iteration implies the earlier)."""
    out = []
    for lid, needed in required_reads(program, tasks).items():
        loop = program.loops[lid]
        for name, need, have in zip(("reads_after", "reads_before"), needed,
                                    (loop.reads_after, loop.reads_before)):
            have = set(have)
            out += [f"loop {lid} ({loop.loc}): {name} lacks (%{w}, {carried})"
                    for w, carried in need if (w, False) not in have and (w, carried) not in have]
    return out
