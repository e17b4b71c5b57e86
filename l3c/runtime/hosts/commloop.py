"""The landing slot's queue of a plan with loops, run by the host's parent: the loops' control
steps, the sends and the landings, in sequential order (`l3c.codegen.hostloops`).

It keeps the same state a worker's step loop keeps (docs/runtime.md, "Loops in the step loop"):
its own count, published on the landing slot's S_DONE (the workers wait on it), the rows of every
slot's counts at its control points (the anchors its waits are relative to) and the loop
variables, and takes the same decisions, reading the bounds and flags from this host's arena
after the landings of their writers. A step runs once its waits hold:

- a send copies the producer's regions, as they are in this instance, into fresh buffers and
  posts their `Isend`s (complete at once: later writers of those bytes need not wait for the
  network); the requests are tested until they complete (`inflight`);
- a landing posts its `Irecv`s (into the arena when the region is contiguous) and completes when
  they did (strided regions scattered from their buffer).

`advance()` runs steps until one cannot go on and says why (`blocked`): a local slot's count
below a target (`word`, `target`), a landing's requests, or nothing (`finished`). It never
blocks: the run loop (`looprun.py`) waits for those events natively and calls it again.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ...errors import L3CError
from ..plan import ANCHOR_CUR, NO_CAP, ControlStep, MovingView, View, anchor, anchor_count
from .. import sync
from ..hostplan import CommStep

WAIT_LOCAL, WAIT_RECV, WAIT_NONE = "local", "recv", "none"
COUNT_LIMIT = 2**32 - 1     # S_DONE is a u32 (the workers stop at the same limit)


class CommQueue:
    """One run of a host's landing-slot queue (see the module docstring)."""

    def __init__(self, steps: tuple, slots: int, loops: int, run: Any) -> None:
        self.steps, self.slots, self.run = steps, slots, run
        self.k = 0
        self.count = 0
        self.rows = [[0] * slots for _ in range(anchor_count(loops))]
        self.frames = [[0, 0, 0, 0] for _ in range(loops)]     # var, iter, trips, step
        self.anchors = [tuple(anchor(i, w) for w in range(4)) for i in range(loops)]
        self.words = [run.done_word(s) for s in range(slots)]
        self.finished = not steps
        self.blocked: tuple = (WAIT_NONE,)
        self.recv: list | None = None            # the landing in progress: its requests
        self.scatter: list = []
        self.inflight: list = []                 # (requests, buffers) of sends not yet complete
        self.stalled: str | None = None
        self.arrays: dict[View, np.ndarray] = {}   # arena arrays of views that do not move

    # ---- values -------------------------------------------------------------------------------
    def _offset(self, view: View | MovingView) -> View:
        if isinstance(view, View):
            return view
        off = view.view.offset + sum(self.frames[i][0] * b for i, b in view.shifts)
        return View(off, view.view.shape, view.view.strides, view.view.dtype)

    def _array(self, view: View) -> np.ndarray:
        """The arena array of a view: built once for views that do not move (a flag read every
        iteration), else per instance."""
        arr = self.arrays.get(view)
        if arr is None:
            arr = self.run.pool.array(view)
            if len(self.arrays) < 1024:
                self.arrays[view] = arr
        return arr

    def _value(self, bound: Any) -> int:
        if isinstance(bound, View):
            return int(self._array(bound).reshape(-1)[0])
        if isinstance(bound, MovingView):
            return int(self.run.pool.array(self._offset(bound)).reshape(-1)[0])
        return int(bound)

    def _piece(self, piece: Any) -> np.ndarray | None:
        """The arena array of a piece in this instance; None if it left its tensor."""
        view = self._offset(piece.view)
        item = np.dtype(view.dtype).itemsize
        lo = view.offset + sum(min(0, (n - 1) * s) for n, s in zip(view.shape, view.strides))
        hi = view.offset + item + sum(max(0, (n - 1) * s) for n, s in zip(view.shape, view.strides))
        if lo < piece.lo or hi > piece.hi:
            return None
        return self._array(view) if view is piece.view else self.run.pool.array(view)

    def _checks(self, step: ControlStep, first: int, last: int) -> bool:
        for c in step.checks:
            rest = c.const + sum(coef * self.frames[i][0] for i, coef in c.terms)
            for x in (first, last):
                if not 0 <= rest + c.coef * x <= c.high:
                    return False
        return True

    # ---- the queue ----------------------------------------------------------------------------
    def _target(self, wait: tuple) -> int:
        t, c, base, cap = wait
        value = self.rows[base][t] + c
        return value if cap == NO_CAP else min(value, self.rows[cap][t])

    def _publish(self) -> None:
        run = self.run
        if self.count > COUNT_LIMIT:
            raise L3CError(f"host {run.host}: the run's sends, landings and flag reads passed "
                           f"{COUNT_LIMIT} on this host (the landing slot's count is 32 bits); "
                           "split the run into several calls")
        sync.publish(run.landing_word, self.count, run.landing_waiters)

    def advance(self) -> bool:
        """Run steps until one must wait; True if any step ran (or a landing completed)."""
        progressed = False
        steps, load = self.steps, sync.load_u32
        while not self.finished and self.stalled is None:
            step = steps[self.k]
            if self.recv is None:
                for wait in step.waits:
                    target = self._target(wait)
                    if load(self.words[wait[0]]) < (target & 0xFFFFFFFF):
                        self.blocked = (WAIT_LOCAL, self.words[wait[0]], target & 0xFFFFFFFF)
                        return progressed
            if isinstance(step, CommStep):
                if step.kind == "send":
                    self._send(step)
                elif not self._land(step):
                    return progressed
                self.count += 1
                self._publish()
                self.k += 1
            else:
                self._control(step)
            progressed = True
            if self.k >= len(steps):
                self.finished = True
        self.blocked = (WAIT_NONE,)
        return progressed

    def _send(self, step: CommStep) -> None:
        run = self.run
        tag = run.tag_base + step.transfer
        reqs, bufs = [], []
        for piece in step.pieces:
            arr = self._piece(piece)
            if arr is None:
                # its producer's own index check fails the run on that worker
                self.stalled = f"a send of task {step.task} left its tensor"
                return
            buf = arr.copy(order="C")     # the arena's bytes may change once this returns
            bufs.append(buf)
            reqs.append(run.comm.Isend([buf.reshape(-1).view(np.uint8), run.MPI.BYTE],
                                       dest=step.peer, tag=tag))
        self.inflight.append((reqs, bufs))

    def _land(self, step: CommStep) -> bool:
        run = self.run
        if self.recv is None:
            tag = run.tag_base + step.transfer
            reqs, scatter = [], []
            for piece in step.pieces:
                arr = self._piece(piece)
                if arr is None:
                    self.stalled = f"a landing of task {step.task} left its tensor"
                    return False
                if arr.flags.c_contiguous:
                    buf = arr
                else:
                    buf = np.empty(arr.shape, arr.dtype)
                    scatter.append((arr, buf))
                reqs.append(run.comm.Irecv([buf.reshape(-1).view(np.uint8), run.MPI.BYTE],
                                           source=step.peer, tag=tag))
            run.recv_reqs = list(reqs)          # cancelled if the run fails
            self.recv, self.scatter = reqs, scatter
        if not run.MPI.Request.Testall(self.recv):
            self.blocked = (WAIT_RECV, self.recv, step.peer, step.task)
            return False
        for arr, buf in self.scatter:
            np.copyto(arr, buf)
        self.recv, self.scatter = None, []
        run.recv_reqs = []
        run.heard[step.peer] = time.monotonic()
        return True

    def test_sends(self) -> bool:
        """Drop the oldest sends while they completed (they complete about in order); True if any
        did."""
        inflight = self.inflight
        if not inflight:
            return False
        testall = self.run.MPI.Request.Testall
        done = 0
        while done < len(inflight) and testall(inflight[done][0]):
            done += 1
        if done:
            del inflight[:done]
        return done > 0

    def _count_read(self, step: ControlStep) -> None:
        if step.counted:
            self.count += 1
            cur = self.rows[ANCHOR_CUR]
            for t in range(self.slots):
                cur[t] += 1
            self._publish()

    def _copy(self, dst: int, src: int) -> None:
        self.rows[dst] = list(self.rows[src])

    def _control(self, step: ControlStep) -> None:
        """One control step, exactly as the step loop runs it (`steploop_control.py`)."""
        cur = self.rows[ANCHOR_CUR]
        if any(step.delta):
            for t, d in enumerate(step.delta):
                cur[t] += d
        i = step.loop
        frame = self.frames[i]
        enter, head, prev, exit_ = self.anchors[i]
        kind, k1 = step.kind, self.k + 1
        if kind == "range":
            start, stop, stride = (self._value(b) for b in (step.start, step.stop, step.step))
            if stride == 0:
                self.stalled = "a range step of 0"        # the workers fail the run
                return
            span, mag = (stop - start, stride) if stride > 0 else (start - stop, -stride)
            trips = (span + mag - 1) // mag if span > 0 else 0
            self._count_read(step)
            frame[:] = [start, 0, trips, stride]
            for row in (enter, head, prev):
                self._copy(row, ANCHOR_CUR)
            if trips == 0:
                self._copy(exit_, ANCHOR_CUR)
                self.k = step.jump
                return
            if not self._checks(step, start, start + (trips - 1) * stride):
                self.stalled = "an index check"
                return
            self.k = k1
        elif kind == "next":
            frame[1] += 1
            if frame[1] < frame[2]:
                frame[0] += frame[3]
                self._copy(prev, head)
                self._copy(head, ANCHOR_CUR)
                self.k = step.jump
            else:
                self._copy(exit_, ANCHOR_CUR)
                self.k = k1
        elif kind == "while":
            frame[1] = frame[0] = 0
            for row in (enter, head, prev):
                self._copy(row, ANCHOR_CUR)
            self.k = k1
        elif kind == "test":
            flag = self._value(step.flag)
            self._count_read(step)
            it = frame[1]
            if not flag or 0 <= step.max_iterations <= it:
                self._copy(exit_, ANCHOR_CUR)
                self.k = step.jump
                return
            self._copy(prev, ANCHOR_CUR if it == 0 else head)
            self._copy(head, ANCHOR_CUR)
            frame[0] = it
            if not self._checks(step, it, it):
                self.stalled = "an index check"
                return
            self.k = k1
        elif kind == "again":
            frame[1] += 1
            self.k = step.jump
        elif kind == "cond":
            flag = self._value(step.flag)
            self._count_read(step)
            self._copy(enter, ANCHOR_CUR)
            if bool(flag) != bool(step.invert):
                self._copy(head, ANCHOR_CUR)
                self.k = k1
            else:
                self._copy(exit_, ANCHOR_CUR)
                self.k = step.jump
        elif kind == "endcond":
            self._copy(exit_, ANCHOR_CUR)
            self.k = k1
        else:
            raise ValueError(f"unknown control step {kind!r}")
