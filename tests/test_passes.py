"""The pass pipeline: scopes, fuse, schedule, memory, verify and the manager, on hand-built IR."""
import random

import networkx as nx
import numpy as np
import pytest

import l3c
from l3c.errors import TraceError
from l3c.passes import PASSES, PassOptions, run_passes
from l3c.passes.verify import InvariantError, ancestors, verify
from _ir_builders import call, program, random_index

S = slice
EVERYTHING = PassOptions(verify=True)


# ---------------------------------------------------------------- random programs for properties

def random_pipeline_program(rng: random.Random, chips: int, sub_workers: int):
    """Inputs, scoped and unscoped intermediates, explicit groups, pins, sub kernels, results."""
    tensors = {"arg0": (6, 4), "arg1": (4,)}
    calls = []
    live: list[str] = ["arg0", "arg1"]
    scope_stack: list[int] = []
    next_scope = 0
    for step in range(rng.randint(3, 25)):
        r = rng.random()
        if r < 0.1 and len(scope_stack) < 2:
            scope_stack.append(next_scope)
            next_scope += 1
            continue
        if r < 0.2 and scope_stack:
            closed = scope_stack.pop()
            live = [n for n in live
                    if not (isinstance(tensors[n], dict) and closed in tensors[n]["scope"])]
            continue
        if r < 0.4:
            name = f"t{step}"
            shape = rng.choice([(6, 4), (8,), (3, 3)])
            tensors[name] = {"shape": shape, "scope": tuple(scope_stack),
                             "dtype": rng.choice(["float32", "float64", "int8"])}
            live.append(name)
            calls.append(call("fill", (name, (), "Out"), scope=tuple(scope_stack)))
            continue
        shape_of = {n: (s["shape"] if isinstance(s, dict) else s) for n, s in tensors.items()}
        kernel = rng.choice(["f", "g", "f"])
        worker = "sub" if sub_workers and rng.random() < 0.2 else "chip"
        pin = None
        if rng.random() < 0.15:
            pin = rng.randrange(chips if worker == "chip" else sub_workers)
        members = rng.randint(2, chips) if worker == "chip" and chips > 1 and rng.random() < 0.15 else 1
        label = f"g{step}" if members > 1 else None
        target = rng.choice(live)
        for m in range(members):
            args = [("alpha", 1.0)]
            for _ in range(rng.randint(1, 2)):
                name = rng.choice(live)
                args.append((name, random_index(rng, shape_of[name]) if rng.random() < 0.6 else (),
                             rng.choice(["In", "In", "InOut", "Out"])))
            if members > 1:
                rows = shape_of[target][0]
                args.append((target, S(m, None, members) if rows > 1 else (), "InOut"))
            calls.append(call(kernel, *args, worker=worker, pin=None if members > 1 else pin,
                              group=label, scope=tuple(scope_stack)))
    returned = tuple(n for n in live if not n.startswith("arg") and not tensors[n]["scope"])[:2]
    return program(tensors, calls, chips=chips, sub_workers=sub_workers, results=returned)


@pytest.mark.parametrize("seed", range(150))
def test_random_programs_keep_invariants_after_every_pass(seed):
    rng = random.Random(seed)
    chips, subs = rng.choice([(1, 1), (2, 1), (3, 2), (4, 0)])
    prog = random_pipeline_program(rng, chips, subs)
    if not subs and any(t.worker == "sub" for t in prog.tasks):
        return
    options = PassOptions(verify=True, fuse_groups=rng.random() < 0.8,
                          reduce_edges=rng.random() < 0.8, reuse_memory=rng.random() < 0.9)
    if rng.random() < 0.3:
        prog.costs.kernel_costs = {"tests.k:f": 3.0, "g": 0.5}
    if rng.random() < 0.3:
        prog.costs.handoff_cost = 0.25
    run_passes(prog, options=options)        # verify() after each pass raises on any violation
    assert prog.passes_run == list(PASSES)
    m = prog.memory
    assert m.lower_bound_bytes <= m.arena_bytes <= m.naive_bytes
    for info in prog.tensors:
        if info.kind == "input":
            assert info.arena_offset is None
    if not options.reuse_memory:
        assert m.arena_bytes == sum(t.nbytes for t in prog.tensors
                                    if t.kind == "intermediate" and t.first_use is not None
                                    or (t.kind == "intermediate" and t.id in _returned(prog)))


