"""`dump-ir --format dot`: scopes as nested clusters, groups as clusters inside them; png via
Graphviz when it is installed, a one-line error when it is not; svg drawn by l3c itself (layers by
dependency depth, a colour per chip, groups boxed), with or without Graphviz."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import l3c
from l3c.viz.dot import to_dot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--arg", "f32[64,32]", "--arg", "f32[32,64]"]
STRING = r'"(?:[^"\\]|\\.)*"'


def parse_dot(text: str) -> dict:
    """A small parser for the DOT we emit: the cluster tree, where each node is declared, edges."""
    lines = [line.strip() for line in text.strip().splitlines()]
    assert re.fullmatch(r'digraph "[^"]*" \{', lines[0]) and lines[-1] == "}"
    stack = ["<root>"]
    parent: dict[str, str] = {}
    labels: dict[str, str] = {}
    node_in: dict[str, str] = {}
    edges: list[tuple[int, int]] = []
    for line in lines[1:-1]:
        if m := re.fullmatch(r"subgraph (cluster_[gs]\d+) \{", line):
            assert m.group(1) not in parent, f"cluster {m.group(1)} declared twice"
            parent[m.group(1)] = stack[-1]
            stack.append(m.group(1))
        elif line == "}":
            stack.pop()
            assert stack, "unbalanced braces"
        elif m := re.fullmatch(rf"label=({STRING}); style=(dashed|rounded);", line):
            labels[stack[-1]] = m.group(1)
        elif m := re.fullmatch(rf"t(\d+) \[label={STRING}\];", line):
            assert m.group(1) not in node_in, f"node t{m.group(1)} declared twice"
            node_in[m.group(1)] = stack[-1]
        elif m := re.fullmatch(rf"t(\d+) -> t(\d+) \[label={STRING}(, style=dashed)?\];", line):
            edges.append((int(m.group(1)), int(m.group(2))))
        elif not re.fullmatch(rf"rankdir=TB;|node \[shape=box, fontname={STRING}\];", line):
            raise AssertionError(f"unexpected DOT line {line!r}")
    assert stack == ["<root>"], "unbalanced braces"
    return {"parent": parent, "labels": labels, "node_in": {int(k): v for k, v in node_in.items()},
            "edges": edges}


def ancestors(parent: dict, cluster: str) -> list[str]:
    out = []
    while cluster != "<root>":
        out.append(cluster)
        cluster = parent[cluster]
    return out


@l3c.kernel
def _fill(v: float, out: l3c.Out):
    out[...] = v


@l3c.kernel
def _add(x: l3c.In, y: l3c.InOut):
    y += x


@l3c.jit(chips=2)
def _nested(x):
    acc = l3c.empty_like(x)
    _fill(0.0, acc)
    with l3c.scope():
        a = l3c.empty_like(x)
        l3c.group(_fill, [(1.0, a[i::2]) for i in range(2)])
        with l3c.scope():
            b = l3c.empty_like(x)
            _fill(2.0, b)
            _add(b, a)
        _add(a, acc)
    _add(x, acc)
    return acc


def check_structure(program, dot: dict) -> None:
    parent, node_in = dot["parent"], dot["node_in"]
    assert sorted(node_in) == [t.id for t in program.tasks]
    assert sorted(dot["edges"]) == sorted(program.graph.edges)
    for task in program.tasks:
        chain = ancestors(parent, node_in[task.id])
        scopes = [int(c[len("cluster_s"):]) for c in chain if c.startswith("cluster_s")]
        assert tuple(reversed(scopes)) == task.scope, f"task {task.id}: {chain}"
        groups = [c for c in chain if c.startswith("cluster_g")]
        assert groups == ([f"cluster_g{task.group}"] if task.group is not None else [])
    for g, members in enumerate(program.groups):
        assert {m for m, c in node_in.items() if c == f"cluster_g{g}"} == set(members)
    for sid, path in program.scopes.items():
        cluster = f"cluster_s{sid}"
        assert cluster in parent
        outer = parent[cluster]
        assert outer == ("<root>" if len(path) == 1 else f"cluster_s{path[-2]}")


def test_nested_scopes_become_nested_clusters():
    x = np.ones(8, np.float32)
    compiled = _nested.lower(x)
    program = compiled.program
    assert any(len(p) == 2 for p in program.scopes.values())       # really nested
    text = compiled.dump("dot")
    dot = parse_dot(text)
    check_structure(program, dot)
    inner = next(s for s, p in program.scopes.items() if len(p) == 2)
    outer = program.scopes[inner][0]
    assert dot["parent"][f"cluster_s{inner}"] == f"cluster_s{outer}"
    assert "temporaries" in dot["labels"][f"cluster_s{inner}"]
    group_cluster = next(c for c in dot["parent"] if c.startswith("cluster_g"))
    assert dot["parent"][group_cluster] == f"cluster_s{outer}"
    np.testing.assert_array_equal(_nested(x), np.full(8, 4.0, np.float32))


def test_demo_program_dot_structure():
    from l3c.demo import _inputs, mlp_block
    program = mlp_block.lower(*_inputs(64, 16)).program
    check_structure(program, parse_dot(to_dot(program)))


def test_parse_dot_rejects_a_misplaced_node():
    x = np.ones(8, np.float32)
    program = _nested.lower(x).program
    text = to_dot(program)
    moved = re.sub(r"\n(\s*)(t0 \[label=[^\n]*)\n", "\n", text, count=1)   # drop t0 ...
    lines = moved.splitlines()
    inner = next(i for i, line in enumerate(lines) if "cluster_g" in line)
    lines.insert(inner + 2, "t0 [label=\"x\"];")                           # ... into a group
    with pytest.raises(AssertionError):
        check_structure(program, parse_dot("\n".join(lines) + "\n"))


def _cli(*argv, path=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "l3c", *argv], cwd=ROOT, env=env,
                          capture_output=True, timeout=120)


def test_cli_dot_nests_clusters(tmp_path):
    out = tmp_path / "g.dot"
    result = _cli("dump-ir", "examples/tiled_matmul.py:tiled_matmul", *ARGS, "--format", "dot",
                  "-o", str(out))
    assert result.returncode == 0, result.stderr
    dot = parse_dot(out.read_text())
    scoped = [c for c, p in dot["parent"].items() if c.startswith("cluster_g") and p != "<root>"]
    assert scoped, "the scoped group task should sit inside its scope's cluster"


def test_render_without_graphviz_is_one_line_error(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = _cli("dump-ir", "examples/tiled_matmul.py:tiled_matmul", *ARGS, "--format", "png",
                  path=str(empty))
    err = result.stderr.decode()
    assert result.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "install graphviz" in err and "--format dot" in err and "Traceback" not in err


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG")])
def test_render_with_graphviz(tmp_path, fmt, magic):
    out = tmp_path / f"g.{fmt}"
    result = _cli("dump-ir", "examples/tiled_matmul.py:tiled_matmul", *ARGS, "--format", fmt,
                  "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert magic in data[:400]
    if fmt == "svg":
        assert b"cluster_s" in data and b"matmul_tile" in data


# ---- svg, drawn by l3c ------------------------------------------------------------------------------
SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(text: str) -> dict:
    """Boxes of the task nodes and of the group frames, their fills, and the edges, from our SVG."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(text.encode())
    assert root.tag == SVG + "svg"
    nodes, groups = {}, {}
    for g in root.iter(SVG + "g"):
        rect = g.find(SVG + "rect")
        if g.get("class") == "node":
            nodes[int(g.get("data-task"))] = {k: (float(rect.get(k)) if k != "fill" else rect.get(k))
                                              for k in ("x", "y", "width", "height", "fill")}
        elif g.get("class") == "group-box":
            groups[int(g.get("data-group"))] = {k: float(rect.get(k)) for k in ("x", "y", "width", "height")}
    edges = [p for p in root.iter(SVG + "path") if p.get("class") == "edge"]
    refs = [(e.tag, k, v) for e in root.iter() for k, v in e.attrib.items()
            if k.endswith("href") or k in ("src",) or (v.startswith("url(") and not v.startswith("url(#"))]
    return {"nodes": nodes, "groups": groups, "edges": edges, "refs": refs}


