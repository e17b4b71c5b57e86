"""A Python model of plans with loops, for tests: the sequential reference of a placed program with
loops, and an interpreter of its lowered plan that runs the slots' queues in a random interleaving
respecting only the plan's waits, checking that every instance of a call (and of a bound/flag
read) starts after the latest earlier instance of each of its predecessors in sequential order.

Memory is a dict {(tensor, element): int}. `writes[task]` is a function (occurrence) -> {(tensor,
element): value} giving what the k-th call of a task writes (flags, bounds).
"""
from __future__ import annotations

import random
from typing import Any, Callable

from l3c.ir import Access, Program
from l3c.runtime.plan import ANCHOR_CUR, NO_CAP, ControlStep, View, anchor, anchor_count


def _value(bound: Any, memory: dict) -> int:
    if isinstance(bound, Access):
        return memory.get((bound.tensor, bound.region.offset), 0)
    return int(bound)


def sequential(program: Program, memory: dict, writes: dict[int, Callable]) -> list[Any]:
    """The instances in sequential order: task ids and ("read", loop id), with loop variables
    recorded per task instance as (task, {loop: value})."""
    children: dict[Any, list] = {}
    for lid, loop in program.loops.items():
        children.setdefault(loop.parent, []).append(((loop.first_task, 0, lid), ("loop", lid)))
    for task in program.tasks:
        children.setdefault(task.loops[-1] if task.loops else None, []).append(
            ((task.id, 1, 0), ("task", task.id)))
    order = {k: [e for _, e in sorted(v)] for k, v in children.items()}
    trace: list[Any] = []
    occurrences: dict[int, int] = {}
    env: dict[int, int] = {}

    def call(v: int) -> None:
        k = occurrences.get(v, 0)
        occurrences[v] = k + 1
        trace.append((v, dict(env)))
        if v in writes:
            memory.update(writes[v](k))

    def walk(parent: Any) -> None:
        for kind, ident in order.get(parent, []):
            if kind == "task":
                call(ident)
                continue
            loop = program.loops[ident]
            if loop.kind == "range":
                if any(isinstance(b, Access) for b in (loop.start, loop.stop, loop.step)):
                    trace.append(("read", ident))
                for i in range(_value(loop.start, memory), _value(loop.stop, memory),
                               _value(loop.step, memory)):
                    env[ident] = i
                    walk(ident)
            elif loop.kind == "while":
                it = 0
                while True:
                    trace.append(("read", ident))
                    if not _value(loop.flag, memory) or (
                            loop.max_iterations is not None and it >= loop.max_iterations):
                        break
                    env[ident] = it
                    walk(ident)
                    it += 1
            else:
                trace.append(("read", ident))
                if bool(_value(loop.flag, memory)) != bool(loop.invert):
                    walk(ident)
            env.pop(ident, None)
    walk(None)
    return trace


def _bound(value: Any, memory: dict, where: dict) -> int:
    if isinstance(value, View):
        return memory.get(where[value.offset], 0)
    return int(value)


