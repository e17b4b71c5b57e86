"""Placed programs with loops built by hand (the tracer and passes for loops are tested on their own):
random structures of range / while / cond with the flag and bound writers they need, random
placement and random extra edges (some carried), for the lowering model and real runs."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from l3c.ir import Access, Config, Loop, Param, Program, Region, ScalarArg, Task, TensorInfo

FLAGS = 0          # tensor 0: int32 flags and bounds, one element per loop


@dataclass
class Builder:
    chips: int = 2
    sub_workers: int = 0
    prog: Program = None
    stack: list = field(default_factory=list)
    writes: dict = field(default_factory=dict)     # task -> occurrence -> {(tensor, elem): value}

    def __post_init__(self) -> None:
        self.prog = Program(name="tests:loops", loc="loops.py:1",
                            config=Config(chips=self.chips, sub_workers=self.sub_workers))
        self.prog.tensors.append(TensorInfo(0, "arg0", "input", (64,), "int32", "loops.py:1"))
        self.prog.params.append(Param("flags", tensor=0))

    def elem(self, e: int, mode: str = "In") -> Access:
        return Access("f", FLAGS, Region(e, (1,), (1,), ((e, 1, 1),)), mode)

    def task(self, kernel: str = "tests._runtime_kernels:noop", args: tuple = (),
             worker: str = "chip", unit: int = 0) -> int:
        tid = len(self.prog.graph)
        self.prog.add_task(Task(tid, kernel, worker, tuple(args), f"loops.py:{10 + tid}",
                                loops=tuple(self.stack), chip=unit))
        return tid

    def open(self, kind: str, **kw) -> int:
        lid = len(self.prog.loops)
        self.prog.loops[lid] = Loop(lid, kind, f"loops.py:{500 + lid}",
                                    self.stack[-1] if self.stack else None,
                                    len(self.prog.graph), len(self.prog.graph), **kw)
        self.stack.append(lid)
        return lid

    def close(self) -> None:
        lid = self.stack.pop()
        self.prog.loops[lid].end_task = len(self.prog.graph)

    def edge(self, u: int, v: int, carried: bool = False) -> None:
        self.prog.add_dependency(u, v, "RAW", FLAGS, carried=carried)

    def place(self) -> Program:
        counts: dict = {}
        for t in self.prog.tasks:
            key = (t.worker, t.chip)
            t.queue_pos = counts.get(key, 0)
            counts[key] = t.queue_pos + 1
            self.prog.sync_node_attrs(t.id)
        return self.prog


def random_program(rng: random.Random, chips: int = 2, sub: int = 0, size: int = 14) -> Builder:
    """A random placed program: tasks, nested loops and conds with their flag writers, edges."""
    b = Builder(chips, sub)
    units = [("chip", c) for c in range(chips)] + [("sub", s) for s in range(sub)]
    next_elem = [1]

    def unit() -> tuple[str, int]:
        return rng.choice(units)

    def plain() -> int:
        w, u = unit()
        return b.task(worker=w, unit=u)

    def writer(e: int, values) -> int:
        w, u = unit()
        tid = b.task(args=(b.elem(e, "Out"),), worker=w, unit=u)
        b.writes[tid] = lambda k, e=e, values=values: {(FLAGS, e): values(k)}
        return tid

    def body(depth: int, budget: int) -> None:
        while budget > 0 and len(b.prog.graph) < size:
            r = rng.random()
            if r < 0.55 or depth >= 2:
                plain()
                budget -= 1
                continue
            e = next_elem[0]
            next_elem[0] += 1
            kind = rng.choice(["range", "range_tensor", "while", "cond"])
            if kind == "range":
                b.open("range", start=rng.randint(-1, 1), stop=rng.randint(0, 3),
                       step=rng.choice([1, 1, 2]))
                body(depth + 1, rng.randint(1, 3))
                b.close()
            elif kind == "range_tensor":
                trips = rng.randint(0, 3)
                w = writer(e, lambda k, trips=trips: trips)
                lid = b.open("range", stop=b.elem(e))
                b.prog.loops[lid].reads_after = ((w, False),)
                b.prog.loops[lid].reads_before = ((w, True),) if depth else ()
                body(depth + 1, rng.randint(1, 3))
                b.close()
            elif kind == "while":
                n = rng.randint(0, 3)
                first = writer(e, lambda k, n=n: int(n > 0))
                lid = b.open("while", flag=b.elem(e), max_iterations=rng.choice([None, 2, 5]))
                body(depth + 1, rng.randint(0, 2))
                # the flag's writer in the body: its k-th call clears the flag every n-th time
                last = writer(e, lambda k, n=n: int((k % max(n, 1)) + 1 < n))
                b.close()
                loop = b.prog.loops[lid]
                loop.reads_after = ((first, False), (last, True))
                loop.reads_before = ((last, False),) + (((first, True),) if depth else ())
            else:
                w = writer(e, lambda k: rng_bits[k % len(rng_bits)])
                lid = b.open("cond", flag=b.elem(e), invert=rng.random() < 0.3)
                body(depth + 1, rng.randint(1, 2))
                b.close()
                b.prog.loops[lid].reads_after = ((w, False),)
                b.prog.loops[lid].reads_before = ((w, True),) if depth else ()
            budget -= 1

    rng_bits = [rng.randint(0, 1) for _ in range(5)]
    body(0, size)
    b.place()
    tasks = list(b.prog.graph.nodes)
    for _ in range(len(tasks)):
        u, v = rng.choice(tasks), rng.choice(tasks)
        tu, tv = b.prog.task(u), b.prog.task(v)
        common = [lid for lid in tu.loops if lid in tv.loops]
        if u < v and rng.random() < 0.7:
            b.edge(u, v)
        elif common and any(b.prog.loops[lid].kind != "cond" for lid in common):
            b.edge(u, v, carried=True)
    return b


def element_of(lowered) -> dict:
    """Bound/flag view offsets of a lowered program -> (tensor, element)."""
    base = lowered.input_views[0].offset
    return {base + 4 * e: (FLAGS, e) for e in range(64)}
