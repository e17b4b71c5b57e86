"""The split of programs with loops over several hosts, in-process (no MPI): which writes move per
instance, each host's schedule of sends and landings between the same control steps as its
workers, and the final broadcasts (l3c/passes/looptransfers.py, l3c/codegen/hostloops.py). The
runs themselves are in tests/test_loops_hosts_compiled.py (mpiexec)."""
from __future__ import annotations

import numpy as np

import l3c
from l3c.codegen.hosts import split
from l3c.runtime.hostplan import CommStep
from l3c.runtime.plan import ControlStep, MovingView, Step


@l3c.kernel
def scale(x: l3c.InOut, k):
    x[...] = x * 0.5 + k


@l3c.kernel
def accumulate(x: l3c.In, acc: l3c.InOut):
    acc[...] += x.sum()


@l3c.kernel
def count_down(go: l3c.InOut):
    go[0] -= 1


def relay(x, acc):
    for i in l3c.range(6):
        scale.on(0)(x[i], i)
        accumulate.on(1)(x[i], acc)
    return x, acc


def decided_elsewhere(x, go):
    for _ in l3c.while_loop(go):
        scale.on(0)(x, 1)
        count_down.on(1)(go)
    return x


def before_only(x, y):
    scale.on(1)(y, 2)
    for i in l3c.range(3):
        scale.on(0)(x[i], i)
    return x, y


def kinds(queue):
    return [st.kind if isinstance(st, (ControlStep, CommStep)) else "task" for st in queue]


def dist(fn, *args):
    return split(l3c.jit(fn, chips=1, hosts=2).lower(*args).program)


def test_a_moving_row_is_sent_every_iteration_between_the_same_control_steps():
    d = dist(relay, np.zeros((6, 4)), np.zeros(1))
    (tr,) = d.transfers
    assert (tr.src, tr.dst, tr.producer) == (0, 1, 0)
    send, recv = d.parts[0].comm, d.parts[1].comm
    assert kinds(send) == ["range", "send", "next"] and kinds(recv) == ["range", "recv", "next"]
    (piece,) = send[1].pieces
    assert isinstance(piece.view, MovingView) and piece.view.shifts == ((0, 32),)  # a row a step
    for part in d.parts:
        plan = part.lowered.plan
        assert plan.queues[plan.slots - 1] == ()        # the parent runs the landing slot's queue
        assert kinds(plan.queues[0]) == ["range", "task", "next"]
    # host 1's task waits for the landing of this iteration (the landing slot, relative)
    (task,) = [st for st in d.parts[1].lowered.plan.queues[0] if isinstance(st, Step)]
    assert any(w[0] == 1 for w in task.waits)
    # acc is written on host 1 only: host 1 broadcasts it; x on host 0 only: host 0 does
    assert sorted((f.root, f.piece.tensor) for f in d.final) == [(0, 0), (1, 1)]


def test_a_while_flag_written_on_one_host_reaches_the_other_once_per_decision():
    d = dist(decided_elsewhere, np.zeros(3), np.array([4]))
    (tr,) = d.transfers
    assert (tr.src, tr.dst) == (1, 0)
    assert kinds(d.parts[0].comm) == ["while", "test", "recv", "again"]
    assert kinds(d.parts[1].comm) == ["while", "test", "send", "again"]
    # the landing of the next flag waits until host 0's chip read the current one (a WAR wait)
    assert d.parts[0].comm[2].waits


def test_a_host_with_no_part_in_a_loop_runs_none_of_its_control():
    d = dist(before_only, np.zeros((3, 2)), np.zeros(2))
    assert not d.transfers
    assert kinds(d.parts[1].lowered.plan.queues[0]) == ["task"]
    assert d.parts[1].comm == () and not d.parts[1].lowered.plan.loops
    assert kinds(d.parts[0].lowered.plan.queues[0]) == ["range", "task", "next"]
