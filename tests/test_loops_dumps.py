"""Programs with loops in the dumps: the text form (loop headers, indented bodies, moving views,
loop-variable scalars, carried edges), JSON that the schedule-file codec reads back exactly (and
checks), DOT clusters and the SVG drawing."""
from __future__ import annotations

import re

import numpy as np
import pytest

import l3c
from l3c.ir import Affine, Shift
from l3c.ircodec import dec_program, enc_program
from l3c.irdump import dump
from l3c.viz.dot import to_dot
from l3c.viz.graph_svg import to_svg

FILE = "test_loops_dumps.py"


@l3c.kernel
def add(x: l3c.InOut, k):
    x[...] += k


@l3c.kernel
def copy(x: l3c.In, y: l3c.Out):
    y[...] = x


@l3c.kernel
def step(flag: l3c.InOut):
    flag[...] = 0


def program_with_loops(line_of=None):
    def f(x, n):
        acc = l3c.zeros((8,), np.float32)
        for i in l3c.range(4):  # RANGE
            t = l3c.empty((8,), np.float32)
            copy(x[i], t)
            with l3c.scope():
                for j in l3c.range(1, n[0:1], 2):
                    add(x[i, 2 * j - 1:2 * j + 1], 2 * i + j)
        for k in l3c.while_loop(n[1:2], max_iterations=5):
            add(x[:, k], k)
            step(n[1:2])
        with l3c.cond(n[0:1], invert=True):
            add(acc, 3.0)
        return acc
    return f


def traced():
    return l3c.jit(program_with_loops(), chips=2).trace(np.zeros((4, 8), np.float32),
                                                          np.array([3, 1]))


def test_text_form_shows_loops_indented_with_moving_views():
    text = dump(traced(), "text")
    lines = text.splitlines()
    at = lines.index("tasks:")
    body = lines[at + 1:lines.index("tensors:")]
    assert re.fullmatch(rf"  range L0 start=0 stop=4 step=1  @ {FILE}:\d+", body[1]), body
    assert body[0].startswith("  %0 fill_zeros")
    assert body[2].startswith("    %1 copy  chip ?  reads arg0[L0,0:8]  writes t1")
    assert body[3] == "    range L1 start=1 stop=arg1[0] step=2  @ " + body[3].rsplit("@ ", 1)[1]
    assert body[4].startswith("      %2 add  chip ?  updates arg0[L0,2*L1-1:2*L1+1]  "
                              "scalars k=2*L0+L1  scope /0")
    assert body[5].startswith("  while L2 flag=arg1[1] max_iterations=5  @ ")
    assert body[6].startswith("    %3 add  chip ?  updates arg0[0:4,L2]  scalars k=L2")
    assert body[8].startswith("  cond L3 flag=arg1[0] invert  @ ")
    assert body[9].startswith("    %5 add  chip ?  updates t0  scalars k=3.0")
    assert any(line.startswith("  t1 intermediate float32[8]  scope /  loops L0") for line in lines)


def test_text_form_of_a_carried_edge_and_the_reads_order():
    program = traced()
    program.add_dependency(3, 3, "WAW", 0, carried=True)
    program.loops[2].reads_after = ((4, True),)
    program.loops[2].reads_before = ((4, False),)
    text = dump(program, "text")
    assert "%3 add" in text and "waits %3(WAW arg0 carried)" in text
    assert "while L2 flag=arg1[1] max_iterations=5  read after %4(carried)  read before %4  @" in text


