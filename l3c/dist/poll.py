"""The run loop's hot wait in native code: watch due sends and the next landing without Python.

Why: a transfer costs two hand-offs between processes, and in each the parent's reaction time is
Python's: a round of the run loop after a yield runs cold (the core ran someone else meanwhile) and
took 5-10 us on this VM before it even looked at the word that changed, and as long again between
seeing an inbound message complete and the futex wake of its consumer. This loop, llvmlite-compiled
like `runtime/sync.py`, spins on exactly those events and yields the core every round (a worker that
shares it gets it at once), for a bounded number of rounds; Python then does the bookkeeping.

    i32 l3c_dist_poll(i64* words, i32* targets, i32 n_words,
                      i32* requests, i32 n_requests,
                      i32 (*get_status)(i32, i32*, void*), i8* status,
                      i64 landing_word, i32 landing_value, i64 landing_waiters, i64* stamp,
                      i64 doorbell, i32 bell, i32 rounds)

Returns POLL_SEND when some `*words[i] >= targets[i]` (a producer finished: its sends are due; or
a gate of a gated receive opened), POLL_LANDED when every request is complete
(`MPI_Request_get_status`, which tests without freeing: the caller's mpi4py requests stay valid),
after publishing `landing_value` on `landing_word` with a wake (`sync.publish`) and a sched_yield
(the woken consumer may share this core) unless `landing_word` is 0, POLL_BELL when the doorbell
moved (a local worker ended, failed or crashed), else POLL_IDLE after `rounds` rounds, each ending
with a sched_yield. After any event the caller re-aims the poll (an event that needs nothing more,
such as one gate of several opening, must not make it return at once again: it would spin without
yielding). The publish is the early copy of the
one the loop makes next (same value: a plain store, so doing it twice is harmless); the caller only
lets this loop publish an item that needs no scatter. `stamp`, when not NULL, receives the
CLOCK_MONOTONIC time of that publish (`benchmarks/multihost.py --stages`).

Only for MPI libraries whose handles are 32-bit integers (MPICH and its ABI, which the `dist` extra
installs); elsewhere `native()` is None and the loop yields in Python instead.
"""
from __future__ import annotations

import ctypes
import re
import threading
from typing import Any

from ..runtime import sync
from ..runtime.native import compile_module, libc

POLL_IDLE = 0
POLL_SEND = 1
POLL_LANDED = 2
POLL_BELL = 3
SYS_SCHED_YIELD = 24
CLOCK_MONOTONIC = 1
STATUS_BYTES = 256          # room for an MPI_Status of any layout

_lock = threading.Lock()
_built: list = []           # [(kept alive: engine, MPI entry; the _Poll or None)] once tried


