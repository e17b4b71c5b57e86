"""Ahead-of-time schedule files: round trips (in a fresh interpreter that never imports the
orchestration function), every ScheduleError case, and `l3c compile` / `l3c run`."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import l3c
from l3c import aot

ROOT = Path(__file__).resolve().parents[1]

KERNELS = '''
import numpy as np
import l3c

@l3c.kernel
def scale(alpha: float, x: l3c.In, y: l3c.Out):
    y[...] = alpha * x

@l3c.kernel
def add(x: l3c.InOut, v: float):
    x += v

@l3c.kernel(worker="sub")
def total(x: l3c.In, out: l3c.Out):
    out[...] = x.sum()
'''

ORCH = '''
import l3c
from {kernels} import scale, add, total

@l3c.jit(chips=2, sub_workers=1)
def step(x, w, n):
    h = l3c.empty(x.shape, x.dtype)
    l3c.group(scale, [(2.0, x[i::2], h[i::2]) for i in range(2)])
    for _ in range(n):
        with l3c.scope():
            t = l3c.empty_like(h)
            scale(3.0, h, t)
            add(t, 1.0)
            scale(1.0, t, h)
    add(w[1:], 5.0)
    out = l3c.empty((1,), x.dtype)
    total(h, out)
    return h, {{"out": out, "pair": (w, h[::3])}}
'''


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Kernels and an orchestration function in importable module files under tmp_path."""
    tag = uuid.uuid4().hex[:8]
    kernels, orch = f"aotk_{tag}", f"aoto_{tag}"
    (tmp_path / f"{kernels}.py").write_text(KERNELS)
    (tmp_path / f"{orch}.py").write_text(ORCH.format(kernels=kernels))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = __import__(orch)
    return tmp_path, kernels, orch, mod


def reference(x, w, n):
    """The orchestration function in plain numpy (independent oracle)."""
    h = 2.0 * x
    for _ in range(n):
        h = 3.0 * h + 1.0
    w[1:] += 5.0
    return h, {"out": np.array([h.sum()]), "pair": (w.copy(), h[::3])}


def inputs():
    return np.arange(10.0), np.zeros(4)


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def flat(tree):
    if isinstance(tree, np.ndarray):
        return [tree]
    if isinstance(tree, dict):
        return [a for k in tree for a in flat(tree[k])]
    return [a for x in tree for a in flat(x)]