def test_json_round_trips_exactly():
    program = traced()
    program.add_dependency(3, 3, "WAW", 0, carried=True)
    program.add_dependency(1, 2, "WAR", 0)
    program.loops[2].reads_after = ((4, True),)
    encoded = enc_program(program)
    assert encoded["loops"][1]["stop"]["region"]["offset"] == 0
    assert encoded["tasks"][2]["args"][1] == {"param": "k", "affine": [0, [[0, 2], [1, 1]]]}
    assert encoded["tasks"][2]["args"][0]["region"]["shifts"] == [[0, 8, [1, 0]], [1, 2, [0, 2]]]
    assert encoded["tasks"][3]["waits"] == [{"task": 3, "kinds": ["WAW"], "tensors": ["arg0"],
                                             "added_by": "deps", "carried": True}]
    back = dec_program(encoded, 64)
    assert enc_program(back) == encoded
    assert back.loops == program.loops
    assert [t.loops for t in back.tasks] == [t.loops for t in program.tasks]
    assert [t.loops for t in back.tensors] == [t.loops for t in program.tensors]
    assert back.tasks[2].args == program.tasks[2].args
    assert back.graph.edges[3, 3]["carried"] and not back.graph.edges[1, 2]["carried"]


def test_json_of_a_program_without_loops_has_empty_loop_fields():
    def g(x):
        copy(x[0], x[1])
    encoded = enc_program(l3c.jit(g, chips=2).trace(np.zeros((2, 2))))
    assert encoded["loops"] == [] and encoded["tasks"][0]["loops"] == []
    assert "shifts" not in encoded["tasks"][0]["args"][0]["region"]
    assert enc_program(dec_program(encoded, 64)) == encoded


@pytest.mark.parametrize("edit, fragment", [
    (lambda j: j["tasks"][1].update(loops=[]), "not the loops whose body holds it"),
    (lambda j: j["tasks"][5].update(loops=[0]), "not the loops whose body holds it"),
    (lambda j: j["tasks"][1]["args"][0]["region"]["shifts"][0].__setitem__(0, 2),
     "does not enclose it"),
    (lambda j: j["tasks"][1]["args"][0]["region"]["shifts"][0].__setitem__(1, 16),
     "reaches outside tensor arg0"),
    (lambda j: j["tasks"][2]["args"][1].update(affine=[0, [[3, 1]]]), "do not enclose it"),
    (lambda j: j["loops"][1].update(parent=None, first_task=0, end_task=9), "malformed"),
    (lambda j: j["loops"][0].update(step=0), "malformed"),
    (lambda j: j["loops"][2].update(flag=None), "malformed"),
    (lambda j: j["loops"][2]["flag"]["region"].update(shape=[2], strides=[1],
                                                         box=[[0, 2, 1]]), "one element"),
    (lambda j: j["tasks"][3]["waits"][0].update(carried="yes"), "carried"),
    (lambda j: j["tensors"][2].update(loops=[7]), "names a loop"),
])
def test_the_codec_refuses_inconsistent_loops(edit, fragment):
    program = traced()
    program.add_dependency(3, 3, "WAW", 0, carried=True)
    encoded = enc_program(program)
    edit(encoded)
    with pytest.raises((ValueError, KeyError, TypeError, IndexError)) as info:
        dec_program(encoded, 64)
    assert fragment in str(info.value)


def test_dot_nests_loop_clusters_with_scopes_and_dashes_carried_edges():
    program = traced()
    program.add_dependency(3, 3, "WAW", 0, carried=True)
    dot = to_dot(program)
    stack, parent, node_in = ["<root>"], {}, {}
    for line in dot.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"subgraph (cluster_[gsl]\d+) \{", line):
            assert m.group(1) not in parent
            parent[m.group(1)] = stack[-1]
            stack.append(m.group(1))
        elif line == "}" and len(stack) > 1:
            stack.pop()
        elif m := re.match(r"(t\d+) \[label=", line):
            node_in[m.group(1)] = stack[-1]
    assert parent == {"cluster_l0": "<root>", "cluster_s0": "cluster_l0",
                      "cluster_l1": "cluster_s0", "cluster_l2": "<root>", "cluster_l3": "<root>"}
    assert node_in == {"t0": "<root>", "t1": "cluster_l0", "t2": "cluster_l1",
                       "t3": "cluster_l2", "t4": "cluster_l2", "t5": "cluster_l3"}
    assert 'label="range L0 start=0 stop=4 step=1\\n@ ' in dot and "per iteration t1" in dot
    assert re.search(r't3 -> t3 \[label="WAW arg0 carried", style=dashed', dot)


