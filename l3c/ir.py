"""The one IR schema of l3c: typed records for tensors and tasks, held in a networkx graph.

The tracer (`l3c.trace`) builds a `Program`; every pass in `l3c.passes` writes its results into
the named fields below (never ad-hoc attributes); code generation reads the placed program. Every
stage imports this module, so it imports no other part of l3c (`docs/ir.md` documents the schema).

Graph: nodes are task ids `0..n-1` in program order, carrying `task` (the `Task` record) and the
public attributes `Program.sync_node_attrs` mirrors from it. An edge u -> v means v waits for u; it
has `kinds` (of "RAW", "WAR", "WAW"), `tensors` (the ids that caused it), `added_by` ("deps", or
"memory": an ordering edge letting two tensors share arena space) and `carried`. A carried edge
(only with loops; maybe backwards or a self-loop) makes an instance of v wait for u's latest instance
in an earlier iteration; the others, within one iteration, form the DAG the passes walk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import networkx as nx
import numpy as np

Mode = Literal["In", "Out", "InOut"]
WorkerKind = Literal["chip", "sub"]
TensorKind = Literal["input", "intermediate"]
LoopKind = Literal["range", "while", "cond"]
Scalar = Union[int, float, bool, str, None]
# A result tree: ResultRef, or ("tuple" | "list", [trees]), or ("dict", [(key, tree)]) (passes/results.py).
ResultTree = Any

PASS_ORDER = ("trace", "deps", "scopes", "fuse", "schedule", "memory")


@dataclass(frozen=True)
class Shift:
    """How far a `Region` moves per unit of one loop variable (in elements of the base tensor).

    In loop bodies a view may move with loop variables (`x[i]`, `x[4 * i : 4 * i + 4]`): its region's
    `offset` and `box` are the view at all variables 0 (maybe outside the tensor); at values `v` the
    offset adds sum(v[l] * shift.offset), each box start sum(v[l] * shift.box[axis]), over `shifts`
    (one per loop variable, by loop id). Shape and strides never depend on loop variables.
    """

    loop: int                      # the loop id (`Program.loops`) whose variable moves the view
    offset: int                    # change of `Region.offset`
    box: tuple[int, ...]           # change of each base axis's box start (0 for unmoved axes)


@dataclass(frozen=True)
class Region:
    """The elements of one base tensor that a view touches, and how the view maps onto them.

    `offset`, `shape` and `strides` are in *elements* of the C-contiguous base tensor (numpy's view
    mapping divided by the item size): view element (i0, i1, ...) is base flat element
    `offset + sum(i_k * strides[k])`.

    `box`, when not None, describes the same element set as a product over the *base* axes of one
    arithmetic progression each, `(start, count, step)` with `count >= 0` and `step >= 1`. Views made
    by basic slicing and transposition keep a box, which makes overlap tests exact (rows `x[0::2]`
    and `x[1::2]` are disjoint). A reshape of a non-trivial view may lose it (`box=None`); overlap
    tests then fall back to exact enumeration for small regions or a conservative bound.
    """

    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    box: tuple[tuple[int, int, int], ...] | None
    shifts: tuple[Shift, ...] = ()     # in loop bodies: how the view moves with loop variables

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @staticmethod
    def whole(shape: tuple[int, ...]) -> "Region":
        """The region of a whole C-contiguous tensor of `shape`."""
        strides, acc = [], 1
        for d in reversed(shape):
            strides.append(acc)
            acc *= d
        return Region(0, tuple(shape), tuple(reversed(strides)), tuple((0, d, 1) for d in shape))

    def is_whole(self, base_shape: tuple[int, ...]) -> bool:
        return self.box is not None and all(
            c == d and (s == 1 or c <= 1) and st == 0 for (st, c, s), d in zip(self.box, base_shape))

    def __str__(self) -> str:
        if self.box is None:
            return f"<off={self.offset} shape={list(self.shape)} strides={list(self.strides)}>"
        parts = []
        for start, count, step in self.box:
            if count == 0:
                parts.append("0:0")
            elif count == 1:
                parts.append(str(start))
            else:
                stop = start + (count - 1) * step + 1
                parts.append(f"{start}:{stop}" + (f":{step}" if step != 1 else ""))
        return "[" + ",".join(parts) + "]"


@dataclass(slots=True)     # slots: small records, cheap to copy (`passes/copying.py`)
class TensorInfo:
    """A tensor the program touches: an array argument or an intermediate (views are `Region`s of one)."""

    id: int
    name: str                      # "arg0", "arg1", ... for inputs; "t0", "t1", ... for intermediates
    kind: TensorKind
    shape: tuple[int, ...]
    dtype: str                     # numpy dtype name, e.g. "float32"
    loc: str                       # file.py:LINE where it was created (the jit call site for inputs)
    scope: tuple[int, ...] = ()    # path of scope ids it was created in; () = function level
    loops: tuple[int, ...] = ()    # loops/conds it was created in (lives one iteration or block)
    zero_init: bool = False        # created by l3c.zeros (its fill is also recorded as a task)
    # --- written by the scopes pass ---
    first_use: int | None = None   # first task (program order) that accesses it
    last_use: int | None = None    # last task that accesses it
    dead_after: int | None = None  # task id after which its scope closed (None: lives to the end)
    # --- written by the memory pass (intermediates only; inputs live in the staging area) ---
    arena_offset: int | None = None

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.itemsize * math.prod(self.shape)


@dataclass(frozen=True)
class Access:
    """A tensor argument of a task: which base tensor, which region of it, and how it is used."""

    param: str                     # the kernel's parameter name
    tensor: int                    # base tensor id
    region: Region
    mode: Mode

    @property
    def reads(self) -> bool:
        return self.mode in ("In", "InOut")

    @property
    def writes(self) -> bool:
        return self.mode in ("Out", "InOut")


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


@dataclass(frozen=True)
class ScalarArg:
    """A static Python scalar argument, passed by value."""

    param: str
    value: Scalar | Affine         # Affine: a loop variable expression, a Python int per iteration


Arg = Union[Access, ScalarArg]


@dataclass(slots=True)     # slots: one per kernel call, copied for the passes (`passes/copying.py`)
class Task:
    """One kernel call recorded while tracing."""

    id: int
    kernel: str                    # import path "module:qualname", resolvable in a worker
    worker: WorkerKind
    args: tuple[Arg, ...]          # in the kernel's parameter order
    loc: str                       # user's file.py:LINE of the call
    scope: tuple[int, ...] = ()    # path of open scope ids at the call
    loops: tuple[int, ...] = ()    # enclosing loop/cond ids, outermost first (`Program.loops`)
    pin: int | None = None         # kernel.on(chip): required chip (or sub worker) index
    # --- groups: set by l3c.group at trace time, or by the fuse pass ---
    group: int | None = None       # index into Program.groups
    group_rank: int = 0
    # --- written by the schedule pass ---
    chip: int | None = None        # placement: chip index for chip kernels, sub worker index for sub
    queue_pos: int | None = None   # position in its worker's queue

    @property
    def accesses(self) -> tuple[Access, ...]:
        return tuple(a for a in self.args if isinstance(a, Access))

    @property
    def short_kernel(self) -> str:
        return self.kernel.rsplit(":", 1)[-1]


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
    start: int | Access = 0                    # range: the loop variable's first value
    stop: int | Access = 0                     # range: exclusive bound
    step: int | Access = 1                     # range: nonzero
    flag: Access | None = None                 # while / cond
    max_iterations: int | None = None          # while
    invert: bool = False                       # cond: run the block when the flag is zero
    # --- written by the deps pass: the bound/flag reads' dependencies, (task, carried as on edges) ---
    reads_after: tuple[tuple[int, bool], ...] = ()    # writers the read waits for
    reads_before: tuple[tuple[int, bool], ...] = ()   # later writers that wait for the read
    scope: tuple[int, ...] = ()    # trace: scopes open at the for/with (dumps nest loops in them)

    @property
    def accesses(self) -> tuple[Access, ...]:
        """The bound and flag elements this loop reads (a bound is an int or an `Access`)."""
        return tuple(a for a in (self.start, self.stop, self.step, self.flag)
                     if a is not None and not isinstance(a, (int, Affine)))


@dataclass(frozen=True)
class ResultRef:
    """A result of the jitted function: a view of a tensor, copied out into a fresh array."""

    tensor: int
    region: Region
    dtype: str


@dataclass
class Param:
    """One argument of the jitted function: a tensor input, or a static value (part of the cache key)."""

    name: str
    tensor: int | None = None      # tensor id for array arguments
    static: Any = None             # the value for static arguments


@dataclass
class MemoryReport:
    """What the memory plan uses (`compiled.memory`, docs/passes.md). Bytes of intermediates only."""

    arena_bytes: int = 0           # bytes the plan's intermediate area spans
    lower_bound_bytes: int = 0     # largest total of intermediates live at one point of program order
    naive_bytes: int = 0           # sum of all intermediates
    staging_bytes: int = 0         # inputs' area, placed before the intermediates in the shared arena
    added_edges: int = 0           # ordering edges the plan added to allow reuse
    alignment: int = 64            # of every arena offset; 0: packed at each tensor's item size

    def __str__(self) -> str:
        return (f"arena {self.arena_bytes} B (lower bound {self.lower_bound_bytes} B, "
                f"naive {self.naive_bytes} B)")


def flat_indices(offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """Sorted distinct flat indices of the base tensor that a strided view (in elements) touches:
    the one enumeration of a view's elements (`l3c.passes.regions.elements` caches it per region)."""
    idx = np.array(offset, dtype=np.int64)
    for n, st in zip(shape, strides):
        idx = idx[..., None] + np.arange(n, dtype=np.int64) * st
    idx = idx.ravel()
    if idx.size > 1 and not (idx[1:] > idx[:-1]).all():   # reversed, transposed, overlapping
        idx = np.unique(idx)
    return idx


