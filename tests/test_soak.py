"""A short soak (the long one is `python benchmarks/soak.py`): 500 compiled runs with faults mixed in
must not grow the parent's fds, threads, child processes or mappings, and RSS stays bounded."""
from __future__ import annotations

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SOAK = os.path.join(os.path.dirname(HERE), "benchmarks", "soak.py")


def _soak_module():
    spec = importlib.util.spec_from_file_location("l3c_bench_soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_500_runs_with_faults_leak_nothing():
    soak = _soak_module()
    result = soak.soak(runs=500, fault_every=50, every=100, warmup=60)
    assert result["faults"] == 10
    first, last = result["samples"][0], result["samples"][-1]
    for probe in ("fds", "threads", "children", "maps"):
        values = [s[probe] for s in result["samples"]]
        assert max(values) == min(values), (probe, values)
    assert last["children"] == first["children"] > 0
    assert last["rss_kib"] - first["rss_kib"] < 8 * 1024, (first, last)