def test_svg_frames_loops_and_draws_carried_edges():
    program = traced()
    program.add_dependency(3, 3, "WAW", 0, carried=True)
    program.add_dependency(4, 3, "RAW", 1, carried=True)     # points back up: not in the layering
    svg = to_svg(program)
    assert svg.count('<g class="loop"') == 4 and 'data-loop="1"' in svg
    assert svg.count('marker-end="url(#head-carried)"') == 2 and "earlier iteration" in svg

    def g(x):
        copy(x[0], x[1])
    plain = to_svg(l3c.jit(g, chips=2).trace(np.zeros((2, 2))))
    assert 'id="loops"' not in plain and "earlier iteration" not in plain


def test_cli_dump_ir_shows_loops(tmp_path):
    import subprocess
    import sys
    import os
    src = tmp_path / "looped.py"
    src.write_text(
        "import numpy as np\nimport l3c\n\n@l3c.kernel\ndef add(x: l3c.InOut, k):\n    x[...] += k\n\n"
        "@l3c.jit(chips=2)\ndef f(x):\n    for i in l3c.range(2, 6):\n        add(x[i], i)\n    return x\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(
        os.path.abspath(l3c.__file__))), str(tmp_path)]))
    for fmt, needle in (("text", "range L0 start=2 stop=6 step=1  @ looped.py:10"),
                        ("json", '"kind": "range"'), ("dot", "cluster_l0")):
        out = subprocess.run([sys.executable, "-m", "l3c", "dump-ir", "looped.py:f", "--arg",
                              "f32[8,4]", "--after", "trace", "--format", fmt],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert needle in out.stdout, out.stdout[:2000]


def test_compiled_loops_and_node_attributes():
    compiled = l3c.jit(program_with_loops(), chips=2).lower(np.zeros((4, 8), np.float32),
                                                             np.array([3, 1]))
    loops = compiled.loops
    assert [v["kind"] for v in loops.values()] == ["range", "range", "while", "cond"]
    assert loops[1]["stop"] == "arg1[0]" and loops[1]["parent"] == 0 and loops[1]["tasks"] == [2]
    assert loops[2]["max_iterations"] == 5 and loops[3]["invert"] is True
    assert [compiled.graph.nodes[n]["loops"] for n in sorted(compiled.graph)] == [
        (), (0,), (0, 1), (2,), (2,), (3,)]
    assert compiled.program.tasks[2].args[0].region.shifts == (Shift(0, 8, (1, 0)),
                                                                Shift(1, 2, (0, 2)))
    assert compiled.program.tasks[2].args[1].value == Affine(0, ((0, 2), (1, 1)))


def test_schedule_files_store_loops_or_say_why_not(tmp_path):
    """Format 5 stores loops: a saved schedule loads with the same dumps and runs like `.eager`;
    where the build's runtime cannot lower loops, saving is a clear L3CError instead."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    import _loops_kernels as kernels

    compiled = l3c.jit(kernels.looped, chips=2).lower(np.zeros((4, 8)), np.array([1]),
                                                        np.zeros(1, np.int64))
    path = tmp_path / "looped.l3c"
    try:
        compiled.save(path)
    except l3c.L3CError as exc:
        assert "loops" in str(exc)
        return
    loaded = l3c.load(path)
    assert loaded.dump() == compiled.dump() and loaded.dump("json") == compiled.dump("json")
    assert loaded.loops == compiled.loops
    args = (np.zeros((4, 8)), np.array([1]), np.zeros(1, np.int64))
    want = l3c.jit(kernels.looped, chips=2).eager(*(a.copy() for a in args))
    np.testing.assert_array_equal(loaded(*args), want)
