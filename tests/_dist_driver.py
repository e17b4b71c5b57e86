"""Run under `mpiexec -n H python tests/_dist_driver.py MODE ...` by tests/test_dist.py (not a test
module itself). Every rank prints one line per check: `RESULT <rank> <name> ok|FAIL <detail>`, and
`DONE <rank>` at the end; the test reads these lines.

Modes:
  random H C S SEED0 COUNT   random programs (tests/stress/stress_programs.py: strided, reversed,
                             transposed views, groups, scopes, pins, sub kernels, zeros) on H hosts of
                             C chips and S sub workers, compared with the single-host eager run of the
                             same program (rank 0's, broadcast) and with numpy; non-zero ranks pass
                             garbage inputs (inputs come from rank 0) and must get rank 0's results
                             and rank 0's updated input back.
  kill H                     host 1's rank process is stopped (SIGSTOP) or killed mid-run by the
                             test (pids in $L3C_TEST_PIDFILE<rank>; host 1's kernel creates
                             $L3C_TEST_MARKER when running); the others must raise HostLost naming
                             host 1 within the run's timeout.
  raise H                    a kernel raises on host 1: every rank raises KernelError (same task).
  killloop H                 `kill` with the calls inside a compiled `l3c.range`: host 1 dies in its
                             kernel of the first iteration, while host 0 waits for its landing.
  aot H FILE NPZ             run a schedule file saved by `l3c compile --hosts H`.
  mismatch H                 rank 1 traces a different program: a clear error naming the line.
  where H C                  every global chip pins one task that reports (host_id, chip_id):
                             chips are numbered globally, chip c on host c // C.
  eager                      `.eager` of a hosts=2 function (2 chips, 1 sub worker each; a pin on
                             global chip 3, on host 1; a group of 3 that must span both hosts; an
                             input written in place) before and after a compiled run: every rank
                             gets numpy's results of rank 0's inputs (rank 1 passes garbage), equal
                             to the compiled run's, and its written input updated likewise.
  slow                       2 hosts: slow producers (5 ms: the other host is in its native poll
                             by then, not napping) whose outputs cross to the other host, in both
                             directions; the native poll sent them itself (seen in run.PROBE) in
                             at least one of 4 runs on each rank, and the results match numpy.
  arenas                     2 hosts, each with its own temporaries in use at the same time: they
                             share arena offsets (separate arenas), each host's pool is sized by
                             its own tensors, and the results equal numpy's.
  poll                       the run loop's native poll (l3c/dist/poll.py) on 2 ranks: a due send,
                             a doorbell ring, a send the poll posts itself (MPI_Isend) the moment
                             its word is due, one it cannot post (a bad rank: the MPI error, and
                             the piece posted before it still sent), naps in ticks on the doorbell (a ring ends them), a
                             control message ending the poll (spinning and napping), and a
                             real message from rank 0 landing on rank 1 (published
                             with the given value; the mpi4py request still valid).
"""
from __future__ import annotations

import os
import random
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "stress"))
sys.path.insert(0, HERE)

import l3c  # noqa: E402
from mpi4py import MPI  # noqa: E402

import stress_programs as sp  # noqa: E402

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


def report(name: str, ok: bool, detail: str = "") -> None:
    detail = detail.replace("\n", " | ")[:2000]
    print(f"\nRESULT {RANK} {name} {'ok' if ok else 'FAIL'} {detail}", flush=True)


