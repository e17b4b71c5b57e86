"""Where the user is: the first stack frame outside the l3c package, for locations and errors.

Every task and tensor records the user's `file.py:LINE`, and every `TraceError` starts with the full
`path/to/file.py:LINE`. Frames inside the l3c package (the tracer, `l3c.jit`, the CLI) are skipped,
so the location is the line in the orchestration function (or the user's helper it called).
"""
from __future__ import annotations

import functools
import os
import sys
import ast
import inspect
import textwrap
import types
from typing import Any

import numpy as np

from ..errors import TraceError

# Frames in these folders are never the user's line: l3c itself, and numpy (np.sum(proxy) reaches
# the proxy from inside numpy). Trailing separators so "l3c_extra/" does not match.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_INTERNAL_DIRS = (_PACKAGE_DIR, os.path.dirname(os.path.abspath(np.__file__)) + os.sep)
# ... except the bundled demo, which is user code that happens to ship inside the package.
_USER_CODE_IN_PACKAGE = frozenset({os.path.join(_PACKAGE_DIR, "demo.py")})


@functools.lru_cache(maxsize=4096)
def _is_internal(filename: str) -> bool:
    # "<frozen runpy>" and friends are the interpreter's, never the user's line.
    if filename.startswith("<frozen"):
        return True
    path = os.path.abspath(filename)
    return path.startswith(_INTERNAL_DIRS) and path not in _USER_CODE_IN_PACKAGE


# Per code object: does it live in an internal folder? (A dict hit per frame is cheaper than the
# filename's lru_cache; the tracer asks once or twice per kernel call.) Bounded: cleared when full.
_INTERNAL_CODE: dict[types.CodeType, bool] = {}
_LOCS: dict[tuple[types.CodeType, int], str] = {}
_CACHE_LIMIT = 1 << 16


def _code_is_internal(code: types.CodeType) -> bool:
    internal = _INTERNAL_CODE.get(code)
    if internal is None:
        if len(_INTERNAL_CODE) >= _CACHE_LIMIT:
            _INTERNAL_CODE.clear()
        internal = _INTERNAL_CODE[code] = _is_internal(code.co_filename)
    return internal


def user_frame() -> types.FrameType | None:
    """The innermost frame whose code lives outside the l3c package."""
    frame = sys._getframe(1)
    while frame is not None and _code_is_internal(frame.f_code):
        frame = frame.f_back
    return frame


def user_location() -> tuple[str, int]:
    """(filename, line) of the user's current line; ("<unknown>", 0) if the stack is all l3c."""
    frame = user_frame()
    if frame is None:
        return ("<unknown>", 0)
    return (frame.f_code.co_filename, frame.f_lineno)


def short_loc(filename: str, line: int) -> str:
    """The IR's location form: "basename.py:LINE"."""
    return f"{_basename(filename)}:{line}"


@functools.lru_cache(maxsize=4096)
def _basename(filename: str) -> str:
    return os.path.basename(filename)


def user_loc() -> str:
    """The user's current line as "basename.py:LINE" (for Task.loc and TensorInfo.loc); one
    string per line of code, shared by the records made there."""
    frame = sys._getframe(1)
    known = _INTERNAL_CODE.get
    while frame is not None:
        internal = known(frame.f_code)
        if internal is None:
            internal = _code_is_internal(frame.f_code)
        if not internal:
            break
        frame = frame.f_back
    if frame is None:
        return "<unknown>:0"
    key = (frame.f_code, frame.f_lineno)
    loc = _LOCS.get(key)
    if loc is None:
        if len(_LOCS) >= _CACHE_LIMIT:
            _LOCS.clear()
        loc = _LOCS[key] = short_loc(frame.f_code.co_filename, frame.f_lineno)
    return loc


def return_location(fn: Any) -> tuple[str, int] | None:
    """(file, line) of `fn`'s `return` statement when it has exactly one (nested functions aside).

    Used only when a result is wrong, so tracing pays nothing for it (a profile hook watching the
    return event would slow every call in the trace).
    """
    try:
        lines, start = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    func = tree.body[0] if tree.body else None
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    returns: list[int] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return):
                returns.append(child.lineno)
            visit(child)

    visit(func)
    if len(returns) != 1:
        return None
    return (inspect.getsourcefile(fn) or fn.__code__.co_filename, start + returns[0] - 1)


def trace_error(what: str, todo: str, where: tuple[str, int] | None = None) -> TraceError:
    """A TraceError "path/file.py:LINE: what; todo" at the user's line (or at `where`).

    Kept on one line so the CLI can print it as its single error line.
    """
    filename, line = where if where is not None else user_location()
    message = f"{filename}:{line}: {what}; {todo}".replace("\n", " ")
    return TraceError(message)


def user_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback without l3c's own frames (JAX-style filtering), or `tb` if nothing is left."""
    frames = []
    while tb is not None:
        if not _is_internal(tb.tb_frame.f_code.co_filename):
            frames.append(tb)
        tb = tb.tb_next
    result = None
    for entry in reversed(frames):
        result = types.TracebackType(result, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return result
