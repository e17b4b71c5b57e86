"""The `l3c` command line, through real `python -m l3c` subprocesses."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = "examples/tiled_matmul.py:tiled_matmul"
ARGS = ["--arg", "f32[64,32]", "--arg", "f32[32,64]"]


def l3c(*argv, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "l3c", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l3c: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_dump_ir_text():
    result = l3c("dump-ir", EXAMPLE, *ARGS)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("program examples.tiled_matmul:tiled_matmul")
    assert "passes trace deps scopes fuse schedule memory" in out
    task_lines = [line for line in out.splitlines() if re.match(r"  %\d+ ", line)]
    assert len(task_lines) == 9
    assert "matmul_tile" in task_lines[0] and "reads arg0[0:32,0:16]" in task_lines[0]
    assert re.search(r"waits %\d+\((RAW|WAR|WAW)", out)
    assert "@ tiled_matmul.py:" in task_lines[0]
    assert "column_sums  sub 0" in out
    assert "memory: arena" in out
    assert l3c("dump-ir", EXAMPLE, *ARGS).stdout == out          # deterministic


def test_dump_ir_json_has_the_spec_keys():
    result = l3c("dump-ir", EXAMPLE, *ARGS, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"tasks", "tensors", "groups", "memory"} <= set(data)
    for task in data["tasks"]:
        assert {"id", "kernel", "worker", "chip", "group", "deps", "loc"} <= set(task)
    assert [t["id"] for t in data["tasks"]] == list(range(len(data["tasks"])))
    assert data["tasks"][0]["kernel"] == "examples.tiled_matmul:matmul_tile"
    assert any(t["deps"] for t in data["tasks"])
    assert data["groups"][0] == [0, 1]
    assert data["memory"]["arena_bytes"] <= data["memory"]["naive_bytes"]


def check_dot(text: str) -> None:
    """A tiny validity check for the DOT we emit: one digraph, balanced braces, every statement
    a node, edge, attribute or subgraph line, every edge between declared nodes."""
    lines = [line.strip() for line in text.strip().splitlines()]
    assert re.fullmatch(r'digraph "[^"]*" \{', lines[0]) and lines[-1] == "}"
    assert text.count("{") == text.count("}")
    nodes, edges = set(), []
    string = r'"(?:[^"\\]|\\.)*"'
    for line in lines[1:-1]:
        if m := re.fullmatch(rf"(t\d+) \[label={string}\];", line):
            nodes.add(m.group(1))
        elif m := re.fullmatch(rf"(t\d+) -> (t\d+) \[label={string}(, style=dashed)?\];", line):
            edges.append((m.group(1), m.group(2)))
        elif not (re.fullmatch(r"subgraph cluster_[gs]\d+ \{|\}", line)
                  or re.fullmatch(rf"(rankdir=TB|node \[shape=box, fontname={string}\]|"
                                  rf"label={string}; style=(dashed|rounded));", line)):
            raise AssertionError(f"not a DOT statement we emit: {line!r}")
    assert all(u in nodes and v in nodes for u, v in edges)


def test_dump_ir_dot_is_valid(tmp_path):
    out = tmp_path / "g.dot"
    result = l3c("dump-ir", EXAMPLE, *ARGS, "--format", "dot", "-o", str(out))
    assert result.returncode == 0 and result.stdout == "", result.stderr
    text = out.read_text()
    check_dot(text)
    assert "subgraph cluster_g0" in text and "->" in text
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", str(out), "-o", os.devnull], check=True, timeout=60)


def test_check_dot_catches_broken_dot():
    with pytest.raises(AssertionError):
        check_dot('digraph "x" {\n  t0 [label="a"];\n  t0 -> t1 [label="RAW"];\n}\n')


def test_dump_ir_after_a_pass_and_module_target():
    traced = l3c("dump-ir", "examples.axpy_rows:step", "--arg", "f32[8,8]", "--arg", "f32[8,8]",
                 "--after", "trace")
    assert traced.returncode == 0, traced.stderr
    assert "  passes trace\n" in traced.stdout and "waits" not in traced.stdout
    deps = l3c("dump-ir", "examples/axpy_rows.py:step", "--arg", "float32[8,8]",
               "--arg", "f32[8,8]", "--after", "deps")
    assert deps.returncode == 0, deps.stderr
    assert "  passes trace deps\n" in deps.stdout and "waits %" in deps.stdout


def test_static_literal_arguments():
    result = l3c("dump-ir", EXAMPLE, *ARGS, "--arg", "1", "--arg", "0.0", "--after", "trace")
    assert result.returncode == 0, result.stderr
    assert "tiles=1 bias=0.0" in result.stdout and "scalars bias=0.0" in result.stdout
    assert result.stdout.count(" matmul_tile ") == 2
    too_many = l3c("dump-ir", EXAMPLE, *ARGS, "--arg", "4")
    assert_one_line_error(too_many, "tiled_matmul.py:", "4 members", "2 chips")


def test_compile_then_run(tmp_path):
    schedule = tmp_path / "mm.l3c"
    result = l3c("compile", EXAMPLE, *ARGS, "-o", str(schedule))
    assert result.returncode == 0, result.stderr
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 32)).astype(np.float32)
    b = rng.standard_normal((32, 64)).astype(np.float32)
    np.savez(tmp_path / "in.npz", arg0=a, arg1=b)
    result = l3c("run", str(schedule), "--input", str(tmp_path / "in.npz"),
                 "--output", str(tmp_path / "out.npz"))
    assert result.returncode == 0, result.stderr
    assert "out0: float32[64,64]" in result.stdout
    with np.load(tmp_path / "out.npz") as out:
        y = np.maximum(a @ b + 0.5, 0)
        np.testing.assert_allclose(out["out0"], y, atol=1e-4)
        np.testing.assert_allclose(out["out1"], y.sum(axis=0), atol=1e-3)
    missing = tmp_path / "partial.npz"
    np.savez(missing, arg0=a)
    assert_one_line_error(l3c("run", str(schedule), "--input", str(missing)), "'arg1'")


@pytest.mark.parametrize("argv, fragments", [
    (["dump-ir", EXAMPLE, "--arg", "f33[4]"], ["unknown dtype 'f33'"]),
    (["dump-ir", EXAMPLE, "--arg", "f32[4,x]"], ["malformed dims", "'x'"]),
    (["dump-ir", EXAMPLE, "--arg", "f32[-4]"], ["malformed dims"]),
    (["dump-ir", EXAMPLE, "--arg", "nonsense("], ["bad --arg 'nonsense('"]),
    (["dump-ir", "examples/missing.py:fn"], ["no such file: examples/missing.py"]),
    (["dump-ir", "examples/tiled_matmul.py:nope"], ["has no function 'nope'"]),
    (["dump-ir", "no_such_module_xyz:fn"], ["no module named 'no_such_module_xyz'"]),
    (["dump-ir", "examples/tiled_matmul.py:matmul_tile"], ["not an l3c.jit function"]),
    (["dump-ir", "examples/tiled_matmul.py"], ["bad TARGET"]),
    (["dump-ir", EXAMPLE, "--arg", "f32[64,32]"], ["missing a required argument: 'b'"]),
    (["dump-ir", EXAMPLE, *ARGS, "--arg", "2", "--arg", "0.5", "--arg", "1"], ["too many"]),
    (["dump-ir", EXAMPLE, *ARGS, "--after", "nope"], ["invalid choice: 'nope'"]),
    (["dump-ir", EXAMPLE, *ARGS, "--format", "yaml"], ["invalid choice: 'yaml'"]),
    (["compile", EXAMPLE, *ARGS], ["-o"]),
    (["run", "missing.l3c", "--input", "in.npz"], ["no such file: missing.l3c"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["required"]),
])
def test_errors_exit_1_with_one_line(argv, fragments):
    assert_one_line_error(l3c(*argv), *fragments)


def write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_trace_error_and_user_exceptions_are_one_line(tmp_path):
    bad = write(tmp_path, "bad_orch.py", """\
        import l3c

        @l3c.jit(chips=1)
        def f(x):
            if x:
                pass
        """)
    assert_one_line_error(l3c("dump-ir", f"{bad}:f", "--arg", "f32[2]"), "bad_orch.py:5:", "bool()")
    broken = write(tmp_path, "broken_mod.py", "raise RuntimeError('boom')\n")
    assert_one_line_error(l3c("dump-ir", f"{broken}:f"), "RuntimeError: boom")
    crash = write(tmp_path, "crash_orch.py", """\
        import l3c

        @l3c.jit(chips=1)
        def f(x):
            return {}["missing"]
        """)
    assert_one_line_error(l3c("dump-ir", f"{crash}:f", "--arg", "f32[2]"), "KeyError")


def test_corrupt_schedule_is_one_line(tmp_path):
    path = tmp_path / "junk.l3c"
    path.write_text("not a schedule")
    np.savez(tmp_path / "in.npz", arg0=np.zeros(2))
    assert_one_line_error(l3c("run", str(path), "--input", str(tmp_path / "in.npz")))


def test_help_exits_0():
    result = l3c("--help")
    assert result.returncode == 0 and "dump-ir" in result.stdout


def test_demo_and_profile_get_their_own_arguments(tmp_path):
    # `demo` and `profile` are parsed by their own modules; the CLI forwards everything after them.
    result = l3c("demo", "--no-such-demo-option")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--no-such-demo-option" in result.stderr


def test_run_takes_inputs_by_position_by_name_or_counting_arrays_only(tmp_path):
    """With a static first, `h(k, x, y)`: the SPEC's `arg<i>` (x is arg1), the parameters' names,
    and arg0/arg1 counting the arrays only all work; a mix of schemes is refused."""
    src = write(tmp_path, "static_first.py", """\
        import l3c

        @l3c.kernel
        def combine(k: int, x: l3c.In, y: l3c.In, out: l3c.Out):
            out[...] = k * x + y

        @l3c.jit(chips=1)
        def h(k, x, y):
            out = l3c.empty_like(x)
            combine(k, x, y, out)
            return out
        """)
    schedule = tmp_path / "h.l3c"
    result = l3c("compile", f"{src}:h", "--arg", "3", "--arg", "f32[4]", "--arg", "f32[4]",
                 "-o", str(schedule), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    x, y = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    for i, names in enumerate((("arg1", "arg2"), ("x", "y"), ("arg0", "arg1"))):
        path = tmp_path / f"in{i}.npz"
        np.savez(path, **{names[0]: x, names[1]: y})
        out = tmp_path / f"out{i}.npz"
        result = l3c("run", str(schedule), "--input", str(path), "--output", str(out),
                     cwd=str(tmp_path))
        assert result.returncode == 0, (names, result.stderr)
        with np.load(out) as data:
            np.testing.assert_array_equal(data["out0"], 3 * x + y)
    np.savez(tmp_path / "mixed.npz", arg1=x, y=y)
    assert_one_line_error(l3c("run", str(schedule), "--input", str(tmp_path / "mixed.npz"),
                              cwd=str(tmp_path)), "'arg2'", "'y'")
