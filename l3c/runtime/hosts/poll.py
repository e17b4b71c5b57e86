"""The run loop's hot wait in native code: watch due sends and the next landing without Python.

Why: a transfer costs two hand-offs between processes, and in each the parent's reaction time is
Python's: a round of the run loop after a yield runs cold (the core ran someone else meanwhile)
and takes microseconds before it even looks at the word that changed, and as long again between
seeing an inbound message complete and the futex wake of its consumer (docs/distributed.md). This loop, llvmlite-compiled
like `runtime/sync.py`, spins on exactly those events and yields the core every round (a worker that
shares it gets it at once), for a bounded number of rounds; Python then does the bookkeeping.

    i32 l3c_dist_poll(i64* words, i32* targets, i32 n_words,
                      i32* requests, i32 n_requests,
                      i32 (*get_status)(i32, i32*, void*), i8* status,
                      i64 landing_word, i32 landing_value, i64 landing_waiters, i64* stamp,
                      i64 doorbell, i32 bell, i32 rounds, Mpi* mpi, i64 nap_ns)

Each round checks, in order:
- POLL_SEND: some `*words[i] >= targets[i]` (a producer finished: its sends are due; or a gate of
  a gated receive opened). When `mpi` lists pieces for word i, the poll first posts them itself
  with `MPI_Isend` straight from the arena and marks them posted (`Watch.take_posted` hands the
  requests to the caller): the message leaves without a round of the Python loop, which cost
  ~10 us to notice the word plus ~20 us in mpi4py's `Isend` after the core ran someone else (the
  same call from here: ~7 us).
- POLL_LANDED: every request is complete (`MPI_Request_get_status`, which tests without freeing:
  the caller's mpi4py requests stay valid). Unless `landing_word` is 0, the poll first publishes
  `landing_value` on it with a wake (`sync.publish`) and yields (the woken consumer may share this
  core). That publish is the early copy of the one the loop makes next (same value: a plain
  store, so doing it twice is harmless); the caller only lets the poll publish an item that needs
  no scatter. `stamp`, when not NULL, receives the CLOCK_MONOTONIC time of that publish
  (`benchmarks/multihost.py --stages`).
- POLL_CONTROL: a message waits on the control communicator (`MPI_Iprobe`, when `Watch.
  set_control` gave one): a peer's "done" or failure, for Python to read.
- POLL_BELL: the doorbell moved (a local worker ended or failed, or rang after a step the run loop
  waits for; a crashed worker rings nothing).
Else the round ends with a sched_yield or, with `nap_ns` > 0, a futex wait of up to `nap_ns` on the
doorbell (the run loop's nap, once it has waited a while: a message is then seen within `nap_ns`,
and a local event ends the wait at once); POLL_IDLE after `rounds` rounds. After any event the
caller re-aims the poll (an event that needs nothing more, such as one gate of several opening,
must not make it return at once again: it would spin without yielding) and reads what a
POLL_CONTROL announced (else it would be announced again at once).

Only for MPI libraries whose handles are 32-bit integers (MPICH and its ABI, which the `dist` extra
installs); elsewhere `native()` is None and the loop yields in Python instead.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

from .. import layout, sync
from ..native import SYS_SCHED_YIELD, compile_module, libc
from . import launcher

POLL_IDLE = 0
POLL_SEND = 1
POLL_LANDED = 2
POLL_BELL = 3
POLL_CONTROL = 4
CLOCK_MONOTONIC = 1
STATUS_BYTES = 256          # room for an MPI_Status of any layout
DOORBELL_WAITERS = layout.H_DOORBELL_WAITERS - layout.H_DOORBELL

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
    futex_wait = ir.Function(mod, ir.FunctionType(i64, [i64, i32, i64]), name="l3c_futex_wait")
    clock = ir.Function(mod, ir.FunctionType(i32, [i32, p64]), name="clock_gettime")
    status_t = ir.FunctionType(i32, [i32, p32, p8])        # MPI_Request_get_status(req, &flag, st)
    isend_t = ir.FunctionType(i32, [p8, i32, i32, i32, i32, i32, p32])   # MPI_Isend
    iprobe_t = ir.FunctionType(i32, [i32, i32, i32, p32, p8])           # MPI_Iprobe
    mpi_t = ir.LiteralStructType([isend_t.as_pointer(), i64, i64, p32, p32, p64, p32, p32, p32,
                                    p32, i64, i64, i64, i64, i64,
                                    iprobe_t.as_pointer(), i64, i64, i64, i64])   # = _Mpi
    fn = ir.Function(mod, ir.FunctionType(i32, [p64, p32, i32, p32, i32, status_t.as_pointer(), p8,
                                                i64, i32, i64, p64, i64, i32, i32,
                                                mpi_t.as_pointer(), i64]),
                     name="l3c_dist_poll")
    (words, targets, n_words, reqs, n_reqs, get_status, status, landing, value, waiters, stamp,
     doorbell, bell, rounds, mpi, nap_ns) = fn.args
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
    ret_control = fn.append_basic_block("ret.control")
    send_bb = fn.append_basic_block("send")

    b = ir.IRBuilder(entry)
    flag = b.alloca(i32, name="flag")
    ts = b.alloca(ir.ArrayType(i64, 2), name="ts")
    b.branch(round_bb)

    def now() -> ir.Value:
        tsp = b.bitcast(ts, p64)
        b.call(clock, [i32(CLOCK_MONOTONIC), tsp])
        return b.add(b.mul(b.load(tsp), i64(1_000_000_000)), b.load(b.gep(tsp, [i32(1)])))

    def field(k: int) -> ir.Value:
        return b.gep(mpi, [i32(0), i32(k)])

    # one round: due sends, then the landing's requests, the control channel, the doorbell
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
    b.cbranch(due, send_bb, words_next)
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
            b.store(now(), stamp)
        b.call(publish, [landing, value, waiters])
        # the consumer just woken may have been put on this core: let it run before our bookkeeping
        b.call(syscall, [i64(SYS_SCHED_YIELD)])
    b.ret(i32(POLL_LANDED))

    # a control message (a peer's "done" or failure) waiting on the control communicator?
    b.position_at_end(bell_bb)
    iprobe = b.load(field(15))
    probe_bb = fn.append_basic_block("control.probe")
    doorbell_bb = fn.append_basic_block("doorbell")
    b.cbranch(b.icmp_unsigned("!=", b.ptrtoint(iprobe, i64), i64(0)), probe_bb, doorbell_bb)
    b.position_at_end(probe_bb)
    probe_args = [b.trunc(b.load(field(18)), i32), b.trunc(b.load(field(17)), i32),
                  b.trunc(b.load(field(16)), i32), flag, status]
    b.call(iprobe, probe_args)
    again_bb = fn.append_basic_block("control.again")
    b.cbranch(b.icmp_signed("!=", b.load(flag), i32(0)), ret_control, again_bb)
    # MPICH's Iprobe matches before it makes progress: a message that progress just pulled in is
    # found by the next call. Napping, that is a tick later (measured: seen after 1.7 ticks), so
    # probe once more right away.
    b.position_at_end(again_bb)
    napping = b.icmp_signed(">", nap_ns, i64(0))
    probe2_bb = fn.append_basic_block("control.probe2")
    b.cbranch(napping, probe2_bb, doorbell_bb)
    b.position_at_end(probe2_bb)
    b.call(iprobe, probe_args)
    b.cbranch(b.icmp_signed("!=", b.load(flag), i32(0)), ret_control, doorbell_bb)
    b.position_at_end(doorbell_bb)
    rang = b.icmp_unsigned("!=", b.load_atomic(b.inttoptr(doorbell, p32), "acquire", 4), bell)
    b.cbranch(rang, ret_bell, wait_bb)

    # nothing yet: offer the core (a worker that shares it runs now), or nap on the doorbell for
    # nap_ns (a local worker's ring ends it at once: `bell` is the value the round checked, so a
    # ring after that check makes FUTEX_WAIT return at once), then another round
    b.position_at_end(wait_bb)
    with b.if_else(b.icmp_signed(">", nap_ns, i64(0))) as (napping, spinning):
        with napping:
            bell_waiters = b.inttoptr(b.add(doorbell, i64(DOORBELL_WAITERS)), p32)
            b.atomic_rmw("add", bell_waiters, i32(1), "seq_cst")
            b.call(futex_wait, [doorbell, bell, nap_ns])
            b.atomic_rmw("sub", bell_waiters, i32(1), "seq_cst")
        with spinning:
            b.call(pause, [])
            b.call(syscall, [i64(SYS_SCHED_YIELD)])
    r_next = b.add(r, i32(1))
    r.add_incoming(r_next, b.block)
    b.cbranch(b.icmp_signed("<", r_next, rounds), round_bb, ret_idle)

    # word i is due: post its sends here when the caller gave them (contiguous pieces), else return
    b.position_at_end(send_bb)
    has_sends = b.icmp_unsigned("!=", b.ptrtoint(b.load(field(3)), i64), i64(0))
    lookup = fn.append_basic_block("send.lookup")
    b.cbranch(has_sends, lookup, ret_send)
    b.position_at_end(lookup)
    first = b.load(b.gep(b.load(field(3)), [i]))
    post_head = fn.append_basic_block("send.post")
    b.cbranch(b.icmp_signed(">=", first, i32(0)), post_head, ret_send)
    b.position_at_end(post_head)
    stamps_on = b.icmp_unsigned("!=", b.load(field(14)), i64(0))
    with b.if_then(stamps_on):
        b.store(now(), field(12))
    end = b.add(first, b.load(b.gep(b.load(field(4)), [i])))
    comm, dtype = b.trunc(b.load(field(1)), i32), b.trunc(b.load(field(2)), i32)
    loop_bb = fn.append_basic_block("send.loop")
    body_bb = fn.append_basic_block("send.body")
    next_bb = fn.append_basic_block("send.next")
    out_bb = fn.append_basic_block("send.out")
    before = b.block
    b.branch(loop_bb)
    b.position_at_end(loop_bb)
    k = b.phi(i32, name="k")
    k.add_incoming(first, before)
    b.cbranch(b.icmp_signed("<", k, end), body_bb, out_bb)
    b.position_at_end(body_bb)
    b.store(b.sext(b.sub(k, first), i64), field(19))    # pieces posted so far
    buf = b.inttoptr(b.load(b.gep(b.load(field(5)), [k])), p8)
    rc = b.call(b.load(field(0)), [buf, b.load(b.gep(b.load(field(6)), [k])), dtype,
                                   b.load(b.gep(b.load(field(7)), [k])),
                                   b.load(b.gep(b.load(field(8)), [k])), comm,
                                   b.gep(b.load(field(9)), [k])])
    b.store(b.sext(rc, i64), field(11))
    b.cbranch(b.icmp_signed("!=", rc, i32(0)), out_bb, next_bb)
    b.position_at_end(next_bb)
    k.add_incoming(b.add(k, i32(1)), next_bb)
    b.branch(loop_bb)
    b.position_at_end(out_bb)
    b.store(i32(-1), b.gep(b.load(field(3)), [i]))     # posted (or failed): never again
    b.store(b.sext(i, i64), field(10))
    with b.if_then(stamps_on):
        b.store(now(), field(13))
    b.branch(ret_send)

    b.position_at_end(ret_send)
    b.ret(i32(POLL_SEND))
    b.position_at_end(ret_bell)
    b.ret(i32(POLL_BELL))
    b.position_at_end(ret_idle)
    b.ret(i32(POLL_IDLE))
    b.position_at_end(ret_control)
    b.ret(i32(POLL_CONTROL))
    return str(mod)


def native() -> Any:
    """The compiled poll function (ctypes), or None where it cannot be used (see the docstring)."""
    if not _built:
        with _lock:
            if not _built:
                _built.append(_build())
    return _built[0][1]


def _build() -> tuple:
    entries = launcher.mpi_entries()
    if entries is None:
        return (None, None)
    sync.ensure()
    addresses = sync.function_addresses()
    engine = compile_module(_module_ir(), {"l3c_publish": addresses["publish"],
                                           "l3c_futex_wait": addresses["futex_wait"],
                                           **libc("syscall", "clock_gettime")})
    i32, i64, p = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    fn = ctypes.CFUNCTYPE(i32, p, p, i32, p, i32, p, p, i64, i32, i64, p, i64, i32, i32, p, i64)(
        engine.get_function_address("l3c_dist_poll"))
    return ((engine, entries), _Poll(fn, *entries))


class _Poll:
    """The native function plus its MPI entry points and a status buffer."""

    def __init__(self, fn: Any, get_status: int, isend: int, iprobe: int) -> None:
        self.fn, self.get_status, self.isend, self.iprobe = fn, get_status, isend, iprobe
        self.status = ctypes.create_string_buffer(STATUS_BYTES)


class _Mpi(ctypes.Structure):
    """What the poll does with MPI besides testing requests: the sends it may post itself, by
    watched word, and the control communicator it probes (the IR's `mpi_t`; every field is 8
    bytes, so both agree on the layout without padding rules)."""
    _fields_ = [("isend", ctypes.c_void_p),     # MPI_Isend
                ("comm", ctypes.c_int64),       # communicator and datatype handles (MPI.BYTE)
                ("dtype", ctypes.c_int64),
                ("first", ctypes.c_void_p),     # i32 per word: its first piece, or -1
                ("count", ctypes.c_void_p),     # i32 per word: how many pieces
                ("buf", ctypes.c_void_p),       # i64 per piece: address
                ("nbytes", ctypes.c_void_p),    # i32 per piece
                ("dest", ctypes.c_void_p),      # i32 per piece
                ("tag", ctypes.c_void_p),       # i32 per piece
                ("req", ctypes.c_void_p),       # i32 per piece: the request, written by the poll
                ("fired", ctypes.c_int64),      # the word whose pieces it posted, else -1
                ("rc", ctypes.c_int64),         # MPI_Isend's error code (0: all posted)
                ("noticed", ctypes.c_int64),    # CLOCK_MONOTONIC when it saw the word due ...
                ("sent", ctypes.c_int64),       # ... and when its Isends returned (if `stamps`)
                ("stamps", ctypes.c_int64),
                ("iprobe", ctypes.c_void_p),    # MPI_Iprobe, or NULL: no control probe
                ("ctl_comm", ctypes.c_int64),   # the control communicator's handle,
                ("ctl_tag", ctypes.c_int64),    # its messages' tag,
                ("any_source", ctypes.c_int64),  # and MPI_ANY_SOURCE
                ("posted", ctypes.c_int64)]     # pieces posted before a failed MPI_Isend


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
        self.mpi = _Mpi(isend=poller.isend, fired=-1, stamps=int(stamp))
        self.mpi_ref = ctypes.byref(self.mpi)
        self._arrays: list = []                 # keeps the arrays `mpi` points into alive
        self._pieces: dict[int, tuple[int, int]] = {}   # word k -> (first piece, count)

    def set_words(self, pairs: list[tuple[int, int]],
                  sends: list[list[tuple[int, int, int, int]] | None] | None = None,
                  comm: int = 0, dtype: int = 0) -> None:
        """Return POLL_SEND once any `(word, count)` has *word >= count. `sends[k]`, when given,
        lists the pieces `(address, nbytes, dest, tag)` that the poll posts itself with `MPI_Isend`
        (on communicator handle `comm`, datatype handle `dtype`) the moment word k is due, before
        returning: the caller takes their requests with `take_posted`."""
        if len(pairs) > len(self.words):
            self.words = (ctypes.c_int64 * len(pairs))()
            self.targets = (ctypes.c_uint32 * len(pairs))()
        for k, (word, count) in enumerate(pairs):
            self.words[k], self.targets[k] = word, count
        self.n_words = len(pairs)
        self.mpi.fired = -1
        if not sends or not any(sends):
            self.mpi.first = None                 # nothing for the poll to post
            return
        first = (ctypes.c_int32 * len(pairs))(*([-1] * len(pairs)))
        count = (ctypes.c_int32 * len(pairs))()
        pieces = [p for ps in sends if ps for p in ps]
        n = len(pieces)
        buf, nbytes = (ctypes.c_int64 * n)(), (ctypes.c_int32 * n)()
        dest, tag, req = (ctypes.c_int32 * n)(), (ctypes.c_int32 * n)(), (ctypes.c_int32 * n)()
        at = 0
        self._pieces = {}
        for k, ps in enumerate(sends):
            if not ps:
                continue
            first[k], count[k] = at, len(ps)
            self._pieces[k] = (at, len(ps))
            for address, size, to, t in ps:
                buf[at], nbytes[at], dest[at], tag[at] = address, size, to, t
                at += 1
        self._arrays = [first, count, buf, nbytes, dest, tag, req]
        s = self.mpi
        s.comm, s.dtype = comm, dtype
        s.first, s.count, s.buf, s.nbytes, s.dest, s.tag, s.req = (
            ctypes.addressof(a) for a in self._arrays)

    def set_control(self, comm: int | None, tag: int = 0, any_source: int = 0) -> None:
        """Also return POLL_CONTROL when a message with `tag` waits on communicator handle `comm`
        (`MPI_Iprobe` each round): a peer's "done" or failure is then seen within a round, not
        after a nap span. `comm` None: stop probing."""
        s = self.mpi
        s.iprobe = None if comm is None else self.poller.iprobe
        s.ctl_comm, s.ctl_tag, s.any_source = comm or 0, tag, any_source

    def take_posted(self) -> tuple[int, list[int], Exception | None] | None:
        """After POLL_SEND: `(k, request handles, error)` if the poll posted word k's sends, else
        None. `error` is the MPI error of an `MPI_Isend` that failed (the handles are then those
        of the pieces posted before it, still in flight), else None."""
        s = self.mpi
        k = s.fired
        if k < 0:
            return None
        s.fired = -1
        at, n = self._pieces[k]
        req = self._arrays[-1]
        error = None
        if s.rc != 0:
            error = launcher.mpi().Exception(int(s.rc))
            n = s.posted
        # the handle as mpi4py spells it: the int sign-extended, as an unsigned 64-bit value
        return k, [req[j] & 0xFFFF_FFFF_FFFF_FFFF for j in range(at, at + n)], error

    def set_requests(self, requests: list, publish_value: int | None) -> None:
        """Watch these mpi4py requests; publish `publish_value` on the landing word once all
        completed (None: only report it)."""
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

    def wait(self, bell: int, rounds: int, nap_ns: int = 0) -> int:
        """Poll until an event (POLL_*) or `rounds` rounds passed (POLL_IDLE). Between rounds:
        a sched_yield, or with `nap_ns` > 0 a futex wait on the doorbell of up to `nap_ns`."""
        p = self.poller
        return p.fn(self.words, self.targets, self.n_words, self.requests, self.n_requests,
                    p.get_status, p.status, self.publish_word, self.publish_value,
                    self.landing_waiters, self.stamp_ref, self.doorbell, bell, rounds,
                    self.mpi_ref, nap_ns)