def flat(result) -> list:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def mode_random(hosts: int, chips: int, sub: int, seed0: int, count: int) -> None:
    dist = l3c.jit(hosts=hosts, chips=chips, sub_workers=sub, static_argnames=("ops",),
                   timeout=30)(sp.orchestrate)
    single = l3c.jit(chips=hosts * chips, sub_workers=sub, static_argnames=("ops",),
                     timeout=30)(sp.orchestrate)
    for seed in range(seed0, seed0 + count):
        rng = random.Random(seed)
        ops = sp.random_ops(rng, hosts * chips, sub, rng.randint(6, 30))
        data = np.random.default_rng(seed)
        ctl = np.zeros(sp.MAX_TASKS, np.int64)
        n_tasks, ours = sp.kernel_tasks(ops)
        for t in ours:                                  # vary the order workers finish in
            if data.random() < 0.3:
                ctl[t] = sp.DELAY_SHORT
        x = data.standard_normal((sp.N, sp.N))
        y = data.standard_normal((sp.N, sp.N))
        if RANK != 0:                                   # inputs must come from rank 0
            x, y, ctl = x * 0 + 99.0, y * 0 - 7.0, np.zeros_like(ctl)
        x_before, y_before = x.copy(), y.copy()
        try:
            got = flat(dist(ctl, x, y, ops=ops))
            x_after = x.copy()
            if RANK == 0:
                xr = x_before.copy()
                ref = flat(single.eager(ctl, xr, y_before.copy(), ops=ops))
                ref_x = xr
                oracle = flat(sp.interpret(ctl, x_before.copy(), y_before.copy(), ops, numpy=True))
                assert all(np.allclose(a, b) for a, b in zip(ref, oracle)), "eager != numpy"
            else:
                ref = ref_x = None
            ref, ref_x = COMM.bcast((ref, ref_x), root=0)
            bad = [i for i, (a, b) in enumerate(zip(got, ref)) if not np.allclose(a, b)]
            written = 1 in dist.lower(ctl, x, y, ops=ops).artifacts["dist"].parts[0].lowered.written_inputs
            # a written input is updated on every rank (to rank 0's result); others stay the caller's
            if not written:
                ref_x = x_before
            if len(got) != len(ref) or bad or not np.allclose(x_after, ref_x):
                report(f"seed{seed}", False, f"results {bad} differ (x ok: "
                       f"{np.allclose(x_after, ref_x)}); ops={ops}")
            else:
                c = dist.lower(ctl, x, y, ops=ops)
                st = c.artifacts["dist"].stats
                report(f"seed{seed}", True, f"tasks={n_tasks} transfers={st['transfers']} "
                       f"tokens={st['tokens']} bytes={st['transfer_bytes']}")
        except Exception:  # noqa: BLE001
            report(f"seed{seed}", False, traceback.format_exc() + f" ops={ops}")


@l3c.kernel
def produce(x: l3c.In, y: l3c.Out, delay: float):
    time.sleep(delay)
    y[...] = x * 2


@l3c.kernel
def consume(y: l3c.In, z: l3c.Out, action: str):
    if action == "kill" and l3c.host_id() == 1:
        # mid-run on host 1: tell the test, which SIGKILLs this host's rank process from outside
        open(os.environ["L3C_TEST_MARKER"], "w").close()
        time.sleep(5)
    if action == "raise" and l3c.host_id() == 1:
        raise ValueError("boom on host 1")
    z[...] = y + 1


@l3c.kernel
def accumulate_into(z: l3c.In, w: l3c.InOut):
    w[...] += z


def chain_loop(x, action):
    """`chain` as a compiled loop: data crosses to host 1 and back in every iteration."""
    y = l3c.empty(x.shape, x.dtype)
    z = l3c.empty(x.shape, x.dtype)
    w = l3c.zeros(x.shape, x.dtype)
    for i in l3c.range(3):
        produce.on(0)(x, y, 0.01)
        consume.on(1)(y, z, action)
        accumulate_into.on(0)(z, w)
    return w


def chain(x, action):
    y = l3c.empty(x.shape, x.dtype)
    produce.on(0)(x, y, 0.05)
    z = l3c.empty(x.shape, x.dtype)
    consume.on(1)(y, z, action)
    w = l3c.empty(x.shape, x.dtype)
    produce.on(0)(z, w, 0.0)
    return w


# for the AOT test: 2 hosts of 1 chip (`l3c compile --hosts 2`) vs one host of 2 chips
chain_jit = l3c.jit(chips=1, static_argnames=("action",), timeout=30)(chain)
chain_jit_one_host = l3c.jit(chips=2, static_argnames=("action",), timeout=30)(chain)


