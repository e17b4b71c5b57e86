"""Loops and conditionals of the schedule: `l3c.range`, `l3c.while_loop`, `with l3c.cond(flag)`.

Inside a trace the body is traced once, whatever the trip count: iterating an `l3c.range` or
`l3c.while_loop` opens a `Loop` record (`l3c.ir.Loop`, in `Program.loops`), yields one loop
variable proxy (`LoopIndex`), and closes the record when the `for` statement asks for the next
value. Tasks and intermediates created meanwhile record the loop (`Task.loops`,
`TensorInfo.loops`); those intermediates live one iteration, so using them after the loop is a
TraceError (as after an `l3c.scope()`).

Leaving a body early cannot be traced (the schedule runs the whole body every iteration): an
exception propagates as usual (the loop record is closed on the way out), and a `break` or `return`
inside the body makes the next traced operation, or the end of the trace, raise a TraceError naming
the line of the `break`/`return`.

The loop variable is affine only: `i + 1`, `2 * i - 3`, `i + j` give new `LoopIndex` values (an
`l3c.ir.Affine` of loop ids); reading its value (`int(i)`, `if i:`, `i * i`, `i / 2`, `i < 3`)
raises TraceError at the user's line. Outside a trace the three helpers do the plain Python thing
on numpy arrays (`with l3c.cond` can only run its block there, not skip it).
"""
from __future__ import annotations

import ast
import builtins
import functools
import inspect
import numbers
import textwrap
from typing import Any, Iterator

import numpy as np

from ..errors import L3CError
from ..ir import Access, Affine, Loop
from .context import current_tracer
from .source import short_loc, trace_error, user_frame, user_location


# ---- the loop variable ------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def affine_of(value: Any) -> Affine | None:
    """The Affine of a loop variable expression, None for anything else."""
    return value.affine if type(value) is LoopIndex else None


class LoopIndex:
    """A loop variable (or an affine expression of loop variables) while tracing.

    Usable as a kernel's scalar argument, an index (`x[i]`) and a slice bound (`x[4*i:4*i+4]`);
    combined with ints by `+`, `-`, `*` and unary `-` only, since its value exists only at run
    time."""

    __slots__ = ("_tracer", "affine")
    __array_ufunc__ = None       # numpy scalars defer to us: np.int64(2) * i is affine too

    def __init__(self, tracer: Any, affine: Affine) -> None:
        self._tracer = tracer
        self.affine = affine

    # -- affine arithmetic
    def _new(self, const: int, terms: dict[int, int]) -> "LoopIndex | int":
        kept = tuple(sorted((loop, c) for loop, c in terms.items() if c))
        if not kept:
            return int(const)
        return LoopIndex(self._tracer, Affine(int(const), kept))

    def _plus(self, other: Any, sign: int, op: str) -> "LoopIndex | int":
        terms = dict(self.affine.terms)
        if type(other) is LoopIndex:
            for loop, c in other.affine.terms:
                terms[loop] = terms.get(loop, 0) + sign * c
            return self._new(self.affine.const + sign * other.affine.const, terms)
        if _is_int(other):
            return self._new(self.affine.const + sign * int(other), terms)
        return self._not_affine(f"'{op}' with a {type(other).__name__}")

    def __add__(self, other: Any) -> "LoopIndex | int":
        return self._plus(other, 1, "+")

    __radd__ = __add__

    def __sub__(self, other: Any) -> "LoopIndex | int":
        return self._plus(other, -1, "-")

    def __rsub__(self, other: Any) -> "LoopIndex | int":
        negated = self.__neg__()
        return negated + other if type(negated) is LoopIndex else other - negated

    def __mul__(self, other: Any) -> "LoopIndex | int":
        if type(other) is LoopIndex:
            return self._not_affine("a product of loop variables ('*')")
        if not _is_int(other):
            return self._not_affine(f"'*' by a {type(other).__name__}")
        k = int(other)
        return self._new(self.affine.const * k, {loop: c * k for loop, c in self.affine.terms})

    __rmul__ = __mul__

    def __neg__(self) -> "LoopIndex | int":
        return self * -1

    def __pos__(self) -> "LoopIndex":
        return self

    # -- everything that would need the value
    def _not_affine(self, what: str) -> Any:
        raise trace_error(f"{what} of the loop variable {self}: its value exists only when the "
                          "schedule runs",
                          "use it as a kernel's scalar argument or in affine indices (i, i + 1, "
                          "2 * i - 3, x[4 * i : 4 * i + 4]); compute anything else inside a kernel")

    def __index__(self) -> int:
        return self._not_affine("using as a Python int (index(), range(), a slice)")

    def __int__(self) -> int:
        return self._not_affine("int()")

    def __float__(self) -> float:
        return self._not_affine("float()")

    def __bool__(self) -> bool:
        return self._not_affine("bool() (`if i:`)")

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<l3c loop variable {self}>"

    def __str__(self) -> str:
        return str(self.affine)

    def check_live(self) -> None:
        """Raise unless every loop this expression uses is open in the current trace."""
        check_terms_live(self._tracer, self.affine.terms, f"loop variable {self}")


