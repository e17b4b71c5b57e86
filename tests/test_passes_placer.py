"""The list scheduler (`l3c/passes/placer.py`) against a plain reference, on random programs.

The placer keeps its state in lists indexed by task id and integer worker slots, and the fuse
pass hands the placement it ran ahead (with kernel costs, one host) to the schedule pass. Here a
direct transcription of the policy in docs/passes.md ("schedule": earliest finish, then data
held, then the latest predecessor's worker, then any predecessor's) over the networkx graph with
(kind, index) workers places the same fused programs; the two must agree task by task, with and
without the hand-over, for one and several hosts, with hand-off costs and placement slack.
"""
from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

import l3c
from l3c.ir import Access, ScalarArg, Task
from l3c.passes import (PASSES, PassOptions, apply_costs, copy_program, fuse, memory, regions,
                        run_passes, schedule)
from _ir_builders import call, program, random_index

KERNELS = ["axpy", "scale", "mix", "copy"]


def _random_program(rng: random.Random):
    """A fused program of 15-40 calls over three 8x8 tensors: random views and modes, some
    sub-worker calls, pins and explicit groups, and repeated calls so that runs fuse."""
    chips = rng.choice([2, 3, 4])
    sub = rng.choice([0, 1, 2])
    hosts = rng.choice([1, 1, 2, 3])
    tensors = {"arg0": (8, 8), "t1": (8, 8), "t2": (8, 8)}
    calls = []
    last = None
    for _ in range(rng.randint(15, 40)):
        if last is not None and rng.random() < 0.4:
            kernel, modes = last[0], last[1]       # another call like the last: a run to fuse
        else:
            kernel = rng.choice(KERNELS)
            modes = [rng.choice(["In", "In", "Out", "InOut"]) for _ in range(rng.randint(1, 3))]
        args = [(rng.choice(list(tensors)), random_index(rng, (8, 8)), m) for m in modes]
        if rng.random() < 0.3:
            args.append(("alpha", rng.choice([1, 2])))
        worker = "sub" if sub and rng.random() < 0.15 else "chip"
        units = chips if worker == "chip" else sub
        pin = rng.randrange(units * hosts) if rng.random() < 0.1 else None
        calls.append(call(kernel, *args, worker=worker, pin=pin))
        last = (kernel, modes)
    if rng.random() < 0.5:                  # an explicit group of independent writes
        group = f"g{len(calls)}"
        for rank in range(min(chips, 3)):
            calls.append(call("fill", ("t2", (rank,), "Out"), group=group))
    prog = program(tensors, calls, chips=chips, sub_workers=sub)
    prog.config.hosts = hosts
    options = PassOptions(
        kernel_costs={k: rng.choice([0.5, 1.0, 3.0, 10.0]) for k in KERNELS + ["fill"]
                      if rng.random() < 0.8} or None,
        handoff_cost=rng.choice([None, 0.25, 1.0]),
        placement_slack=rng.choice([None, None, 0.5, 2.0]),
        host_latency=rng.choice([None, 0.0, 3.0]))
    return prog, options


def _data_bytes(prog, u: int, v: int) -> int:
    data = prog.graph.edges[u, v]
    if "RAW" not in data["kinds"]:
        return 0
    total = 0
    for w in prog.task(u).accesses:
        if w.writes and w.tensor in data["tensors"]:
            for r in prog.task(v).accesses:
                if r.reads and r.tensor == w.tensor:
                    total += (regions.intersection_size(w.region, r.region)
                              * prog.tensors[w.tensor].itemsize)
    return total


def _host_edge_cost(prog, u: int, v: int) -> float:
    data = prog.graph.edges[u, v]
    nbytes = 0
    if "RAW" in data["kinds"]:
        nbytes = sum(a.region.size * prog.tensors[a.tensor].itemsize
                     for a in prog.task(v).accesses if a.reads and a.tensor in data["tensors"])
    return prog.costs.host_latency + prog.costs.host_byte_cost * nbytes


