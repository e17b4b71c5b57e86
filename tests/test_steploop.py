"""The native step loop in the workers (`l3c/runtime/steploop.py`): long cross-worker waits that
return to Python between futex slices and resume at the right step, group context per step, and
kernel exceptions reported from the kernel's own frame."""
from __future__ import annotations

import time

import numpy as np

import l3c
from l3c.runtime import worker


@l3c.kernel
def slow_fill(x: l3c.Out, seconds: float):
    time.sleep(seconds)
    x[...] = 7.0


@l3c.kernel
def add_from(src: l3c.In, dst: l3c.InOut):
    dst += src


@l3c.kernel
def stamp_rank(out: l3c.Out):
    out[...] = 10 * l3c.group_rank() + l3c.group_size()


def _inner(x):
    raise KeyError(f"missing {x.size}")


@l3c.kernel
def nested_fail(x: l3c.InOut):
    _inner(x)


def test_wait_longer_than_a_futex_slice_resumes_at_the_waiting_step():
    # chip 1 runs three steps; its second waits on chip 0's slow step for ~3 futex slices
    seconds = 3.2 * worker.SLICE_NS / 1e9

    @l3c.jit(chips=2)
    def prog(a, b):
        add_from.on(1)(b, b)                     # doubles b
        slow_fill.on(0)(a, seconds)
        add_from.on(1)(a, b)                     # waits for chip 0
        add_from.on(1)(b, b)
        return b

    a, b = np.zeros(4), np.ones(4)
    assert prog(a, b).tolist() == [18.0] * 4    # ((1*2) + 7) * 2
    assert prog.eager(np.zeros(4), np.ones(4)).tolist() == [18.0] * 4


def test_group_rank_and_size_are_set_for_every_step():
    @l3c.jit(chips=3)
    def prog(out, single):
        l3c.group(stamp_rank, [(out[i],) for i in range(3)])
        stamp_rank(single)
        return out, single

    out, single = prog(np.zeros((3, 2)), np.zeros(2))
    assert out[:, 0].tolist() == [3.0, 13.0, 23.0]
    assert single.tolist() == [1.0, 1.0]        # rank 0 of 1, not left over from the group


def test_kernel_traceback_starts_in_the_kernel():
    @l3c.jit(chips=2)
    def prog(x):
        nested_fail(x)
        return x

    try:
        prog(np.zeros(5))
    except l3c.KernelError as exc:
        text = exc.remote_traceback
    else:
        raise AssertionError("the kernel's KeyError was not reported")
    assert "in nested_fail" in text and "in _inner" in text and "KeyError: 'missing 5'" in text
    assert "l3c/runtime" not in text            # no worker or step-loop frames

    @l3c.jit(chips=2)
    def fine(x):                                 # the pool recovered: the next run works
        add_from(x, x)
        return x

    assert fine(np.ones(3)).tolist() == [2.0] * 3


def test_steps_another_host_waits_for_ring_the_doorbell_once_each():
    """A producer of a cross-host transfer rings H_DOORBELL after publishing, so that its host's
    parent wakes from a nap to send the output (other steps leave the doorbell alone)."""
    import ctypes

    from l3c.runtime import layout, steploop

    ctl = (ctypes.c_uint32 * 32)()              # [0] S_DONE, [1] its waiters, [2] abort, ...
    bell = ctypes.addressof(ctl) + 64           # ... H_DOORBELL, then its waiters word
    assert steploop.DOORBELL_WAITERS == layout.H_DOORBELL_WAITERS - layout.H_DOORBELL == 4
    ctl[16] = 5
    calls = []
    seen_bells = []

    def kernel(i):
        seen_bells.append(ctl[16])
        calls.append(i)

    table = steploop.StepTable([(kernel, (0,), (), False, 0, 1, 0),
                                (kernel, (1,), (), False, 0, 1, bell),
                                (kernel, (2,), (), False, 0, 1, 0),
                                (kernel, (3,), (), True, 0, 1, bell)])
    task_ctx = (ctypes.c_int64 * 2)()
    base = ctypes.addressof(ctl)
    status = table.run(0, base + 8, base, base + 4, ctypes.addressof(task_ctx), 0, 100, 10**6,
                       ctypes.c_int64(0))
    assert status == steploop.STEPS_DONE and calls == [0, 1, 2, 3] and ctl[0] == 4
    assert seen_bells == [5, 5, 6, 6] and ctl[16] == 7


