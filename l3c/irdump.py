"""`dump(program, format)`: the IR as text (`l3c.irprint`), JSON (`l3c.irjson`) or DOT
(`l3c.viz.dot`), the one entry `compiled.dump`, `l3c dump-ir` and the several-host call agreement
use."""
from __future__ import annotations

from .errors import L3CError
from .ir import Program
from .irjson import to_json
from .irprint import to_text
from .viz.dot import to_dot

FORMATS = ("text", "json", "dot")


def dump(program: Program, format: str = "text") -> str:  # noqa: A002 - the public name (docs/cli.md)
    """The program in `format` ("text", "json" or "dot")."""
    if format == "text":
        return to_text(program)
    if format == "json":
        return to_json(program)
    if format == "dot":
        return to_dot(program)
    raise L3CError(f"unknown IR format {format!r}; use one of {', '.join(FORMATS)}")