def mode_fault(hosts: int, action: str, looped: bool = False) -> None:
    if action == "kill":
        with open(os.environ["L3C_TEST_PIDFILE"] + str(RANK), "w") as f:
            f.write(str(os.getpid()))
    f = l3c.jit(hosts=hosts, chips=1, static_argnames=("action",), timeout=6)(
        chain_loop if looped else chain)
    x = np.ones(16)
    ok = f(x, action="none")
    report("before", np.allclose(ok, 3 * (x * 2 + 1) if looped else (x * 2 + 1) * 2))
    if action == "kill":                          # for the test to remove if hydra kills us
        with open("/proc/self/maps") as maps:
            shm = sorted({line.split()[-1] for line in maps if "/dev/shm/mpich_shm" in line})
        print(f"\nSHM {RANK} {' '.join(shm)}", flush=True)
    t0 = time.monotonic()
    try:
        f(x, action=action)
        report(action, False, "no error")
    except l3c.L3CError as exc:
        took = time.monotonic() - t0
        detail = f"{type(exc).__name__} host={getattr(exc, 'host', None)} task={getattr(exc, 'task', None)} took={took:.2f}s: {str(exc)[:300]}"
        if action == "kill":
            # a task of host 1's: the transfer awaited, or the last task of its part
            good = (isinstance(exc, l3c.dist.HostLost) and exc.host == 1 and took < 6.5
                    and exc.task >= 0 and exc.kernel != "")
        else:
            good = isinstance(exc, l3c.KernelError) and exc.task == 1 and "boom" in str(exc)
        report(action, good, detail)
        if action == "raise":                     # the pools recovered: the next run works
            again = f(x, action="none")
            report("after", np.allclose(again, (x * 2 + 1) * 2))
    print(f"\nDONE {RANK}", flush=True)         # then a normal exit: once host 1 is lost,
                                                  # MPI_Finalize does not wait for it


def mode_aot(hosts: int, path: str, npz: str) -> None:
    c = l3c.load(path)
    data = np.load(npz)
    args = [data[f"arg{i}"] for i in range(len(data.files))]
    out = flat(c(*args))
    ref = flat(c.artifacts.get("reference", None)) if False else None
    report("aot", True, " ".join(f"{float(np.sum(o)):.6f}" for o in out))


def mode_mismatch(hosts: int) -> None:
    def fn(x):
        y = l3c.empty(x.shape, x.dtype)
        produce(x, y, 0.0 if RANK == 0 else 0.5)
        return y
    f = l3c.jit(hosts=hosts, chips=1, timeout=10)(fn)
    try:
        f(np.ones(4))
        report("mismatch", False, "no error")
    except l3c.L3CError as exc:
        report("mismatch", "differ at line" in str(exc) and "delay=" in str(exc), str(exc))


@l3c.kernel
def where(out: l3c.Out):
    out[...] = (l3c.host_id(), l3c.chip_id())


