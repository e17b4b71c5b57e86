"""Programs with loops built by hand, and a brute-force oracle that unrolls them.

`moving(shape, index)` makes a `Region` that moves with loop variables: `index(vals)` is the
numpy index at loop values `vals` (a dict loop id -> value); the shifts are read off two real
numpy views. `with_loops(program, loops, where)` turns a program of `_ir_builders.program` into
one with loops. `unroll(program, choices)` lists every task instance of one run in sequential
order with the elements it touches (concrete loop values, trip counts, cond decisions), and
`ordered_pairs` tells which instance pairs the edges order under the runtime meaning of edges
(an instance waits for the latest earlier instance of each predecessor, of an earlier iteration
for a carried edge; a task's instances run in order on its worker).
"""
from __future__ import annotations

from dataclasses import dataclass, field


from l3c.ir import Loop, Program, Region, Shift, flat_indices

from _ir_builders import region as plain_region


def moving(shape: tuple[int, ...], index, at: dict[int, int], keep_box: bool = True) -> Region:
    """The region of `base[index(vals)]` as a function of loop variables: `at` gives values where
    the view is inside the base (and each value + 1 too)."""
    here = plain_region(shape, index(dict(at)), keep_box=keep_box)
    offset = here.offset
    box = list(here.box) if here.box is not None else None
    found = []
    for lid in sorted(at):
        step = dict(at)
        step[lid] += 1
        there = plain_region(shape, index(step), keep_box=keep_box)
        d_off = there.offset - here.offset
        d_box = tuple(b[0] - a[0] for a, b in zip(here.box, there.box)) if box else (0,) * len(shape)
        if d_off or any(d_box):
            found.append(Shift(lid, d_off, d_box))
            offset -= at[lid] * d_off
            if box:
                box = [(s - at[lid] * d, c, st) for (s, c, st), d in zip(box, d_box)]
    return Region(offset, here.shape, here.strides, tuple(box) if box else None, tuple(found))


def with_loops(program: Program, loops: list[Loop]) -> Program:
    """Attach `loops` (ids, parents, task ranges set) and each task's enclosing loop ids."""
    for loop in loops:
        program.loops[loop.id] = loop
    for t in program.tasks:
        inside = [lp for lp in loops if lp.first_task <= t.id < lp.end_task]
        depth = {lp.id: _depth(program, lp.id) for lp in inside}
        t.loops = tuple(sorted((lp.id for lp in inside), key=lambda i: depth[i]))
        program.sync_node_attrs(t.id)
    return program


def _depth(program: Program, lid: int) -> int:
    d = 0
    while program.loops[lid].parent is not None:
        lid = program.loops[lid].parent
        d += 1
    return d


@dataclass
class Instance:
    task: int
    values: dict[int, int]                      # loop id -> variable value
    iteration: tuple[tuple[int, int], ...]      # (loop id, iteration number), outermost first
    reads: dict[int, set] = field(default_factory=dict)
    writes: dict[int, set] = field(default_factory=dict)


def _elements(region: Region, values: dict[int, int]) -> set:
    offset = region.offset + sum(values[s.loop] * s.offset for s in region.shifts)
    return set(flat_indices(offset, region.shape, region.strides).tolist())


