"""The eager (dynamic) runtime through hand-built Programs (l3c.ir directly) and through l3c.jit."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _runtime_kernels as K  # noqa: E402

from l3c import registry  # noqa: E402
from l3c.execute.eager import run_eager  # noqa: E402
from l3c.errors import KernelError, L3CError, Timeout, WorkerCrashed  # noqa: E402
from l3c.ir import Access, Config, Param, Program, Region, ResultRef, ScalarArg, Task, TensorInfo  # noqa: E402


def key(fn):
    return registry.register(fn, f"_runtime_kernels:{fn.__name__}")


class Builder:
    """A tiny hand-written tracer: enough to build Programs for the runtime."""

    def __init__(self, chips=2, sub_workers=1):
        self.p = Program("tests:prog", "test_eager.py:1", Config(chips=chips, sub_workers=sub_workers))

    def tensor(self, shape, dtype="float64", kind="intermediate"):
        tid = len(self.p.tensors)
        name = f"arg{tid}" if kind == "input" else f"t{tid}"
        self.p.tensors.append(TensorInfo(tid, name, kind, tuple(shape), dtype, "test_eager.py:1"))
        if kind == "input":
            self.p.params.append(Param(name, tensor=tid))
        return tid

    def access(self, tid, mode, region=None, param="x"):
        return Access(param, tid, region or Region.whole(self.p.tensors[tid].shape), mode)

    def call(self, fn, *args, worker="chip", pin=None, group=None, rank=0, loc=None):
        tid = len(self.p.graph)
        if group is not None:
            while len(self.p.groups) <= group:
                self.p.groups.append([])
            self.p.groups[group].append(tid)
        self.p.add_task(Task(tid, key(fn), worker,
                             tuple(a if isinstance(a, Access) else ScalarArg("s", a) for a in args),
                             loc or f"user.py:{10 + tid}", pin=pin, group=group, group_rank=rank))
        return tid

    def result(self, tid):
        info = self.p.tensors[tid]
        return ResultRef(tid, Region.whole(info.shape), info.dtype)


def test_values_dependencies_writeback_and_sub_worker():
    b = Builder()
    x = b.tensor((8,), kind="input")
    t = b.tensor((8,))
    b.call(K.copy, b.access(x, "In"), b.access(t, "Out"))
    for i in range(6):                        # a chain of in-place updates spread over chips
        b.call(K.add_one if i % 2 else K.double, b.access(t, "InOut"), pin=i % 2)
    b.call(K.scale, 3.0, b.access(t, "In"), b.access(x, "Out"), worker="sub")
    b.p.results = ("tuple", [b.result(t), b.result(x)])
    arg = np.arange(8.0)
    expect_t = arg.copy()
    for i in range(6):
        expect_t = expect_t + 1 if i % 2 else expect_t * 2
    out_t, out_x = run_eager(b.p, [arg], timeout=30)
    assert out_t.tolist() == expect_t.tolist()
    assert out_x.tolist() == (3 * expect_t).tolist()
    assert arg.tolist() == (3 * expect_t).tolist()          # the caller's array was updated
    assert not np.shares_memory(out_t, out_x) and out_t.flags.owndata


def test_independent_tasks_run_concurrently():
    # both only *read* flags (as the runtime sees it), so they are independent; each spins until
    # both flags are set, which finishes only if they run at the same time on different chips
    b = Builder()
    flags = b.tensor((4,), "int64")
    outs = [b.tensor((2,), "int64") for _ in range(2)]
    for tid in [flags] + outs:
        b.call(K.zero, b.access(tid, "Out"))
    for o in outs:
        b.call(K.handshake, b.access(flags, "In"), b.access(o, "Out"))
    b.p.results = ("list", [b.result(o) for o in outs])
    got = run_eager(b.p, [], timeout=60)
    assert [g.tolist() for g in got] in ([[1, 0], [0, 1]], [[0, 1], [1, 0]])


def test_group_members_on_distinct_chips_with_ranks():
    b = Builder(chips=3, sub_workers=0)
    out = b.tensor((3, 3), "int64")
    rows = [Region(3 * r, (3,), (1,), ((r, 1, 1), (0, 3, 1))) for r in range(3)]
    b.call(K.zero, b.access(out, "Out"))
    for r in range(3):
        b.call(K.record_rank, b.access(out, "InOut", Region.whole((3, 3))), group=0, rank=r)
    b.p.results = b.result(out)
    got = run_eager(b.p, [], timeout=30)
    assert sorted(got[:, 0].tolist()) == [0, 1, 2]          # distinct chips
    assert got[:, 1].tolist() == [3, 3, 3]                    # group_size inside kernels
    assert len(set(got[:, 2].tolist())) == 3 and os.getpid() not in got[:, 2]


def faulty(fn, timeout=30):
    b = Builder()
    x = b.tensor((4,), kind="input")
    b.call(K.add_one, b.access(x, "InOut"))
    b.call(fn, b.access(x, "InOut"), loc="user.py:77")
    b.call(K.add_one, b.access(x, "InOut"))
    b.p.results = b.result(x)
    arg = np.zeros(4)
    return b.p, arg


def healthy():
    p, arg = faulty(K.add_one)
    assert run_eager(p, [arg], timeout=30).tolist() == [3.0] * 4


def test_kernel_error_fields_then_healthy():
    p, arg = faulty(K.boom)
    with pytest.raises(KernelError) as info:
        run_eager(p, [arg], timeout=30)
    e = info.value
    assert (e.kernel, e.task, e.loc) == ("_runtime_kernels:boom", 1, "user.py:77")
    assert "ValueError: boom on chip" in e.remote_traceback
    healthy()


@pytest.mark.parametrize("fn,exc", [(K.die_signal, WorkerCrashed), (K.die_exit, WorkerCrashed)])
def test_crash_then_healthy(fn, exc):
    p, arg = faulty(fn)
    with pytest.raises(exc):
        run_eager(p, [arg], timeout=30)
    healthy()


def test_timeout_then_healthy():
    p, arg = faulty(K.hang)
    with pytest.raises(Timeout):
        run_eager(p, [arg], timeout=0.5)
    healthy()


def test_bad_pin_and_wrong_input_are_clear_errors():
    b = Builder(chips=2, sub_workers=0)
    x = b.tensor((4,), kind="input")
    b.call(K.add_one, b.access(x, "InOut"), pin=5)
    b.p.results = b.result(x)
    with pytest.raises(L3CError, match="pinned to chip 5"):
        run_eager(b.p, [np.zeros(4)])
    with pytest.raises(L3CError, match="expected float64"):
        run_eager(b.p, [np.zeros(3)])


def test_threads_share_the_pool_and_get_their_own_results():
    import threading

    def program(factor):
        b = Builder(chips=2, sub_workers=0)
        x = b.tensor((16,), kind="input")
        t = b.tensor((16,))
        b.call(K.scale, float(factor), b.access(x, "In"), b.access(t, "Out"))
        b.call(K.add_one, b.access(t, "InOut"))
        b.p.results = b.result(t)
        return b.p

    results, errors = {}, []

    def worker(i):
        try:
            for _ in range(5):
                got = run_eager(program(i), [np.arange(16.0)], timeout=60)
                assert got.tolist() == (np.arange(16.0) * i + 1).tolist()
            results[i] = True
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors and len(results) == 4
