"""`l3c.jit`: cache rules, retrace logging and strict mode, thread safety, hosts check, Compiled."""
from __future__ import annotations

import json
import os
import threading

import networkx as nx
import numpy as np
import pytest

import l3c
from l3c.compiled import Compiled


@l3c.kernel
def scale(alpha: float, x: l3c.In, y: l3c.Out):
    y[...] = alpha * x


def make(**options):
    calls = []

    @l3c.jit(chips=2, **options)
    def f(x, alpha=1.0):
        calls.append(1)
        y = l3c.empty_like(x)
        scale(alpha, x, y)
        return y

    return f, calls


def test_same_signature_is_traced_once():
    f, calls = make()
    a = f.trace(np.zeros((4, 4), np.float32))
    b = f.trace(np.ones((4, 4), np.float32))            # other values, same signature
    assert a is b and len(calls) == 1 and f.traces == 1


@pytest.mark.parametrize("second", [
    (np.zeros((8, 4), np.float32),),                   # new shape
    (np.zeros((4, 4), np.float64),),                   # new dtype
    (np.zeros((4, 4), np.float32), 2.0),               # new static value
    (np.zeros((4, 4), np.float32), 1),                 # same value, other type
    (np.zeros((4, 4), np.float32), np.float64(1.0)),   # numpy scalar vs Python float
])
def test_new_signature_retraces(second):
    f, calls = make()
    f.trace(np.zeros((4, 4), np.float32))
    f.trace(*second)
    assert len(calls) == 2 and f.traces == 2
    f.trace(*second)
    assert f.traces == 2


def test_numpy_scalar_and_zero_d_array_differ():
    f, _ = make()
    scalar, array = np.float64(1.0), np.array(1.0)
    assert f.cache_key(np.zeros(2), scalar) != f.cache_key(np.zeros(2), array)
    program = l3c.jit(lambda x, a: None, chips=1).trace(np.zeros(2), array)
    assert program.params[1].tensor is not None and program.tensors[1].shape == ()


def test_keyword_and_default_arguments_share_the_key():
    f, _ = make()
    x = np.zeros(3)
    assert f.cache_key(x) == f.cache_key(x, 1.0) == f.cache_key(x=x, alpha=1.0)


def test_cache_key_is_printable():
    f, _ = make()
    assert str(f.cache_key(np.zeros((4, 2), np.float32), 0.5)) == "f(x: float32[4,2], alpha=0.5)"


def test_static_argnames_makes_other_values_static():
    @l3c.jit(chips=1, static_argnames=("tiles",))
    def g(x, tiles):
        for t in tiles:
            scale(1.0, x[t], x[t])

    program = g.trace(np.zeros((4, 2)), (0, 2))
    assert len(program.tasks) == 2 and program.params[1].static == (0, 2)


def test_log_compiles_says_why(monkeypatch, capsys):
    monkeypatch.setenv("L3C_LOG_COMPILES", "1")
    f, _ = make()
    f.trace(np.zeros((4, 4), np.float32))
    f.trace(np.zeros((4, 4), np.float32))
    f.trace(np.zeros((8, 4), np.float32))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "first call" in lines[0] and "f(x: float32[4,4], alpha=1.0)" in lines[0]
    assert "x: float32[4,4] -> x: float32[8,4]" in lines[1]


def test_strict_mode_makes_a_retrace_an_error(monkeypatch):
    monkeypatch.setenv("L3C_STRICT_RETRACE", "1")
    f, _ = make()
    f.trace(np.zeros(4))
    f.trace(np.zeros(4))
    with pytest.raises(l3c.TraceError, match="L3C_STRICT_RETRACE") as info:
        f.trace(np.zeros(5))
    assert "test_jit.py:" in str(info.value) and f.traces == 1


def test_threads_share_one_trace():
    f, calls = make()
    programs, errors = [], []
    start = threading.Barrier(6)

    def worker():
        try:
            start.wait(timeout=10)
            programs.append(f.trace(np.zeros((16, 16))))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(programs) == 6 and len(calls) == 1
    assert all(p is programs[0] for p in programs)


def test_tracing_on_threads_keeps_traces_apart():
    # Two different jitted functions traced at once on two threads: each sees only its own tracer.
    results, start = {}, threading.Barrier(2)

    def run(name, n):
        @l3c.jit(chips=1)
        def g(x):
            start.wait(timeout=10)
            for i in range(n):
                scale(1.0, x, x)
        results[name] = len(g.trace(np.zeros(2)).tasks)

    threads = [threading.Thread(target=run, args=(k, n)) for k, n in (("a", 3), ("b", 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {"a": 3, "b": 5}


def test_defaults_and_options():
    f, _ = make()
    assert f.chips == 2 and f.sub_workers == 0 and f.fuse_groups
    g = l3c.jit(lambda x: None)
    assert g.chips == os.cpu_count()
    assert f.__name__ == "f" and f.__wrapped__ is not None


def test_hosts_without_mpi_launcher_fails_before_tracing(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS",
                "HYDRA_CONTROL_FD", "PMI_RANK"):
        monkeypatch.delenv(var, raising=False)
    f, calls = make(hosts=2)
    with pytest.raises(l3c.L3CError, match="mpiexec -n 2"):
        f(np.zeros(2))                  # a call (lower/trace run nothing: they need no launcher)
    assert calls == []


def test_lower_gives_a_cached_compiled_program():
    f, calls = make()
    x = np.zeros((4, 4), np.float32)
    compiled = f.lower(x)
    assert isinstance(compiled, Compiled) and f.lower(x) is compiled and len(calls) == 1
    assert isinstance(compiled.graph, nx.DiGraph) and list(compiled.graph.nodes) == [0]
    assert compiled.graph.nodes[0]["worker"] == "chip"
    assert compiled.groups == compiled.program.groups
    assert compiled.memory is compiled.program.memory
    assert compiled.program.passes_run[0] == "trace" and len(compiled.program.passes_run) > 1
    assert f.trace(x).passes_run == ["trace"]          # the traced program is not mutated
    data = json.loads(compiled.dump("json"))
    assert {"tasks", "tensors", "groups", "memory"} <= set(data)
    assert compiled.dump("dot").startswith("digraph")
    assert "%0 scale" in compiled.dump()
    with pytest.raises(l3c.L3CError, match="unknown IR format"):
        compiled.dump("yaml")