def unroll(program: Program, trips: dict[int, int], taken: dict[int, bool] | None = None,
           flag_reads: bool = False) -> list[Instance]:
    """Every task instance of a run in sequential order. `trips[loop]`: iterations of a while loop
    or a range loop whose bounds are tensors (static ranges use their own bounds); `taken[cond]`.
    With `flag_reads`, each bound/flag read is an instance too, of task `-1 - loop id`."""
    taken = taken or {}
    tasks = program.tasks
    top = [lp for lp in program.loops.values() if lp.parent is None]
    out: list[Instance] = []

    def run_range(first: int, end: int, children: list[Loop], values: dict, iteration: tuple):
        pos = first
        for lp in sorted(children, key=lambda x: x.first_task):
            emit(pos, lp.first_task, values, iteration)
            run_loop(lp, values, iteration)
            pos = lp.end_task
        emit(pos, end, values, iteration)

    def emit(a: int, b: int, values: dict, iteration: tuple):
        for tid in range(a, b):
            t = tasks[tid]
            inst = Instance(tid, dict(values), iteration)
            for acc in t.accesses:
                els = _elements(acc.region, values)
                if acc.reads:
                    inst.reads.setdefault(acc.tensor, set()).update(els)
                if acc.writes:
                    inst.writes.setdefault(acc.tensor, set()).update(els)
            out.append(inst)

    def read(lp: Loop, values: dict, iteration: tuple):
        if flag_reads:
            inst = Instance(-1 - lp.id, dict(values), iteration)
            for acc in lp.accesses:
                inst.reads.setdefault(acc.tensor, set()).update(_elements(acc.region, values))
            out.append(inst)

    def run_loop(lp: Loop, values: dict, iteration: tuple):
        children = [c for c in program.loops.values() if c.parent == lp.id]
        if lp.kind == "cond":
            read(lp, values, iteration)
            if taken.get(lp.id, True):
                run_range(lp.first_task, lp.end_task, children, values, iteration)
            return
        if lp.kind == "range":
            read(lp, values, iteration)
            if all(isinstance(b, int) for b in (lp.start, lp.stop, lp.step)):
                seq = list(range(lp.start, lp.stop, lp.step))
            else:
                start = lp.start if isinstance(lp.start, int) else 0
                step = lp.step if isinstance(lp.step, int) else 1
                seq = [start + k * step for k in range(trips[lp.id])]
        else:
            seq = list(range(trips[lp.id]))
        for k, value in enumerate(seq):
            if lp.kind == "while":
                read(lp, dict(values, **{}), iteration + ((lp.id, k),))
            inner = dict(values)
            inner[lp.id] = value
            run_range(lp.first_task, lp.end_task, children, inner, iteration + ((lp.id, k),))
        if lp.kind == "while":
            read(lp, values, iteration + ((lp.id, len(seq)),))

    run_range(0, len(tasks), top, {}, ())
    return out


