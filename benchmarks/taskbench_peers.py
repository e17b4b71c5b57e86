"""Task Bench's peer runners (`benchmarks/taskbench.py`): Dask, Ray tasks and Ray Compiled Graphs,
each calling the same compute_bound C function through ctypes, one task per point, the outputs of a
point's dependencies passed as its arguments (futures, object refs, or compiled-graph edges).

Dask and Ray tasks build the graph's futures anew for every run. Ray Compiled Graphs compile the
whole task graph once over 2 actors (a point runs on actor x // (width / 2), Task Bench's block
distribution) and execute it once per run; compiling costs tens of ms a node here, so its graph is
smaller (`GRAPH_SIZE`). Every task checks in C that each input is a record of timestep t-1 of this
run, and the runner returns every task's record for the checksums.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
from typing import Any

import numpy as np


def call_point(t: int, x: int, iterations: int, epoch: int, *inputs: np.ndarray) -> np.ndarray:
    """One task in a peer's worker: the C function through ctypes; its record, or AssertionError."""
    from taskbench import RECORD, c_point
    out = np.zeros(RECORD)
    run = np.array([iterations, epoch], np.int64)
    ptr = lambda a, ct: a.ctypes.data_as(ctypes.POINTER(ct))          # noqa: E731
    args = [t, x, ptr(run, ctypes.c_int64), 2, ptr(out, ctypes.c_double), RECORD]
    for rec in inputs:
        args += [ptr(rec, ctypes.c_double), RECORD]
    if c_point(len(inputs)).ctypes(*args) != 0:
        raise AssertionError(f"task ({t}, {x}) saw an input of another timestep or run")
    return out


def _records(graph: Any, values: dict) -> np.ndarray:
    from taskbench import RECORD
    out = np.zeros((graph.steps, graph.width, RECORD))
    for (t, x), rec in values.items():
        out[t, x] = rec
    return out


class Dask:
    name, cores, start_iterations, runs = "dask", 2, 1 << 22, 1

    def prepare(self, graph: Any) -> None:
        from distributed import Client, LocalCluster
        self.graph = graph
        self.cluster = LocalCluster(n_workers=self.cores, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=logging.CRITICAL)
        self.client = Client(self.cluster)
        import taskbench_peers                               # by reference: workers import it
        self.point = taskbench_peers.call_point

    def run(self, iterations: int, epoch: int) -> np.ndarray:
        futures: dict = {}
        for t, x, deps in self.graph.points():
            futures[t, x] = self.client.submit(self.point, t, x, iterations, epoch,
                                               *[futures[t - 1, d] for d in deps], pure=False)
        keys = list(futures)
        return _records(self.graph, dict(zip(keys, self.client.gather([futures[k] for k in keys]))))

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def _ray_init() -> Any:
    import ray
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    return ray


class RayTasks:
    name, cores, start_iterations, runs = "ray", 2, 1 << 22, 1

    def prepare(self, graph: Any) -> None:
        ray = _ray_init()
        self.graph = graph
        self.ray = ray
        self.point = ray.remote(num_cpus=1)(call_point)

    def run(self, iterations: int, epoch: int) -> np.ndarray:
        refs: dict = {}
        for t, x, deps in self.graph.points():
            refs[t, x] = self.point.remote(t, x, iterations, epoch, *[refs[t - 1, d] for d in deps])
        keys = list(refs)
        return _records(self.graph, dict(zip(keys, self.ray.get([refs[k] for k in keys]))))

    def close(self) -> None:
        self.ray.shutdown()


class RayCompiledGraph:
    name, cores, start_iterations, runs = "ray_cg", 2, 1 << 22, 1

    def prepare(self, graph: Any) -> None:
        ray = _ray_init()
        from ray.dag import InputNode, MultiOutputNode

        @ray.remote(num_cpus=0)
        class Chip:
            def point(self, t, x, run, *inputs):
                return call_point(t, x, int(run[0]), int(run[1]), *inputs)

        self.ray, self.graph = ray, graph
        self.actors = [Chip.remote() for _ in range(self.cores)]
        per_actor = math.ceil(graph.width / self.cores)
        nodes: dict = {}
        with InputNode() as inp:
            for t, x, deps in graph.points():
                nodes[t, x] = self.actors[x // per_actor].point.bind(
                    t, x, inp, *[nodes[t - 1, d] for d in deps])
            self.keys = list(nodes)
            dag = MultiOutputNode([nodes[k] for k in self.keys])
        self.compiled = dag.experimental_compile()

    def run(self, iterations: int, epoch: int) -> np.ndarray:
        values = self.ray.get(self.compiled.execute(np.array([iterations, epoch], np.int64)))
        return _records(self.graph, dict(zip(self.keys, values)))

    def close(self) -> None:
        self.compiled.teardown(kill_actors=True)
        self.ray.shutdown()


PEERS: dict[str, Any] = {"dask": Dask, "ray": RayTasks, "ray_cg": RayCompiledGraph}
PEER_MODULES = {"dask": "distributed", "ray": "ray", "ray_cg": "ray"}
# Smaller graphs where a task costs a millisecond (width, steps; None keeps the command line's).
GRAPH_SIZE: dict[str, tuple] = {"dask": (None, 10), "ray": (None, 10), "ray_cg": (8, 4)}