def _refuse(label: str) -> Any:
    def op(self: LoopIndex, *unused: Any) -> Any:
        return self._not_affine(label)
    op.__name__ = label
    return op


for _name, _label in (("truediv", "'/'"), ("floordiv", "'//'"), ("mod", "'%'"), ("pow", "'**'"),
                      ("matmul", "'@'"), ("and", "'&'"), ("or", "'|'"), ("xor", "'^'"),
                      ("lshift", "'<<'"), ("rshift", "'>>'"), ("divmod", "divmod()")):
    setattr(LoopIndex, f"__{_name}__", _refuse(_label))
    setattr(LoopIndex, f"__r{_name}__", _refuse(_label))
for _name, _label in (("eq", "'=='"), ("ne", "'!='"), ("lt", "'<'"), ("le", "'<='"),
                      ("gt", "'>'"), ("ge", "'>='"), ("abs", "abs()"), ("invert", "'~'"),
                      ("round", "round()"), ("trunc", "math.trunc()"), ("floor", "math.floor()"),
                      ("ceil", "math.ceil()"), ("complex", "complex()")):
    setattr(LoopIndex, f"__{_name}__", _refuse(_label))


def check_terms_live(tracer: Any, terms: Any, what: str) -> None:
    """Raise TraceError if a loop that `terms` (loop id, coef) or shifts use is no longer open."""
    if tracer is None or not tracer.active or current_tracer() is not tracer:
        raise trace_error(f"{what} belongs to another trace that has finished",
                          "loop variables exist only inside their loop of the l3c.jit call")
    for item in terms:
        loop_id = item[0] if isinstance(item, tuple) else item.loop
        if loop_id not in tracer.loop_stack:
            loop = tracer.program.loops[loop_id]
            raise trace_error(f"{what} depends on the variable of the l3c.{_api(loop.kind)} loop "
                              f"at {loop.loc}, which has ended",
                              "use loop variables (and views indexed by them) only inside their "
                              "loop's body")


def _api(kind: str) -> str:
    return "while_loop" if kind == "while" else kind


def value_range(tracer: Any, affine: Affine) -> tuple[int, int] | None:
    """The smallest and largest value `affine` takes over every iteration, when every loop it
    uses is an `l3c.range` with static bounds and at least one iteration; else None (checked at
    run time)."""
    low = high = affine.const
    for loop_id, c in affine.terms:
        loop = tracer.program.loops[loop_id]
        if loop.kind != "range" or not all(type(b) is int for b in (loop.start, loop.stop,
                                                                        loop.step)):
            return None
        values = builtins.range(loop.start, loop.stop, loop.step)
        if not values:
            return None
        a, b = c * values[0], c * values[-1]
        low, high = low + min(a, b), high + max(a, b)
    return low, high


# ---- opening and closing loop records ---------------------------------------------------------
def _open(tracer: Any, kind: str, where: tuple[str, int], **fields: Any) -> Loop:
    tracer.check_abandoned()
    program = tracer.program
    loop = Loop(id=len(program.loops), kind=kind, loc=short_loc(*where),  # type: ignore[arg-type]
                parent=tracer.loop_stack[-1] if tracer.loop_stack else None,
                first_task=len(program.graph._node), end_task=len(program.graph._node),
                scope=tuple(tracer.scope_stack), **fields)
    program.loops[loop.id] = loop
    tracer.loop_stack.append(loop.id)
    return loop


