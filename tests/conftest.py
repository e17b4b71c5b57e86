"""Shared helpers for the trace/jit/CLI tests: find the line of a marked statement."""
from __future__ import annotations

import inspect

import pytest


def marked_line(fn, marker: str = "# ERR") -> int:
    """The file line number of the line in `fn`'s source carrying `marker`."""
    lines, start = inspect.getsourcelines(fn)
    for i, text in enumerate(lines):
        if marker in text:
            return start + i
    raise AssertionError(f"no {marker!r} in {fn.__qualname__}")


@pytest.fixture
def line_of():
    return marked_line