def reference_placement(prog) -> tuple[dict[int, tuple[str, int]], float]:
    """Worker of every task and the makespan, by the documented policy written plainly."""
    cfg, costs = prog.config, prog.costs
    free = {(kind, i): 0.0 for kind in ("chip", "sub") for i in range(cfg.units(kind))}
    where: dict[int, tuple[str, int]] = {}
    finish: dict[int, float] = {}

    def host(worker):
        return cfg.host_of_unit(*worker)

    for task in prog.tasks:
        v, kind = task.id, task.worker
        preds = list(prog.graph.predecessors(v))
        if task.pin is not None:
            candidates = [(kind, task.pin)]
        else:
            taken, members = set(), []
            if task.group is not None:
                for m in prog.groups[task.group]:
                    if m < v:
                        taken.add(where[m][1])
                        members.append(where[m])
                    elif m != v and prog.task(m).pin is not None:
                        taken.add(prog.task(m).pin)
            candidates = [(kind, i) for i in range(cfg.units(kind)) if i not in taken]
            if cfg.hosts > 1:
                first_free = min(candidates, key=lambda w: (free[w], w[1]))
                hosts = {host(where[p]) for p in preds} | {host(w) for w in members}
                hosts.add(host(first_free))
                candidates = [w for w in candidates if host(w) in hosts]

        def ready(worker):
            at = 0.0
            for p in preds:
                arrive = finish[p]
                if where[p] != worker:
                    arrive += costs.handoff_cost
                    if host(where[p]) != host(worker):
                        arrive += _host_edge_cost(prog, p, v)
                at = max(at, arrive)
            return at

        cost = costs.cost(task.kernel)
        ends = {w: max(ready(w), free[w]) + cost for w in candidates}
        earliest = min(ends.values())
        limit = earliest + costs.placement_slack + 1e-9 * max(1.0, abs(earliest))
        close = [w for w in candidates if ends[w] <= limit]
        held = {where[p] for p in preds}
        holders = [w for w in close if w in held]
        affinity = {w: sum(1 + _data_bytes(prog, p, v) for p in preds if where[p] == w)
                    for w in holders} if len(holders) > 1 else {}
        latest = where[max(preds, key=lambda p: (finish[p], p))] if preds else None
        best = min(close, key=lambda w: (-affinity.get(w, 0), 0 if w == latest else
                                         1 if w in held else 2, ends[w], free[w], w[1]))
        where[v], finish[v] = best, ends[best]
        free[best] = ends[best]
    return where, max(finish.values(), default=0.0)


@pytest.mark.parametrize("seed", range(60))
def test_placement_equals_the_plain_reference_with_and_without_the_hand_over(seed):
    prog, options = _random_program(random.Random(seed))
    fused = run_passes(copy_program(prog), until="fuse", options=options)
    expected, makespan = reference_placement(fused)

    alone = schedule.run(copy_program(fused))            # placed by the schedule pass itself
    piped = run_passes(copy_program(prog), until="schedule", options=options)   # hand-over
    for placed in (alone, piped):
        assert {t.id: (t.worker, t.chip) for t in placed.tasks} == expected
        assert placed.reports["makespan"] == makespan
        assert placed.groups == fused.groups
        for t in placed.tasks:
            assert placed.graph.nodes[t.id]["chip"] == t.chip
            assert placed.graph.nodes[t.id]["host"] == placed.host_of(t)


def test_the_hand_over_is_used_only_for_its_own_program_on_one_host():
    seed = 0
    while True:                 # a program on one host with kernel costs: fuse places it
        prog, options = _random_program(random.Random(seed))
        if prog.config.hosts == 1 and options.kernel_costs:
            break
        seed += 1
    fused = run_passes(copy_program(prog), until="scopes", options=options)
    fused, placed = fuse.run_and_place(fused)
    assert placed is not None and None not in placed.where
    expected, _ = reference_placement(fused)
    other = copy_program(fused)             # another program object: placed by the pass itself
    placed.where[:] = [0] * len(placed.where)          # a wrong placement, were it taken
    schedule.run(other, placed=placed)
    assert {t.id: (t.worker, t.chip) for t in other.tasks} == expected

    prog.config.hosts = 2                   # several hosts: the schedule pass places again
    again = run_passes(copy_program(prog), until="scopes", options=options)
    assert fuse.run_and_place(again)[1] is None


def _variants(rng: random.Random, task: Task) -> list[Task]:
    """`task` with one thing changed that the signature sees (or does not: the region's place)."""
    out = []
    for k, arg in enumerate(task.args):
        args = list(task.args)
        if isinstance(arg, Access):
            region = arg.region
            moved = dataclasses.replace(region, offset=region.offset + 1)
            args[k] = dataclasses.replace(arg, region=moved)                 # same signature
            out.append(dataclasses.replace(task, args=tuple(args)))
            args[k] = dataclasses.replace(arg, mode="In" if arg.mode != "In" else "Out")
            out.append(dataclasses.replace(task, args=tuple(args)))
            args[k] = dataclasses.replace(arg, region=dataclasses.replace(
                region, shape=region.shape + (1,), strides=region.strides + (1,)))
            out.append(dataclasses.replace(task, args=tuple(args)))
        else:
            args[k] = ScalarArg(arg.param, rng.choice([1, 2, 1.0, "1", True]))
            out.append(dataclasses.replace(task, args=tuple(args)))
    out.append(dataclasses.replace(task, loops=(0,)))
    out.append(dataclasses.replace(task, kernel=task.kernel + "x"))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_signature_comparison_equals_comparing_signatures(seed):
    rng = random.Random(seed)
    prog, _ = _random_program(rng)
    dtypes = [t.dtype for t in prog.tensors]
    tasks = prog.tasks
    pairs = list(zip(tasks, tasks[1:])) + [(t, u) for t in tasks[:5] for u in _variants(rng, t)]
    for a, b in pairs:
        assert (fuse._same_signature(a, b, dtypes)
                == (fuse.signature(prog, a, dtypes) == fuse.signature(prog, b, dtypes)))