def check_svg(program, svg: dict) -> None:
    nodes = svg["nodes"]
    assert sorted(nodes) == [t.id for t in program.tasks]
    assert len(svg["edges"]) == program.graph.number_of_edges()
    for u, v in program.graph.edges:                      # layered by dependency depth: downwards
        assert nodes[v]["y"] > nodes[u]["y"], f"edge %{u} -> %{v} does not point down"
    placed = [t for t in program.tasks if t.chip is not None]
    fill_of = {}
    for task in placed:
        key = (task.worker, task.chip)
        fill_of.setdefault(key, nodes[task.id]["fill"])
        assert nodes[task.id]["fill"] == fill_of[key], f"task {task.id}: one colour per chip"
    assert len(set(fill_of.values())) == len(fill_of), "different chips, different colours"
    assert sorted(svg["groups"]) == [g for g, m in enumerate(program.groups) if len(m) > 1]
    for g, box in svg["groups"].items():
        for m in program.groups[g]:
            n = nodes[m]
            assert box["x"] <= n["x"] and n["x"] + n["width"] <= box["x"] + box["width"]
            assert box["y"] <= n["y"] and n["y"] + n["height"] <= box["y"] + box["height"]
    for task in program.tasks:                            # no box overlaps another
        for other in program.tasks[task.id + 1:]:
            a, b = nodes[task.id], nodes[other.id]
            assert (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                    or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"]), (task.id, other.id)
    assert svg["refs"] == [], "the SVG refers to something outside itself"


def test_svg_without_graphviz(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "g.svg"
    result = _cli("dump-ir", "examples/tiled_matmul.py:tiled_matmul", *ARGS, "--format", "svg",
                  "-o", str(out), path=str(empty))
    assert result.returncode == 0, result.stderr
    from examples.tiled_matmul import tiled_matmul
    program = tiled_matmul.lower(np.zeros((64, 32), np.float32), np.zeros((32, 64), np.float32)).program
    check_svg(program, parse_svg(out.read_text()))


def test_svg_of_programs_at_every_stage():
    from l3c.demo import _inputs, mlp_block
    from l3c.viz.graph_svg import to_svg
    x = np.ones(8, np.float32)
    check_svg(_nested.lower(x).program, parse_svg(to_svg(_nested.lower(x).program)))
    args = _inputs(64, 16)
    check_svg(mlp_block.lower(*args).program, parse_svg(to_svg(mlp_block.lower(*args).program)))
    traced = mlp_block._run_passes(mlp_block.trace(*args), until="trace")   # unplaced, no edges
    svg = parse_svg(to_svg(traced))
    check_svg(traced, svg)
    assert {n["fill"] for n in svg["nodes"].values()} == {"#c8c8c8"}


def test_check_svg_catches_an_edge_pointing_up():
    from l3c.viz.graph_svg import to_svg
    x = np.ones(8, np.float32)
    program = _nested.lower(x).program
    svg = parse_svg(to_svg(program))
    u, v = next(iter(program.graph.edges))
    svg["nodes"][v]["y"], svg["nodes"][u]["y"] = svg["nodes"][u]["y"], svg["nodes"][v]["y"]
    with pytest.raises(AssertionError):
        check_svg(program, svg)