def simulate(program: Program, plan: Any, memory: dict, writes: dict[int, Callable],
             rng: random.Random, element_of: dict[int, tuple[int, int]]) -> list[list[Any]]:
    """Run the plan's queues in a random interleaving that respects only its waits; assert every
    dependency of the program holds per instance and that each slot's calls match the sequential
    reference. `element_of[view offset] = (tensor, element)` for the bound and flag views."""
    reference = sequential(program, dict(memory), writes)
    seq_of: dict[Any, list[int]] = {}
    for pos, inst in enumerate(reference):
        key = inst if inst[0] == "read" else inst[0]
        seq_of.setdefault(key, []).append(pos)
    preds: dict[Any, list[Any]] = {}
    for u, v in program.graph.edges:
        preds.setdefault(v, []).append(u)
    for lid, loop in program.loops.items():
        for w, _ in loop.reads_after:
            preds.setdefault(("read", lid), []).append(w)
        for w, _ in loop.reads_before:
            preds.setdefault(w, []).append(("read", lid))
    slots = plan.slots
    active = plan.active
    n_anchor = anchor_count(len(plan.loops))
    state = {s: {"k": 0, "count": 0, "rows": [[0] * slots for _ in range(n_anchor)],
                 "frames": [[0, 0, 0, 0] for _ in plan.loops], "done": False} for s in active}
    for s in active:
        state[s]["rows"][ANCHOR_CUR] = [0] * slots
    done_count = {s: 0 for s in range(slots)}
    completed: dict[Any, set] = {}           # node -> sequential positions completed (per slot for reads)
    occurrence: dict[tuple[int, Any], int] = {}
    executed: dict[int, list] = {s: [] for s in active}

    def target(st: dict, wait: tuple) -> int:
        if len(wait) == 2:
            return wait[1]
        t, c, base, cap = wait
        value = st["rows"][base][t] + c
        return value if cap == NO_CAP else min(value, st["rows"][cap][t])

    def check_preds(node: Any, pos: int, slot: int) -> None:
        for u in preds.get(node, []):
            earlier = [p for p in seq_of.get(u, []) if p < pos]
            if not earlier:
                continue
            need = earlier[-1]
            got = completed.get(u, {})
            slots_needed = active if isinstance(u, tuple) else [None]
            for t in slots_needed:
                assert (need, t) in got, (f"{node} (sequential #{pos}) on slot {slot} started "
                                          f"before {u} #{need} (slot {t})")

    def complete(node: Any, slot: int) -> None:
        key = (slot, node)
        k = occurrence.get(key, 0)
        occurrence[key] = k + 1
        pos = seq_of[node][k]
        check_preds(node, pos, slot)
        completed.setdefault(node, set()).add((pos, slot if isinstance(node, tuple) else None))
        done_count[slot] += 1

    while not all(state[s]["done"] for s in active):
        ready = []
        for s in active:
            st = state[s]
            if st["done"]:
                continue
            step = plan.queues[s][st["k"]]
            if all(done_count[w[0]] >= target(st, w) for w in step.waits):
                ready.append(s)
        assert ready, "deadlock: no slot can proceed"
        s = rng.choice(ready)
        st = state[s]
        step = plan.queues[s][st["k"]]
        rows, cur = st["rows"], st["rows"][ANCHOR_CUR]
        nxt = st["k"] + 1
        if not isinstance(step, ControlStep):
            complete(step.task, s)
            executed[s].append(step.task)
            k = occurrence[(s, step.task)] - 1
            if step.task in writes:
                memory.update(writes[step.task](k))
        else:
            i, f = step.loop, st["frames"][step.loop]
            for t in range(slots):
                cur[t] += step.delta[t]

            def counted() -> None:
                complete(("read", _loop_id(program, i)), s)
                for t in range(slots):
                    cur[t] += 1

            def copy(which: int, src: list) -> None:
                rows[anchor(i, which)] = list(src)
            where = element_of
            if step.kind == "range":
                start, stop, stride = (_bound(b, memory, where) for b in (step.start, step.stop, step.step))
                trips = len(range(start, stop, stride))
                if step.counted:
                    counted()
                f[:] = [start, 0, trips, stride]
                for w in (0, 1, 2):
                    copy(w, cur)
                if trips == 0:
                    copy(3, cur)
                    nxt = step.jump
            elif step.kind == "next":
                f[1] += 1
                if f[1] < f[2]:
                    f[0] += f[3]
                    copy(2, rows[anchor(i, 1)])
                    copy(1, cur)
                    nxt = step.jump
                else:
                    copy(3, cur)
            elif step.kind == "while":
                f[:] = [0, 0, 0, 0]
                for w in (0, 1, 2):
                    copy(w, cur)
            elif step.kind == "test":
                counted()
                flag = _bound(step.flag, memory, where)
                if not flag or (step.max_iterations >= 0 and f[1] >= step.max_iterations):
                    copy(3, cur)
                    nxt = step.jump
                else:
                    copy(2, cur if f[1] == 0 else rows[anchor(i, 1)])
                    copy(1, cur)
                    f[0] = f[1]
            elif step.kind == "again":
                f[1] += 1
                nxt = step.jump
            elif step.kind == "cond":
                counted()
                copy(0, cur)
                if bool(_bound(step.flag, memory, where)) != step.invert:
                    copy(1, cur)
                else:
                    copy(3, cur)
                    nxt = step.jump
            else:
                copy(3, cur)
        st["k"] = nxt
        if nxt >= len(plan.queues[s]):
            st["done"] = True
    for s in active:
        mine = [inst[0] for inst in reference if inst[0] != "read" and _slot(plan, s, inst[0])]
        assert executed[s] == mine, f"slot {s} ran {executed[s]}, the reference {mine}"
    return reference


def _loop_id(program: Program, index: int) -> int:
    return sorted(program.loops)[index]


def _slot(plan: Any, s: int, task: int) -> bool:
    return any(getattr(st, "task", -1) == task and not isinstance(st, ControlStep)
               for st in plan.queues[s])