def _through_schedule(prog, options: PassOptions):
    """The passes up to the schedule on a copy, as the pass manager runs them, and the hand-over
    they leave for the memory pass."""
    placed = copy_program(prog)
    apply_costs(placed, options)
    handover: dict = {}
    for name in ("deps", "scopes", "fuse", "schedule"):
        placed = PASSES[name](placed, options, handover)
    return placed, handover


def _bits(values: list[float]) -> list[str]:
    return [v.hex() for v in values]          # tells 0.0 from -0.0 and every last bit


def _looped_programs():
    from _loops_kernels import looped, relax, solve
    yield l3c.jit(looped, chips=2).trace(np.zeros((4, 8)), np.ones(1, np.int32),
                                         np.zeros(1, np.int32))
    yield l3c.jit(relax, chips=3).trace(np.zeros(8), np.array([3]))
    yield l3c.jit(solve, chips=2, sub_workers=1).trace(np.ones(4), 0.1)


@pytest.mark.parametrize("seed", range(60))
def test_handed_over_times_are_estimate_times_bit_for_bit(seed):
    """The schedule pass's start and finish estimates, which the memory pass takes instead of
    replaying the schedule, equal `estimate_times` in every bit (a last-bit difference could
    change which reuse edges the memory pass adds), whichever pass placed the tasks: the fuse
    pass's run ahead (one host, kernel costs) or the schedule pass (several hosts, no costs);
    with hand-off costs, host latencies and slack. And the memory plan with the hand-over is the
    one without it."""
    rng = random.Random(seed)
    prog, options = _random_program(rng)
    if seed % 2:        # costs with no exact binary form: finish - cost is not always the start
        options.kernel_costs = {k: rng.choice([0.1, 0.3, 1 / 3, 2.7, 7.1])
                                for k in KERNELS + ["fill"]}
        options.handoff_cost = rng.choice([None, 0.1, 0.7])
    looped = list(_looped_programs())
    if seed < len(looped):
        prog = looped[seed]
    placed, handover = _through_schedule(prog, options)
    start, finish = handover["times"]
    replayed = schedule.estimate_times(placed)
    assert _bits(start) == _bits(replayed[0])
    assert _bits(finish) == _bits(replayed[1])

    replaying = copy_program(placed)
    memory.run(replaying)
    memory.run(placed, times=(start, finish))
    assert [t.arena_offset for t in placed.tensors] == [t.arena_offset for t in replaying.tensors]
    assert placed.reports["memory_edges"] == replaying.reports["memory_edges"]
    assert placed.memory == replaying.memory


def test_the_block_program_hands_over_its_times():
    """The benchmark's block program (explicit groups, sub-worker reductions, flop-proportional
    costs): the fuse pass places it, and the times reach the memory pass unchanged."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from compile_scaling import BLOCK_COSTS, COLS, ROWS, traced_blocks
    jitted = l3c.jit(traced_blocks, chips=2, sub_workers=1, static_argnames=("blocks", "chips"),
                     costs=BLOCK_COSTS)
    traced = jitted.trace(np.zeros((ROWS, COLS), np.float32), np.zeros((COLS, COLS), np.float32),
                          blocks=60, chips=2)
    placed, handover = _through_schedule(traced, jitted.pass_options())
    start, finish = handover["times"]
    assert (_bits(start), _bits(finish)) == tuple(map(_bits, schedule.estimate_times(placed)))
    assert len(set(start)) > len(start) // 2            # not all zeros: the costs took effect


@pytest.mark.parametrize("hosts, handoff", [(1, None), (1, 0.5), (2, None)])
def test_a_group_larger_than_the_chips_is_reported_with_costs(hosts, handoff):
    """With kernel costs the fuse pass places ahead; a hand-built explicit group with more
    members than chips leaves its last member no chip there, and the schedule pass's error names
    the group's line (not an internal error in the fuse pass)."""
    calls = [call("fill", ("t1", (r,), "Out"), group="g") for r in range(3)]
    prog = program({"t1": (8, 8)}, calls, chips=1 if hosts == 2 else 2)
    prog.config.hosts = hosts
    options = PassOptions(kernel_costs={"fill": 2.0}, handoff_cost=handoff)
    with pytest.raises(l3c.L3CError, match=r"prog\.py:\d+: group of 3 fill calls needs 3 "
                                           r"distinct chips, but the pool has 2"):
        run_passes(prog, options=options)
