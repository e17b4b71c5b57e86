"""`l3c profile TARGET [--arg SPEC]... -o TRACE.json`: run once with per-task timestamps and write
a Chrome trace (open it at https://ui.perfetto.dev or chrome://tracing).

Target and argument loading are `l3c.cli`'s (`load_target`, `parse_spec`), so TARGET and SPEC mean
exactly what they mean for `dump-ir` and `compile`. Errors are raised as `cli.CLIError` / l3c errors
and printed by `cli.main` as one line with exit status 1.
"""
from __future__ import annotations

import json
import sys

from . import cli


def build_parser() -> cli._Parser:
    p = cli._Parser(prog="l3c profile",
                    description="Run a jitted function once with every task timed in the workers "
                                "and write a Chrome trace event file (Perfetto / chrome://tracing).")
    p.add_argument("target", metavar="TARGET", help="path/to/file.py:function or pkg.mod:function")
    p.add_argument("--arg", action="append", default=[], metavar="SPEC",
                   help="dtype[dims] (f32[128,64]) for an array, or a Python literal for a static")
    p.add_argument("-o", "--output", required=True, metavar="TRACE.json")
    return p


def main(argv: list[str]) -> int:
    """Parse `argv` (everything after `profile`), profile one run, write the trace; 0 on success."""
    ns = build_parser().parse_args(argv)
    jitted = cli.load_target(ns.target)
    args = [cli.parse_spec(s) for s in ns.arg]
    compiled = jitted.lower(*args)
    _, trace = compiled.profile(*[b.value for b in jitted._bind(tuple(args), {})])   # + defaults
    text = json.dumps(trace, indent=None, separators=(",", ":"))
    try:
        with open(ns.output, "w") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise cli.CLIError(f"cannot write {ns.output}: {exc.strerror or exc}") from None
    meta = trace["metadata"]
    sys.stdout.write(
        f"{meta['program']}: {meta['tasks']} tasks on {len(meta['workers'])} workers, "
        f"{meta['cross_worker_edges']} cross-worker edges, run {meta['measured_wall_us']:.0f} us "
        f"(estimated makespan {meta['estimated_makespan']} cost units)\n"
        f"wrote {ns.output}: open it at https://ui.perfetto.dev (or chrome://tracing)\n")
    return 0
