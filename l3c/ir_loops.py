"""The IR records of loops and conditionals (docs/ir.md, "Loops and conditionals"): `Loop` (a
loop or cond of the schedule, in `Program.loops`), `Shift` (how a view moves with a loop variable,
in `Region.shifts`) and `Affine` (a loop-variable expression, as a kernel scalar); what carried
edges make of the graph (`has_carried`, `iteration_graph`, behind the `Program` methods).

`l3c.ir` re-exports them: import them from there. Like it, this module imports no other part of
l3c (an `Access` is named only in annotations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx

if TYPE_CHECKING:
    from .ir import Access


@dataclass(frozen=True)
class Shift:
    """How far a `Region` moves per unit of one loop variable (in elements of the base tensor).

    Inside `l3c.range`/`while_loop` bodies a view may move with loop variables (`x[i]`,
    `x[4 * i : 4 * i + 4]`): `Region.shifts` holds one `Shift` per loop variable it depends on,
    sorted by loop id. The region's `offset` and `box` are then the view when every loop variable
    is 0 (possibly outside the base tensor); the view at values `v` is offset + sum(v[l] *
    shift.offset), each box start + sum(v[l] * shift.box[axis]). Shape and strides never depend on
    loop variables.
    """

    loop: int                      # the loop id (`Program.loops`) whose variable moves the view
    offset: int                    # change of `Region.offset`
    box: tuple[int, ...]           # change of each base axis's box start (0 for unmoved axes)


@dataclass(frozen=True)
class Affine:
    """An integer affine expression of loop variables, `const + sum(coef * var(loop))`: the value
    of a loop variable passed to a kernel as a scalar (`ScalarArg.value`), and of loop bounds."""

    const: int = 0
    terms: tuple[tuple[int, int], ...] = ()     # (loop id, coefficient), by loop id, coef != 0

    def __str__(self) -> str:
        parts = [(f"L{loop}" if c == 1 else f"{c}*L{loop}") for loop, c in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return " + ".join(parts).replace("+ -", "- ")


LoopKind = Literal["range", "while", "cond"]


@dataclass
class Loop:
    """A loop (`l3c.range`, `l3c.while_loop`) or conditional block (`l3c.cond`) of the schedule.

    Its body is traced once: the tasks `first_task .. end_task - 1` (program order; nested loops'
    bodies are sub-ranges). A bound or flag is a static int or an `Access` (mode "In") of one
    element of a tensor, read when the loop starts (range bounds), before every iteration (a while
    flag) or when the block is reached (a cond flag), after every earlier writer of it.
    """

    id: int
    kind: LoopKind
    loc: str                                   # "file.py:LINE" of the `for` / `with` statement
    parent: int | None                         # enclosing loop/cond id
    first_task: int
    end_task: int
    start: "int | Access" = 0                  # range: the loop variable's first value
    stop: "int | Access" = 0                   # range: exclusive bound
    step: "int | Access" = 1                   # range: nonzero
    flag: "Access | None" = None               # while / cond
    max_iterations: int | None = None          # while
    invert: bool = False                       # cond: run the block when the flag is zero
    # --- written by the deps pass: the bound/flag reads' dependencies, as (task, carried) with
    # `carried` as on edges (on the latest earlier instance of the task in sequential order) ---
    reads_after: tuple[tuple[int, bool], ...] = ()    # writers the read waits for
    reads_before: tuple[tuple[int, bool], ...] = ()   # later writers that wait for the read
    scope: tuple[int, ...] = ()    # trace: scopes open at the for/with (dumps nest loops in them)

    @property
    def accesses(self) -> "tuple[Access, ...]":
        """The bound and flag elements this loop reads (a bound is an int or an `Access`)."""
        return tuple(a for a in (self.start, self.stop, self.step, self.flag)
                     if a is not None and not isinstance(a, (int, Affine)))


def has_carried(graph: nx.DiGraph, loops: dict[int, Any]) -> bool:
    """Whether any edge of a program's graph is carried (only programs with loops have such)."""
    return bool(loops) and any(d.get("carried") for _, _, d in graph.edges(data=True))


def iteration_graph(graph: nx.DiGraph, loops: dict[int, Any]) -> nx.DiGraph:
    """The graph without carried edges: a DAG in program order (the graph itself, or a view of
    it, when the program has carried edges)."""
    if not has_carried(graph, loops):
        return graph
    return nx.subgraph_view(graph, filter_edge=lambda u, v: not graph.edges[u, v].get("carried"))
