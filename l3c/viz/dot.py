"""The Graphviz DOT view of the IR (`dump-ir --format dot`), and its rendering by Graphviz's `dot`
program (`--format png`). `--format svg` is drawn without Graphviz by `l3c.viz.graph_svg`."""
from __future__ import annotations

from ..errors import L3CError
from ..ir import Program, Task
from ..irprint import loop_header, scope_text, tensor_name, transfers


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _scope_paths(program: Program) -> list[tuple[int, ...]]:
    """Every non-root scope path that holds a task or a tensor, with all its ancestors, sorted."""
    paths: set[tuple[int, ...]] = set(program.scopes.values())
    paths.update(t.scope for t in program.tasks)
    paths.update(t.scope for t in program.tensors if t.kind == "intermediate")
    closed = {p[:k] for p in paths for k in range(1, len(p) + 1)}
    return sorted(closed)


def _common_prefix(paths: list[tuple]) -> tuple:
    first = paths[0]
    n = len(first)
    for p in paths[1:]:
        n = min(n, len(p))
        while n and p[:n] != first[:n]:
            n -= 1
    return first[:n]


HOST_COLOURS = ("#e8f0fe", "#fde8e8", "#e6f4ea", "#fef7e0", "#f3e8fd", "#e0f7fa")


Container = tuple[str, int]           # ("s", scope id) or ("l", loop id)
Chain = tuple[Container, ...]          # the containers around a task, outermost first


def _task_chain(task: Task, depths: dict[int, int]) -> Chain:
    chain: list[Container] = []
    for k in range(len(task.scope) + 1):
        chain += [("l", lp) for lp in task.loops if depths.get(lp) == k]
        if k < len(task.scope):
            chain.append(("s", task.scope[k]))
    return tuple(chain)


def _chains(program: Program) -> tuple[dict[int, Chain], list[Chain]]:
    """Each task's chain, and every container's chain (a scope holding only temporaries sits in
    its nearest ancestor scope's place), sorted."""
    depths = {loop.id: len(loop.scope) for loop in program.loops.values()}
    of_task = {t.id: _task_chain(t, depths) for t in program.tasks}
    chains = {c[:k] for c in of_task.values() for k in range(1, len(c) + 1)}
    where = {c[-1]: c for c in chains}
    for path in _scope_paths(program):
        if ("s", path[-1]) in where:
            continue
        chain: Chain = ()
        for sid in path:
            chain = where.get(("s", sid)) or chain + (("s", sid),)
            where[("s", sid)] = chain
            chains.add(chain)
    return of_task, sorted(chains)


def _loop_label(program: Program, loop_id: int) -> str:
    header = loop_header(program, program.loops[loop_id])
    return header.replace("  @ ", "\n@ ").replace("  read ", "\nread ")


