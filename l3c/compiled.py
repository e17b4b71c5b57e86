"""`l3c.Compiled`: one traced and compiled signature of a jitted function, ready to run or inspect,
and `l3c.load`, which makes one from a schedule file.

It holds the placed, memory-planned `Program`. Running, saving and profiling belong to later stages
(`l3c.execute`, `l3c.aot`), imported lazily so that inspecting a program needs none of them.
"""
from __future__ import annotations

import os
from typing import Any

import networkx as nx

from . import inflight
from .inflight import Limiter
from .ir import MemoryReport, Program


class Compiled:
    """A compiled schedule. `compiled(*args)` runs it; `.graph/.groups/.memory/.dump()` inspect it."""

    def __init__(self, program: Program, timeout: float | None = None,
                 defaults: dict[str, Any] | None = None, max_inflight: int = 4) -> None:
        self.program = program
        self.timeout = timeout          # the jit's `timeout=`; `l3c.execute.run` uses it by default
        # How arguments left out are filled, so that `step.lower(x)(x)` binds as `step(x)` does:
        # the jitted function's own defaults first, then the statics it was compiled with (the
        # only values they can take), which is all a loaded schedule has.
        statics = {p.name: p.static for p in program.params if p.tensor is None}
        self.defaults = {**statics, **(defaults or {})}
        self.limiter = Limiter(max_inflight)     # runs of this schedule in flight at once
        # Filled lazily by later stages (e.g. the lowered plan, the native dispatcher), keyed by name.
        self.artifacts: dict[str, Any] = {}

    @property
    def graph(self) -> nx.DiGraph:
        """Nodes: task ids in program order (attributes kernel, worker, chip, group, loc, task);
        an edge u -> v means v waits for u (attribute `kinds` ⊆ {RAW, WAR, WAW})."""
        return self.program.graph

    @property
    def groups(self) -> list[list[int]]:
        """Task ids of each group task, in rank order."""
        return self.program.groups

    @property
    def loops(self) -> dict[int, dict[str, Any]]:
        """Each loop/cond of the schedule by id (the ids of node attribute `loops`): `kind`
        ("range" | "while" | "cond"), `loc`, `parent`, `tasks` (the body's task ids), and per kind
        `start`/`stop`/`step` (an int, or the element read, e.g. "arg1[0]"), `flag` and
        `max_iterations` (while), `flag` and `invert` (cond)."""
        from .irprint import loop_fields
        return {loop.id: loop_fields(self.program, loop) for loop in self.program.loops.values()}

    @property
    def memory(self) -> MemoryReport:
        return self.program.memory

    def dump(self, format: str = "text") -> str:  # noqa: A002 - the public name (docs/cli.md)
        """The program as "text" (canonical, for people and golden tests), "json" or "dot"."""
        from .irdump import dump
        return dump(self.program, format)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run with the arguments `step.lower` got (keywords and defaults bound as there).
        While submitted runs are in flight, the call queues behind them (it sees their effects)."""
        values = self._bind(args, kwargs)
        if inflight.busy():
            return inflight.call_queued(self, values, self.limiter)
        return self._run_now(values)

    def submit(self, *args: Any, **kwargs: Any) -> inflight.Run:
        """Start a run and return its `l3c.Run` at once (see `l3c.inflight`)."""
        try:
            values = self._bind(args, kwargs)
        except Exception as exc:                 # noqa: BLE001 - raised by the run's result()
            return inflight.failed(exc, self.program.name)
        return inflight.submit(self, values, self.limiter)

    def _bind(self, args: tuple, kwargs: dict) -> list[Any]:
        if kwargs or len(args) != len(self.program.params):
            from . import execute
            try:
                args = execute.bind_args(self.program, args, kwargs, self.defaults)
            except Exception as exc:
                if self.program.config.hosts > 1:    # every rank must hear of it: l3c.runtime.hosts.calls
                    from .runtime.hosts.calls import local_failure
                    local_failure(exc, f"{self.program.name}(...)", self.timeout)
                raise
        return list(args)

    def _run_now(self, values: list[Any], timeout: float | None = None) -> Any:
        """One run in the calling thread, with the arguments bound in parameter order; `timeout`
        defaults to the jit's."""
        from . import execute
        return execute.run(self, *values, timeout=timeout)

    def profile(self, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        """Run once with every task timed in the workers: `(results, trace)`. `trace` is the Chrome
        trace dict (`json.dump` it for Perfetto) with `to_html()` (the self-contained timeline),
        `save(path)` (HTML or JSON by suffix) and `_repr_html_` (shown inline in a notebook)."""
        from . import execute
        return execute.profile(self, *self._bind(args, kwargs))

    def save(self, path: str | os.PathLike) -> None:
        """Write the schedule file `l3c.load(path)` reads back (docs/aot.md)."""
        from . import aot
        aot.save(self, path)

    def __repr__(self) -> str:
        return (f"<l3c.Compiled {self.program.name}: {self.program.graph.number_of_nodes()} tasks, "
                f"{len(self.program.groups)} groups, {self.program.memory}>")


def load(path: str | os.PathLike) -> Compiled:
    """A schedule file as an `l3c.Compiled`: checked completely (`l3c.aot.read`), nothing traced,
    kernels resolved by import path. It binds arguments like the jitted function, with the statics
    it was compiled with as defaults."""
    from . import aot
    schedule = aot.read(path)
    compiled = Compiled(schedule.program, timeout=schedule.timeout)
    if schedule.dist is not None:
        compiled.artifacts["dist"] = schedule.dist
    else:
        compiled.artifacts["lowered"] = schedule.lowered
    compiled.artifacts["loaded_from"] = os.fspath(path)
    return compiled