def _close(tracer: Any, loop: Loop, left_early: bool) -> None:
    """End the body: its intermediates die; a body left early (break/return) is remembered so
    the next traced operation raises at that line."""
    where = user_location()
    if loop.id in tracer.loop_stack:
        del tracer.loop_stack[tracer.loop_stack.index(loop.id):]
    loop.end_task = len(tracer.program.graph._node)
    tracer.end_lifetimes(tracer.loop_created.pop(loop.id, ()), ("loop", loop.id),
                         short_loc(*where))
    if loop.kind == "while" and loop.max_iterations is None and not left_early:
        _check_flag_written(tracer, loop)
    if left_early and tracer.abandoned is None:
        tracer.abandoned = (
            f"{where[0]}:{where[1]}: the body of the l3c.{_api(loop.kind)} loop at {loop.loc} was "
            "left early (break, return, or an exception caught outside it); the schedule runs the "
            "whole body every iteration: end a while_loop through its flag, or use a Python loop "
            "to unroll")


def _check_flag_written(tracer: Any, loop: Loop) -> None:
    """A while loop whose body never writes its flag's tensor runs zero times or forever: without
    `max_iterations` that is a hang waiting to happen, so it cannot be traced."""
    flag = loop.flag
    graph = tracer.program.graph._node
    for t in builtins.range(loop.first_task, loop.end_task):
        if any(a.tensor == flag.tensor and a.writes for a in graph[t]["task"].accesses):
            return
    name = tracer.program.tensors[flag.tensor].name
    raise trace_error(f"the body of this l3c.while_loop never writes its flag ({name}), so once "
                      "it starts it never ends",
                      "write the flag in the body (a kernel that clears it when done), or pass "
                      "max_iterations=")


def _element(tracer: Any, value: Any, what: str, kinds: str, param: str,
             where: tuple[str, int]) -> Access:
    """The Access of a one-element tensor read as a bound or a flag (errors at `where`, the line
    of the `l3c.range(...)` / `while_loop(...)` / `cond(...)` call)."""
    if type(value) is LoopIndex:
        raise trace_error(f"{what} is the loop variable {value}",
                          "loop bounds and flags are Python ints or one-element tensors", where)
    if getattr(value, "_tracer", None) is not tracer or not hasattr(value, "_tensor"):
        raise trace_error(f"{what} is a {type(value).__name__} ({value!r:.40})",
                          "pass a one-element tensor of this trace"
                          + (" or an int" if "b" not in kinds else ""), where)
    value._check_alive()
    if value.size != 1 or value.dtype.kind not in kinds:
        wanted = "integer or bool" if "b" in kinds else "integer"
        raise trace_error(f"{what} is a {value._desc()}",
                          f"pass a one-element {wanted} tensor (e.g. n[0:1] or a (1,) tensor)",
                          where)
    return Access(param, value._tensor, value.region, "In")


def _bound(tracer: Any, value: Any, param: str, where: tuple[str, int]) -> int | Access:
    if _is_int(value):
        return int(value)
    return _element(tracer, value, f"l3c.range's {param}", "iu", param, where)


class range:  # noqa: N801 - used like the builtin: `for i in l3c.range(n):`
    """`l3c.range(stop)` / `l3c.range(start, stop, step=1)`: a loop of the schedule whose body is
    traced once. Each bound is a Python int or a one-element integer tensor (read when the loop
    starts). The loop variable takes `start + k * step`."""

    def __init__(self, start: Any, stop: Any = None, step: Any = 1) -> None:
        if stop is None:
            start, stop = 0, start
        self.start, self.stop, self.step = start, stop, step
        self.where = user_location()

    def __iter__(self) -> Iterator[Any]:
        tracer = current_tracer()
        if tracer is None:
            return iter(builtins.range(*(_value(b) for b in (self.start, self.stop, self.step))))
        bounds = {name: _bound(tracer, b, name, self.where)
                  for name, b in (("start", self.start), ("stop", self.stop), ("step", self.step))}
        if bounds["step"] == 0:
            raise trace_error("l3c.range() step is 0", "use a nonzero step", self.where)
        return _body(tracer, _open(tracer, "range", self.where, **bounds))


class while_loop:  # noqa: N801
    """`for k in l3c.while_loop(flag, max_iterations=None):` runs the body while `flag`'s one
    element is nonzero, tested before every iteration; `k` counts iterations from 0."""

    def __init__(self, flag: Any, max_iterations: int | None = None) -> None:
        self.flag, self.max_iterations = flag, max_iterations
        self.where = user_location()
        if max_iterations is not None and (not _is_int(max_iterations) or max_iterations < 0):
            raise trace_error(f"l3c.while_loop(max_iterations={max_iterations!r})",
                              "pass an int >= 0 or None")

    def __iter__(self) -> Iterator[Any]:
        tracer = current_tracer()
        cap = None if self.max_iterations is None else int(self.max_iterations)
        if tracer is None:
            return _plain_while(self.flag, cap)
        flag = _element(tracer, self.flag, "l3c.while_loop's flag", "biu", "flag", self.where)
        return _body(tracer, _open(tracer, "while", self.where, flag=flag, max_iterations=cap))


