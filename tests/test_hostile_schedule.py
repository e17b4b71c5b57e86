"""Hostile schedule files: every byte mutated, every truncation, payloads mutated *and re-sealed* with
a valid checksum (someone who can write the file can also fix the checksum), structural fuzzing of
JSON values, and consistent files that name a non-kernel callable or ask for absurd resources.

The rule: `l3c.load` raises `ScheduleError` (or, for a re-sealed mutation that happens to stay valid,
loads a schedule that runs correctly or stops with an `L3CError`); never a crash, a hang, another
exception type, or a call of anything that is not an `@l3c.kernel`.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import uuid

import numpy as np
import pytest

import l3c
from l3c import aot

KERNELS = '''
import l3c

@l3c.kernel
def scale(alpha: float, x: l3c.In, y: l3c.Out):
    y[...] = alpha * x

@l3c.kernel
def shout(x: l3c.InOut, word: str):
    x += len(word)

@l3c.jit(chips=2, sub_workers=1, timeout=30)
def step(x):
    h = l3c.empty(x.shape, x.dtype)
    l3c.group(scale, [(2.0, x[i::2], h[i::2]) for i in range(2)])
    shout(h, "hi")
    return h
'''


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    name = f"hostilek_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(KERNELS)
    sys.path.insert(0, str(folder))
    mod = __import__(name)
    path = folder / "small.l3c"
    mod.step.lower(np.arange(6.0)).save(path)
    return path, name


def expected(x):
    return 2.0 * x + 2


def seal(body: bytes, path) -> str:
    out = str(path) + ".edited"
    with open(out, "wb") as f:
        f.write(aot.HEADER.pack(aot.MAGIC, aot.FORMAT_VERSION, len(body),
                                hashlib.sha256(body).digest()) + body)
    return out


def load_or_schedule_error(path: str):
    """Load; ScheduleError -> None. Any other exception fails the test."""
    try:
        return l3c.load(path)
    except l3c.ScheduleError:
        return None


def test_every_byte_flipped_and_every_truncation(small_file, tmp_path):
    path, _ = small_file
    data = path.read_bytes()
    target = str(tmp_path / "mutant.l3c")
    for i in range(len(data)):
        for mutated in (data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:], data[:i]):
            with open(target, "wb") as f:
                f.write(mutated)
            with pytest.raises(l3c.ScheduleError):
                l3c.load(target)


def test_resealed_byte_mutations_are_rejected_or_harmless(small_file, tmp_path):
    """A dense sample of payload bytes replaced by other characters, then re-sealed."""
    path, _ = small_file
    body = path.read_bytes()[aot.HEADER.size:]
    rng = random.Random(8)
    positions = sorted(rng.sample(range(len(body)), min(len(body), 400)))
    loaded = 0
    for pos in positions:
        replacement = rng.choice(b'0123456789-.e"{}[],:x \\')
        if replacement == body[pos]:
            continue
        compiled = load_or_schedule_error(seal(body[:pos] + bytes([replacement]) + body[pos + 1:],
                                               tmp_path / "m"))
        if compiled is not None:
            loaded += 1
            _run_loaded_safely(compiled)
    assert loaded < len(positions) // 4       # most mutations are caught by the consistency checks


def _run_loaded_safely(compiled) -> None:
    """A mutation that survives every check describes another valid program (say, a result region
    of another shape, a different name): it must run to an array, or stop with an L3CError."""
    try:
        out = compiled(np.arange(6.0))
    except l3c.L3CError:
        return
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.size <= 6


HOSTILE_VALUES = [None, True, -1, 0, 2 ** 31, 2 ** 63, 10 ** 30, -10 ** 30, 1e308, 1.5, "x", "",
                  "../../etc/passwd", [], [1], [[[]]], {}, {"tuple": [1]}, {"view": [0, [1], [8], "float64"]}]


def _paths(j, prefix=()):
    """Every (path, value) leaf and inner node of a JSON document."""
    yield prefix, j
    if isinstance(j, dict):
        for k, v in j.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(j, list):
        for i, v in enumerate(j):
            yield from _paths(v, prefix + (i,))


def _set(j, path, value):
    for k in path[:-1]:
        j = j[k]
    j[path[-1]] = value


def test_structural_fuzz_of_json_values(small_file, tmp_path):
    """Any field of the payload replaced by a hostile value (huge or negative ints, floats, strings,
    nested containers), re-sealed: ScheduleError, never another exception."""
    path, _ = small_file
    payload = json.loads(path.read_bytes()[aot.HEADER.size:])
    paths = [p for p, _ in _paths(payload) if p and p != ("dispatcher_ir",)]
    rng = random.Random(3)
    for p in rng.sample(paths, min(len(paths), 250)):
        edited = json.loads(json.dumps(payload))
        _set(edited, p, rng.choice(HOSTILE_VALUES))
        compiled = load_or_schedule_error(seal(json.dumps(edited).encode(), tmp_path / "f"))
        if compiled is not None:
            _run_loaded_safely(compiled)


def _consistent_rename(path, old: str, new: str, tmp_path) -> str:
    """Rename a kernel everywhere in the payload (program, plan, kernel list), re-sealed: a file
    that passes every consistency check."""
    text = path.read_bytes()[aot.HEADER.size:].decode()
    payload = json.loads(text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1]))
    payload["kernels"] = sorted(payload["kernels"], key=lambda record: record["name"])
    return seal(json.dumps(payload).encode(), tmp_path / "renamed")


@pytest.mark.parametrize("target", ["os:system", "builtins:print", "subprocess:call"])
def test_a_consistent_file_naming_a_non_kernel_callable_never_calls_it(small_file, tmp_path, target,
                                                                       capfd):
    """`shout(h, "hi")` renamed to `os:system` everywhere: the worker would call os.system(view,
    "hi"). Only functions decorated with @l3c.kernel may run."""
    path, name = small_file
    edited = _consistent_rename(path, f"{name}:shout", target, tmp_path)
    compiled = load_or_schedule_error(edited)
    if compiled is None:
        return
    with pytest.raises(l3c.L3CError, match="not an l3c kernel"):
        compiled(np.arange(6.0))
    np.testing.assert_array_equal(compiled.__class__ and l3c.load(str(path))(np.arange(6.0)),
                                  expected(np.arange(6.0)))


def test_a_consistent_file_asking_for_absurd_resources_is_refused(small_file, tmp_path):
    """Huge chip counts or arenas must be an L3CError before anything is forked or mapped."""
    path, _ = small_file
    payload = json.loads(path.read_bytes()[aot.HEADER.size:])
    for field, value in (("chips", 100_000), ("sub_workers", 100_000)):
        edited = json.loads(json.dumps(payload))
        edited["program"]["program"]["config"][field] = value
        edited["plan"][field] = value
        compiled = load_or_schedule_error(seal(json.dumps(edited).encode(), tmp_path / "big"))
        if compiled is not None:
            before = len(os.listdir("/proc/self/task"))
            with pytest.raises(l3c.L3CError, match="workers"):
                compiled(np.arange(6.0))
            assert len(os.listdir("/proc/self/task")) == before
    edited = json.loads(json.dumps(payload))
    edited["program"]["memory"]["arena_bytes"] = 1 << 60
    edited["plan"]["arena_bytes"] = 1 << 60
    compiled = load_or_schedule_error(seal(json.dumps(edited).encode(), tmp_path / "arena"))
    if compiled is not None:
        with pytest.raises(l3c.L3CError, match="arena"):
            compiled(np.arange(6.0))
    np.testing.assert_array_equal(l3c.load(str(path))(np.arange(6.0)), expected(np.arange(6.0)))
