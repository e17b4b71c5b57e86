"""Several hosts over MPI: real `mpiexec -n 2` / `-n 3` jobs on this machine (tests/_dist_driver.py),
compared with single-host eager runs; plus the split plan checked in-process without MPI.

Skipped when mpi4py or mpiexec is missing. Every job runs as a subprocess with a timeout.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DRIVER = os.path.join(HERE, "_dist_driver.py")

try:
    import mpi4py  # noqa: F401
    HAVE_MPI = shutil.which("mpiexec") is not None
except ImportError:
    HAVE_MPI = False

needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and mpiexec (pip install .[dist])")


def mpiexec(n: int, *args: str, timeout: float = 120, env: dict | None = None,
            extra: tuple = ()) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    return subprocess.run(["mpiexec", *extra, "-n", str(n), sys.executable, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env)


def results(out: str) -> dict[tuple[int, str], tuple[bool, str]]:
    found = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            parts = line.split(" ", 4)
            found[int(parts[1]), parts[2]] = (parts[3] == "ok", parts[4] if len(parts) > 4 else "")
    return found


def check_random(n: int, chips: int, sub: int, seed0: int, count: int) -> None:
    proc = mpiexec(n, DRIVER, "random", str(n), str(chips), str(sub), str(seed0), str(count))
    found = results(proc.stdout)
    failures = [f"rank {r} {name}: {detail}" for (r, name), (ok, detail) in found.items() if not ok]
    assert not failures, "\n".join(failures) + proc.stderr[-3000:]
    assert len(found) == n * count, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert all(f"DONE {r}" in proc.stdout for r in range(n))
    # the programs did move data between hosts
    assert sum(int(d.split("transfers=")[1].split()[0]) for _, d in found.values()) > 0


@needs_mpi
def test_random_programs_two_hosts_one_chip_and_a_sub_worker():
    check_random(2, 1, 1, 0, 16)


@needs_mpi
def test_random_programs_two_hosts_two_chips():
    check_random(2, 2, 0, 1000, 12)


@needs_mpi
def test_random_programs_three_hosts_two_chips_and_a_sub_worker():
    check_random(3, 2, 1, 2000, 10)


@needs_mpi
def test_chip_ids_are_global_and_host_ids_follow_placement():
    proc = mpiexec(2, DRIVER, "where", "2", "2", timeout=60)
    found = results(proc.stdout)
    for r in range(2):
        ok, detail = found.get((r, "where"), (False, "missing: " + proc.stderr[-2000:]))
        assert ok, detail


@needs_mpi
def test_eager_of_a_two_host_function_is_the_single_host_reference_with_rank_0s_inputs():
    """`.eager` on every rank runs all the calls on 2*2 chips: the pin on global chip 3 (host 1's)
    and the group spanning both hosts are valid; every rank returns numpy's results of rank 0's
    inputs (rank 1 passes garbage), equal to the compiled run's, before and after it."""
    proc = mpiexec(2, DRIVER, "eager", timeout=90)
    found = results(proc.stdout)
    for r in range(2):
        for name in ("placement", "eager", "compiled", "eager_again", "eager_is_compiled"):
            ok, detail = found.get((r, name), (False, "missing: " + proc.stdout[-2000:]
                                               + proc.stderr[-2000:]))
            assert ok, f"rank {r} {name}: {detail}"


@needs_mpi
def test_native_poll_sees_due_sends_doorbells_and_landings_and_publishes_them():
    proc = mpiexec(2, DRIVER, "poll", timeout=60)
    found = results(proc.stdout)
    for key in ((0, "native"), (1, "native"), (0, "events"), (1, "events"), (1, "landing"),
                (0, "native_send"), (1, "native_send"), (0, "native_send_error"),
                (1, "native_send_error"), (0, "nap"),
                (1, "nap"), (1, "control")):
        ok, detail = found.get(key, (False, "missing: " + proc.stdout[-2000:] + proc.stderr[-2000:]))
        assert ok, f"{key}: {detail}"


@needs_mpi
@pytest.mark.skipif(os.environ.get("L3C_DIST_NATIVE_POLL", "1") == "0",
                    reason="the native poll is switched off")
def test_sends_after_a_slow_producer_leave_from_the_native_poll():
    proc = mpiexec(2, DRIVER, "slow", timeout=60)
    found = results(proc.stdout)
    for key in ((r, name) for r in (0, 1) for name in ("slow0", "slow3", "slow_native")):
        ok, detail = found.get(key, (False, "missing: " + proc.stdout[-2000:] + proc.stderr[-2000:]))
        assert ok, f"{key}: {detail}"


@needs_mpi
def test_hosts_share_arena_offsets_for_their_own_tensors():
    proc = mpiexec(2, DRIVER, "arenas", timeout=60)
    found = results(proc.stdout)
    for key in ((r, f"arenas{i}") for r in (0, 1) for i in range(3)):
        ok, detail = found.get(key, (False, "missing: " + proc.stdout[-2000:] + proc.stderr[-2000:]))
        assert ok, f"{key}: {detail}"


@needs_mpi
def test_kernel_error_on_one_host_raises_on_every_host_and_pools_recover():
    proc = mpiexec(2, DRIVER, "raise", "2", timeout=60)
    found = results(proc.stdout)
    for r in range(2):
        assert found.get((r, "raise"), (False, "missing"))[0], proc.stdout + proc.stderr[-2000:]
        assert found.get((r, "after"), (False, "missing"))[0], proc.stdout
    assert "host=1" in found[0, "raise"][1]              # rank 0 names the failing host


@needs_mpi
def test_traces_that_differ_are_a_clear_error_naming_the_line():
    proc = mpiexec(2, DRIVER, "mismatch", "2", timeout=60)
    found = results(proc.stdout)
    for r in range(2):
        ok, detail = found.get((r, "mismatch"), (False, proc.stdout + proc.stderr[-2000:]))
        assert ok, detail
        assert "first differ at line 6" in detail


def _fault_job(tmp_path, hosts: int, how: int, guarded: bool = False, mode: str = "kill"):
    """Start `kill` mode; once host 1's kernel runs, send `how` to host 1's rank process. Returns
    (stdout, the pids of every rank) after the other ranks exited and the job ended. `guarded`: each
    rank runs as the child of a shell (`sh -c 'trap : USR1; python ...; exit $?'`), so that the
    process hydra started exits normally (status 137) when the rank is SIGKILLed, and survives
    hydra's SIGUSR1 (docs/distributed.md)."""
    marker, pidfile = tmp_path / "running", tmp_path / "pid"
    env = dict(os.environ, PYTHONPATH=ROOT, L3C_TEST_MARKER=str(marker),
               L3C_TEST_PIDFILE=str(pidfile), L3C_REMOTE_SILENCE="2")
    command = [sys.executable, DRIVER, mode, str(hosts)]
    if guarded:
        command = ["sh", "-c", 'trap : USR1; "$0" "$@"; exit $?', *command]
    job = subprocess.Popen(["mpiexec", "-disable-auto-cleanup", "-n", str(hosts), *command],
                           stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    out = err = ""
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and job.poll() is None, "host 1 never ran its kernel"
            time.sleep(0.02)
        pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(hosts)]
        t0 = time.monotonic()
        os.kill(pids[1], how)
        others = [p for r, p in enumerate(pids) if r != 1]
        while time.monotonic() - t0 < 20 and any(_alive(p) for p in others):
            time.sleep(0.05)
        took = time.monotonic() - t0
        if how != signal.SIGKILL:
            try:
                os.kill(pids[1], signal.SIGKILL)
            except ProcessLookupError:      # hydra killed and reaped it when the others exited
                pass
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            out, err = job.communicate()
        # MPICH's segments: a survivor's exit removes them, but hydra SIGKILLs every rank of a job
        # started directly by mpiexec, and then only we can
        for line in out.splitlines():
            if line.startswith("SHM "):
                for path in line.split()[2:]:
                    if path.startswith("/dev/shm/mpich_shm_") and os.path.exists(path):
                        os.unlink(path)
    return out + err[-2000:], took


def _alive(pid: int) -> bool:
    """Running (an exited rank stays a zombie until mpiexec reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_survivors_report_host_1_lost(out: str, hosts: int) -> None:
    found = results(out)
    for r in range(hosts):
        if r != 1:
            ok, detail = found.get((r, "kill"), (False, out))
            assert ok and "HostLost host=1" in detail, detail


@needs_mpi
@pytest.mark.parametrize("hosts", [2, 3])
def test_a_stalled_host_is_reported_by_the_others_within_the_timeout(tmp_path, hosts):
    """Host 1's rank is stopped (SIGSTOP) while its kernel runs: every other rank raises
    HostLost(host=1) after the silence limit (2 s here), well within the run's timeout (6 s), and
    exits; nothing hangs."""
    out, took = _fault_job(tmp_path, hosts, signal.SIGSTOP)
    assert_survivors_report_host_1_lost(out, hosts)
    assert took < 10


@needs_mpi
@pytest.mark.parametrize("hosts", [2, 3])
def test_a_killed_host_is_reported_by_every_survivor(tmp_path, hosts):
    """Host 1's rank is SIGKILLed mid-run, each rank started as the child of a shell (what
    docs/distributed.md tells users to do): every other rank raises HostLost(host=1) within about a
    second (hydra's SIGUSR1 makes the silence limit 1 s) and exits; nothing hangs."""
    out, took = _fault_job(tmp_path, hosts, signal.SIGKILL, guarded=True)
    assert_survivors_report_host_1_lost(out, hosts)
    assert took < 10


@needs_mpi
def test_a_host_killed_inside_a_compiled_loop_is_reported_by_the_other(tmp_path):
    """The same inside a compiled `l3c.range` (the multi-host loop's own run loop and landing
    slot): host 0 waits for host 1's data of the first iteration when host 1 dies, and raises
    HostLost(host=1) naming a task and kernel, within the timeout; nothing hangs."""
    out, took = _fault_job(tmp_path, 2, signal.SIGKILL, guarded=True, mode="killloop")
    assert_survivors_report_host_1_lost(out, 2)
    assert "RESULT 0 before ok" in out, out
    assert took < 10


@needs_mpi
def test_a_killed_host_started_directly_by_mpiexec_never_hangs_the_others(tmp_path):
    """Started directly by mpiexec, a rank killed by a signal makes hydra's proxy SIGKILL every
    other rank as soon as it reaps the dead one (whatever -disable-auto-cleanup says); a survivor
    that reports first must name host 1, and the job must end."""
    out, took = _fault_job(tmp_path, 3, signal.SIGKILL)
    for (r, name), (ok, detail) in results(out).items():
        if name == "kill":
            assert ok and "HostLost host=1" in detail, detail
    assert took < 10


# ------------------------------------------------------------------ the split, without MPI
def _simulate(compiled, args, late: bool):
    """Execute the per-host plans in one process, in program order: one arena per host, each
    transfer read from its source arena (`capture`) and written into its destination (`land`) at its
    earliest moment (right after the producer) or its latest (the source is read right before the
    first task that waits for the send or the landing, the destination written right before the
    first task that waits for the landing)."""
    from l3c.execute.staging import copy_arrays as _copy_arrays, result_arrays as _result_arrays
    from l3c.registry import resolve
    from l3c.runtime import context
    from l3c.runtime.arena import array_in
    from l3c.runtime.plan import View
    from l3c.codegen.hosts import split

    d = split(compiled.program)
    low = d.parts[0].lowered
    arenas = [np.zeros(max(p.lowered.arena_bytes, 64), np.uint8) for p in d.parts]  # own sizes
    for arena in arenas:
        for view, a in zip(low.input_views, args):
            if view is not None:
                array_in(arena, view)[...] = a

    def where(piece):
        if piece.view is not None:
            return piece.view, Ellipsis
        return View(piece.base, (max(piece.index) + 1,), (piece.itemsize,), piece.dtype), \
            list(piece.index)

    def capture(tr):
        out = []
        for piece in tr.pieces:
            view, idx = where(piece)
            out.append(np.array(array_in(arenas[tr.src], view)[idx]))
        return out

    def land(tr, data):
        for piece, values in zip(tr.pieces, data):
            view, idx = where(piece)
            array_in(arenas[tr.dst], view)[idx] = values

    steps = {st.task: (p.host, st) for p in d.parts for q in p.lowered.plan.queues for st in q}
    captured: dict[int, list] = {}
    landed = set()
    for t in sorted(steps):
        host, st = steps[t]
        for tr in d.transfers:
            if late and tr.id not in captured and (t in tr.consumers or t in tr.sent_waiters):
                captured[tr.id] = capture(tr)
            if late and tr.dst == host and t in tr.consumers and tr.id not in landed:
                land(tr, captured[tr.id])
                landed.add(tr.id)
        context.set_task(0, st.group_rank, st.group_size)
        resolve(st.kernel)(*[array_in(arenas[host], a) if isinstance(a, View) else a
                             for a in st.args])
        for tr in d.transfers:
            if not late and tr.producer == t:
                land(tr, capture(tr))
                landed.add(tr.id)
    for fp in d.final:
        for h in range(d.hosts):
            if h != fp.root:
                view, idx = where(fp.piece)
                array_in(arenas[h], view)[idx] = array_in(arenas[fp.root], view)[idx]

    class _Arena:
        def __init__(self, a):
            self.a = a

        def array(self, v):
            return array_in(self.a, v)
    return [_copy_arrays(_result_arrays(low.results, _Arena(a))) for a in arenas], d


@pytest.mark.parametrize("hosts,chips,sub", [(2, 1, 1), (3, 2, 1), (4, 1, 0)])
def test_split_plans_equal_numpy_with_early_and_late_landings(hosts, chips, sub):
    sys.path.insert(0, os.path.join(HERE, "stress"))
    import l3c
    import stress_programs as sp
    from l3c.passes import PassOptions, run_passes
    from l3c.trace import bind_arguments, trace
    cfg = l3c.jit(hosts=hosts, chips=chips, sub_workers=sub, static_argnames=("ops",),
                  )(sp.orchestrate).config
    moved, sent_items, gated = 0, 0, 0
    for seed in range(12):
        rng = random.Random(seed)
        ops = sp.random_ops(rng, hosts * chips, sub, rng.randint(6, 30))
        data = np.random.default_rng(seed)
        ctl = np.zeros(sp.MAX_TASKS, np.int64)
        x, y = data.standard_normal((sp.N, sp.N)), data.standard_normal((sp.N, sp.N))
        bound = bind_arguments(sp.orchestrate, (ctl, x, y), {"ops": ops}, ("ops",))
        program = run_passes(trace(sp.orchestrate, config=cfg, bound=bound),
                             options=PassOptions(verify=True))
        expected = sp.interpret(ctl, x.copy(), y.copy(), ops, numpy=True)
        for late in (False, True):
            outs, d = _simulate(l3c.Compiled(program), [ctl, x, y], late)
            for host, out in enumerate(outs):
                for i, (a, b) in enumerate(zip(out, expected)):
                    assert np.allclose(a, b), f"seed {seed} host {host} result {i} late={late}"
        # the dump lists, without lowering, exactly the transfers the host plans carry
        from l3c.irprint import transfers
        listed = [(m.id, m.producer, m.src, m.dst, m.order, tuple(sorted(m.consumers)), m.nbytes,
                   [(p.tensor, p.count) for p in m.pieces]) for m in transfers(program)]
        assert listed == [(t.id, t.producer, t.src, t.dst, t.order, t.consumers, t.nbytes,
                           [(p.tensor, p.count) for p in t.pieces]) for t in d.transfers]
        moved += d.stats["transfers"]
        sent_items += d.stats["sent_items"]
        gated += d.stats["gated"]
        assert d.stats["tokens"] == 0
        assert {program.host_of(t) for t in program.tasks} <= set(range(hosts))
        assert all(program.graph.nodes[n]["host"] == program.host_of(program.task(n))
                   for n in program.graph.nodes)
    assert moved > 0 and sent_items > 0 and gated > 0     # every ordering mechanism was exercised


def test_split_sends_no_messages_for_orderings_without_data():
    """8 hosts: each reads its block of x, then its neighbour overwrites that block (a WAR between
    hosts), three rounds, then a reduction reads every block. Each host has its own arena, so the WARs
    need no message (the old split sent a token for each); only data moves."""
    import l3c
    from l3c.codegen.hosts import split
    from l3c.ir import Config
    from l3c.passes import run_passes
    from l3c.trace import bind_arguments, trace

    @l3c.kernel
    def scale(a: l3c.In, out: l3c.Out):
        out[...] = a * 2

    @l3c.kernel
    def fill(out: l3c.Out, value: float):
        out[...] = value

    @l3c.kernel
    def total(a: l3c.In, out: l3c.Out):
        out[...] = a.sum(axis=0)

    def program_fn(x, n=8):
        y = l3c.empty(x.shape, x.dtype)
        for r in range(3):
            for i in range(n):
                scale.on(i)(x[i::n], y[i::n])
            for i in range(n):
                fill.on((i + 1) % n)(x[i::n], float(r))
        out = l3c.empty((1, x.shape[1]), x.dtype)
        total.on(0)(y, out)
        return out

    x = np.zeros((64, 4), np.float32)
    program = run_passes(trace(program_fn, config=Config(chips=1, sub_workers=0, hosts=8),
                               bound=bind_arguments(program_fn, (x,), {}, ())))
    host = {t.id: program.host_of(t) for t in program.tasks}
    no_data = {(u, host[v]) for u, v, e in program.graph.edges(data=True)
               if host[u] != host[v] and "RAW" not in e.get("kinds", ())}
    d = split(program)
    assert len(no_data) >= 8 * 3                   # the old split sent a token for each of these
    assert d.stats["tokens"] == 0
    # y's blocks from hosts 1..7 to the reduction, and in rounds 2 and 3 each host reads the block
    # its neighbour filled: 7 + 2 * 8 transfers, every one carrying data
    assert d.stats["transfers"] == 7 + 2 * 8 and all(t.pieces for t in d.transfers)
    # the producers of a host's outbound transfers and the last local tasks its gated inbound
    # transfers wait for, and only they, ring its doorbell when done
    for h, part in enumerate(d.parts):
        queues = part.lowered.plan.queues
        rings = {st.task for q in queues for st in q if st.ring}
        gates = {queues[s][count - 1].task for t in part.recvs for s, count in t.gate_slots}
        assert gates and rings == {t.producer for t in part.sends} | gates


def test_hosts_without_a_launcher_is_a_clear_error_before_tracing(monkeypatch):
    import l3c
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS",
                "HYDRA_CONTROL_FD", "PMI_RANK"):
        monkeypatch.delenv(var, raising=False)
    traced = []

    def fn(x):
        traced.append(1)
        return x
    with pytest.raises(l3c.L3CError, match="mpiexec -n 2"):
        l3c.jit(hosts=2, chips=1)(fn)(np.ones(3))
    assert not traced