def test_round_trip_in_a_fresh_interpreter(modules, tmp_path):
    _, kernels, orch, mod = modules
    x, w = inputs()
    compiled = mod.step.lower(x, w, 2)
    path = tmp_path / "step.l3c"
    compiled.save(path)
    w_ref = w.copy()
    expected = reference(x, w_ref, 2)
    script = textwrap.dedent(f"""
        import sys, numpy as np, l3c
        c = l3c.load({str(path)!r})
        x, w = np.arange(10.0), np.zeros(4)
        out = c(x, w, 2)
        assert {orch!r} not in sys.modules, "the orchestration module was imported"
        h, d = out
        np.savez({str(tmp_path / 'out.npz')!r}, h=h, out=d["out"], w0=d["pair"][0], h3=d["pair"][1],
                 w=w)
        print(c.dump())
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=env_for(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "out.npz")
    h, d = expected
    np.testing.assert_array_equal(got["h"], h)
    np.testing.assert_array_equal(got["out"], d["out"])
    np.testing.assert_array_equal(got["w0"], d["pair"][0])
    np.testing.assert_array_equal(got["h3"], d["pair"][1])
    np.testing.assert_array_equal(got["w"], w_ref)
    assert proc.stdout.strip() == compiled.dump().strip()


def test_round_trip_in_process_keeps_ir_plan_and_results(modules, tmp_path):
    _, _, _, mod = modules
    x, w = inputs()
    compiled = mod.step.lower(x, w, 1)
    path = tmp_path / "s.l3c"
    aot.save(compiled, path)
    loaded = l3c.load(path)
    assert loaded.dump() == compiled.dump()
    assert loaded.dump("json") == compiled.dump("json")
    assert sorted(loaded.graph.edges) == sorted(compiled.graph.edges)
    assert loaded.groups == compiled.groups
    assert loaded.memory.arena_bytes == compiled.memory.arena_bytes
    assert loaded.artifacts["lowered"].plan == compiled.artifacts["lowered"].plan
    w1, w2 = w.copy(), w.copy()
    for a, b in zip(flat(compiled(x, w1, 1)), flat(loaded(x, w2, 1))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(w1, w2)


@pytest.fixture
def saved(modules, tmp_path):
    _, _, _, mod = modules
    x, w = inputs()
    path = tmp_path / "good.l3c"
    mod.step.lower(x, w, 1).save(path)
    return path


def rewrite(path: Path, payload: dict | None = None, *, version: int = aot.FORMAT_VERSION,
            magic: bytes = aot.MAGIC) -> Path:
    """Write a file with a *valid* envelope around `payload` (so only the content check can fail)."""
    body = json.dumps(payload).encode() if payload is not None else path.read_bytes()[aot.HEADER.size:]
    out = path.with_name("edited.l3c")
    out.write_bytes(aot.HEADER.pack(magic, version, len(body), hashlib.sha256(body).digest()) + body)
    return out


def payload_of(path: Path) -> dict:
    return json.loads(path.read_bytes()[aot.HEADER.size:])


@pytest.mark.parametrize("cut", [0, 5, aot.HEADER.size - 1, aot.HEADER.size, aot.HEADER.size + 100,
                                 -1])
def test_truncated(saved, cut):
    data = saved.read_bytes()
    saved.write_bytes(data[:cut])
    with pytest.raises(l3c.ScheduleError, match="truncated|not an l3c schedule"):
        l3c.load(saved)


@pytest.mark.parametrize("where", [aot.HEADER.size, aot.HEADER.size + 777, -2, 30])
def test_flipped_byte(saved, where):
    data = bytearray(saved.read_bytes())
    data[where] ^= 0x20
    saved.write_bytes(bytes(data))
    with pytest.raises(l3c.ScheduleError, match="checksum|corrupt"):
        l3c.load(saved)


def test_wrong_magic_and_foreign_files(saved, tmp_path):
    with pytest.raises(l3c.ScheduleError, match="bad magic"):
        l3c.load(rewrite(saved, magic=b"NOTL3C!!"))
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(l3c.ScheduleError, match="not an l3c schedule"):
        l3c.load(foreign)
    with pytest.raises(l3c.ScheduleError, match="cannot read"):
        l3c.load(tmp_path / "missing.l3c")
    with pytest.raises(l3c.ScheduleError, match="not an l3c schedule payload"):
        l3c.load(rewrite(saved, {"format": "something else"}))
    with pytest.raises(l3c.ScheduleError, match="payload"):
        l3c.load(rewrite(saved, ["a", "list"]))


def test_other_version(saved):
    other = aot.FORMAT_VERSION + 1
    with pytest.raises(l3c.ScheduleError,
                       match=f"version {other}; this l3c reads version {aot.FORMAT_VERSION}"):
        l3c.load(rewrite(saved, version=other))
    with pytest.raises(l3c.ScheduleError, match=f"version {aot.FORMAT_VERSION - 1};"):
        l3c.load(rewrite(saved, version=aot.FORMAT_VERSION - 1))   # written by an older l3c


def test_padded_file(saved):
    saved.write_bytes(saved.read_bytes() + b"\0")
    with pytest.raises(l3c.ScheduleError, match="padded"):
        l3c.load(saved)


def _edits():
    def drop(key):
        def f(p):
            del p[key]
        return f

    def tasks0(f):
        return lambda p: f(p["program"]["tasks"][0])

    def set_(d, k, v):
        d[k] = v

    return {
        "missing program": drop("program"),
        "missing ir": drop("dispatcher_ir"),
        "foreign ir": lambda p: set_(p, "dispatcher_ir", p["dispatcher_ir"].replace(
            "ret i32 0", "ret i32 1")),
        "plan tampered": lambda p: set_(p["plan"]["queues"][0][0], "kernel", "os:system"),
        "kernel not a path": tasks0(lambda t: set_(t, "kernel", "nocolon")),
        "task wrong type": tasks0(lambda t: set_(t, "chip", "zero")),
        "object dtype": lambda p: set_(p["program"]["tensors"][0], "dtype", "object"),
        "region out of bounds": tasks0(lambda t: t["args"][1]["region"].__setitem__("offset", 10**6)),
        "edge backwards": lambda p: (p["program"]["tasks"][1]["waits"].append(
            {"task": 3, "kinds": ["RAW"], "tensors": ["arg0"], "added_by": "deps"}),
            p["program"]["tasks"][1]["deps"].append(3)),
        "deps and waits disagree": lambda p: p["program"]["tasks"][2]["deps"].append(0),
        "edge names an unknown tensor": lambda p: next(
            t for t in p["program"]["tasks"] if t["waits"])["waits"][0].__setitem__("tensors",
                                                                                   ["nope"]),
        "placed off the pool": tasks0(lambda t: set_(t, "chip", 99)),
        "signature mismatch": lambda p: set_(p["signature"][0], "shape", [11]),
        "kernels list": lambda p: set_(p, "kernels", ["x:y"]),
        "bad static tag": lambda p: set_(p["program"]["params"][2], "static", {"set": [1]}),
        "two tensors with one name": lambda p: set_(p["program"]["tensors"][1], "name",
                                                    p["program"]["tensors"][0]["name"]),
        "arena too small": lambda p: set_(p["program"]["memory"], "arena_bytes", 1),
    }


@pytest.mark.parametrize("name", list(_edits()))
def test_malformed_payloads_with_valid_checksum(saved, name):
    payload = payload_of(saved)
    _edits()[name](payload)
    with pytest.raises(l3c.ScheduleError, match="malformed schedule") as info:
        l3c.load(rewrite(saved, payload))
    assert str(rewrite(saved, payload)) in str(info.value)


def test_deeply_nested_payload(saved):
    text = json.dumps(payload_of(saved)).replace('"static": 1', '"static": ' + '{"tuple": [' * 5000
                                                  + "1" + "]}" * 5000, 1)
    body = text.encode()
    edited = saved.with_name("deep.l3c")
    edited.write_bytes(aot.HEADER.pack(aot.MAGIC, aot.FORMAT_VERSION, len(body),
                                       hashlib.sha256(body).digest()) + body)
    with pytest.raises(l3c.ScheduleError, match="payload|malformed"):
        l3c.load(edited)


def test_unchanged_payload_still_loads(saved):
    assert isinstance(l3c.load(rewrite(saved, payload_of(saved))), l3c.Compiled)


def test_wrong_inputs_show_expected_and_given(saved):
    c = l3c.load(saved)
    x, w = inputs()
    cases = [((np.zeros(9), w, 1), "float64[9]"),
             ((x.astype(np.float32), w, 1), "float32[10]"),
             ((x,), "takes 3 arguments, 1 given"),
             ((x, w, 2), "static argument 'n' was 1"),
             ((x, [0.0] * 4, 1), "must be a numpy array")]
    for args, needle in cases:
        with pytest.raises(l3c.ScheduleError) as info:
            c(*args)
        msg = str(info.value)
        assert needle in msg and "expected (x: float64[10], w: float64[4], n=1)" in msg, msg
        assert "given" in msg


def test_cli_compile_then_run(modules, tmp_path):
    _, _, orch, mod = modules
    x, w = inputs()
    sched, inp, out = tmp_path / "c.l3c", tmp_path / "in.npz", tmp_path / "out.npz"
    env = env_for(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "l3c", "compile", f"{orch}:step", "--arg",
                           "f64[10]", "--arg", "f64[4]", "--arg", "1", "-o", str(sched)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    np.savez(inp, arg0=x, arg1=w, arg2=np.array(1))
    proc = subprocess.run([sys.executable, "-m", "l3c", "run", str(sched), "--input", str(inp),
                           "--output", str(out)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    expected = flat(reference(x, w.copy(), 1))
    names = ["out0", "out1.out", "out1.pair.0", "out1.pair.1"]     # dict results keep their keys
    assert got.files == names
    for name, arr in zip(names, expected):
        np.testing.assert_array_equal(got[name], arr)
    # a corrupt file: exit status 1 and one clear line
    sched.write_bytes(sched.read_bytes()[:40])
    proc = subprocess.run([sys.executable, "-m", "l3c", "run", str(sched), "--input", str(inp)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "truncated" in proc.stderr and "Traceback" not in proc.stderr
