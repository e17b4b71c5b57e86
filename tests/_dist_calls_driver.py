"""Run under `mpiexec -n H python tests/_dist_calls_driver.py MODE ...` by tests/test_dist_calls.py
(not a test module itself): many calls, calls that differ between ranks, failures on one rank, and
how ranks end. Every rank prints `RESULT <rank> <name> ok|FAIL <detail>` per check and `DONE <rank>`.

Modes:
  many N        N calls of a two-task function with one transfer from host 1 to host 0 (past the
                511 calls after which the data tags wrap around), every result checked.
  mixed N       N calls, a kernel error on host 1 every third one (past the tags' wrap).
  diverge       (H ranks) calls that differ on rank 1 after caching: a static (alpha 2.0 / 3.0), a shape ((4,) /
                (2, 2)), and a signature only one rank has compiled; every rank raises an L3CError
                at once (no silence window) and the next matching call works.
  localfail     one rank fails before its call starts (a list instead of an array: a TraceError on
                rank 1; a wrong shape to a Compiled on rank 0): every rank raises, then good calls.
  exited        rank 1 makes one call fewer and exits: rank 0's extra call raises HostFailed
                (kind "exited") quickly, later calls fail at once, and rank 0 exits normally.
  chips         a kernel pinned to global chip 3 (2 chips a host) raises: the error names chip 3
                and host 1 on every rank, `e.host == 1` on the raising rank too; a worker of
                global chip 1 (host 1's first) dies: "chip 1 on host 1 died", worker 1.
  hang H        timeout=2 and a kernel on host 1 that sleeps 8 s (after a step no one waits for):
                host 1 raises Timeout naming its line, every
                other host HostFailed(host=1); only host 1 replaces a worker; the next call works.
  profile       `compiled.profile()` of a two-host function: one timeline with every host.
  lost          host 1's rank is killed mid-run by the test (pid in $L3C_TEST_PIDFILE<rank>,
                marker $L3C_TEST_MARKER): survivors raise HostLost(host=1), a later call fails at
                once, and they exit normally (the job ends by itself).
"""
from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

import l3c
from mpi4py import MPI

RANK = MPI.COMM_WORLD.Get_rank()
SIZE = MPI.COMM_WORLD.Get_size()


def report(name: str, ok: bool, detail: str = "") -> None:
    detail = str(detail).replace("\n", " | ")[:1500]
    print(f"\nRESULT {RANK} {name} {'ok' if ok else 'FAIL'} {detail}", flush=True)


@l3c.kernel
def scale(x: l3c.In, y: l3c.Out, alpha: float):
    y[...] = x * alpha


@l3c.kernel
def add_one(y: l3c.In, z: l3c.Out):
    z[...] = y + 1


def across(x, alpha=1.0):
    y = l3c.empty(x.shape, x.dtype)
    scale.on(1)(x, y, alpha)             # host 1 ...
    z = l3c.empty(x.shape, x.dtype)
    add_one.on(0)(y, z)                  # ... -> host 0
    return z


def mode_many(n: int) -> None:
    f = l3c.jit(hosts=2, chips=1, timeout=30)(across)
    x = np.arange(4.0)
    bad, t0 = [], time.monotonic()
    for i in range(n):
        got = f(x, alpha=2.0)
        if not np.array_equal(got, x * 2 + 1):
            bad.append(i)
    took = time.monotonic() - t0
    report("many", not bad, f"{n} calls in {took:.2f} s; wrong results at calls {bad[:10]}")


@l3c.kernel
def scale_or_raise(x: l3c.In, y: l3c.Out, fail: bool):
    if fail:
        raise ValueError("asked to fail")
    y[...] = x * 2


def flaky(x, fail=False):
    y = l3c.empty(x.shape, x.dtype)
    add_one.on(0)(x, y)                  # host 0 -> host 1
    z = l3c.empty(x.shape, x.dtype)
    scale_or_raise.on(1)(y, z, fail)     # host 1, raising on some calls ...
    w = l3c.empty(x.shape, x.dtype)
    add_one.on(0)(z, w)                  # ... -> host 0
    return w