class cond:  # noqa: N801 - used as `with l3c.cond(flag):`
    """`with l3c.cond(flag):` the calls in the block run only if `flag`'s one element is nonzero
    when the block is reached (zero with `invert=True`). A class, like `l3c.scope`, so no stdlib
    frame sits between the user's line and l3c."""

    def __init__(self, flag: Any, invert: bool = False) -> None:
        self.flag, self.invert = flag, bool(invert)
        self.where = user_location()
        self.loop: Loop | None = None
        self._tracer: Any = None

    def __enter__(self) -> "cond":
        tracer = self._tracer = current_tracer()
        if tracer is None:
            if (_value(self.flag) != 0) == self.invert:
                raise L3CError(f"{self.where[0]}:{self.where[1]}: l3c.cond outside a trace cannot "
                               "skip its block (Python runs every `with` block); call the function "
                               "through l3c.jit, or use `if` on the value")
            return self
        flag = _element(tracer, self.flag, "l3c.cond's flag", "biu", "flag", self.where)
        self.loop = _open(tracer, "cond", self.where, flag=flag, invert=self.invert)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._tracer is not None and self.loop is not None:
            _close(self._tracer, self.loop, left_early=False)
            if exc_type is None:
                _refuse_jumps_out(self.where)


def _refuse_jumps_out(where: tuple[str, int]) -> None:
    """TraceError if the `with l3c.cond(...)` block at `where` holds a `return`, or a `break` /
    `continue` of a loop around the block: what follows it was traced as if it always ran, but
    at run time it would depend on the flag. Found in the source (a guarded one counts too)."""
    frame = user_frame()
    if frame is None or frame.f_code.co_filename != where[0]:
        return
    line = _jump_in_block(frame.f_code, where[1])
    if line is not None:
        raise trace_error(f"line {line} leaves the l3c.cond block at line {where[1]} (return, "
                          "break or continue); the code after it was traced as if it always ran",
                          "move it out of the block: a cond block only decides whether its own "
                          "calls run", (where[0], line))


@functools.lru_cache(maxsize=256)
def _jump_in_block(code: Any, with_line: int) -> int | None:
    """The line of the first return/break/continue leaving the `with` block at `with_line`."""
    try:
        lines, start = inspect.getsourcelines(code)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    offset = max(start - 1, 0)            # a module's code starts at line 0
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and node.lineno + offset == with_line:
            found = _jumps(node.body, in_loop=False)
            return None if found is None else found + offset
    return None


def _jumps(body: list[Any], in_loop: bool) -> int | None:
    for stmt in body:
        for node in _walk_statement(stmt, in_loop):
            return node
    return None


def _walk_statement(node: Any, in_loop: bool) -> Iterator[int]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
        return
    if isinstance(node, ast.Return) or (isinstance(node, (ast.Break, ast.Continue))
                                        and not in_loop):
        yield node.lineno
        return
    inner = in_loop or isinstance(node, (ast.For, ast.While, ast.AsyncFor))
    for child in ast.iter_child_nodes(node):
        if isinstance(node, (ast.For, ast.While, ast.AsyncFor)) and child in node.orelse:
            yield from _walk_statement(child, in_loop)     # a loop's else runs outside it
        else:
            yield from _walk_statement(child, inner)


def _body(tracer: Any, loop: Loop) -> Iterator[Any]:
    """Yield the loop variable once, then close the loop (also when the body is left early)."""
    finished = False
    try:
        yield LoopIndex(tracer, Affine(0, ((loop.id, 1),)))
        finished = True
    finally:
        if tracer.active:
            _close(tracer, loop, left_early=not finished)


def _value(x: Any) -> int:
    """A bound or flag's value outside a trace (an int or a one-element array)."""
    if _is_int(x):
        return int(x)
    return int(np.asarray(x).reshape(-1)[0])


def _plain_while(flag: Any, cap: int | None) -> Iterator[int]:
    k = 0
    while (cap is None or k < cap) and _value(flag) != 0:
        yield k
        k += 1
