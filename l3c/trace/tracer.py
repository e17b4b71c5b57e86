"""The tracer: run an orchestration function on proxies and record its kernel calls as an IR Program.

`trace(fn, args)` is the entry point. It classifies the arguments (`arguments.py`: arrays become
input tensors, scalars and `static_argnames` stay static values), runs `fn` with `Tensor` proxies
while a `Tracer` is the current one on this thread, and returns a `Program` whose graph has one
node per kernel call in program order (a loop body's calls once, `loops.py`) and no edges yet (the
`deps` pass adds them). Every misuse raises `TraceError` at the user's line.
"""
from __future__ import annotations

import gc
import inspect
import sys
from itertools import islice
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..ir import (Access, Config, Param, Program, ResultRef, ScalarArg, Task, TensorInfo,  # noqa: F401
                  input_aliases)   # input_aliases: re-exported (l3c.trace)
from .arguments import (SCALARS, BoundArg, bind_arguments, bound_aliases,  # noqa: F401
                        definition_location)
from .arrayspec import ArraySpec
from .callargs import bind_call, other_argument
from .context import _set_tracer, current_tracer
from .newtensors import DTYPES, checked_shape, dtype_and_name
from .kernel import Kernel, PinnedKernel
from .records import make_scalar
from .proxy import Tensor, new_whole
from .strides import whole_geometry
from .shifted import check_group_members
from ..errors import TraceError
from .source import frame_loc, return_location, short_loc, trace_error, user_location



# ---- the tracer ---------------------------------------------------------------------------------
# The node attributes of a traced task, in `Program.sync_node_attrs`'s order (before placement:
# no chip, host 0).
_NODE: dict[str, Any] = {"task": None, "kernel": None, "worker": None, "chip": None, "group": None,
                         "loc": None, "host": 0, "loops": ()}

_new = object.__new__
_NO_KEYWORDS: dict[str, Any] = {}     # (read only)

_SCOPE_OWNER = ("scope", -1)     # what ended a tensor that died at the end of its l3c.scope()


