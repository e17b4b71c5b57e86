"""scopes: when each tensor is first and last used, and when its scope closed.

A tensor created inside `with l3c.scope():` is dead once the scope closes, i.e. after the last task
recorded inside that scope (a task is inside scope s when s is on its `scope` path). Use after the
scope is rejected by the tracer already; this pass checks it again (defence in depth, and for IR
built by hand) and raises `TraceError` at the offending call's line.

An intermediate created in a loop body or cond block (`TensorInfo.loops`) lives one iteration or
block, like a scope's: using it after the loop, or returning it, is a `TraceError` too, and its
`dead_after` is the body's last task (the memory pass still keeps its bytes for the whole
outermost loop, since every iteration uses them again).

The uses it derives them from (`TensorUses`) come from the deps pass's walk over the tasks when
the pass manager runs both (handed over), else from its own walk.

Writes `TensorInfo.first_use`, `last_use`, `dead_after` for every tensor, and
`program.reports["warnings"]`: one line per intermediate that is written but never read (and not
returned); a loop's bound or a while/cond flag is a read. No switch: it only annotates.
"""
from __future__ import annotations

from ..errors import TraceError
from ..ir import Access, Program
from .graphs import task_list
from .results import result_refs


_NAMES = {"range": "range", "while": "while_loop", "cond": "cond"}


def result_tensors(program: Program) -> set[int]:
    """Tensor ids the jitted function returns (they must survive the whole run)."""
    return {ref.tensor for ref in result_refs(program.results)}


def used_outside(task, info) -> bool:
    """Does `task` use tensor `info`, made in a scope or loop body, outside it?"""
    return bool(info.scope and task.scope[:len(info.scope)] != info.scope
                or info.loops and task.loops[:len(info.loops)] != info.loops)


def _check_use(program: Program, task, info) -> None:
    """Refuse a use of a tensor made in a scope or loop body outside it."""
    if info.scope and task.scope[:len(info.scope)] != info.scope:
        raise TraceError(
            f"{task.loc}: {task.short_kernel} uses tensor {info.name} "
            f"(shape {info.shape}, {info.dtype}, created at {info.loc}) after the "
            f"l3c.scope it was created in closed; create it outside that scope instead")
    if info.loops and task.loops[:len(info.loops)] != info.loops:
        loop = program.loops[info.loops[-1]]
        raise TraceError(
            f"{task.loc}: {task.short_kernel} uses tensor {info.name} (shape "
            f"{info.shape}, {info.dtype}, created at {info.loc}) outside the l3c.{_NAMES[loop.kind]} "
            f"at {loop.loc} it was created in (it lives one iteration or block); create "
            f"it before that loop instead")


class TensorUses:
    """What the pass derives its fields from: per tensor the first and last task touching it and
    whether any task reads or writes it, per scope id the last task inside it, and the first use
    of a tensor outside the scope or loop body it was made in. `_walk` records it from every
    task; the deps pass's walk records it on the way (`ConflictSweep`) and the pass manager hands
    it over, so a large program's tasks are walked once for both passes."""

    __slots__ = ("first", "last", "read", "written", "last_in_scope", "confined", "misplaced")

    def __init__(self, tensors: list) -> None:
        n_tensors = len(tensors)
        self.first: list[int | None] = [None] * n_tensors
        self.last: list[int | None] = [None] * n_tensors
        self.read = bytearray(n_tensors)
        self.written = bytearray(n_tensors)
        self.last_in_scope: dict[int, int] = {}
        # Only tensors made in a scope or loop can be used out of place: the rest skip the test.
        self.confined = [bool(info.scope or info.loops) for info in tensors]
        self.misplaced: tuple | None = None        # (task, tensor info) of the first such use


def _walk(program: Program) -> TensorUses:
    """The uses of every tensor, in one walk over the tasks."""
    tensors = program.tensors
    uses = TensorUses(tensors)
    first, last, read, written = uses.first, uses.last, uses.read, uses.written
    last_in_scope, confined = uses.last_in_scope, uses.confined
    for task in task_list(program):
        v, scope = task.id, task.scope
        for sid in scope:
            last_in_scope[sid] = v
        for access in task.args:
            if not isinstance(access, Access):
                continue
            t = access.tensor
            if confined[t] and uses.misplaced is None and used_outside(task, tensors[t]):
                uses.misplaced = (task, tensors[t])
            if first[t] is None:
                first[t] = v
            last[t] = v
            mode = access.mode
            if mode != "Out":
                read[t] = 1
            if mode != "In":
                written[t] = 1
    return uses


def run(program: Program, uses: TensorUses | None = None) -> Program:
    """The scopes pass (see module docstring). `uses`: the program's uses if already recorded
    (by the deps pass's walk, which must be of this program as it is)."""
    tensors = program.tensors
    if uses is None:
        uses = _walk(program)
    if uses.misplaced is not None:
        _check_use(program, *uses.misplaced)
    first, last, read, written = uses.first, uses.last, uses.read, uses.written
    last_in_scope = uses.last_in_scope
    for loop in program.loops.values():
        for access in loop.accesses:                              # bounds and flags are reads
            read[access.tensor] = 1
    returned = result_tensors(program)
    warnings = program.reports.setdefault("warnings", [])
    warned = set(warnings)
    for info in tensors:
        info.first_use = first[info.id]
        info.last_use = last[info.id]
        info.dead_after = None
        if info.scope:
            if info.id in returned:
                raise TraceError(f"{info.loc}: tensor {info.name} (shape {info.shape}, "
                                 f"{info.dtype}) is returned but was created inside an l3c.scope; "
                                 f"create it outside the scope to return it")
            info.dead_after = last_in_scope.get(info.scope[-1], info.last_use)
        if info.loops:
            if info.id in returned:
                raise TraceError(f"{info.loc}: tensor {info.name} (shape {info.shape}, "
                                 f"{info.dtype}) is returned but was created inside a loop or "
                                 f"cond block; create it before the loop to return it")
            body_end = program.loops[info.loops[-1]].end_task - 1
            if info.dead_after is None or body_end < info.dead_after:
                info.dead_after = body_end
        if (info.kind == "intermediate" and written[info.id] and not read[info.id]
                and info.id not in returned):
            message = f"tensor {info.name} ({info.loc}) is written but never read"
            if message not in warned:
                warned.add(message)
                warnings.append(message)
    return program
