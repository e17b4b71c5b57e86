"""Placement quality: iterative band programs keep each band on one chip (data affinity).

The list scheduler places a task on the worker that finishes it earliest; among workers that
finish it equally early (or within `reports["placement_slack"]`), it now takes the one holding
most of the bytes the task reads. Before, ties went to the worker of the latest-finishing
predecessor, and in a Jacobi sweep both neighbours finish together: each band hopped to its
neighbour's chip every sweep (15 cross-chip edges instead of 13 on the 2-band example).
"""
from __future__ import annotations

import numpy as np
import pytest

import l3c
from l3c.passes import PassOptions, run_passes
from examples.jacobi import copy, jacobi, reference, residual, smooth
from _ir_builders import call, program

S = slice


def _bands(prog) -> dict[int, set[int]]:
    """Band index (group rank) -> chips its smooth tasks ran on."""
    found: dict[int, set[int]] = {}
    for t in prog.tasks:
        if t.short_kernel == "smooth":
            found.setdefault(t.group_rank, set()).add(t.chip)
    return found


def _cross(prog) -> int:
    return sum(1 for u, v in prog.graph.edges
               if (prog.task(u).worker, prog.task(u).chip) != (prog.task(v).worker, prog.task(v).chip))


def test_jacobi_bands_stay_on_their_chip_with_minimal_cross_edges():
    u0 = np.zeros((34, 16))
    u0[0, :] = 1.0
    u0[:, 0] = np.linspace(1.0, 0.0, 34)
    compiled = jacobi.lower(u0, 6)
    prog = compiled.program
    bands = _bands(prog)
    assert all(len(chips) == 1 for chips in bands.values()), bands
    assert bands[0] != bands[1]                          # and the bands run in parallel
    # Minimal with both chips busy: each sweep after the first, each band waits on its own
    # previous task (same chip) and on its neighbour's (the halo: 2 per sweep x 5 sweeps); the
    # first sweep's two bands both read the one initial copy (1); the sub-worker residual reads
    # both bands (2). The boundary-row copies land on the chip of the band that reads them (0).
    assert prog.reports["cross_worker_edges"] == _cross(prog) == 13
    assert prog.reports["makespan"] == 9.0
    u, res = compiled(u0, 6, 2)
    ref_u, ref_res = reference(u0, 6)
    np.testing.assert_allclose(u, ref_u)
    np.testing.assert_allclose(res, ref_res)
    eager_u, eager_res = jacobi.eager(u0, 6)
    np.testing.assert_array_equal(u, eager_u)
    np.testing.assert_array_equal(res, eager_res)


def test_four_bands_on_four_chips_stay_put():
    wide = l3c.jit(chips=4, sub_workers=1)(jacobi.fn)
    u0 = np.random.default_rng(0).standard_normal((66, 16))
    compiled = wide.lower(u0, 6, 4)
    prog = compiled.program
    bands = _bands(prog)
    assert all(len(chips) == 1 for chips in bands.values()) and len(set().union(*bands.values())) == 4
    # 2 halo edges per inner band and 1 per outer band, per sweep after the first (6 x 5), 3 from
    # the initial copy, 4 into the residual, and 1 because the boundary-row copies are placed
    # before any band has a chip (one of them lands on another band's chip). Was 44.
    assert prog.reports["cross_worker_edges"] == _cross(prog) == 38
    u, res = compiled(u0, 6, 4)
    ref_u, ref_res = reference(u0, 6)
    np.testing.assert_allclose(u, ref_u)
    np.testing.assert_allclose(res, ref_res)


def test_affinity_follows_bytes_not_the_latest_predecessor():
    # Two producers finish together on two chips; the consumer reads 7 rows of a's and 1 of b's:
    # it goes to a's chip, although b's task is later in program order (the old tie-break).
    prog = program({"x": (8, 4), "y": (8, 4)}, [
        call("pa", ("x", (S(0, 7),), "Out")),
        call("pb", ("x", (S(7, 8),), "Out")),
        call("c", ("x", (), "In"), ("y", (), "Out")),
    ], chips=2, fuse_groups=False)
    run_passes(prog, options=PassOptions(verify=True))
    assert prog.task(0).chip != prog.task(1).chip
    assert prog.task(2).chip == prog.task(0).chip
    flipped = program({"x": (8, 4), "y": (8, 4)}, [
        call("pa", ("x", (S(0, 1),), "Out")),
        call("pb", ("x", (S(1, 8),), "Out")),
        call("c", ("x", (), "In"), ("y", (), "Out")),
    ], chips=2, fuse_groups=False)
    run_passes(flipped, options=PassOptions(verify=True))
    assert flipped.task(2).chip == flipped.task(1).chip


@pytest.mark.parametrize("slack, expect_same", [(0.0, False), (1.0, True)])
def test_placement_slack_trades_a_little_time_for_locality(slack, expect_same):
    # The consumer could start at once on the idle chip 1, or one unit later on chip 0 where its
    # 8 rows of input are. Without slack it takes the earlier chip; with slack 1 it stays.
    prog = program({"x": (8, 4), "y": (8, 4), "z": (1,)}, [
        call("p", ("x", (), "Out"), pin=0),
        call("busy", ("z", (), "Out"), pin=0),
        call("c", ("x", (), "In"), ("y", (), "Out")),
    ], chips=2, fuse_groups=False)
    prog.costs.placement_slack = slack
    run_passes(prog, options=PassOptions(verify=True))
    assert (prog.task(2).chip == 0) is expect_same