def test_native_steps_call_c_between_python_steps_and_report_a_status():
    """A table mixing kinds: Python steps see what native steps wrote before them, and a nonzero
    status stops the loop at that step with its code, leaving the later steps unrun."""
    import ctypes

    import pytest
    numba = pytest.importorskip("numba")
    from l3c.registry import NativeFunction, NativeStatusError
    from l3c.runtime import steploop

    @numba.cfunc(numba.types.int32(numba.types.CPointer(numba.types.float64), numba.types.int64,
                                   numba.types.int64))
    def c_add(x, n, value):
        for k in range(n):
            x[k] += value
        return 0 if value >= 0 else -value

    x = np.zeros(3)
    seen = []
    add = NativeFunction(c_add.address, "tests:c_add", c_add)
    table = steploop.StepTable([(add, (x, 2), (), False, 0, 1, 0),
                                (lambda: seen.append(x.tolist()), (), (), False, 0, 1, 0),
                                (add, (x[1:], 5), (), False, 0, 1, 0),
                                (add, (x, -9), (), False, 0, 1, 0),
                                (lambda: seen.append("never"), (), (), False, 0, 1, 0)])
    ctl = (ctypes.c_uint32 * 32)()
    base, ctx = ctypes.addressof(ctl), (ctypes.c_int64 * 2)()
    out_k = ctypes.c_int64(0)
    with pytest.raises(NativeStatusError, match="tests:c_add returned status 9"):
        table.run(0, base + 8, base, base + 4, ctypes.addressof(ctx), 0, 100, 10**6, out_k)
    assert out_k.value == 3 and ctl[0] == 3          # steps 0..2 completed, step 3 failed
    assert seen == [[2.0, 2.0, 2.0]] and x.tolist() == [-7.0, -2.0, -2.0]   # C wrote before failing
    with pytest.raises(TypeError, match="non-contiguous"):
        steploop.StepTable([(add, (x[::2], 1), (), False, 0, 1, 0)])


def test_control_steps_run_loops_and_patch_arguments_like_the_python_loop():
    """A hand-built table with a range loop (a loop-variable scalar and a moving view), a while loop
    whose flag a step counts down (capped by max_iterations) and a cond, against the same loops in
    Python; the counter counts tasks and the counted reads (each while test, the cond)."""
    import ctypes

    from l3c.runtime import steploop
    from l3c.runtime.steploop_tables import VALUE_KINDS, Control

    seen = []

    def record(*args):
        seen.append(tuple(a.tolist() if isinstance(a, np.ndarray) else a for a in args))

    def run(flag_value, cap, cond_value):
        seen.clear()
        arr, flag = np.arange(10.0), np.array([flag_value], np.int32)
        cflag = np.array([cond_value], np.int8)

        def count_down():
            flag[0] -= 1
        flag_at = (VALUE_KINDS["int32"], flag.ctypes.data)
        steps = [
            Control("range", 0, 4, (0,), False, (), start=(0, 2), stop=(0, 7), step=(0, 2)),
            (record, (0,), (), False, 0, 1, 0, ((0, 10, ((0, 3),)),)),
            (record, (arr[0:2],), (), False, 0, 1, 0, ((0, arr.ctypes.data, ((0, 8),)),)),
            Control("next", 0, 1, (2,), False, ()),
            Control("while", 1, 0, (0,), False, ()),
            Control("test", 1, 9, (0,), True, (), flag=flag_at, max_iterations=cap),
            (count_down, (), (), False, 0, 1, 0),
            (record, (0,), (), False, 0, 1, 0, ((0, 0, ((1, 1),)),)),
            Control("again", 1, 5, (2,), False, ()),
            Control("cond", 2, 12, (0,), True, (), flag=(VALUE_KINDS["int8"], cflag.ctypes.data)),
            (record, ("block",), (), False, 0, 1, 0),
            Control("endcond", 2, 0, (1,), False, ()),
            (record, ("end",), (), False, 0, 1, 0),
        ]
        table = steploop.StepTable(steps, slots=1, loops=3)
        ctl = (ctypes.c_uint32 * 32)()
        base, ctx = ctypes.addressof(ctl), (ctypes.c_int64 * 2)()
        status = table.run(0, base + 8, base, base + 4, ctypes.addressof(ctx), 0, 100, 10**6,
                           ctypes.c_int64(0))
        assert status == steploop.STEPS_DONE
        return list(seen), ctl[0]

    def model(flag_value, cap, cond_value):
        out, count, arr = [], 0, np.arange(10.0)
        for i in range(2, 7, 2):
            out += [(10 + 3 * i,), (arr[i:i + 2].tolist(),)]
            count += 2
        k = 0
        while True:
            count += 1                                      # the test reads the flag
            if not flag_value or (cap >= 0 and k >= cap):
                break
            flag_value -= 1
            out.append((k,))
            count += 2
            k += 1
        count += 1                                          # the cond reads its flag
        if cond_value:
            out.append(("block",))
            count += 1
        return out + [("end",)], count + 1

    for args in [(3, -1, 1), (0, -1, 0), (5, 2, 1), (1, 0, 0)]:
        assert run(*args) == model(*args), args