@dataclass
class CostModel:
    """What the schedule estimates run time with, in one unit (docs/passes.md, "Costs").

    `kernel_costs` maps a kernel's registry key ("module:qualname") or short name to the cost of one
    call: the tracer records `@l3c.kernel(cost=...)` hints, and `PassOptions.kernel_costs` (from
    `l3c.jit(costs=...)`, a saved `l3c profile`) overrides them. Other kernels cost `default_cost`.
    """

    kernel_costs: dict[str, float] = field(default_factory=dict)
    default_cost: float = 1.0
    handoff_cost: float = 0.0          # added to an edge between two workers
    placement_slack: float = 0.0       # a task may finish this much later on a worker holding its data
    host_latency: float = 2.0          # one message between hosts
    host_byte_cost: float = 1.0 / (1 << 20)   # per byte moved between hosts

    def cost(self, kernel: str) -> float:
        """The cost of one call of `kernel` (registry key)."""
        costs = self.kernel_costs
        found = costs.get(kernel)
        if found is None and costs:
            found = costs.get(kernel.rsplit(":", 1)[-1])
        return float(self.default_cost if found is None else found)


@dataclass
class Config:
    """The jit options a program was traced under."""

    chips: int = 1
    sub_workers: int = 0
    hosts: int = 1
    fuse_groups: bool = True

    # Chips and sub workers are numbered globally, host by host: chip g is local chip g % chips on host
    # g // chips (sub workers likewise); a host's worker slots are its chips 0..C-1, then its sub workers
    # C..C+S-1 (`l3c.runtime.context.global_worker` goes back).
    def units(self, worker: str) -> int:
        """How many chips (worker "chip") or sub workers there are over all hosts."""
        return (self.chips if worker == "chip" else self.sub_workers) * self.hosts

    def host_of_unit(self, worker: str, unit: int) -> int:
        """The host of global chip (worker "chip") or sub worker `unit`."""
        if self.hosts == 1:
            return 0
        return unit // max(1, self.chips if worker == "chip" else self.sub_workers)

    def units_of_host(self, worker: str, host: int) -> range:
        """The global chips (worker "chip") or sub workers of `host`."""
        per = self.chips if worker == "chip" else self.sub_workers
        return range(host * per, (host + 1) * per)

    def slot_of_unit(self, worker: str, unit: int) -> int:
        """The local worker slot of global chip or sub worker `unit` on its host."""
        if worker == "chip":
            return unit % self.chips
        return self.chips + unit % max(1, self.sub_workers)


