"""Pictures of a program and of a run, as self-contained files (nothing to install, no network).

- `timeline_html(trace)`: the HTML timeline of one profiled run (`compiled.profile(...)`'s trace,
  or a trace JSON file loaded with `json.load`): swimlanes per worker and host, tasks coloured by
  kernel, arrows between workers, groups, the critical path, zoom and pan (`timeline_html.py`).
- `task_graph_svg(program)`: the task graph as SVG, layered by dependency depth, one colour per
  chip, groups boxed (`graph_svg.py`; `l3c dump-ir --format svg`).

This layer only reads: a trace dict, or the IR of a `Program`/`Compiled`.
"""
from __future__ import annotations

from .timeline_html import to_html as timeline_html  # noqa: F401