def test_a_run_stops_before_its_u32_step_count_could_wrap():
    """A control step refuses to go on when the steps up to the next one could wrap the slot's
    32-bit S_DONE (the count is resumed from the table's state, as after a futex slice)."""
    import ctypes

    from l3c.runtime import steploop
    from l3c.runtime.steploop_tables import H_COUNT, Control

    calls = []
    steps = [(calls.append, (0,), (), False, 0, 1, 0),
             Control("range", 0, 4, (1,), False, (), start=(0, 0), stop=(0, 3), step=(0, 1)),
             (calls.append, (1,), (), False, 0, 1, 0),
             Control("next", 0, 2, (1,), False, ())]
    table = steploop.StepTable(steps, slots=1, loops=1)
    ctl = (ctypes.c_uint32 * 32)()
    base, ctx, out_k = ctypes.addressof(ctl), (ctypes.c_int64 * 2)(), ctypes.c_int64(0)
    table.tables.hdr[H_COUNT] = 2**32 - 6
    status = table.run(1, base + 8, base, base + 4, ctypes.addressof(ctx), 0, 100, 10**6, out_k)
    assert status == steploop.STEPS_COUNT_LIMIT and out_k.value == 3 and calls == [1, 1]
    calls.clear()
    assert table.run(0, base + 8, base, base + 4, ctypes.addressof(ctx), 0, 100, 10**6,
                     out_k) == steploop.STEPS_DONE
    assert calls == [0, 1, 1, 1] and ctl[0] == 4


def test_a_counted_read_is_published_only_after_the_element_is_read():
    """A while test or cond reads its flag, then counts the read: a later writer of the flag waits
    for every slot's count, so a count published before the load lets the writer change the flag
    under a slot that has not read it yet (that slot alone leaves the loop, the others wait for it
    forever). The flag here is the slot's own S_DONE word, which the count's publication itself
    changes from 0 to 1: read first, the loop runs no iteration and the block is skipped."""
    import ctypes

    from l3c.runtime import steploop
    from l3c.runtime.steploop_tables import VALUE_KINDS, Control

    seen = []

    def run(opening, closing):
        seen.clear()
        ctl = (ctypes.c_uint32 * 32)()
        base, ctx, out_k = ctypes.addressof(ctl), (ctypes.c_int64 * 2)(), ctypes.c_int64(0)
        flag = (VALUE_KINDS["uint32"], base)                     # S_DONE: 0 until the read counts
        steps = opening(flag) + [(seen.append, ("body",), (), False, 0, 1, 0), closing,
                                 (seen.append, ("end",), (), False, 0, 1, 0)]
        table = steploop.StepTable(steps, slots=1, loops=1)
        status = table.run(0, base + 8, base, base + 4, ctypes.addressof(ctx), 0, 100, 10**6, out_k)
        assert status == steploop.STEPS_DONE
        return list(seen), ctl[0]

    def while_loop(flag):
        return [Control("while", 0, 0, (0,), False, ()),
                Control("test", 0, 4, (0,), True, (), flag=flag, max_iterations=1)]

    def cond(flag):
        return [Control("cond", 0, 3, (0,), True, (), flag=flag)]

    assert run(while_loop, Control("again", 0, 1, (1,), False, ())) == (["end"], 2)
    assert run(cond, Control("endcond", 0, 0, (1,), False, ())) == (["end"], 2)