class Tracer:
    """Records one trace into `program`. Lives on one thread while the function runs.

    `new_tensor`, `close_scope` and `record_group` are called by `context.py` on the user's
    behalf: they locate the user's line from frame 2 (the caller of `context.py`), not their own
    frame, since every frame object walked past would be made only to be skipped."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.active = True
        self.scope_stack: list[int] = []
        self.scope_path: tuple[int, ...] = ()     # tuple(scope_stack), shared by the records
        self._nodes = program.graph._node
        self._nodes_at: dict[str, dict[str, Any]] = {}   # loc -> node attributes without the task
        self._succ = program.graph._succ          # (written at the end: `add_adjacency`)
        self._pred = program.graph._pred
        self.dead: dict[int, str] = {}            # tensor id -> "file.py:LINE" where its scope ended
        self.intermediates = 0                    # how many intermediates so far (names t0, t1, ...)
        self.created_in: dict[int, list[int]] = {}   # scope id -> tensors created while it was open
        # loops (`l3c.trace.loops`): the open loop/cond ids, the intermediates each body created,
        # what ended a dead tensor's life (("scope", id) or ("loop", id)), and the message of a
        # body left early by `break`/`return` (raised by the next traced operation)
        self.loop_stack: list[int] = []
        self.loop_created: dict[int, list[int]] = {}
        self.ended_by: dict[int, tuple[str, int]] = {}
        self.abandoned: str | None = None
        self._admitted: set[Kernel] = set()       # kernels called so far (`_admit`)
        self._wholes: dict[tuple[int, ...], tuple] = {}     # shape -> `whole_geometry(shape)`

    def whole_geometry(self, shape: tuple[int, ...]) -> tuple:
        """What whole tensors of `shape` (ints > 0) share in this trace: strides, axes, lines,
        region (`proxy.whole_geometry`) and the dict of views sliced from them."""
        geometry = self._wholes.get(shape)
        if geometry is None:
            geometry = self._wholes[shape] = whole_geometry(shape) + ({},)
        return geometry

    # -- tensors
    def new_input(self, name: str, array: np.ndarray | ArraySpec, loc: str) -> Tensor:
        info = TensorInfo(id=len(self.program.tensors), name=name, kind="input",
                          shape=tuple(array.shape), dtype=array.dtype.name, loc=loc)
        self.program.tensors.append(info)
        return Tensor(self, info.id, info.shape, array.dtype)

    def new_tensor(self, shape: Any, dtype: Any, zero_init: bool = False) -> Tensor:
        if type(shape) is tuple:
            for d in shape:
                if type(d) is not int or d < 0:
                    shape = checked_shape(shape)
                    break
        else:
            shape = checked_shape(shape)
        try:
            dt, dtype_name = DTYPES[dtype]
        except (KeyError, TypeError):              # new, or an unhashable spelling
            dt, dtype_name = dtype_and_name(dtype)
        n = self.intermediates                    # (counting them per call was quadratic)
        self.intermediates += 1
        tensors = self.program.tensors
        tid = len(tensors)
        loop_stack = self.loop_stack
        # positional (field order of `TensorInfo`): keywords cost more per tensor
        info = TensorInfo(tid, f"t{n}", "intermediate", shape, dtype_name,
                          frame_loc(sys._getframe(2)), self.scope_path,
                          tuple(loop_stack) if loop_stack else (), zero_init)
        tensors.append(info)
        for sid in self.scope_stack:
            self.created_in.setdefault(sid, []).append(tid)
        if loop_stack:
            self.check_abandoned()
            self.loop_created.setdefault(loop_stack[-1], []).append(tid)
        if 0 in shape:
            proxy = Tensor(self, tid, shape, dt)
        else:
            geometry = self._wholes.get(shape)
            proxy = new_whole(self, tid, shape, dt,
                              geometry if geometry is not None else self.whole_geometry(shape))
        if zero_init:
            from .builtins import fill_zeros
            self.record_call(fill_zeros, (proxy,), {}, info.loc)
        return proxy

    def check_usable(self, proxy: Tensor) -> None:
        """Raise if `proxy` belongs to another (or a finished) trace or its scope has ended."""
        info = self.program.tensors[proxy._tensor]
        if not self.active or current_tracer() is not self:
            raise trace_error(f"tensor {info.name} ({proxy._desc()}, created at {info.loc}) "
                              "belongs to another trace that has finished",
                              "tensors exist only inside the l3c.jit call that created them; pass "
                              "arrays as arguments instead of keeping proxies around")
        if proxy._tensor in self.dead:
            raise trace_error(f"tensor {info.name} ({proxy._desc()}, created at {info.loc}) is used "
                              f"after {self._ended(proxy._tensor)}", self._ended_fix(proxy._tensor))
        if proxy._shifts:
            from .loops import check_terms_live
            check_terms_live(self, proxy._shifts, f"the view {proxy._desc()} of {info.name}")

    def _ended(self, tensor: int) -> str:
        """What ended a dead tensor's life, and where."""
        kind, owner = self.ended_by.get(tensor, ("scope", -1))
        if kind == "loop":
            loop = self.program.loops[owner]
            what = "block" if loop.kind == "cond" else "iteration"
            api = "while_loop" if loop.kind == "while" else loop.kind
            return (f"the {what} of its l3c.{api} at {loop.loc} ended at {self.dead[tensor]} "
                    f"(intermediates created in a loop body or cond block live one {what})")
        return f"its l3c.scope() ended at {self.dead[tensor]}"

    def _ended_fix(self, tensor: int) -> str:
        if self.ended_by.get(tensor, ("scope",))[0] == "loop":
            return "create it before the loop (or block) to use it after it or carry it between iterations"
        return "create it before the `with l3c.scope():` block to use it later"

    def check_abandoned(self) -> None:
        """Raise the TraceError of a loop body left early by `break`/`return` (`l3c.trace.loops`)."""
        if self.abandoned is not None:
            raise TraceError(self.abandoned)

    def end_lifetimes(self, tensors: Iterable[int], owner: tuple[str, int], place: str) -> None:
        """The intermediates `tensors` die at `place` ("file.py:LINE" where a scope or loop body
        ended)."""
        last_task = len(self.program.graph._node) - 1
        infos, dead, ended_by = self.program.tensors, self.dead, self.ended_by
        for tid in tensors:
            if tid not in dead:
                dead[tid] = place
                ended_by[tid] = owner
                if last_task >= 0:
                    infos[tid].dead_after = last_task

    # -- scopes
    def open_scope(self) -> int:
        self.check_abandoned()
        sid = len(self.program.scopes)
        self.program.scopes[sid] = self.scope_path = self.scope_path + (sid,)
        self.scope_stack.append(sid)
        return sid

    def close_scope(self, sid: int | None) -> None:
        if sid in self.scope_stack:
            del self.scope_stack[self.scope_stack.index(sid):]
            self.scope_path = tuple(self.scope_stack)
        # Only the tensors created inside the scope (walking all tensors per scope was quadratic).
        self.end_lifetimes(self.created_in.pop(sid, ()) if sid is not None else (), _SCOPE_OWNER,
                           frame_loc(sys._getframe(2)))

    # -- kernel calls
    def record_call(self, kernel: Kernel, args: Sequence[Any], kwargs: dict[str, Any],
                    loc: str | None = None, *, pin: int | None = None, group: int | None = None,
                    rank: int = 0) -> int:
        """Record one call of `kernel` as a task made at `loc` (the user's line when not given)."""
        if kernel not in self._admitted:
            self._admit(kernel)
        if pin is not None:
            limit = self.program.config.units(kernel.worker)
            if pin >= limit:
                raise trace_error(f"kernel {kernel.fn.__qualname__}.on({pin}) but there are only "
                                  f"{limit} {'chips' if kernel.worker == 'chip' else 'sub workers'}",
                                  f"pin to 0..{limit - 1} or raise the jit's worker count")
        params = kernel.params
        if kwargs or len(args) != len(params):
            args = bind_call(kernel, args, kwargs)
        call_args: list[Any] = []
        dead = self.dead
        for pair, value in zip(params, args):
            kind = type(value)
            if (kind is Tensor and value._tracer is self and pair[1] is not None
                    and not value._shifts and value._tensor not in dead):
                # a view passed again with the same parameter name and mode shares its record
                made_for = value._access_for
                if made_for is pair or (made_for is not None and made_for == pair):
                    call_args.append(value._access)
                    continue
                region = value._region
                # `make_access(name, tensor, region, mode)`, inline (most calls make one)
                access = _new(Access)
                fields = access.__dict__
                fields["param"] = pair[0]
                fields["tensor"] = value._tensor
                fields["region"] = region if region is not None else value.region
                fields["mode"] = pair[1]
                value._access = access
                value._access_for = pair
                call_args.append(access)
            else:
                name, mode = pair
                if mode is None and (kind is float or kind is int or value is None
                                     or kind is bool or kind is str):
                    call_args.append(make_scalar(name, value))
                else:
                    call_args.append(other_argument(kernel, name, mode, value))
        if kernel.native is not None:
            kernel.check_native_call(dict(zip(kernel.modes, args)))
        loop_stack = self.loop_stack
        if loop_stack or self.abandoned is not None:
            self.check_abandoned()
        loops = tuple(loop_stack) if loop_stack else ()
        if loc is None:
            loc = frame_loc(sys._getframe())
        nodes = self._nodes
        tid = len(nodes)
        name, worker = kernel.name, kernel.worker
        # `Task(tid, name, ...)`: its fields set in their order on a new instance, which costs
        # less than the dataclass's __init__ (a Task has no checks and no __post_init__)
        task = _new(Task)
        task.id = tid
        task.kernel = name
        task.worker = worker
        task.args = tuple(call_args)
        task.loc = loc
        task.scope = self.scope_path
        task.loops = loops
        task.pin = pin
        task.group = group
        task.group_rank = rank
        task.chip = task.queue_pos = None
        # `Program.add_task` without networkx's per-call bookkeeping: the trace's graph is new and
        # has no edges, so a node is its attribute dict (what `sync_node_attrs` writes, copied
        # from a template of the same keys in the same order); its two empty adjacency dicts are
        # added when the trace ends (`add_adjacency`). A call outside a group copies the attributes
        # of the last such call at its line when they match (the same kernel in the same loops).
        if group is None:
            node = self._nodes_at.get(loc)
            if node is None or node["kernel"] is not name or node["loops"] != loops:
                node = self._nodes_at[loc] = _NODE.copy()
                node["kernel"] = name
                node["worker"] = worker
                node["loc"] = loc
                node["loops"] = loops
            node = nodes[tid] = node.copy()
            node["task"] = task
            return tid
        node = nodes[tid] = _NODE.copy()
        node["task"] = task
        node["kernel"] = name
        node["worker"] = worker
        node["group"] = group
        node["loc"] = loc
        node["loops"] = loops
        return tid

    def add_adjacency(self) -> None:
        """Complete the graph: every task recorded so far gets its empty adjacency dicts (in
        program order, as `add_node` would have made them)."""
        succ, pred = self._succ, self._pred
        # the node dict's own keys: the int objects `record_call` made, not a second set of them
        for tid in islice(self.program.graph._node, len(succ), None):
            succ[tid] = {}
            pred[tid] = {}

    def _admit(self, kernel: Kernel) -> None:
        """What the first call of `kernel` in this trace checks and records (its worker kind
        exists; its cost hint goes into the program's cost model)."""
        if kernel.worker == "sub" and self.program.config.sub_workers == 0:
            raise trace_error(f"kernel {kernel.fn.__qualname__} runs on a sub worker but the jit "
                              "has sub_workers=0", "pass sub_workers=1 (or more) to l3c.jit")
        if kernel.cost is not None:
            self.program.costs.kernel_costs[kernel.name] = kernel.cost
        self._admitted.add(kernel)

    def record_group(self, kernel: Any, entries: list[Any]) -> None:
        chips = self.program.config.units("chip")
        if isinstance(kernel, PinnedKernel):
            raise trace_error("l3c.group() got a pinned kernel (kernel.on(chip))",
                              "pass the kernel itself; a group puts each member on its own chip")
        if not isinstance(kernel, Kernel):
            raise trace_error(f"l3c.group() needs an @l3c.kernel, got {type(kernel).__name__}",
                              "decorate the function with @l3c.kernel")
        if kernel.worker != "chip":
            raise trace_error(f"l3c.group() of kernel {kernel.fn.__qualname__}, which runs on a "
                              "sub worker", "groups run on chips; use a chip kernel")
        if len(entries) > chips:
            raise trace_error(f"l3c.group() of {kernel.fn.__qualname__} has {len(entries)} members "
                              f"but the pool has {chips} chips",
                              f"use at most {chips} members, or l3c.jit(chips={len(entries)})")
        if not entries:
            return
        g = len(self.program.groups)
        loc = frame_loc(sys._getframe(2))
        ids = []
        for rank, entry in enumerate(entries):
            if type(entry) is tuple:
                ids.append(self.record_call(kernel, entry, _NO_KEYWORDS, loc, group=g, rank=rank))
            elif isinstance(entry, dict):
                ids.append(self.record_call(kernel, (), entry, loc, group=g, rank=rank))
            else:
                ids.append(self.record_call(kernel, entry, _NO_KEYWORDS, loc, group=g, rank=rank))
        self.program.groups.append(ids)
        if self.loop_stack:
            check_group_members(self.program, ids)

    # -- results
    def result_tree(self, value: Any, where: tuple[str, int]) -> Any:
        if isinstance(value, Tensor):
            if value._tensor in self.dead:
                info = self.program.tensors[value._tensor]
                raise trace_error(f"returned tensor {info.name} ({value._desc()}, created at "
                                  f"{info.loc}) is dead: its l3c.scope() ended at "
                                  f"{self.dead[value._tensor]}",
                                  "create it before the `with l3c.scope():` block to return it",
                                  where)
            value._check_alive()
            return ResultRef(value._tensor, value.region, value.dtype.name)
        if isinstance(value, (tuple, list)):
            kind = "tuple" if isinstance(value, tuple) else "list"
            return (kind, [self.result_tree(v, where) for v in value])
        if isinstance(value, dict):
            return ("dict", [(k, self.result_tree(v, where)) for k, v in value.items()])
        raise trace_error(f"the function returned a {type(value).__name__} ({value!r:.60})",
                          "return a tensor, or a tuple/list/dict of tensors (statics are known "
                          "to the caller already)", where)