def _module_ir() -> str:
    from llvmlite import ir

    i8, i32, i64, void = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.VoidType()
    p32, p64, p8 = i32.as_pointer(), i64.as_pointer(), i8.as_pointer()
    mod = ir.Module(name="l3c_dist_poll")
    syscall = ir.Function(mod, ir.FunctionType(i64, [i64], var_arg=True), name="syscall")
    pause = ir.Function(mod, ir.FunctionType(void, []), name="llvm.x86.sse2.pause")
    publish = ir.Function(mod, ir.FunctionType(void, [i64, i32, i64]), name="l3c_publish")
    clock = ir.Function(mod, ir.FunctionType(i32, [i32, p64]), name="clock_gettime")
    status_t = ir.FunctionType(i32, [i32, p32, p8])        # MPI_Request_get_status(req, &flag, st)
    fn = ir.Function(mod, ir.FunctionType(i32, [p64, p32, i32, p32, i32, status_t.as_pointer(), p8,
                                                i64, i32, i64, p64, i64, i32, i32]),
                     name="l3c_dist_poll")
    (words, targets, n_words, reqs, n_reqs, get_status, status, landing, value, waiters, stamp,
     doorbell, bell, rounds) = fn.args
    entry = fn.append_basic_block("entry")
    round_bb = fn.append_basic_block("round")
    words_bb = fn.append_basic_block("words")
    words_next = fn.append_basic_block("words.next")
    reqs_head = fn.append_basic_block("reqs")
    reqs_bb = fn.append_basic_block("reqs.check")
    reqs_next = fn.append_basic_block("reqs.next")
    landed = fn.append_basic_block("landed")
    bell_bb = fn.append_basic_block("bell")
    wait_bb = fn.append_basic_block("wait")
    ret_send = fn.append_basic_block("ret.send")
    ret_bell = fn.append_basic_block("ret.bell")
    ret_idle = fn.append_basic_block("ret.idle")

    b = ir.IRBuilder(entry)
    flag = b.alloca(i32, name="flag")
    ts = b.alloca(ir.ArrayType(i64, 2), name="ts")
    b.branch(round_bb)

    # one round: due sends, then the landing's requests, then the doorbell
    b.position_at_end(round_bb)
    r = b.phi(i32, name="r")
    r.add_incoming(i32(0), entry)
    b.branch(words_bb)

    b.position_at_end(words_bb)
    i = b.phi(i32, name="i")
    i.add_incoming(i32(0), round_bb)
    more = b.icmp_signed("<", i, n_words)
    check = fn.append_basic_block("words.check")
    b.cbranch(more, check, reqs_head)
    b.position_at_end(check)
    addr = b.load(b.gep(words, [i]))
    seen = b.load_atomic(b.inttoptr(addr, p32), "acquire", 4)
    due = b.icmp_unsigned(">=", seen, b.load(b.gep(targets, [i])))
    b.cbranch(due, ret_send, words_next)
    b.position_at_end(words_next)
    i.add_incoming(b.add(i, i32(1)), words_next)
    b.branch(words_bb)

    b.position_at_end(reqs_head)
    j = b.phi(i32, name="j")
    j.add_incoming(i32(0), words_bb)
    has_reqs = b.icmp_signed(">", n_reqs, i32(0))
    all_done = b.icmp_signed(">=", j, n_reqs)
    b.cbranch(b.and_(has_reqs, all_done), landed, reqs_bb)
    b.position_at_end(reqs_bb)
    in_range = b.icmp_signed("<", j, n_reqs)
    test_bb = fn.append_basic_block("reqs.test")
    b.cbranch(in_range, test_bb, bell_bb)
    b.position_at_end(test_bb)
    b.call(get_status, [b.load(b.gep(reqs, [j])), flag, status])
    complete = b.icmp_signed("!=", b.load(flag), i32(0))
    b.cbranch(complete, reqs_next, bell_bb)
    b.position_at_end(reqs_next)
    j.add_incoming(b.add(j, i32(1)), reqs_next)
    b.branch(reqs_head)

    b.position_at_end(landed)
    with b.if_then(b.icmp_unsigned("!=", landing, i64(0))):
        with b.if_then(b.icmp_unsigned("!=", b.ptrtoint(stamp, i64), i64(0))):
            tsp = b.bitcast(ts, p64)
            b.call(clock, [i32(CLOCK_MONOTONIC), tsp])
            b.store(b.add(b.mul(b.load(tsp), i64(1_000_000_000)), b.load(b.gep(tsp, [i32(1)]))),
                    stamp)
        b.call(publish, [landing, value, waiters])
        # the consumer just woken may have been put on this core: let it run before our bookkeeping
        b.call(syscall, [i64(SYS_SCHED_YIELD)])
    b.ret(i32(POLL_LANDED))

    b.position_at_end(bell_bb)
    rang = b.icmp_unsigned("!=", b.load_atomic(b.inttoptr(doorbell, p32), "acquire", 4), bell)
    b.cbranch(rang, ret_bell, wait_bb)

    # nothing yet: offer the core (a worker that shares it runs now), then another round
    b.position_at_end(wait_bb)
    b.call(pause, [])
    b.call(syscall, [i64(SYS_SCHED_YIELD)])
    r_next = b.add(r, i32(1))
    r.add_incoming(r_next, wait_bb)
    b.cbranch(b.icmp_signed("<", r_next, rounds), round_bb, ret_idle)

    b.position_at_end(ret_send)
    b.ret(i32(POLL_SEND))
    b.position_at_end(ret_bell)
    b.ret(i32(POLL_BELL))
    b.position_at_end(ret_idle)
    b.ret(i32(POLL_IDLE))
    return str(mod)