@dataclass
class Program:
    """A traced orchestration function and everything the passes learned about it."""

    name: str                                   # "module:qualname" of the jitted function
    loc: str                                    # file.py:LINE of its definition
    config: Config
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    tensors: list[TensorInfo] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    results: ResultTree = None
    groups: list[list[int]] = field(default_factory=list)   # task ids of each group, in rank order
    scopes: dict[int, tuple[int, ...]] = field(default_factory=dict)  # scope id -> its path
    loops: dict[int, Loop] = field(default_factory=dict)     # loop/cond id -> its record
    memory: MemoryReport = field(default_factory=MemoryReport)
    passes_run: list[str] = field(default_factory=list)
    costs: CostModel = field(default_factory=CostModel)    # the schedule's cost model (trace, passes)
    # Pass reports for the dump ("critical_path", "warnings": list[str], ...); each pass documents its keys.
    reports: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks(self) -> list[Task]:
        """Tasks in program order."""
        return [self.graph.nodes[n]["task"] for n in sorted(self.graph.nodes)]

    def task(self, task_id: int) -> Task:
        return self.graph._node[task_id]["task"]      # the node dict itself, without a view

    def add_task(self, task: Task) -> None:
        self.graph.add_node(task.id, task=task)
        self.sync_node_attrs(task.id)

    def sync_node_attrs(self, task_id: int | None = None) -> None:
        """Mirror the public node attributes from the Task records (call after changing a Task)."""
        nodes = self.graph._node
        for n in (nodes if task_id is None else (task_id,)):
            attrs = nodes[n]
            t: Task = attrs["task"]
            attrs.update(kernel=t.kernel, worker=t.worker, chip=t.chip, group=t.group, loc=t.loc,
                         host=self.host_of(t), loops=t.loops)

    def host_of(self, task: Task) -> int:
        """The host a placed task runs on (numbering: `Config`); 0 before placement."""
        if task.chip is None:
            return 0
        return self.config.host_of_unit(task.worker, task.chip)

    def slot_of(self, task: Task) -> int:
        """A placed task's worker slot on its own host: chips 0..C-1, then sub workers (`Config`)."""
        if task.chip is None or task.queue_pos is None:
            raise ValueError(f"task {task.id} ({task.short_kernel} at {task.loc}) is not placed: "
                             "run the schedule pass before lowering")
        return self.config.slot_of_unit(task.worker, task.chip)

    def add_dependency(self, u: int, v: int, kind: str, tensor: int, added_by: str = "deps",
                       carried: bool = False) -> None:
        """Record that task v waits for task u because of `kind` on `tensor` (u < v), or, with
        `carried`, for u's latest instance in an earlier iteration (any u, v). A dependency within
        one iteration implies the carried one, so a pair keeps `carried=False` once it has one."""
        if self.graph.has_edge(u, v):
            data = self.graph.edges[u, v]
            data["kinds"] = data["kinds"] | {kind}          # may be a frozen set other edges share
            data["tensors"] = data["tensors"] | {tensor}
            if not carried:
                data["carried"] = False
        else:
            self.graph.add_edge(u, v, kinds={kind}, tensors={tensor}, added_by=added_by,
                                carried=carried)

    @property
    def has_carried(self) -> bool:
        """Whether any edge is carried (only programs with loops have such edges)."""
        return bool(self.loops) and any(d.get("carried") for _, _, d in self.graph.edges(data=True))