def resume_collector() -> None:
    """Re-enable the cyclic collector after a pause, without the collection of everything made
    during the pause: those objects all sit in the youngest generation, so the next allocation
    would trigger a collection walking every one of them (about a quarter of a large trace's
    time), and later ones walk them again as they age. `gc.freeze()` + `gc.unfreeze()` move every
    tracked object into the oldest generation at once (constant time): they are examined at the
    next full collection instead, like any long-lived object; nothing is exempt from collection."""
    gc.freeze()
    gc.unfreeze()
    gc.enable()


def trace(fn: Callable, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
          config: Config | None = None, static_argnames: Iterable[str] = (),
          bound: list[BoundArg] | None = None) -> Program:
    """Trace `fn(*args, **kwargs)` into a Program (tasks, tensors, params, results; no edges).

    `bound` may pass the already classified arguments (from `bind_arguments`) to skip binding again.
    """
    if bound is None:
        bound = bind_arguments(fn, args, kwargs, static_argnames)
    def_file, def_line = definition_location(fn)
    program = Program(name=f"{fn.__module__}:{fn.__qualname__}", loc=short_loc(def_file, def_line),
                      config=config or Config())
    program.passes_run.append("trace")
    tracer = Tracer(program)
    call_filename, call_line = user_location()
    # Inputs are located at the jit call; from the CLI there is no user call, so use the definition.
    call_loc = short_loc(call_filename, call_line) if call_line else program.loc
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    aliases = bound_aliases(bound, (call_filename, call_line) if call_line else (def_file, def_line))
    proxies: dict[int, Any] = {}
    for i, arg in enumerate(bound):
        if arg.is_array:
            if aliases[i] != i:                       # the same array again: the same tensor
                value: Any = proxies[aliases[i]]
            else:
                value = proxies[i] = tracer.new_input(f"arg{i}", arg.value, call_loc)
            program.params.append(Param(arg.name, tensor=value._tensor))
        else:
            value = arg.value
            program.params.append(Param(arg.name, static=arg.value))
        if arg.keyword_only:
            keywords[arg.name] = value
        else:
            positional.append(value)

    previous = _set_tracer(tracer)
    # A trace allocates records that live as long as the program and make no cycles; the cyclic
    # collector's passes over them (each longer as the program grows) cost a third of the time of
    # a large trace, so it is paused while the function runs (see `resume_collector`).
    collecting = gc.isenabled()
    gc.disable()
    try:
        out = fn(*positional, **keywords)
        tracer.check_abandoned()
        if tracer.loop_stack:
            loop = program.loops[tracer.loop_stack[-1]]
            raise trace_error(f"the {loop.kind} loop at {loop.loc} is still open when the "
                              "function returns (its iterator was not run to the end)",
                              "iterate l3c.range/l3c.while_loop only with a plain `for` loop",
                              (def_file, def_line))
        if out is not None:
            try:
                program.results = tracer.result_tree(out, (def_file, def_line))
            except TraceError:
                where = return_location(inspect.unwrap(fn))
                if where is None:
                    raise
                program.results = tracer.result_tree(out, where)   # raises again, at the return
    finally:
        tracer.add_adjacency()
        if collecting:
            resume_collector()
        tracer.active = False
        _set_tracer(previous)
    return program