def _returned(prog):
    from l3c.passes.scopes import result_tensors
    return result_tensors(prog)


# ---------------------------------------------------------------- verify catches broken plans

def test_verify_catches_each_kind_of_violation():
    def fresh():
        prog = program({"x": (4,), "y": (4,)}, [
            call("w", ("x", (), "Out")), call("r", ("x", (), "In"), ("y", (), "Out")),
            call("r2", ("y", (), "In"))], chips=2)
        return run_passes(prog)

    verify(fresh())
    prog = fresh()
    prog.graph.remove_edge(0, 1)
    with pytest.raises(InvariantError, match="not ordered"):
        verify(prog)
    prog = fresh()
    t = prog.task(2)
    t.queue_pos = 7
    with pytest.raises(InvariantError, match="program order"):
        verify(prog)
    prog = fresh()
    prog.tensors[0].arena_offset = prog.tensors[1].arena_offset = 0
    prog.memory.arena_bytes = 64
    prog.memory.naive_bytes = 128
    # x is read by task 1 while y is written by it: sharing bytes is a race.
    with pytest.raises(InvariantError, match="share arena bytes"):
        verify(prog)
    prog = fresh()
    prog.tensors[1].arena_offset = 3
    with pytest.raises(InvariantError, match="aligned"):
        verify(prog)
    prog = fresh()
    prog.graph.add_edge(2, 1, kinds={"RAW"}, tensors={0}, added_by="deps")
    with pytest.raises(InvariantError, match="forward"):
        verify(prog)


# ---------------------------------------------------------------- scopes

def test_scopes_lifetimes_dead_after_and_warnings():
    prog = program({"arg0": (4,), "h": (4,), "t": {"shape": (4,), "scope": (0,)},
                    "junk": (4,), "out": (4,)}, [
        call("f", ("arg0", (), "In"), ("h", (), "Out")),
        call("g", ("h", (), "In"), ("t", (), "Out"), scope=(0,)),
        call("g", ("t", (), "In"), ("h", (), "InOut"), scope=(0,)),
        call("k", ("h", (), "In"), ("junk", (), "Out")),
        call("k", ("h", (), "In"), ("out", (), "Out")),
    ], results=("out",))
    run_passes(prog, until="scopes", options=EVERYTHING)
    assert prog.passes_run == ["deps", "scopes"]
    t = {i.name: i for i in prog.tensors}
    assert (t["h"].first_use, t["h"].last_use, t["h"].dead_after) == (0, 4, None)
    assert (t["t"].first_use, t["t"].last_use, t["t"].dead_after) == (1, 2, 2)
    assert prog.reports["warnings"] == [f"tensor junk ({t['junk'].loc}) is written but never read"]


def test_use_after_scope_is_a_trace_error_at_the_call():
    prog = program({"t": {"shape": (4,), "scope": (0,)}, "y": (4,)}, [
        call("g", ("t", (), "Out"), scope=(0,)),
        call("late", ("t", (), "In"), ("y", (), "Out"))])
    with pytest.raises(TraceError, match=r"prog\.py:11: late uses tensor t"):
        run_passes(prog)