# ---- how a call's arrays map to the program's input tensors (tracing and every run) ----------
def input_aliases(values: list[Any] | tuple[Any, ...]) -> tuple[tuple[int, ...], tuple[int, int] | None]:
    """For each argument the index of the first one that is the same view of the same memory (its own
    if none; -1 for non-arrays), and the first pair of arrays overlapping otherwise (None if none).

    The same array passed twice is one tensor of the trace, so a write through one name is seen
    through the other, as with plain numpy; a partial overlap cannot be one tensor: callers refuse it."""
    aliases: list[int] = []
    arrays = [(i, v) for i, v in enumerate(values) if isinstance(v, np.ndarray)]
    first_of = {}
    for i, v in enumerate(values):
        if not isinstance(v, np.ndarray):
            aliases.append(-1)
            continue
        aliases.append(i)
        for j, w in arrays:
            if j >= i:
                break
            if not np.may_share_memory(v, w):
                continue
            if (v.__array_interface__["data"][0] == w.__array_interface__["data"][0]   # the same view
                    and v.shape == w.shape and v.strides == w.strides and v.dtype == w.dtype):
                aliases[i] = first_of.get(j, j)
                break
            try:
                overlap = np.shares_memory(v, w, max_work=10_000)
            except np.exceptions.TooHardError:
                overlap = True
            if overlap:
                return tuple(aliases), (j, i)
        first_of[i] = aliases[i]
    return tuple(aliases), None
