"""Fuzzed command lines: bad SPECs, bad targets, missing or corrupt files, wrong types.

Every invocation ends with status 0, or status 1 and exactly one line `l3c: error: ...` on stderr:
never status 2 (argparse), a traceback, several lines or a hang. Hundreds of cases run in-process
through `l3c.cli.main` (same code path as the console script); a sample runs as real subprocesses.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from l3c import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "examples/tiled_matmul.py:tiled_matmul"
GOOD_SPECS = ["f32[64,32]", "f32[32,64]"]

HOSTILE_SPECS = [
    "", " ", "[", "]", "f32[", "f32]", "f32[64,", "f32[,]", "f32[-1]", "f32[1.5]", "f32[0x10]",
    "f32[64][32]", "f99[3]", "float128[2]", "object[3]", "str[3]", "U3[2]", "M8[2]", "void[2]",
    "f32[99999999999999999999]", "i64[" + "1," * 40 + "1]",
    "__import__('os').system('echo pwned')", "lambda: 0", "open('/etc/passwd')", "(" * 5000,
    "[" * 100000, "1e999", "-1e999", "nan", "None", "True", "'x' * 10**9", "10**10**10", "b'\\x00'",
    "{1: 2}", "{1, 2}", "...", "\x00", "f32[64,32]\x00", "ｆ32[64,32]",
]
HOSTILE_TARGETS = [
    "", ":", "nocolon", "examples/tiled_matmul.py", "examples/tiled_matmul.py:", ":tiled_matmul",
    "examples/missing.py:f", "examples/tiled_matmul.py:nope", "examples/tiled_matmul.py:np",
    "examples/tiled_matmul.py:matmul_tile", "examples:tiled_matmul", "os:system", "os.path:join",
    "no_such_module_l3c:f", "examples/:f", "/dev/null:f", "/etc/passwd:f", "..:f",
    "examples/tiled_matmul.py:tiled_matmul.__globals__", "\x00:f",
]


def mutate(spec: str, rng: random.Random) -> str:
    chars = list(spec)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        pos = rng.randrange(len(chars) + 1)
        if op < 0.4 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op < 0.8:
            chars.insert(pos, rng.choice("[],-.0123456789fiu xe'\"()"))
        elif chars:
            chars[min(pos, len(chars) - 1)] = rng.choice("[],-.09fiu ")
    return "".join(chars)


def fuzz_cases(n: int, seed: int, tmp: str) -> list[list[str]]:
    rng = random.Random(seed)
    files = _hostile_files(tmp)
    cases = []
    for _ in range(n):
        command = rng.choice(["dump-ir", "dump-ir", "compile", "run", "bogus", "profile"])
        if command == "run":
            argv = ["run", rng.choice(files), "--input", rng.choice(files)]
            if rng.random() < 0.3:
                argv += ["--output", rng.choice([os.path.join(tmp, "o.npz"), "/proc/nope/x.npz"])]
            if rng.random() < 0.2:
                argv.remove("--input")
            cases.append(argv)
            continue
        target = TARGET if rng.random() < 0.6 else rng.choice(HOSTILE_TARGETS)
        specs = []
        for good in GOOD_SPECS:
            r = rng.random()
            specs.append(good if r < 0.4 else mutate(good, rng) if r < 0.8 else rng.choice(HOSTILE_SPECS))
        if rng.random() < 0.15:
            specs.append(rng.choice(HOSTILE_SPECS + GOOD_SPECS))
        if rng.random() < 0.1:
            specs = specs[:1]
        argv = [command, target] + [a for s in specs for a in ("--arg", s)]
        if command in ("compile", "profile") and rng.random() < 0.9:
            argv += ["-o", rng.choice([os.path.join(tmp, "out.bin"), "/proc/nope/out", tmp])]
        if command == "dump-ir" and rng.random() < 0.3:
            argv += rng.choice([["--format", "yaml"], ["--after", "nope"], ["--after", "deps"],
                                ["--format", "dot"], ["-o", "/proc/nope/x"]])
        cases.append(argv)
    return cases


def _hostile_files(tmp: str) -> list[str]:
    paths = {}
    paths["missing"] = os.path.join(tmp, "missing.l3c")
    paths["dir"] = tmp
    paths["empty"] = os.path.join(tmp, "empty")
    open(paths["empty"], "wb").close()
    paths["garbage"] = os.path.join(tmp, "garbage")
    with open(paths["garbage"], "wb") as f:
        f.write(os.urandom(300))
    paths["npz_wrong"] = os.path.join(tmp, "wrong.npz")
    np.savez(paths["npz_wrong"], arg0=np.zeros(3), arg1=np.zeros((2, 2), np.int8))
    paths["npz_object"] = os.path.join(tmp, "object.npz")
    np.savez(paths["npz_object"], arg0=np.array([None, 1], dtype=object), arg1=np.zeros(2))
    paths["npz_good"] = os.path.join(tmp, "good.npz")
    np.savez(paths["npz_good"], arg0=np.ones((64, 32), np.float32), arg1=np.ones((32, 64), np.float32))
    paths["npz_none"] = os.path.join(tmp, "none.npz")
    np.savez(paths["npz_none"], other=np.zeros(1))
    paths["schedule"] = os.path.join(tmp, "good.l3c")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert cli.main(["compile", TARGET, "--arg", GOOD_SPECS[0], "--arg", GOOD_SPECS[1],
                         "-o", paths["schedule"]]) == 0
    finally:
        os.chdir(cwd)
    data = open(paths["schedule"], "rb").read()
    paths["schedule_cut"] = os.path.join(tmp, "cut.l3c")
    with open(paths["schedule_cut"], "wb") as f:
        f.write(data[: len(data) // 2])
    return list(paths.values())


def _check(status, err: str, argv) -> None:
    lines = err.strip().splitlines()
    if status == 0:
        assert "Traceback" not in err, (argv, err)
        return
    assert status == 1, (argv, status, err)
    assert len(lines) == 1 and lines[0].startswith("l3c: error: "), (argv, err)
    assert "Traceback" not in err


def test_fuzzed_command_lines_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    cases = fuzz_cases(300, seed=5, tmp=str(tmp_path))
    capsys.readouterr()
    failures = 0
    for argv in cases:
        status = cli.main(argv)
        out, err = capsys.readouterr()
        _check(status, err, argv)
        failures += status != 0
    assert failures > len(cases) // 2                 # the fuzzer mostly produces bad input


@pytest.mark.parametrize("spec", HOSTILE_SPECS)
def test_every_hostile_spec(spec, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status = cli.main(["dump-ir", TARGET, "--arg", spec, "--arg", GOOD_SPECS[1]])
    _check(status, capsys.readouterr().err, spec)
    assert status == 1


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_every_hostile_target(target, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status = cli.main(["dump-ir", target, "--arg", GOOD_SPECS[0], "--arg", GOOD_SPECS[1]])
    _check(status, capsys.readouterr().err, target)
    assert status == 1


def test_fuzzed_command_lines_as_subprocesses(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cases = [c for c in fuzz_cases(8, seed=11, tmp=str(tmp_path)) if not any("\x00" in a for a in c)]
    for argv in cases[:6] + [["dump-ir"], [], ["run"], ["--bogus"]]:      # (argv cannot hold NUL)
        r = subprocess.run([sys.executable, "-m", "l3c", *argv], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        _check(r.returncode, r.stderr, argv)
