"""Runs in flight that go as one batch (`l3c.execute.batch`), against the SPEC's section "Runs in
flight and shared arrays": runs sharing `l3c.shared` arrays take effect in submission order while
overlapping where their accesses do not conflict, and a failing run in a batch fails alone while
every run runs exactly once (kernels count their executions outside their arrays, in files)."""
from __future__ import annotations

import os
import random
import tempfile
import threading
import time

import numpy as np
import pytest

import l3c


GATE = os.path.join(tempfile.gettempdir(), f"l3c-inflight-gate-{os.getpid()}")


@l3c.kernel
def wait_for_file(path: str, x: l3c.In, y: l3c.Out):
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)
    y[...] = x


@l3c.jit(chips=1, max_inflight=1)
def gate(x, path):
    y = l3c.empty_like(x)
    wait_for_file(path, x, y)
    return y


class _Gate:
    """A run that holds chip 0 until `result()` opens it: every run submitted in between is queued
    by then, and those of one schedule go as one batch."""

    def __init__(self, open_after: float | None = None) -> None:
        open(GATE, "w").close()
        gate(np.zeros(1), GATE)                   # compiled
        os.remove(GATE)
        self.run = gate.submit(np.zeros(1), GATE)
        self.timer = None
        if open_after is not None:                # for callers that submit past max_inflight
            self.timer = threading.Timer(open_after, lambda: open(GATE, "w").close())
            self.timer.start()

    def result(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()
        open(GATE, "w").close()
        try:
            self.run.result()
        finally:
            os.remove(GATE)


def _queue_behind_a_busy_pool(open_after: float | None = None) -> _Gate:
    return _Gate(open_after)


# ---- order on shared arrays ---------------------------------------------------------------------
@l3c.kernel
def scale_first(delay: l3c.In, s: l3c.InOut):
    time.sleep(delay[0])
    s[0] = (s[0] * 3 + 1) % 1009


@l3c.kernel
def fold_into_second(delay: l3c.In, s: l3c.InOut):
    time.sleep(delay[0])
    s[1] = (s[1] * 2 + s[0]) % 1013


@l3c.jit(chips=2, max_inflight=8)
def two_chip_update(s, d0, d1):
    """chip 0 writes s[0]; chip 1 reads s[0] and writes s[1]: the next run's chip-0 write must
    wait for this run's chip-1 read, an order between runs on different workers."""
    scale_first.on(0)(d0, s[0:1])
    fold_into_second.on(1)(d1, s)


@l3c.kernel
def negate_second(delay: l3c.In, s: l3c.InOut):
    time.sleep(delay[0])
    s[0] = 1012 - s[0]


@l3c.jit(chips=2, max_inflight=8)
def flip(s, d):
    negate_second.on(1)(d, s[1:2])


def _model(ops: list[str], start: np.ndarray) -> np.ndarray:
    s = start.copy()
    for op in ops:
        if op == "update":
            s[0] = (s[0] * 3 + 1) % 1009
            s[1] = (s[1] * 2 + s[0]) % 1013
        else:
            s[1] = 1012 - s[1]
    return s


def _random_runs(rng: random.Random, s: np.ndarray, n: int) -> tuple[list, list[str]]:
    runs, ops = [], []
    for _ in range(n):
        d0, d1 = (np.array([rng.choice([0.0, 0.0, 0.001, 0.004])]) for _ in range(2))
        if rng.random() < 0.8:
            runs.append(two_chip_update.submit(s, d0, d1))
            ops.append("update")
        else:
            runs.append(flip.submit(s, d0))
            ops.append("flip")
    return runs, ops


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_runs_on_a_shared_array_take_effect_in_submission_order(seed):
    rng = random.Random(seed)
    s = l3c.shared(np.array([1.0, 0.0]))
    two_chip_update(s, np.zeros(1), np.zeros(1))
    flip(s, np.zeros(1))
    start = s.copy()
    ahead = _queue_behind_a_busy_pool(open_after=0.3)
    runs, ops = _random_runs(rng, s, 40)
    ahead.result()
    for run in runs:
        assert run.result() is None
    np.testing.assert_array_equal(s, _model(ops, start))
    compiled = two_chip_update.lower(s, np.zeros(1), np.zeros(1))
    assert len(compiled.artifacts["batches"]) > 0                       # they were batched


def test_threads_each_with_their_own_shared_array_keep_their_order():
    errors = []

    def client(seed):
        try:
            rng = random.Random(seed)
            s = l3c.shared(np.array([float(seed), 1.0]))
            start = s.copy()
            all_ops = []
            for _ in range(3):
                runs, ops = _random_runs(rng, s, 8)
                all_ops += ops
                for run in runs:
                    run.result()
            np.testing.assert_array_equal(s, _model(all_ops, start))
        except BaseException as exc:              # noqa: BLE001 - reported below
            errors.append(exc)

    two_chip_update(l3c.shared(np.zeros(2)), np.zeros(1), np.zeros(1))
    threads = [threading.Thread(target=client, args=(k,)) for k in range(1, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


# ---- non-conflicting runs overlap ---------------------------------------------------------------
@l3c.kernel
def mark(where: str, who: l3c.In, row: l3c.InOut):
    row += 1
    open(os.path.join(where, f"mark{int(who[0])}"), "w").close()


@l3c.kernel
def look(where: str, patience: l3c.In, who: l3c.In, row: l3c.In, seen: l3c.Out):
    """Waits (at most `patience[0]` s) for the next run's mark: outside every array, so only a run
    overlapping this one in time can make it appear."""
    path = os.path.join(where, f"mark{int(who[0]) + 1}")
    deadline = time.monotonic() + patience[0]
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)
    seen[0] = os.path.exists(path)
    seen[1] = row[0]


@l3c.jit(chips=2, max_inflight=8)
def handshake(row, who, where, patience):
    seen = l3c.empty((2,), np.float64)
    mark.on(0)(where, who, row)
    look.on(1)(where, patience, who, row, seen)
    return seen


def _handshake_pair(tmp_path, rows, patience):
    s = l3c.shared((2, 4), np.float64)
    where = str(tmp_path)
    none = np.zeros(1)
    handshake(s[0], np.array([10.0]), where, none)         # compiled, s[0] is 1 now
    handshake(s[1], np.array([20.0]), where, none)         # s[1] is 1 now
    ahead = _queue_behind_a_busy_pool()
    first = handshake.submit(s[rows[0]], np.array([0.0]), where, np.array([patience]))
    second = handshake.submit(s[rows[1]], np.array([1.0]), where, none)
    ahead.result()
    return s, first.result(), second.result()


def test_runs_on_disjoint_parts_of_a_shared_array_overlap(tmp_path):
    """The first run's chip-1 kernel sees the second run's chip-0 mark: they ran at once."""
    s, first, second = _handshake_pair(tmp_path, (0, 1), patience=20.0)
    assert first[0] == 1.0, "the second run did not start while the first still ran"
    np.testing.assert_array_equal(first[1], 2.0)
    np.testing.assert_array_equal(s, [[2.0] * 4, [2.0] * 4])


def test_runs_on_the_same_part_of_a_shared_array_keep_their_order(tmp_path):
    """The second run writes the row the first run's chip-1 kernel reads: it waits for it, so
    the first never sees the second's mark and reads the row before the second's write."""
    s, first, second = _handshake_pair(tmp_path, (0, 0), patience=0.5)
    assert first[0] == 0.0, "the second run wrote the row before the first run read it"
    assert (first[1], second[1]) == (2.0, 3.0)
    np.testing.assert_array_equal(s, [[3.0] * 4, [1.0] * 4])


# ---- a failing run in a batch -------------------------------------------------------------------
@l3c.kernel
def logged_stage(log: str, stage: int, who: l3c.In, src: l3c.In, dst: l3c.Out):
    with open(log, "a") as f:
        f.write(f"{int(who[0])}:{stage}\n")
    if stage == 2 and who[0] < 0:
        raise ValueError("a negative run")
    dst[...] = src + 1


@l3c.jit(chips=2, max_inflight=8)
def logged_pipeline(who, x, log):
    mid, out = l3c.empty_like(x), l3c.empty_like(x)
    logged_stage.on(0)(log, 1, who, x, mid)
    logged_stage.on(1)(log, 2, who, mid, out)
    return out


def _log_counts(log) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(log) as f:
        for line in f:
            counts[line.strip()] = counts.get(line.strip(), 0) + 1
    return counts


@pytest.mark.parametrize("bad", [0, 2, 3])
def test_a_failing_run_in_a_batch_fails_alone_and_every_run_runs_once(tmp_path, bad):
    log = str(tmp_path / "log")
    x = np.arange(3.0)
    logged_pipeline(np.array([100.0]), x, log)
    ahead = _queue_behind_a_busy_pool()
    whos = [float(i + 1) for i in range(4)]
    whos[bad] = -float(bad + 1)
    runs = [logged_pipeline.submit(np.array([w]), x + i, log) for i, w in enumerate(whos)]
    ahead.result()
    for i, run in enumerate(runs):
        if i == bad:
            with pytest.raises(l3c.KernelError, match="a negative run"):
                run.result()
        else:
            np.testing.assert_array_equal(run.result(), x + i + 2)
    counts = _log_counts(log)
    for w in whos:
        assert counts.get(f"{int(w)}:1") == 1 and counts.get(f"{int(w)}:2") == 1, counts
    assert logged_pipeline.lower(np.zeros(1), x, log).artifacts["batches"]


@l3c.kernel
def count_up(s: l3c.InOut):
    s[0] += 1


@l3c.kernel
def read_count(who: l3c.In, s: l3c.In, y: l3c.Out):
    if who[0] < 0:
        raise ValueError("a negative run")
    y[0] = s[0]


@l3c.jit(chips=2, max_inflight=8)
def counted(who, s):
    y = l3c.empty((1,), np.float64)
    count_up.on(0)(s)
    read_count.on(1)(who, s, y)
    return y


@pytest.mark.parametrize("bad", [(2,), (1, 5), (0, 7)])
def test_a_failing_run_in_a_batch_on_a_shared_array_changes_it_once_per_run(bad):
    s = l3c.shared(np.zeros(1))
    counted(np.ones(1), s)
    ahead = _queue_behind_a_busy_pool()
    whos = [-1.0 if i in bad else 1.0 for i in range(8)]
    runs = [counted.submit(np.array([w]), s) for w in whos]
    ahead.result()
    for i, run in enumerate(runs):
        if whos[i] < 0:
            with pytest.raises(l3c.KernelError, match="a negative run"):
                run.result()
        else:
            np.testing.assert_array_equal(run.result(), [i + 2.0])
    np.testing.assert_array_equal(s, [9.0])


# ---- several threads on one shared array; plans that do not batch ----------------------------
@l3c.kernel
def add_first(delay: float, s: l3c.InOut):
    time.sleep(delay)
    s[0] += 1


@l3c.kernel
def add_second(delay: float, s: l3c.InOut):
    time.sleep(delay)
    s[1] += s[0] - s[0] + 1


@l3c.jit(chips=2, max_inflight=8)
def count_both(s, delay):
    add_first.on(0)(delay, s[0:1])
    add_second.on(1)(delay, s)


@l3c.jit(chips=2, max_inflight=8)
def count_first(s, delay):
    add_first.on(1)(delay, s[0:1])


def test_threads_sharing_one_array_lose_no_update():
    """Every thread's runs (of two functions, batched among themselves) change the array the
    same way in any order: none is lost or run twice, nothing deadlocks."""
    s = l3c.shared(np.zeros(2))
    count_both(s, 0.0)
    count_first(s, 0.0)
    errors = []

    def client(seed):
        try:
            rng = random.Random(seed)
            runs = []
            for _ in range(20):
                delay = rng.choice([0.0, 0.0, 0.001])
                runs.append((count_both if rng.random() < 0.7 else count_first).submit(s, delay))
            for run in runs:
                run.result()
        except BaseException as exc:              # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    both = sum(1 for k in range(3) for r in _draws(k) if r)
    np.testing.assert_array_equal(s, [1 + 1 + 60, 1 + both])


def _draws(seed):
    rng = random.Random(seed)
    out = []
    for _ in range(20):
        rng.choice([0.0, 0.0, 0.001])
        out.append(rng.random() < 0.7)
    return out


@l3c.kernel
def add_k(x: l3c.InOut, k):
    x[...] += k


@l3c.jit(chips=2, max_inflight=8)
def looped_add(x, n):
    for i in l3c.range(n):
        add_k(x, i)
    return x


def test_runs_of_a_plan_with_loops_queued_together_run_one_by_one():
    x = np.zeros(3)
    looped_add(x, 4)
    ahead = _queue_behind_a_busy_pool()
    runs = [looped_add.submit(np.full(3, float(i)), 4) for i in range(4)]
    ahead.result()
    for i, run in enumerate(runs):
        np.testing.assert_array_equal(run.result(), np.full(3, i + 6.0))


def test_runs_nobody_waits_for_still_run():
    """The queue's thread runs them: after a quiet spell (it sleeps) and in a burst."""
    s = l3c.shared(np.zeros(1))
    count_up_alone(s)
    time.sleep(0.2)                               # the queue's thread is asleep by now
    runs = [count_up_alone.submit(s) for _ in range(5)]
    deadline = time.monotonic() + 30
    while not all(r.done() for r in runs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(r.done() for r in runs)
    np.testing.assert_array_equal(s, [6.0])


@l3c.jit(chips=2, max_inflight=8)
def count_up_alone(s):
    count_up.on(1)(s)


def test_a_batch_mixing_shared_and_ordinary_arguments():
    """Runs passing an ordinary array are independent of the others (their copy is written
    back); runs passing the shared array are ordered among themselves."""
    s = l3c.shared(np.zeros(1))
    counted(np.ones(1), s)
    ahead = _queue_behind_a_busy_pool()
    own = [np.full(1, 10.0 * i) for i in range(8)]
    args = [s if i % 2 else own[i] for i in range(8)]
    runs = [counted.submit(np.ones(1), a) for a in args]
    ahead.result()
    outs = [r.result() for r in runs]
    for i in range(8):
        if i % 2:
            np.testing.assert_array_equal(outs[i], [1.0 + (i + 1) // 2])
        else:
            np.testing.assert_array_equal(outs[i], [10.0 * i + 1])
            np.testing.assert_array_equal(own[i], [10.0 * i + 1])
    np.testing.assert_array_equal(s, [5.0])
    keys = counted.lower(np.ones(1), s).artifacts["batches"]
    assert any(None in key and any(k is not None for k in key) for key in keys)   # one batch


@l3c.jit(chips=2, max_inflight=8)
def count_and_return(s):
    count_up.on(0)(s)
    return s


def test_a_result_that_is_a_shared_argument_is_what_its_own_run_left():
    s = l3c.shared(np.zeros(1))
    count_and_return(s)
    ahead = _queue_behind_a_busy_pool()
    runs = [count_and_return.submit(s) for _ in range(4)]
    ahead.result()
    assert [float(r.result()[0]) for r in runs] == [2.0, 3.0, 4.0, 5.0]


@l3c.kernel
def read_or_die(who: l3c.In, s: l3c.In, y: l3c.Out):
    if who[0] < 0:
        os._exit(3)
    y[0] = s[0]


@l3c.jit(chips=2, max_inflight=8)
def counted_or_die(who, s):
    y = l3c.empty((1,), np.float64)
    count_up.on(0)(s)
    read_or_die.on(1)(who, s, y)
    return y


@pytest.mark.parametrize("bad", [1, 3])
def test_a_worker_dying_in_a_batch_fails_its_run_alone(bad):
    s = l3c.shared(np.zeros(1))
    counted_or_die(np.ones(1), s)
    ahead = _queue_behind_a_busy_pool()
    whos = [-1.0 if i == bad else 1.0 for i in range(4)]
    runs = [counted_or_die.submit(np.array([w]), s) for w in whos]
    ahead.result()
    for i, run in enumerate(runs):
        if whos[i] < 0:
            with pytest.raises(l3c.WorkerCrashed):
                run.result()
        else:
            np.testing.assert_array_equal(run.result(), [i + 2.0])
    np.testing.assert_array_equal(s, [5.0])
    np.testing.assert_array_equal(counted_or_die(np.ones(1), s), [6.0])   # the pool is whole
