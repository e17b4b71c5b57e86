"""Tracing: run the orchestration function on proxies and record kernel calls into `l3c.ir`.

`kernel` (decorator, access annotations), `proxy` (Tensor views and their regions), `context`
(empty/zeros/scope/group and the per-thread current tracer), `tracer` (the `trace` entry point),
`source` (finding the user's line for locations and errors), `arrayspec` (shape-and-dtype array
arguments for lowering without data), `arguments` (binding the jitted function's arguments),
`loops` (`l3c.range`, `l3c.while_loop`, `l3c.cond`, the loop variable) and `shifted` (views
indexed by loop variables).
"""
from .arrayspec import ArraySpec  # noqa: F401
from .tracer import BoundArg, Tracer, bind_arguments, bound_aliases, input_aliases, trace  # noqa: F401