def mode_mixed(n: int) -> None:
    """Kernel errors on host 1 every third call, mixed with good calls, past the tags' wrap: every
    good call correct, every failing one a KernelError on both ranks."""
    f = l3c.jit(hosts=2, chips=1, timeout=30)(flaky)
    x = np.arange(4.0)
    wrong = []
    for i in range(n):
        fail = i % 3 == 2
        try:
            got = f(x, fail=fail)
            if fail or not np.array_equal(got, (x + 1) * 2 + 1):
                wrong.append((i, "result"))
        except l3c.KernelError as exc:
            if not fail or "asked to fail" not in str(exc):
                wrong.append((i, str(exc)[:100]))
    report("mixed", not wrong, f"{n} calls; wrong: {wrong[:5]}")


def expect_error(name: str, call, within: float = 5.0) -> None:
    t0 = time.monotonic()
    try:
        got = call()
        report(name, False, f"no error, got {got}")
    except l3c.L3CError as exc:
        took = time.monotonic() - t0
        report(name, took < within, f"{type(exc).__name__} after {took:.2f} s: {exc}")
    except Exception:  # noqa: BLE001
        report(name, False, traceback.format_exc())


def expect_good(name: str, call, want) -> None:
    try:
        got = call()
        report(name, np.array_equal(got, want), f"got {got.ravel().tolist()}")
    except Exception:  # noqa: BLE001
        report(name, False, traceback.format_exc())


def mode_diverge() -> None:
    f = l3c.jit(hosts=SIZE, chips=1, timeout=20)(across)
    x4, x22 = np.arange(4.0), np.arange(4.0).reshape(2, 2)
    expect_good("cache_a2", lambda: f(x4, alpha=2.0), x4 * 2 + 1)
    expect_good("cache_a3", lambda: f(x4, alpha=3.0), x4 * 3 + 1)
    expect_error("static", lambda: f(x4, alpha=3.0 if RANK == 1 else 2.0))
    expect_good("after_static", lambda: f(x4, alpha=3.0), x4 * 3 + 1)
    expect_good("cache_22", lambda: f(x22, alpha=2.0), x22 * 2 + 1)
    expect_error("shape", lambda: f(x22 if RANK == 1 else x4, alpha=2.0))
    expect_good("after_shape", lambda: f(x22, alpha=2.0), x22 * 2 + 1)
    x8 = np.arange(8.0)                   # compiled on rank 0 only
    expect_error("one_cached", lambda: f(x4 if RANK == 1 else x8, alpha=2.0))
    expect_good("after_one_cached", lambda: f(x4, alpha=2.0), x4 * 2 + 1)
    g = l3c.jit(hosts=SIZE, chips=1, timeout=20)(lambda x: across(x, 5.0))
    expect_error("function", lambda: (g(x4) if RANK == 1 else f(x4, alpha=5.0)))
    expect_good("after_function", lambda: f(x4, alpha=2.0), x4 * 2 + 1)


def mode_localfail() -> None:
    f = l3c.jit(hosts=2, chips=1, timeout=20)(across)
    x = np.arange(4.0)
    expect_error("trace_error_rank1", lambda: f(x if RANK == 0 else [0.0, 1.0, 2.0, 3.0]))
    for i in range(3):
        MPI.COMM_WORLD.Barrier()
        expect_good(f"good{i}", lambda: f(x, alpha=2.0), x * 2 + 1)
    c = f.lower(x, alpha=2.0)
    expect_error("bad_argument_rank0", lambda: c(np.arange(5.0) if RANK == 0 else x, 2.0))
    expect_good("good_after", lambda: c(x, 2.0), x * 2 + 1)
    expect_error("bad_keyword_rank1", lambda: c(x, alpha=2.0) if RANK == 0 else c(x, beta=2.0))
    expect_good("good_last", lambda: c(x, alpha=2.0), x * 2 + 1)