@pytest.mark.parametrize("seed", range(30))
def test_scopes_from_the_deps_walk_match_its_own_walk(seed):
    # The pass manager hands scopes the uses the deps pass recorded on its walk; scopes alone
    # walks the tasks itself: same fields and warnings, and the same first bad use.
    rng = random.Random(seed)
    calls, tensors = [], {"x": (4,)}
    for i in range(rng.randint(4, 30)):
        scope = (i // 5,) if rng.random() < 0.6 else ()
        name = f"t{i}"
        tensors[name] = {"shape": (4,), "scope": scope} if scope else (4,)
        live = [n for n, t in tensors.items() if not isinstance(t, dict) or t["scope"] == scope]
        old = rng.choice(live if rng.random() < 0.97 else list(tensors))
        calls.append(call("f", (old, (), rng.choice(["In", "Out", "InOut"])),
                          (name, (), rng.choice(["Out", "InOut"])), scope=scope))
    results = []
    for own_walk in (False, True):
        prog = program(tensors, calls)
        try:
            if own_walk:
                PASSES["deps"](prog, PassOptions(), {})
                PASSES["scopes"](prog, PassOptions(), {})
            else:
                run_passes(prog, until="scopes")
        except TraceError as exc:
            results.append(str(exc))
            continue
        results.append(([(t.first_use, t.last_use, t.dead_after) for t in prog.tensors],
                        prog.reports["warnings"]))
    assert results[0] == results[1]


# ---------------------------------------------------------------- fuse

def test_fuse_groups_independent_consecutive_calls():
    calls = [call("mm", ("a", 2.0), ("x", S(i, i + 1), "In"), ("h", S(i, i + 1), "Out"))
             for i in range(5)]
    calls.append(call("mm", ("a", 2.0), ("h", S(0, 1), "In"), ("h", S(1, 2), "Out")))  # depends
    calls.append(call("mm", ("a", 3.0), ("x", S(0, 1), "In"), ("y", S(0, 1), "Out")))  # scalar differs
    calls.append(call("mm", ("a", 3.0), ("x", S(1, 2), "In"), ("y", S(1, 2), "Out"), pin=1))
    prog = program({"x": (8, 4), "h": (8, 4), "y": (8, 4)}, calls, chips=2)
    run_passes(prog, until="fuse", options=EVERYTHING)
    assert prog.groups == [[0, 1], [2, 3]]                    # split at chips=2; 4 alone
    assert [t.group for t in prog.tasks] == [0, 0, 1, 1, None, None, None, None]
    assert [t.group_rank for t in prog.tasks][:4] == [0, 1, 0, 1]
    assert prog.graph.nodes[2]["group"] == 1
    run_passes(prog := program({"x": (8, 4), "h": (8, 4), "y": (8, 4)}, calls, chips=2,
                               fuse_groups=False))
    assert prog.groups == []
    prog = program({"x": (8, 4), "h": (8, 4), "y": (8, 4)}, calls, chips=2)
    run_passes(prog, options=PassOptions(fuse_groups=False))
    assert prog.groups == []


def test_fuse_keeps_explicit_groups_and_shapes_must_match():
    prog = program({"x": (8, 4), "h": (8, 4)}, [
        call("mm", ("x", S(0, 4), "In"), ("h", S(0, 4), "Out"), group="G"),
        call("mm", ("x", S(4, 8), "In"), ("h", S(4, 8), "Out"), group="G"),
        call("mm", ("x", S(0, 2), "In"), ("h", S(0, 2), "InOut")),
        call("mm", ("x", S(2, 5), "In"), ("h", S(2, 5), "InOut")),      # other shape
        call("mm", ("x", S(5, 8), "In"), ("h", S(5, 8), "InOut")),
    ], chips=4)
    run_passes(prog, options=EVERYTHING)
    assert prog.groups == [[0, 1], [3, 4]]
    assert len({prog.task(i).chip for i in (0, 1)}) == 2
    assert len({prog.task(i).chip for i in (3, 4)}) == 2


# ---------------------------------------------------------------- schedule

def test_schedule_pins_groups_chains_and_reports():
    prog = program({"a": (4,), "b": (4,), "c": (4,), "d": (4,)}, [
        call("f", ("a", (), "Out")), call("f", ("a", (), "InOut")), call("f", ("a", (), "InOut")),
        call("f", ("b", (), "Out")), call("f", ("b", (), "InOut")), call("f", ("b", (), "InOut")),
        call("p", ("c", (), "Out"), pin=1),
        call("s", ("a", (), "In"), ("b", (), "In"), ("d", (), "Out"), worker="sub"),
    ], chips=2, sub_workers=2, fuse_groups=False)
    run_passes(prog, options=EVERYTHING)
    chain_a = {prog.task(i).chip for i in (0, 1, 2)}
    chain_b = {prog.task(i).chip for i in (3, 4, 5)}
    assert len(chain_a) == 1 and len(chain_b) == 1 and chain_a != chain_b   # chains stay put
    assert prog.task(6).chip == 1 and prog.task(7).worker == "sub"
    assert prog.reports["critical_path"] == 4.0
    assert prog.reports["makespan"] == 4.0
    assert prog.reports["cross_worker_edges"] == 2
    assert prog.graph.nodes[6]["chip"] == 1


def test_schedule_errors_name_the_call():
    prog = program({"x": (4,)}, [call("post", ("x", (), "Out"), worker="sub")], sub_workers=0)
    with pytest.raises(l3c.L3CError, match=r"prog\.py:10: post .*sub_workers=1"):
        run_passes(prog)
    prog = program({"x": (4,)}, [call("f", ("x", (), "Out"), pin=5)], chips=2)
    with pytest.raises(l3c.L3CError, match=r"prog\.py:10: f\.on\(5\)"):
        run_passes(prog)
    prog = program({"x": (4,)}, [call("f", ("x", S(i, i + 1), "Out"), group="G") for i in range(3)],
                   chips=2)
    with pytest.raises(l3c.L3CError, match="group of 3"):
        run_passes(prog)


def test_schedule_uses_kernel_costs():
    # One long task and three short independent ones on two chips: the short ones share a chip.
    prog = program({f"x{i}": (4,) for i in range(4)},
                   [call("long", ("x0", (), "Out"))] + [call("short", (f"x{i}", (), "Out"))
                                                          for i in range(1, 4)],
                   chips=2, fuse_groups=False)
    prog.costs.kernel_costs = {"tests.k:long": 3.0, "short": 1.0}
    run_passes(prog, options=EVERYTHING)
    assert {prog.task(i).chip for i in (1, 2, 3)} == {1 - prog.task(0).chip}
    assert prog.reports["makespan"] == 3.0


# ---------------------------------------------------------------- memory

def test_memory_reuses_on_one_worker_and_not_across_live_ranges():
    # A chain on one chip: t0 -> t1 -> t2 -> t3; t0 is dead once t1 is computed.
    names = [f"t{i}" for i in range(4)]
    calls = [call("f", ("t0", (), "Out"))]
    calls += [call("f", (names[i], (), "In"), (names[i + 1], (), "Out")) for i in range(3)]
    prog = program({n: (16,) for n in names}, calls, chips=1, results=("t3",))
    run_passes(prog, options=EVERYTHING)
    off = [t.arena_offset for t in prog.tensors]
    assert prog.memory.naive_bytes == 4 * 64
    assert prog.memory.lower_bound_bytes == 2 * 64
    assert prog.memory.arena_bytes == 2 * 64
    assert off[0] == off[2] and off[1] == off[3] and off[0] != off[1]
    assert prog.memory.added_edges == 0


def test_memory_adds_an_edge_only_when_it_costs_nothing():
    # Two workers. t_a is used on chip 0 early; t_b is first used much later on chip 1 by a task
    # that does not depend on chip 0: an edge is free (chip 0 is long done), so t_b reuses t_a.
    calls = [call("fa", ("a", (), "Out"), pin=0), call("fa2", ("a", (), "In"), ("x", (), "Out"), pin=0)]
    calls += [call("busy", ("y", (), "InOut"), pin=1) for _ in range(4)]
    calls += [call("fb", ("b", (), "Out"), pin=1), call("fb2", ("b", (), "In"), ("y", (), "InOut"), pin=1)]
    # (every tensor a whole cache line: with tiny ones the pass would pack them instead)
    prog = program({"a": (16,), "b": (16,), "x": (16,), "y": (16,)}, calls, chips=2,
                   results=("x", "y"))
    run_passes(prog, options=EVERYTHING)
    a, b = prog.tensors[0], prog.tensors[1]
    assert a.arena_offset == b.arena_offset
    assert prog.memory.added_edges == 1
    assert prog.graph.edges[1, 6]["added_by"] == "memory"
    # b's first use comes right after a's last in program order, but on an idle chip: in the
    # schedule it would run at once, so an edge from a's last task would delay it: no reuse.
    calls2 = [calls[0], calls[1], calls[6], calls[7]]
    prog = program({"a": (16,), "b": (16,), "x": (16,), "y": (16,)}, calls2, chips=2,
                   results=("x", "y"))
    run_passes(prog, options=EVERYTHING)
    assert prog.memory.lower_bound_bytes == 64 + 128      # a or b, plus the two results
    assert prog.tensors[0].arena_offset != prog.tensors[1].arena_offset
    assert prog.memory.added_edges == 0
    assert prog.memory.arena_bytes == 2 * 64 + 128


def test_memory_switch_and_inputs_unplaced():
    prog = program({"arg0": (16,), "t0": (16,), "t1": (16,)}, [
        call("f", ("arg0", (), "In"), ("t0", (), "Out")), call("f", ("t0", (), "In"), ("t1", (), "Out")),
        call("f", ("t1", (), "In"), ("arg0", (), "Out"))], chips=1)
    run_passes(prog, options=PassOptions(reuse_memory=False, verify=True))
    assert prog.tensors[0].arena_offset is None
    assert [t.arena_offset for t in prog.tensors[1:]] == [0, 64]
    assert prog.memory.arena_bytes == prog.memory.naive_bytes == 128


def test_memory_never_overlaps_concurrently_live_tensors_bruteforce():
    # Independent oracle over many random placed programs: two tensors sharing bytes must have all
    # accesses of one happen before all accesses of the other in the graph + queue order.
    for seed in range(60):
        rng = random.Random(1000 + seed)
        prog = random_pipeline_program(rng, 2, 1)
        run_passes(prog)
        hb = ancestors(prog, queue_order=True)
        users = {}
        for t in prog.tasks:
            for a in t.accesses:
                users.setdefault(a.tensor, set()).add(t.id)
        placed = [t for t in prog.tensors if t.kind == "intermediate" and t.id in users]
        for i, x in enumerate(placed):
            for y in placed[i + 1:]:
                if x.arena_offset < y.arena_offset + y.nbytes and y.arena_offset < x.arena_offset + x.nbytes:
                    xy = all((hb[b] >> a) & 1 for a in users[x.id] for b in users[y.id])
                    yx = all((hb[b] >> a) & 1 for a in users[y.id] for b in users[x.id])
                    assert xy or yx, (seed, x.name, y.name)


# ---------------------------------------------------------------- manager

def test_run_passes_until_and_unknown_pass():
    prog = program({"x": (4,)}, [call("f", ("x", (), "Out"))])
    assert run_passes(prog, until="trace").passes_run == []
    run_passes(prog, until="fuse")
    assert prog.passes_run == ["deps", "scopes", "fuse"]
    with pytest.raises(l3c.L3CError, match="unknown pass"):
        run_passes(prog, until="nope")


def test_internal_failure_is_reraised_with_the_task():
    prog = program({"x": (4,)}, [call("f", ("x", (), "Out"))])
    prog.tensors[0].dtype = "not-a-dtype"            # breaks the memory pass's size computation
    with pytest.raises(l3c.L3CError, match=r"internal error in pass 'memory'") as info:
        run_passes(prog)
    assert isinstance(info.value.__cause__, TypeError)


def test_graph_reachability_matches_data_dependencies_on_explicit_groups():
    prog = program({"x": (8,), "y": (8,)}, [
        call("w", ("x", (), "Out")),
        call("m", ("x", S(0, 4), "In"), ("y", S(0, 4), "Out"), group="G"),
        call("m", ("x", S(4, 8), "In"), ("y", S(4, 8), "Out"), group="G"),
        call("r", ("y", (), "In"), ("x", (), "Out")),
    ], chips=2)
    run_passes(prog, options=EVERYTHING)
    g = prog.graph
    assert set(g.edges) == {(0, 1), (0, 2), (1, 3), (2, 3)}
    assert not nx.has_path(g, 1, 2)
    assert prog.groups == [[1, 2]] and {prog.task(1).chip, prog.task(2).chip} == {0, 1}


# ---------------------------------------------------------------- several hosts / many workers

def _on_hosts(prog, hosts):
    prog.config.hosts = hosts
    return prog


def test_memory_reuses_with_an_edge_on_one_host_never_across_hosts():
    # The costless-edge reuse above, with chips 0 and 1 on one host (reuse, one edge) and on two
    # hosts (no edge: it would be a network message; and each host has its own arena, so a, only
    # on host 0, and b, only on host 1, share bytes with no ordering at all).
    calls = [call("fa", ("a", (), "Out"), pin=0), call("fa2", ("a", (), "In"), ("x", (), "Out"), pin=0)]
    calls += [call("busy", ("y", (), "InOut"), pin=1) for _ in range(4)]
    calls += [call("fb", ("b", (), "Out"), pin=1), call("fb2", ("b", (), "In"), ("y", (), "InOut"), pin=1)]
    tensors = {"a": (16,), "b": (16,), "x": (16,), "y": (16,)}      # whole cache lines
    one_host = _on_hosts(program(tensors, calls, chips=2, results=("x", "y")), 1)
    run_passes(one_host, options=EVERYTHING)
    assert one_host.memory.added_edges == 1
    assert one_host.tensors[0].arena_offset == one_host.tensors[1].arena_offset
    two_hosts = _on_hosts(program(tensors, calls, chips=1, results=("x", "y")), 2)
    run_passes(two_hosts, options=EVERYTHING)
    assert [two_hosts.host_of(t) for t in two_hosts.tasks] == [0, 0, 1, 1, 1, 1, 1, 1]
    assert two_hosts.memory.added_edges == 0
    assert two_hosts.tensors[0].arena_offset == two_hosts.tensors[1].arena_offset
    assert two_hosts.reports["host_arena_bytes"] == [3 * 64, 3 * 64]   # a or b, plus x and y


@pytest.mark.parametrize("seed", range(40))
def test_random_programs_on_several_hosts_keep_invariants(seed):
    rng = random.Random(5000 + seed)
    prog = _on_hosts(random_pipeline_program(rng, 2, 1), rng.choice([2, 3]))
    run_passes(prog, options=EVERYTHING)
    for u, v in prog.reports["memory_edges"]:
        assert prog.host_of(prog.task(u)) == prog.host_of(prog.task(v))
    m = prog.memory
    assert m.lower_bound_bytes <= m.arena_bytes == max(prog.reports["host_arena_bytes"])
    assert m.arena_bytes <= m.naive_bytes


def test_memory_plan_on_many_workers_reuses_per_chain():
    # 64 hosts x 8 chips, 128 independent chains t_i -> u_i -> v_i (on chips 4i, two per host):
    # u_i may reuse nothing of the other chain on its host (no path), but v_i reuses t_i's bytes
    # on its own chip's queue, and every host's arena holds only its own chains (plus the results,
    # which all hosts receive). The memory pass used to keep a 520-wide vector clock per task in
    # Python loops.
    n = 128
    tensors = {f"{k}{i}": (16,) for i in range(n) for k in "tuv"}
    tensors.update({f"r{i}": (1,) for i in range(n)})
    calls = []
    for i in range(n):
        chip = 4 * i
        calls += [call("f", (f"t{i}", (), "Out"), pin=chip),
                  call("f", (f"t{i}", (), "In"), (f"u{i}", (), "Out"), pin=chip),
                  call("f", (f"u{i}", (), "In"), (f"v{i}", (), "Out"), pin=chip),
                  call("f", (f"v{i}", (), "In"), (f"r{i}", (), "Out"), pin=chip)]
    prog = _on_hosts(program(tensors, calls, chips=8, results=tuple(f"r{i}" for i in range(n))), 64)
    run_passes(prog)
    off = {t.name: t.arena_offset for t in prog.tensors}
    assert all(off[f"v{i}"] == off[f"t{i}"] for i in range(n))
    assert all(off[f"t{2 * h}"] != off[f"t{2 * h + 1}"] for h in range(64))   # one host's chains
    assert prog.memory.added_edges == 0
    ends = prog.reports["host_arena_bytes"]
    assert len(ends) == 64 and max(ends) == prog.memory.arena_bytes <= n * 64 + 4 * 64


@l3c.kernel
def _widen(x: l3c.In, y: l3c.Out):
    y[...] = x * 3


def test_memory_figures_are_exact_bytes_and_tiny_tensors_are_packed():
    """The SPEC's figures are exact sums (naive = every intermediate's bytes). With tensors of a
    few bytes, 64-byte placement would exceed that: the pass packs them back to back at multiples
    of their own item sizes instead, and the run still gives numpy's results."""
    @l3c.jit(chips=2)
    def tiny(x):
        a = l3c.empty((3,), np.int8)
        b = l3c.empty((3,), np.float64)
        c = l3c.empty((5,), np.float32)
        _widen(x[:3], a)
        _widen(x[3:6], b)
        _widen(x[:5], c)
        return a, b, c

    x = np.arange(8, dtype=np.int8)
    compiled = tiny.lower(x)
    m = compiled.memory
    assert (m.naive_bytes, m.lower_bound_bytes, m.arena_bytes) == (3 + 24 + 20, 47, 47)
    offsets = {t.dtype: t.arena_offset for t in compiled.program.tensors if t.kind == "intermediate"}
    assert offsets == {"float64": 0, "float32": 24, "int8": 44}     # largest item size first
    a, b, c = compiled(x)
    np.testing.assert_array_equal(a, x[:3] * 3)
    np.testing.assert_array_equal(b, (x[3:6] * 3).astype(np.float64))
    np.testing.assert_array_equal(c, (x[:5] * 3).astype(np.float32))