def _mpi_get_status() -> int | None:
    """Address of MPI_Request_get_status in the MPI library mpi4py loaded, if its handles are
    32-bit integers (MPICH ABI); else None."""
    from . import launcher
    MPI = launcher.mpi()
    if MPI._sizeof(MPI.Request) != 4:
        return None
    paths = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            m = re.search(r"(/\S*/libmpi[^/\s]*\.so[^/\s]*)$", line.strip())
            if m and m.group(1) not in paths:
                paths.append(m.group(1))
    for path in paths:
        try:
            return ctypes.cast(ctypes.CDLL(path).MPI_Request_get_status, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    return None


def native() -> Any:
    """The compiled poll function (ctypes), or None where it cannot be used (see the docstring)."""
    if not _built:
        with _lock:
            if not _built:
                _built.append(_build())
    return _built[0][1]


def _build() -> tuple:
    address = _mpi_get_status()
    if address is None:
        return (None, None)
    sync.ensure()
    engine = compile_module(_module_ir(), {"l3c_publish": sync.function_addresses()["publish"],
                                           **libc("syscall", "clock_gettime")})
    i32, i64, p = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    fn = ctypes.CFUNCTYPE(i32, p, p, i32, p, i32, p, p, i64, i32, i64, p, i64, i32, i32)(
        engine.get_function_address("l3c_dist_poll"))
    return ((engine, address), _Poll(fn, address))


class _Poll:
    """The native function plus its MPI entry point and a status buffer."""

    def __init__(self, fn: Any, get_status: int) -> None:
        self.fn, self.get_status = fn, get_status
        self.status = ctypes.create_string_buffer(STATUS_BYTES)


class Watch:
    """What one run's loop hands the native poll: S_DONE words with the count that makes something
    due (each producer slot's next pending send, each unmet gate of a gated receive), and one set of
    requests (the next landing's, which the poll may publish when it needs no scatter, else the
    sends in flight, so that MPI progresses)."""

    def __init__(self, poller: _Poll, landing_word: int, landing_waiters: int, doorbell: int,
                 stamp: bool) -> None:
        self.poller = poller
        self.words = (ctypes.c_int64 * 4)()
        self.targets = (ctypes.c_uint32 * 4)()
        self.n_words = 0
        self.requests = (ctypes.c_int32 * 4)()
        self.n_requests = 0
        self.landing_word, self.landing_waiters = landing_word, landing_waiters
        self.doorbell = doorbell
        self.publish_word, self.publish_value = 0, 0
        self.stamp = ctypes.c_int64(0) if stamp else None
        self.stamp_ref = ctypes.byref(self.stamp) if stamp else None

    def set_words(self, pairs: list[tuple[int, int]]) -> None:
        """Return POLL_SEND once any `(word, count)` has *word >= count."""
        if len(pairs) > len(self.words):
            self.words = (ctypes.c_int64 * len(pairs))()
            self.targets = (ctypes.c_uint32 * len(pairs))()
        for k, (word, count) in enumerate(pairs):
            self.words[k], self.targets[k] = word, count
        self.n_words = len(pairs)

    def set_requests(self, requests: list, publish_value: int | None) -> None:
        """Watch these mpi4py requests; publish `publish_value` on the landing word once all
        completed (None: only report it)."""
        from . import launcher
        handleof = launcher.mpi()._handleof
        if len(requests) > len(self.requests):
            self.requests = (ctypes.c_int32 * len(requests))()
        for k, r in enumerate(requests):
            h = handleof(r) & 0xFFFFFFFF
            self.requests[k] = h - (1 << 32) if h >= 1 << 31 else h
        self.n_requests = len(requests)
        if publish_value is None:
            self.publish_word = 0
        else:
            self.publish_word, self.publish_value = self.landing_word, publish_value
        if self.stamp is not None:
            self.stamp.value = 0

    def wait(self, bell: int, rounds: int) -> int:
        """Poll until an event (POLL_*) or `rounds` rounds passed (POLL_IDLE)."""
        p = self.poller
        return p.fn(self.words, self.targets, self.n_words, self.requests, self.n_requests,
                    p.get_status, p.status, self.publish_word, self.publish_value,
                    self.landing_waiters, self.stamp_ref, self.doorbell, bell, rounds)