def mode_exited() -> None:
    f = l3c.jit(hosts=2, chips=1, timeout=None)(across)
    x = np.arange(4.0)
    expect_good("both", lambda: f(x, alpha=2.0), x * 2 + 1)
    if RANK == 1:
        print(f"\nDONE {RANK}", flush=True)
        return                          # exits normally: one call fewer
    expect_error("exited", lambda: f(x, alpha=2.0), within=5.0)
    t0 = time.monotonic()
    try:
        f(x, alpha=2.0)
    except l3c.dist.HostFailed as exc:
        report("later", time.monotonic() - t0 < 0.5 and "exited" in str(exc), str(exc))
    print(f"\nDONE {RANK}", flush=True)


@l3c.kernel
def boom(x: l3c.InOut):
    raise ValueError("boom on global chip 3")


@l3c.kernel
def die_on_host_1(x: l3c.InOut):
    if l3c.host_id() == 1:
        os.kill(os.getpid(), 9)


def mode_chips() -> None:
    @l3c.jit(hosts=2, chips=2, timeout=20)
    def pinned(x):
        boom.on(3)(x)
        return x
    try:
        pinned(np.zeros(4))
        report("chips", False, "no error")
    except l3c.KernelError as exc:
        report("chips", "chip 3" in str(exc) and getattr(exc, "host", None) == 1
               and "chip 1 " not in str(exc), f"host={getattr(exc, 'host', None)}: {exc}")

    @l3c.jit(hosts=2, chips=1, timeout=20)
    def crash(x):
        die_on_host_1.on(1)(x)
        return x
    try:
        crash(np.zeros(4))
        report("crash", False, "no error")
    except l3c.L3CError as exc:
        if RANK == 1:
            ok = (isinstance(exc, l3c.WorkerCrashed) and exc.worker == 1 and exc.host == 1
                  and "chip 1 on host 1 died" in str(exc))
        else:
            ok = isinstance(exc, l3c.dist.HostFailed) and exc.host == 1 and "chip 1 on host 1" in str(exc)
        report("crash", ok, f"{type(exc).__name__} host={getattr(exc, 'host', None)}: {exc}")
    expect_good("crash_after", lambda: l3c.jit(hosts=2, chips=1, timeout=20)(across)(
        np.arange(4.0), alpha=2.0), np.arange(4.0) * 2 + 1)


@l3c.kernel
def nap(x: l3c.In, y: l3c.Out, seconds: float):
    if l3c.host_id() == 1:
        time.sleep(seconds)
    y[...] = x + 1


def chain3(x, seconds):
    y = l3c.empty(x.shape, x.dtype)
    nap.on(1)(x, y, seconds)             # host 1 hangs
    z = l3c.empty(x.shape, x.dtype)
    nap.on(0)(y, z, 0.0)                 # host 0 only waits for host 1's data
    w = l3c.empty(x.shape, x.dtype)
    nap.on(2)(z, w, 0.0)                 # host 2 waits for host 0's
    return w


def chain_hang(x, seconds):
    """`chain3` with a step before the hang on host 1 that no other worker waits for."""
    v = l3c.empty(x.shape, x.dtype)
    nap.on(1)(x, v, 0.0)
    y = l3c.empty(x.shape, x.dtype)
    nap.on(1)(v, y, seconds)             # host 1 hangs here: its Timeout names this line
    z = l3c.empty(x.shape, x.dtype)
    nap.on(0)(y, z, 0.0)
    w = l3c.empty(x.shape, x.dtype)
    nap.on(2)(z, w, 0.0)
    return w


HANG_LINE = chain_hang.__code__.co_firstlineno + 5


