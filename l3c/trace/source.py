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


# Per code object, by its id: (the code object, whether it lives in an internal folder, its
# locations by bytecode offset). Keyed by id because hashing a code object hashes its constants
# on every lookup, and by offset because `frame.f_lineno` decodes the line table from the start;
# holding the code object keeps its id from being reused. Bounded: cleared when full.
_CODES: dict[int, tuple[types.CodeType, bool, dict[int, str]]] = {}
_CACHE_LIMIT = 1 << 16


def _code_entry(code: types.CodeType) -> tuple[types.CodeType, bool, dict[int, str]]:
    if len(_CODES) >= _CACHE_LIMIT:
        _CODES.clear()
    entry = _CODES[id(code)] = (code, _is_internal(code.co_filename), {})
    return entry


def _code_is_internal(code: types.CodeType) -> bool:
    entry = _CODES.get(id(code))
    if entry is None:
        entry = _code_entry(code)
    return entry[1]


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


def frame_loc(frame: types.FrameType | None) -> str:
    """The location "basename.py:LINE" of `frame`, or of the first frame outside l3c above it
    (for Task.loc and TensorInfo.loc); one string per call site, shared by the records made
    there. A kernel's `__call__` passes its caller's frame, which is the user's line unless l3c
    or numpy called the kernel."""
    codes = _CODES
    while frame is not None:
        code = frame.f_code
        entry = codes.get(id(code))
        if entry is None:
            entry = _code_entry(code)
        if not entry[1]:
            locs = entry[2]
            offset = frame.f_lasti
            loc = locs.get(offset)
            if loc is None:
                loc = locs[offset] = short_loc(code.co_filename, frame.f_lineno)
            return loc
        frame = frame.f_back
    return "<unknown>:0"


def user_loc() -> str:
    """The user's current line as "basename.py:LINE" (see `frame_loc`)."""
    return frame_loc(sys._getframe(1))


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
