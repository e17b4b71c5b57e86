"""The tables the step loop reads for plans with loops: control steps, argument patches, checks.

`steploop.py` walks a table of steps; `steploop_control.py` emits the native code for what plans
with loops add to it; this module packs their tables. docs/runtime.md ("Loops in the step loop") has the model:
every active slot runs every loop's control steps, so every worker computes the same trip counts
and decisions, and keeps rows of every slot's completion count at its control points (anchors), to
which the waits of steps inside loops are relative.

Tables (i64 words; addresses are plain ints the loop loads through):
    control c: kind, frame, jump, delta, counted, enter, head, prev, exit, start_kind, start,
               stop_kind, stop, step_kind, step, flag_kind, flag, max_iterations, invert,
               check_begin, check_end
               frame: the loop's (var, iter, trips, step) words; delta: a row of `slots` counts
               (or 0); enter/head/prev/exit: anchor rows; *_kind: VALUE_CONST (the word is the
               value) or the element type to load from the address in the word.
    patch p:   action, address, const, term_begin, term_end
               before a step's call: value = const + sum(coef * var) over its terms, then
               PATCH_WORD stores it at the address (a native argument block's word, or an ndarray's
               data pointer), PATCH_INT replaces the Python int in the tuple slot at the address.
    term t:    var address, coef
    check j:   const, coef, term_begin, term_end, high: 0 <= const + coef * x + terms <= high for x
               the loop's first and last value (range enter) or its current value (while test).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

CTL_WORDS = 21
(C_KIND, C_FRAME, C_JUMP, C_DELTA, C_COUNTED, C_ENTER, C_HEAD, C_PREV, C_EXIT, C_START_KIND,
 C_START, C_STOP_KIND, C_STOP, C_STEP_KIND, C_STEP, C_FLAG_KIND, C_FLAG, C_MAX, C_INVERT,
 C_CHECK_BEGIN, C_CHECK_END) = range(CTL_WORDS)
PATCH_WORDS = 5
PATCH_WORD, PATCH_INT = 0, 1
TERM_WORDS = 2
CHECK_WORDS = 5
FRAME_WORDS = 4                       # var, iter, trips, step
F_VAR, F_ITER, F_TRIPS, F_STEP = range(FRAME_WORDS)

KINDS = {"range": 1, "next": 2, "while": 3, "test": 4, "again": 5, "cond": 6, "endcond": 7}
VALUE_CONST = 0
VALUE_KINDS = {"int8": 1, "int16": 2, "int32": 3, "int64": 4, "uint8": 5, "bool": 5, "uint16": 6,
               "uint32": 7, "uint64": 8}
_WIDTHS = {1: (8, True), 2: (16, True), 3: (32, True), 4: (64, True), 5: (8, False),
           6: (16, False), 7: (32, False), 8: (64, False)}

# A profiled run of a plan with loops: the slot's profile area holds [count, capacity], then one
# (step, start ns, end ns) event per executed step while count < capacity; count goes on counting.
EV_COUNT, EV_CAP, EV_HEADER, EV_WORDS = 0, 1, 2, 3

# Header words of a table (`hdr`), shared by the loop and the Python side.
HDR_WORDS = 10
(H_CONTROLS, H_PATCHES, H_TERMS, H_CHECKS, H_ANCHORS, H_SLOTS, H_COUNT, H_FAILED, H_FRAMES,
 H_LOOPS) = range(HDR_WORDS)

# Where CPython and numpy keep what a patch rewrites (checked once per process by `_layout_ok`).
TUPLE_ITEMS = tuple.__basicsize__
ARRAY_DATA = 16                       # offsetof(PyArrayObject_fields, data)


def _layout_ok() -> bool:
    probe = np.zeros(2)
    return ctypes.c_void_p.from_address(id(probe) + ARRAY_DATA).value == probe.ctypes.data


@dataclass(frozen=True)
class Control:
    """One control step as the worker hands it to `StepTable`: the plan's `ControlStep` with its
    bounds and flag resolved to (kind, value-or-address) and its waits to addresses."""

    kind: str
    loop: int
    jump: int
    delta: tuple[int, ...]
    counted: bool
    waits: tuple[tuple[int, ...], ...]
    start: tuple[int, int] = (VALUE_CONST, 0)
    stop: tuple[int, int] = (VALUE_CONST, 0)
    step: tuple[int, int] = (VALUE_CONST, 1)
    flag: tuple[int, int] = (VALUE_CONST, 0)
    max_iterations: int = -1
    invert: bool = False
    checks: tuple[tuple[int, int, tuple[tuple[int, int], ...], int], ...] = ()   # const, coef, terms, high
    moving: tuple[tuple[str, int, tuple[tuple[int, int], ...]], ...] = ()   # (field, address const, terms)


class Tables:
    """The control, patch, term and check tables of one `StepTable`, and its anchors and frames."""

    def __init__(self, slots: int, loops: int, anchors: int) -> None:
        self.slots, self.loops = slots, loops
        self.anchors = (ctypes.c_int64 * (anchors * slots + 1))()    # + the "no cap" word
        self.anchors[anchors * slots] = 2**63 - 1
        self.frames = (ctypes.c_int64 * max(1, FRAME_WORDS * loops))()
        self.hdr = (ctypes.c_int64 * HDR_WORDS)()
        self.controls: list[int] = []
        self.patches: list[int] = []
        self.terms: list[int] = []
        self.checks: list[int] = []
        self.deltas: list[Any] = []
        self.n_anchors = anchors
        self._control_patches: list[tuple[int, int]] = []   # (patch word, control word) to resolve
        self.keep: list[Any] = []

    def row(self, anchor: int) -> int:
        return ctypes.addressof(self.anchors) + 8 * self.slots * anchor

    def cell(self, anchor: int, slot: int) -> int:
        return self.row(anchor) + 8 * slot

    @property
    def no_cap(self) -> int:
        return ctypes.addressof(self.anchors) + 8 * self.slots * self.n_anchors

    def wait_words(self, wait: tuple[int, ...]) -> list[int]:
        """A wait's table words: (word, waiters, count) is absolute; (word, waiters, count, slot,
        base anchor, cap anchor) relative to the anchor rows (`plan.Wait`)."""
        from .plan import NO_CAP
        if len(wait) == 3:
            return [*wait, self.cell(0, 0), self.no_cap]
        word, waiters, count, slot, base, cap = wait
        return [word, waiters, count, self.cell(base, slot),
                self.no_cap if cap == NO_CAP else self.cell(cap, slot)]

    def var(self, loop: int) -> int:
        if not 0 <= loop < self.loops:
            raise TypeError(f"loop variable {loop} of a table with {self.loops} loops")
        return ctypes.addressof(self.frames) + 8 * (FRAME_WORDS * loop + F_VAR)

    def add_terms(self, terms: Sequence[tuple[int, int]]) -> tuple[int, int]:
        begin = len(self.terms) // TERM_WORDS
        for loop, coef in terms:
            self.terms += [self.var(loop), coef]
        return begin, len(self.terms) // TERM_WORDS

    def add_patch(self, action: int, address: int, const: int,
                  terms: Sequence[tuple[int, int]]) -> None:
        self.patches += [action, address, const, *self.add_terms(terms)]

    def add_control(self, c: Control) -> int:
        """Append a control's row; return its index (the step's target word)."""
        from .plan import ENTER, EXIT, HEAD, PREV, anchor
        index = len(self.controls) // CTL_WORDS
        delta = 0
        if any(c.delta):
            row = (ctypes.c_int64 * self.slots)(*c.delta)
            self.deltas.append(row)
            delta = ctypes.addressof(row)
        check_begin = len(self.checks) // CHECK_WORDS
        for const, coef, terms, high in c.checks:
            self.checks += [const, coef, *self.add_terms(terms), high]
        frame = ctypes.addressof(self.frames) + 8 * FRAME_WORDS * c.loop
        for name, const, terms in c.moving:          # a bound or flag element a variable moves
            word = {"start": C_START, "stop": C_STOP, "step": C_STEP, "flag": C_FLAG}[name]
            self._control_patches.append((len(self.patches), CTL_WORDS * index + word))
            self.add_patch(PATCH_WORD, 0, const, terms)
        self.controls += [KINDS[c.kind], frame, c.jump, delta, int(c.counted),
                          self.row(anchor(c.loop, ENTER)), self.row(anchor(c.loop, HEAD)),
                          self.row(anchor(c.loop, PREV)), self.row(anchor(c.loop, EXIT)),
                          *c.start, *c.stop, *c.step, *c.flag, c.max_iterations, int(c.invert),
                          check_begin, len(self.checks) // CHECK_WORDS]
        return index

    def finish(self) -> None:
        """Freeze the lists into arrays and fill the header."""
        def array(words: list[int]) -> Any:
            arr = (ctypes.c_int64 * max(1, len(words)))(*words)
            self.keep.append(arr)
            return ctypes.addressof(arr)
        hdr = self.hdr
        hdr[H_CONTROLS] = array(self.controls)
        for at, word in self._control_patches:
            self.patches[at + 1] = hdr[H_CONTROLS] + 8 * word
        hdr[H_PATCHES] = array(self.patches)
        hdr[H_TERMS], hdr[H_CHECKS] = array(self.terms), array(self.checks)
        hdr[H_ANCHORS], hdr[H_SLOTS] = ctypes.addressof(self.anchors), self.slots
        hdr[H_FRAMES], hdr[H_LOOPS] = ctypes.addressof(self.frames), self.loops

    def failed_check(self, row: int) -> int:
        """After STEPS_CHECK at the control step of control row `row`: which of its checks failed
        (an index into its `Control.checks`)."""
        return self.hdr[H_FAILED] - self.controls[CTL_WORDS * row + C_CHECK_BEGIN]

    def frame(self, loop: int) -> tuple[int, int, int, int]:
        base = FRAME_WORDS * loop
        return tuple(self.frames[base:base + FRAME_WORDS])


def own_args(args: tuple, moving: Sequence[tuple]) -> tuple:
    """A Python step's argument tuple and moved arrays, as new objects of the step's own: patches
    rewrite them in place (a tuple the caller passed may be a shared constant)."""
    if not moving:
        return args
    moved = {i for i, _, _ in moving}
    return tuple(a.view() if i in moved and isinstance(a, np.ndarray) else a
                 for i, a in enumerate(args))


def argument_patches(tables: Tables, fn_is_native: bool, args: tuple, moving: Sequence[tuple],
                     call: Any) -> None:
    """Patches that rebuild a step's loop-dependent arguments before each call.

    `moving`: (arg index, const, terms) - the arg's int value, or for an array its data address.
    A native step patches its argument block's word; a Python step an int's slot of its argument
    tuple, or the data pointer of its own ndarray (made for this step alone at install)."""
    if not moving:
        return
    if not _layout_ok():
        raise TypeError("this numpy keeps an array's data pointer elsewhere: loop-dependent views "
                        "cannot be moved in place")
    if fn_is_native:
        word_of, w = {}, 0
        for i, a in enumerate(args):
            word_of[i] = w
            w += 2 if isinstance(a, np.ndarray) else 1
        for i, const, terms in moving:
            tables.add_patch(PATCH_WORD, call.block_address + 8 * word_of[i], const, terms)
        return
    for i, const, terms in moving:
        if isinstance(args[i], np.ndarray):
            tables.add_patch(PATCH_WORD, id(args[i]) + ARRAY_DATA, const, terms)
        else:
            tables.add_patch(PATCH_INT, id(args) + TUPLE_ITEMS + 8 * i, const, terms)