def to_dot(program: Program) -> str:
    """Graphviz: a box per task, an edge per dependency labelled with kinds and tensors (dashed if
    the memory plan added it). `with l3c.scope()` blocks are nested solid clusters (`cluster_sN`,
    labelled with the scope path and the temporaries that die with it); each loop or cond is a bold
    cluster (`cluster_lN`, labelled with its header line and the intermediates that live one
    iteration), nested with the scopes as the source nests them; each group task is a dashed
    cluster (`cluster_gN`) inside the innermost scope or loop that holds all its members. A
    dependency on an earlier iteration (`carried`) is a dashed red edge labelled `carried`.
    Several hosts: each box names its host and is filled with the host's colour, and each transfer
    between hosts is a bold blue edge from its producer to each consumer, labelled
    `xN host a -> host b, bytes`."""
    lines = [f"digraph {_quote(program.name)} {{", "  rankdir=TB;",
             '  node [shape=box, fontname="monospace"];']

    hosts = program.config.hosts

    def node(task: Task) -> str:
        where = "?" if task.chip is None else task.chip
        host = program.host_of(task) if hosts > 1 and task.chip is not None else None
        on_host = "" if host is None else f" host {host}"
        label = f"%{task.id} {task.short_kernel}\n{task.worker} {where}{on_host}\n{task.loc}"
        fill = ("" if host is None else
                f", style=filled, fillcolor={_quote(HOST_COLOURS[host % len(HOST_COLOURS)])}")
        return f"t{task.id} [label={_quote(label)}{fill}];"

    # what goes directly inside each container: loose tasks and group clusters
    of_task, chains = _chains(program)
    loose: dict[Chain, list[Task]] = {}
    groups_in: dict[Chain, list[int]] = {}
    in_group = {m for members in program.groups for m in members}
    for g, members in enumerate(program.groups):
        if members:
            where = _common_prefix([of_task[m] for m in members])
            groups_in.setdefault(where, []).append(g)
    for task in program.tasks:
        if task.id not in in_group:
            loose.setdefault(of_task[task.id], []).append(task)
    children: dict[Chain, list[Chain]] = {}
    for chain in chains:
        children.setdefault(chain[:-1], []).append(chain)
    temporaries: dict[Container, list[str]] = {}
    depths = {c[-1][1]: sum(1 for x in c if x[0] == "s") for c in chains if c[-1][0] == "l"}
    for t in program.tensors:
        if t.kind != "intermediate":
            continue
        if t.loops and len(t.scope) <= depths.get(t.loops[-1], -1):
            temporaries.setdefault(("l", t.loops[-1]), []).append(t.name)
        elif t.scope:
            temporaries.setdefault(("s", t.scope[-1]), []).append(t.name)

    def emit(chain: Chain, indent: str) -> None:
        for g in groups_in.get(chain, []):
            lines.append(f"{indent}subgraph cluster_g{g} {{")
            lines.append(f"{indent}  label={_quote(f'group {g}')}; style=dashed;")
            for m in program.groups[g]:
                lines.append(f"{indent}  {node(program.task(m))}")
            lines.append(f"{indent}}}")
        for task in loose.get(chain, []):
            lines.append(indent + node(task))
        for child in children.get(chain, []):
            kind, ident = child[-1]
            if kind == "s":
                label = "scope " + scope_text(program.scopes.get(ident) or (ident,))
                style = "rounded"
                temps = "\ntemporaries "
            else:
                label, style, temps = _loop_label(program, ident), "bold", "\nper iteration "
            if temporaries.get(child[-1]):
                label += temps + " ".join(temporaries[child[-1]])
            lines.append(f"{indent}subgraph cluster_{kind}{ident} {{")
            lines.append(f"{indent}  label={_quote(label)}; style={style};")
            emit(child, indent + "  ")
            lines.append(f"{indent}}}")

    emit((), "  ")
    for u, v in sorted(program.graph.edges):
        data = program.graph.edges[u, v]
        label = "+".join(sorted(data.get("kinds", ())))
        tensors = ",".join(sorted(tensor_name(program, t) for t in data.get("tensors", ())))
        style = ", style=dashed" if data.get("added_by", "deps") != "deps" else ""
        text = f"{label} {tensors}".strip()
        if data.get("carried"):
            text, style = f"{text} carried", ', style=dashed, color="#b03030", constraint=false'
        lines.append(f"  t{u} -> t{v} [label={_quote(text)}{style}];")
    for t in transfers(program):
        what = f"x{t.id} host {t.src} -> host {t.dst}, {t.nbytes} B"
        for c in t.consumers:
            lines.append(f"  t{t.producer} -> t{c} [label={_quote(what)}, color=blue, "
                         f"fontcolor=blue, style=bold, constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# Rendered by Graphviz's `dot`. SVG is drawn without Graphviz by `l3c.viz.graph_svg` (`dump-ir
# --format svg`), which a printer of the IR does not import.
RENDER_FORMATS = ("png",)


def render(program: Program, format: str, timeout: float = 120.0) -> bytes:  # noqa: A002
    """The DOT view rendered by Graphviz's `dot` program ("png" bytes).

    Raises `L3CError` with a one-line hint when `dot` is not installed or fails."""
    import shutil
    import subprocess

    if format not in RENDER_FORMATS:
        raise L3CError(f"unknown render format {format!r}; use one of {', '.join(RENDER_FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise L3CError(f"--format {format} needs Graphviz's 'dot' program, which is not installed: "
                       "install graphviz (e.g. apt-get install graphviz), or use --format svg "
                       "(drawn without Graphviz) or --format dot")
    try:
        proc = subprocess.run([exe, f"-T{format}"], input=to_dot(program).encode(),
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise L3CError(f"Graphviz 'dot -T{format}' took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()
        raise L3CError(f"Graphviz 'dot -T{format}' failed: {why[-1] if why else proc.returncode}")
    return proc.stdout