def mode_where(hosts: int, chips: int) -> None:
    @l3c.jit(hosts=hosts, chips=chips, timeout=30)
    def placed(table):
        for c in range(hosts * chips):
            where.on(c)(table[c])
        return table

    got = placed(np.full((hosts * chips, 2), -1, dtype=np.int64))
    want = [[c // chips, c] for c in range(hosts * chips)]
    report("where", got.tolist() == want, f"got {got.tolist()} want {want}")


@l3c.kernel
def spread(x: l3c.In, out: l3c.Out):
    out[...] = x * (l3c.group_rank() + 1) + l3c.group_size()


@l3c.kernel
def double_and_tag(x: l3c.InOut, chip: l3c.Out):
    x *= 2
    chip[...] = l3c.chip_id()


@l3c.kernel(worker="sub")
def total(x: l3c.In, out: l3c.Out):
    out[...] = x.sum()


def across(x):
    h = l3c.empty(x.shape, x.dtype)
    l3c.group(spread, [(x[i::3], h[i::3]) for i in range(3)])   # 3 members, 2 chips per host
    chip = l3c.empty((1,), np.int64)
    double_and_tag.on(3)(x, chip)                                # global chip 3: host 1's second
    s = l3c.empty((1,), x.dtype)
    total(h, s)
    return h, chip, s


def mode_eager() -> None:
    f = l3c.jit(hosts=2, chips=2, sub_workers=1, timeout=30)(across)
    x0 = np.random.default_rng(5).standard_normal((6, 4))
    h = np.empty_like(x0)
    for i in range(3):
        h[i::3] = x0[i::3] * (i + 1) + 3
    want = [h, np.array([3]), np.array([h.sum()])]

    def args() -> np.ndarray:                       # rank 0's are used: the others pass garbage
        return x0.copy() if RANK == 0 else np.full_like(x0, 99.0)

    def same(got: list, ref: list) -> bool:
        return len(got) == len(ref) and all(np.allclose(a, b) for a, b in zip(got, ref))

    program = f.lower(args()).program
    hosts = {program.host_of(t) for t in program.tasks if t.group is not None}
    report("placement", hosts == {0, 1}, f"group on hosts {sorted(hosts)}")
    runs = {}
    for name in ("eager", "compiled", "eager_again"):
        x = args()
        try:
            runs[name] = flat(f(x) if name == "compiled" else f.eager(x))
            report(name, same(runs[name], want) and np.allclose(x, 2 * x0),
                   f"results {[np.asarray(r).ravel()[:3].tolist() for r in runs[name]]} "
                   f"x written back {np.allclose(x, 2 * x0)}")
        except Exception:  # noqa: BLE001
            report(name, False, traceback.format_exc())
    if len(runs) == 3:
        report("eager_is_compiled", same(runs["eager"], runs["compiled"])
               and same(runs["eager_again"], runs["compiled"]))


def native_send(watch, cells) -> None:
    """Rank 0's poll posts a 4 KiB Isend itself once its word is due; rank 1 receives it."""
    import ctypes
    from l3c.runtime.hosts import poll
    data = np.zeros(4096, dtype=np.uint8)
    if RANK == 1:
        COMM.Recv([data, MPI.BYTE], source=0, tag=12)
        report("native_send", bool((data == 9).all()), f"data {data[:4]}")
        data[:] = 0
        COMM.Recv([data, MPI.BYTE], source=0, tag=13)     # the piece posted before the bad one
        report("native_send_error", bool((data == 9).all()), f"data {data[:4]}")
        return
    data[:] = 9
    word, comm, byte = ctypes.addressof(cells), MPI._handleof(COMM), MPI._handleof(MPI.BYTE)
    cells[0], bell = 0, cells[16]                        # (the doorbell as the caller left it)
    watch.set_words([(word, 10)], [[(data.ctypes.data, data.nbytes, 1, 12)]], comm, byte)
    before = watch.wait(bell, 50), watch.take_posted()
    cells[0] = 10
    due = watch.wait(bell, 50)
    posted = watch.take_posted()
    again = watch.wait(bell, 50), watch.take_posted()   # posted once: due again, not re-sent
    req = MPI.Request.fromhandle(posted[1][0]) if posted else MPI.REQUEST_NULL
    done = req != MPI.REQUEST_NULL and req.Wait() and req == MPI.REQUEST_NULL
    stamps = watch.mpi.noticed, watch.mpi.sent
    report("native_send", before == (poll.POLL_IDLE, None) and due == poll.POLL_SEND
           and posted is not None and posted[0] == 0 and len(posted[1]) == 1 and done
           and posted[2] is None and again == (poll.POLL_SEND, None) and 0 < stamps[0] <= stamps[1],
           f"before={before} due={due} posted={posted} again={again} stamps={stamps}")
    # two pieces, the second to a rank that does not exist: the error, and the first in flight
    watch.set_words([(word, 10)], [[(data.ctypes.data, data.nbytes, 1, 13),
                                     (data.ctypes.data, data.nbytes, 99, 13)]], comm, byte)
    due = watch.wait(bell, 50)
    k, handles, error = watch.take_posted()
    sent = len(handles) == 1 and MPI.Request.fromhandle(handles[0]).Wait()
    report("native_send_error", due == poll.POLL_SEND and k == 0 and sent
           and isinstance(error, MPI.Exception) and error.Get_error_class() == MPI.ERR_RANK,
           f"due={due} k={k} handles={handles} error={error!r}")
    watch.set_words([])


@l3c.kernel
def slow_fill(x: l3c.In, y: l3c.Out):
    time.sleep(0.005)           # the consumer's host is in its native poll when this lands
    y[...] = x + 1


@l3c.kernel
def plus(y: l3c.In, z: l3c.Out):
    z[...] = y * 2


def crossing(x):
    y = l3c.empty(x.shape, x.dtype)
    z = l3c.empty(x.shape, x.dtype)
    w = l3c.empty(x.shape, x.dtype)
    slow_fill.on(0)(x, y)                 # host 0 -> host 1 (all of y, as one piece)
    plus.on(1)(y[:4], z[:4])
    plus.on(1)(y[4:, ::2], z[4:, ::2])
    plus.on(1)(y[4:, 1::2], z[4:, 1::2])
    slow_fill.on(1)(z, w)                 # host 1 -> host 0
    plus.on(0)(w, y)                      # (after host 1 read y)
    return y, z


def mode_slow() -> None:
    from l3c.runtime.hosts import loop as dist_run
    step = l3c.jit(hosts=2, chips=1, timeout=30)(crossing)
    x = np.arange(64, dtype=np.float64).reshape(8, 8)
    z = (x + 1) * 2
    y = (z + 1) * 2
    native = []
    for attempt in range(4):
        dist_run.PROBE = []
        got = step(x)
        native += [v for k, v in dist_run.PROBE if k == "native"]
        dist_run.PROBE = None
        report(f"slow{attempt}", np.array_equal(got[0], y) and np.array_equal(got[1], z),
               f"results {got[0][0, :3]} {got[1][0, :3]}")
    report("slow_native", bool(native), f"transfers the native poll sent: {native}")


def nap(watch, cells) -> None:
    """Napping in ticks on the doorbell: with nothing happening, the poll sleeps its rounds out;
    a ring ends the nap at once (with 200 ms ticks: long before the 2 s the rounds would take)."""
    import threading
    from l3c.runtime.hosts import poll
    from l3c.runtime import sync
    bell = cells[16]
    t0 = time.monotonic()
    quiet = watch.wait(bell, 2, 50_000_000)
    quiet_s = time.monotonic() - t0
    ringer = threading.Timer(0.05, sync.ring, (ctypes_address(cells) + 64, ctypes_address(cells) + 68))
    t0 = time.monotonic()
    ringer.start()
    rang = watch.wait(bell, 10, 200_000_000)
    rang_s = time.monotonic() - t0
    ringer.join()
    report("nap", quiet == poll.POLL_IDLE and quiet_s >= 0.09 and rang == poll.POLL_BELL
           and rang_s < 1.5 and cells[17] == 0,
           f"quiet {quiet} after {quiet_s:.3f} s, rang {rang} after {rang_s:.3f} s, "
           f"waiters left {cells[17]}")


def control(watch, cells) -> None:
    """A message on the control communicator ends the poll with POLL_CONTROL, spinning or napping
    (it is found right after the tick that pulled it in); nothing pending: POLL_IDLE."""
    from l3c.runtime.hosts import poll
    ctl = COMM.Dup()
    watch.set_control(MPI._handleof(ctl), 7, MPI.ANY_SOURCE)
    bell = cells[16]
    if RANK == 0:
        for _ in range(2):
            COMM.Barrier()
            time.sleep(0.05)
            ctl.send(("done",), dest=1, tag=7)
        COMM.Barrier()
        ctl.Free()
        return
    events = []
    for nap_ns in (0, 20_000_000):
        COMM.Barrier()
        quiet = watch.wait(bell, 2, nap_ns)           # (rank 0 sends only after 50 ms)
        t0 = time.monotonic()
        got = poll.POLL_IDLE
        while got == poll.POLL_IDLE and time.monotonic() < t0 + 10:
            got = watch.wait(bell, 100, nap_ns)
        message = ctl.recv(source=0, tag=7)
        events.append((quiet, got, message, watch.wait(bell, 2, nap_ns)))
    COMM.Barrier()
    watch.set_control(None)
    ctl.Free()
    idle, ctrl = poll.POLL_IDLE, poll.POLL_CONTROL
    report("control", events == [(idle, ctrl, ("done",), idle)] * 2, f"{events}")


def ctypes_address(cells) -> int:
    import ctypes
    return ctypes.addressof(cells)


@l3c.kernel
def add_chip(x: l3c.In, y: l3c.Out):
    time.sleep(0.002)                      # both hosts' temporaries are live at the same time
    y[...] = x + 10 * (l3c.chip_id() + 1)


def per_host(x):
    rows = x.shape[0] // 2
    out = l3c.empty(x.shape, x.dtype)
    for h in range(2):
        with l3c.scope():
            a = l3c.empty((rows, x.shape[1]), x.dtype)
            add_chip.on(2 * h)(x[h * rows:(h + 1) * rows], a)
            add_chip.on(2 * h + 1)(a, out[h * rows:(h + 1) * rows])
    return out


def mode_arenas() -> None:
    step = l3c.jit(hosts=2, chips=2, timeout=30)(per_host)
    x = np.arange(64.0).reshape(8, 8)
    compiled = step.lower(x)
    temps = [t for t in compiled.program.tensors if t.kind == "intermediate" and t.shape == (4, 8)]
    ends = compiled.program.reports["host_arena_bytes"]
    shared = len(temps) == 2 and temps[0].arena_offset == temps[1].arena_offset
    want = np.concatenate([x[:4] + 10 + 20, x[4:] + 30 + 40])
    for attempt in range(3):
        got = step(x)
        report(f"arenas{attempt}", shared and max(ends) < compiled.memory.naive_bytes
               and np.array_equal(got, want), f"shared {shared} ends {ends} "
               f"naive {compiled.memory.naive_bytes} got {got[:, 0]}")


def mode_poll() -> None:
    import ctypes
    from l3c.runtime.hosts import poll
    p = poll.native()
    report("native", p is not None, MPI.Get_library_version().split("\n")[0])
    if p is None:
        return
    cells = (ctypes.c_uint32 * 64)()        # [0] S_DONE, [16] doorbell, [32] landing, [48] waiters
    base = ctypes.addressof(cells)
    word, bell_word, landing, waiters = base, base + 64, base + 128, base + 192
    watch = poll.Watch(p, landing, waiters, bell_word, stamp=True)
    watch.set_words([(word, 3)])
    watch.set_requests([], None)
    cells[0] = 2
    idle = watch.wait(0, 50)
    cells[0] = 3
    due = watch.wait(0, 50)
    watch.set_words([])                          # that send was posted: nothing else is due
    cells[16] = 5
    rang = watch.wait(0, 50)
    quiet = watch.wait(5, 50)
    report("events", (idle, due, rang, quiet) == (poll.POLL_IDLE, poll.POLL_SEND, poll.POLL_BELL,
                                                  poll.POLL_IDLE), f"{idle} {due} {rang} {quiet}")
    native_send(watch, cells)
    nap(watch, cells)
    control(watch, cells)
    buf = np.zeros(1024, dtype=np.uint8)
    if RANK == 0:
        COMM.Barrier()                              # rank 1 polled once before the message left
        buf[:] = 7
        COMM.Send([buf, MPI.BYTE], dest=1, tag=11)
        return
    req = COMM.Irecv([buf, MPI.BYTE], source=0, tag=11)
    watch.set_requests([req], 4)
    bell = cells[16]                                 # (rung above)
    before = watch.wait(bell, 20)
    early = cells[32]
    COMM.Barrier()
    end = time.monotonic() + 10
    got = poll.POLL_IDLE
    while got == poll.POLL_IDLE and time.monotonic() < end:
        got = watch.wait(bell, 1000, 1_000_000)  # napping in 1 ms ticks: seen at a tick's end
    ok = (before == poll.POLL_IDLE and early == 0 and got == poll.POLL_LANDED and cells[32] == 4
          and watch.stamp.value > 0 and req.Test() and bool((buf == 7).all()))
    report("landing", ok, f"before={before} early={early} got={got} landing={cells[32]} "
                          f"stamp={watch.stamp.value} data={buf[:4]}")


def main() -> None:
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "random":
        mode_random(*map(int, rest))
    elif mode in ("kill", "raise"):
        mode_fault(int(rest[0]), mode)
        return
    elif mode == "killloop":
        mode_fault(int(rest[0]), "kill", looped=True)
        return
    elif mode == "aot":
        mode_aot(int(rest[0]), rest[1], rest[2])
    elif mode == "mismatch":
        mode_mismatch(int(rest[0]))
    elif mode == "where":
        mode_where(*map(int, rest))
    elif mode == "eager":
        mode_eager()
    elif mode == "poll":
        mode_poll()
    elif mode == "slow":
        mode_slow()
    elif mode == "arenas":
        mode_arenas()
    print(f"\nDONE {RANK}", flush=True)


if __name__ == "__main__":
    main()