@needs_mpi
def test_wrong_number_of_ranks_is_a_clear_error():
    code = ("import numpy as np, l3c\n"
            "f = l3c.jit(hosts=3, chips=1)(lambda x: x)\n"
            "try:\n    f(np.ones(2))\nexcept l3c.L3CError as e:\n    print('ERR', e)\n")
    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.count("ERR") == 2 and "started 2 ranks" in proc.stdout, proc.stdout + proc.stderr


@needs_mpi
def test_compile_hosts_file_runs_under_mpiexec_and_matches_one_host(tmp_path):
    """`l3c compile --hosts 2` (no launcher needed) saves one file with every host's part;
    `mpiexec -n 2 l3c run FILE` gives the single-host schedule's results."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    target = "tests/_dist_driver.py:chain_jit"      # pinned to chips 0 and 1: hosts 0 and 1
    spec = ["--arg", "f32[64]", "--arg", "'none'"]
    data = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", arg0=data.standard_normal(64).astype(np.float32))
    for name, hosts in (("one", []), ("two", ["--hosts", "2"])):
        subprocess.run([sys.executable, "-m", "l3c", "compile",
                        target + ("_one_host" if name == "one" else ""), *spec, *hosts, "-o",
                        str(tmp_path / f"{name}.l3c")], check=True, timeout=120, cwd=ROOT, env=env)
    subprocess.run([sys.executable, "-m", "l3c", "run", str(tmp_path / "one.l3c"), "--input",
                    str(tmp_path / "in.npz"), "--output", str(tmp_path / "one.npz")],
                   check=True, timeout=120, cwd=ROOT, env=env)
    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "l3c", "run",
                           str(tmp_path / "two.l3c"), "--input", str(tmp_path / "in.npz"),
                           "--output", str(tmp_path / "two.npz")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("out0:") == 1                 # rank 0 prints, every rank computes
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(one.files) == sorted(two.files)
    for k in one.files:
        np.testing.assert_allclose(one[k], two[k], rtol=1e-6)
    import l3c
    loaded = l3c.load(str(tmp_path / "two.l3c"))
    assert loaded.program.config.hosts == 2 and len(loaded.artifacts["dist"].parts) == 2
    assert {loaded.graph.nodes[n]["host"] for n in loaded.graph.nodes} == {0, 1}


def test_dump_ir_of_a_two_host_function_shows_hosts_and_exact_transfers(tmp_path):
    """No launcher needed to inspect: the dump names each task's host and each transfer moves
    exactly the strided rows the consumer lacks (8 of 16 elements)."""
    (tmp_path / "two_hosts.py").write_text(
        "import numpy as np, l3c\n"
        "@l3c.kernel\ndef mm(a: l3c.In, b: l3c.In, c: l3c.Out):\n    c[...] = a @ b\n"
        "@l3c.kernel\ndef relu(a: l3c.In, b: l3c.Out):\n    b[...] = np.maximum(a, 0)\n"
        "@l3c.jit(hosts=2, chips=1)\ndef step(x, w):\n"
        "    h = l3c.empty(x.shape, x.dtype)\n"
        "    l3c.group(mm, [(x[i::2], w, h[i::2]) for i in range(2)])\n"
        "    t = l3c.empty_like(h)\n    relu(h, t)\n    return t\n")
    proc = subprocess.run([sys.executable, "-m", "l3c", "dump-ir", "two_hosts.py:step", "--arg",
                           "f32[4,4]", "--arg", "f32[4,4]"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "host 0 chip 0 g0.0" in text and "host 1 chip 1 g0.1" in text
    assert "x0 %0 host 0 -> host 1  t0[8 el] (32 B)  landing 1  for %2" in text