def children() -> set[int]:
    """This process's child pids (its workers), from /proc."""
    me, out = os.getpid(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.add(int(d))
            except OSError:
                pass
    return out


def mode_hang(hosts: int) -> None:
    f = l3c.jit(hosts=hosts, chips=1, timeout=2)(chain_hang)
    x = np.zeros(4)
    expect_good("before", lambda: f(x, 0.0), x + 4)
    before = children()
    t0 = time.monotonic()
    try:
        f(x, 8.0)
        report("hang", False, "no error")
    except l3c.L3CError as exc:
        took = time.monotonic() - t0
        if RANK == 1:
            ok = (isinstance(exc, l3c.Timeout) and "chip 1" in str(exc)
                  and f"_dist_calls_driver.py:{HANG_LINE})" in str(exc))
        else:
            ok = (isinstance(exc, l3c.dist.HostFailed) and exc.host == 1 and exc.kind == "Timeout"
                  and not isinstance(exc, l3c.dist.HostLost))
        report("hang", ok and took < 8, f"{type(exc).__name__} host={getattr(exc, 'host', None)} "
               f"after {took:.2f} s: {exc}")
    after = children()
    replaced = sorted(before - after)
    report("replaced", bool(replaced) == (RANK == 1), f"workers replaced: {replaced}")
    expect_good("after", lambda: f(x, 0.0), x + 4)


def mode_lost() -> None:
    with open(os.environ["L3C_TEST_PIDFILE"] + str(RANK), "w") as fh:
        fh.write(str(os.getpid()))
    f = l3c.jit(hosts=2, chips=1, timeout=6)(chain3)
    x = np.zeros(4)

    @l3c.kernel
    def mark(x: l3c.InOut):
        if l3c.host_id() == 1:
            open(os.environ["L3C_TEST_MARKER"], "w").close()
            time.sleep(5)

    @l3c.jit(hosts=2, chips=1, timeout=6)
    def marked(x):
        mark.on(1)(x)
        return x
    try:
        marked(x)
        report("lost", False, "no error")
    except l3c.dist.HostLost as exc:
        report("lost", exc.host == 1, str(exc))
    t0 = time.monotonic()
    try:
        f(x, 0.0)
        report("later", False, "no error")
    except l3c.dist.HostLost as exc:
        report("later", time.monotonic() - t0 < 0.5 and exc.host == 1, str(exc))
    with open("/proc/self/maps") as maps:
        shm = sorted({line.split()[-1] for line in maps if "/dev/shm/mpich_shm" in line})
    print(f"\nSHM {RANK} {' '.join(shm)}", flush=True)
    print(f"\nDONE {RANK}", flush=True)          # then a normal exit: MPI_Finalize must not wait


def mode_profile() -> None:
    """`compiled.profile()` of a two-host function: the results, and one timeline with a process
    per host, every task once, and the transfer as a flow from host 1's producer to host 0."""
    f = l3c.jit(hosts=2, chips=1, timeout=20)(across)
    x = np.arange(4.0)
    c = f.lower(x, alpha=2.0)
    got, trace = c.profile(x, alpha=2.0)
    events = trace["traceEvents"]
    slices = sorted(e["args"]["task"] for e in events if e["ph"] == "X")
    pids = {e["pid"] for e in events if e["ph"] == "X"}
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    flows = [e for e in events if e.get("cat") == "transfer"]
    ok = (np.array_equal(got, x * 2 + 1) and slices == [0, 1] and pids == {1, 2}
          and names == {1: "l3c __main__:across host 0", 2: "l3c __main__:across host 1"}
          and [(e["ph"], e["pid"]) for e in flows] == [("s", 2), ("f", 1)]
          and trace["metadata"]["hosts"] == 2 and trace["metadata"]["transfers"] == 1)
    report("profile", ok, f"slices {slices} pids {pids} names {names} flows {flows}")
    again = f(x, alpha=2.0)                       # an ordinary call afterwards
    report("after_profile", np.array_equal(again, x * 2 + 1), str(again))


def main() -> None:
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "many":
        mode_many(int(rest[0]))
    elif mode == "mixed":
        mode_mixed(int(rest[0]))
    elif mode == "diverge":
        mode_diverge()
    elif mode == "localfail":
        mode_localfail()
    elif mode == "exited":
        mode_exited()
        return
    elif mode == "chips":
        mode_chips()
    elif mode == "hang":
        mode_hang(int(rest[0]))
    elif mode == "profile":
        mode_profile()
    elif mode == "lost":
        mode_lost()
        return
    print(f"\nDONE {RANK}", flush=True)


if __name__ == "__main__":
    main()