def conflicts(instances: list[Instance]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of instances that touch a common element, one of them writing."""
    found = []
    for j, q in enumerate(instances):
        for i in range(j):
            p = instances[i]
            if any(p.writes.get(t, set()) & (q.reads.get(t, set()) | q.writes.get(t, set()))
                   for t in p.writes) or any(
                       q.writes.get(t, set()) & p.reads.get(t, set()) for t in q.writes):
                found.append((i, j))
    return found


def _earlier_iteration(p: Instance, q: Instance, program: Program) -> bool:
    """Is p in an earlier iteration than q of a loop enclosing both (not in q's own iteration)?"""
    for (la, ka), (lb, kb) in zip(p.iteration, q.iteration):
        if la != lb:
            return False
        if ka != kb:
            return ka < kb
    return False


def happens_before(program: Program, instances: list[Instance],
                   extra: dict[int, list[tuple[int, bool]]] | None = None,
                   workers: bool = False) -> list[int]:
    """Per instance, a bitset of the instances it is ordered after by the program's edges.
    `extra[v]`: more (u, carried) waits of task id v (the bound reads' pseudo-tasks). With
    `workers`, each worker also runs its instances one after another (a placed program)."""
    preds: dict[int, list[tuple[int, bool]]] = {}
    for u, v, data in program.graph.edges(data=True):
        preds.setdefault(v, []).append((u, bool(data.get("carried"))))
    for v, waits in (extra or {}).items():
        preds.setdefault(v, []).extend(waits)
    hb: list[int] = []
    last_of: dict[int, list[int]] = {}              # task -> its instance indices so far
    last_on: dict[tuple, int] = {}
    for j, q in enumerate(instances):
        bits = 0
        if workers and q.task >= 0:
            t = program.task(q.task)
            before = last_on.get((t.worker, t.chip))
            if before is not None:
                bits |= hb[before] | (1 << before)
            last_on[(t.worker, t.chip)] = j
        mine = last_of.get(q.task)
        if mine:
            bits |= hb[mine[-1]] | (1 << mine[-1])
        for u, carried in preds.get(q.task, ()):
            for i in reversed(last_of.get(u, ())):
                if not carried or _earlier_iteration(instances[i], q, program):
                    bits |= hb[i] | (1 << i)
                    break
        hb.append(bits)
        last_of.setdefault(q.task, []).append(j)
    return hb


def unordered(program: Program, instances: list[Instance], extra=None) -> list[tuple[int, int]]:
    """Conflicting instance pairs the edges leave unordered (should be none)."""
    hb = happens_before(program, instances, extra)
    return [(i, j) for i, j in conflicts(instances) if not (hb[j] >> i) & 1]


def needed_carried(program: Program, instances: list[Instance]) -> set[tuple[int, int]]:
    """Task pairs (a, b) with an instance of a conflicting with a later-iteration instance of b."""
    return {(instances[i].task, instances[j].task) for i, j in conflicts(instances)
            if _earlier_iteration(instances[i], instances[j], program)}


def affine(shape: tuple[int, ...], axes: list[tuple[int, dict[int, int], int, int]],
           keep_box: bool = True) -> Region:
    """A view of a C-contiguous base of `shape`: per axis `(start, {loop: coef}, count, step)`,
    the start moving by `coef` per unit of each loop's variable (the view at variables 0)."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    strides.reverse()
    offset = sum(start * st for (start, _, _, _), st in zip(axes, strides))
    loops = sorted({lid for _, coefs, _, _ in axes for lid, c in coefs.items() if c})
    found = []
    for lid in loops:
        box = tuple(coefs.get(lid, 0) for _, coefs, _, _ in axes)
        found.append(Shift(lid, sum(c * st for c, st in zip(box, strides)), box))
    box = tuple((start, count, step if count > 1 else 1) for start, _, count, step in axes)
    return Region(offset, tuple(count for _, _, count, _ in axes),
                  tuple(step * st for (_, _, _, step), st in zip(axes, strides)),
                  box if keep_box else None, tuple(found))


def describe(program: Program) -> str:
    """A compact listing of loops and tasks (for failing examples)."""
    lines = [f"loop {lp.id} {lp.kind} parent={lp.parent} tasks {lp.first_task}..{lp.end_task - 1} "
             f"start={lp.start} stop={lp.stop} step={lp.step} flag={lp.flag} "
             f"max={lp.max_iterations}" for lp in program.loops.values()]
    for t in program.tasks:
        parts = [f"{program.tensors[a.tensor].name}{a.region}{a.mode}"
                 + "".join(f"+L{s.loop}*{s.box or s.offset}" for s in a.region.shifts)
                 + ("" if a.region.box is not None else "(nobox)") for a in t.accesses]
        lines.append(f"  %{t.id} loops={t.loops} " + " ".join(parts))
    lines += [f"  edge {u}->{v} {sorted(d['kinds'])} carried={d.get('carried', False)}"
              for u, v, d in sorted(program.graph.edges(data=True))]
    return "\n".join(lines)


def arena_clashes(program: Program, instances: list[Instance]) -> list[tuple[str, str]]:
    """Intermediates sharing arena bytes whose uses in this run interleave or are not ordered
    (every use of one must come before every use of the other, ordered by edges or workers)."""
    hb = happens_before(program, instances, workers=True)
    uses: dict[int, list[int]] = {}
    for i, inst in enumerate(instances):
        for t in set(inst.reads) | set(inst.writes):
            uses.setdefault(t, []).append(i)
    placed = [t for t in program.tensors if t.kind == "intermediate" and t.nbytes
              and t.arena_offset is not None and t.id in uses]
    bad = []
    for k, x in enumerate(placed):
        for y in placed[k + 1:]:
            if not (x.arena_offset < y.arena_offset + y.nbytes
                    and y.arena_offset < x.arena_offset + x.nbytes):
                continue
            ux, uy = uses[x.id], uses[y.id]
            first, second = (ux, uy) if ux[0] < uy[0] else (uy, ux)
            if first[-1] > second[0] or not all((hb[j] >> i) & 1 for i in first for j in second):
                bad.append((x.name, y.name))
    return bad


def sample_runs(program: Program):
    """Trip counts (loops 0 and 1, where not static) and cond decisions to unroll with."""
    cond_ids = [lp.id for lp in program.loops.values() if lp.kind == "cond"]
    for trips in (0, 1, 3):
        for taken in (True, False):
            yield {0: trips, 1: trips}, {c: taken for c in cond_ids}


def read_waits(program: Program) -> dict[int, list[tuple[int, bool]]]:
    """The bound/flag reads' dependencies as waits of their pseudo-tasks (`unroll(flag_reads=)`)
    and of the writers that wait for them."""
    extra: dict[int, list[tuple[int, bool]]] = {}
    for lp in program.loops.values():
        extra.setdefault(-1 - lp.id, []).extend(lp.reads_after)
        for w, carried in lp.reads_before:
            extra.setdefault(w, []).append((-1 - lp.id, carried))
    return extra
