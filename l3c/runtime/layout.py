"""Byte layout of the shared control block: the contract between the Python runtime, the workers and
the llvmlite-generated dispatcher (`l3c.codegen`). Change it here and nowhere else.

The control block is one shared mapping (memfd, created by the pool before it forks; owned by the
pool, unmapped and closed in `Pool.close`). All words are little-endian u32 unless said otherwise and
every futex word sits alone in its 64-byte line.

    header (HEADER_BYTES)
      H_ABORT        u32  nonzero: the current run is aborted (set by the parent or a failing worker).
                          Every wait checks it on each wake-up.
      H_DOORBELL     u32  futex word the parent sleeps on; a worker atomically increments it and
                          wakes it when it reaches a terminal state (FINISHED / FAILED / ABORTED).
      H_DOORBELL_WAITERS u32 (added by the runtime) number of processes sleeping on H_DOORBELL; a worker
                          that rings the doorbell wakes it only if nonzero.
      H_RUN          u32  run counter, incremented by the parent for every run (for diagnostics).
    slot w at SLOT_BASE + w * SLOT_BYTES, for w in 0..slots-1
      S_COMMAND_SEQ  u32  futex word the idle worker sleeps on; the parent writes S_COMMAND and S_ARG,
                          then increments S_COMMAND_SEQ (release) and wakes it.
      S_COMMAND      u32  CMD_* below.
      S_COMMAND_WAITERS u32 (added by the runtime) 1 while the worker sleeps on S_COMMAND_SEQ; the
                          parent issues FUTEX_WAKE after posting only if nonzero.
      S_ARG          u32  the command's argument (plan id for CMD_RUN_PLAN).
      S_STATE        u32  ST_* below. The parent writes ST_BUSY just before it posts a command (so a stale
                          FINISHED from the previous command is never mistaken for this one's); the
                          worker writes the terminal state.
      S_DONE         u32  futex word: steps of the current run this worker has completed. The parent
                          sets it to 0 before posting a run; the worker stores k+1 after step k
                          when someone waits for step k or the plan has loops, and the exact count
                          whenever its step loop returns (steploop.py).
      S_DONE_WAITERS u32  number of processes sleeping on S_DONE (a publisher wakes only if nonzero).
      S_FAILED_TASK  u32  task id of the step that raised (valid in ST_FAILED).
      S_PID          u32  the worker's pid, stored by the worker once it is ready for commands (the
                          parent zeroes it before each fork and waits for it: `lifecycle.py`).
      S_EXPECTED     u32  steps the worker must complete in the current run.
      S_ERROR_LEN    u32  bytes of UTF-8 text in the slot's error area (traceback of a failure).
    error area of slot w at ERROR_BASE(slots) + w * ERROR_BYTES: traceback text, truncated to fit.
    profile area of slot w at profile_offset(slots, w) (added for `l3c profile`, issue 7):
                          PROFILE_STEPS pairs of u64 (start, end) CLOCK_MONOTONIC nanoseconds, pair k
                          for step k of the slot's queue. Written by the worker only in a run posted
                          with RUN_PROFILE set in S_ARG; read by the parent after the run. To halve
                          the cost, `start` is written only for step 0 and steps with waits: a step
                          without waits starts when the previous one ended (start stays 0; the
                          reader takes end[k-1]). Pages no profiled run touches cost nothing.
                          A plan with loops uses the area as an event buffer instead (a step runs
                          once per iteration): see `steploop_tables.EV_COUNT` and `stamps.py`.

State machine of a slot (parent P, worker W):
    IDLE --P posts command--> BUSY --W finishes all steps--> FINISHED --P posts next--> BUSY ...
                                   --W's kernel raises----> FAILED   (W also sets H_ABORT)
                                   --W sees H_ABORT-------> ABORTED
A worker that dies leaves its slot BUSY; the parent notices by its pid (waitpid) on a bounded wait.
"""
from __future__ import annotations

LINE = 64

# header
H_ABORT = 0
H_DOORBELL = 64
H_DOORBELL_WAITERS = 68
H_RUN = 128
HEADER_BYTES = 192

# per-slot fields (byte offsets inside a slot)
S_COMMAND_SEQ = 0
S_COMMAND = 4
S_ARG = 8
S_STATE = 12
S_COMMAND_WAITERS = 16
S_DONE = 64
S_DONE_WAITERS = 68
S_FAILED_TASK = 72
S_PID = 76
S_EXPECTED = 80
S_ERROR_LEN = 84
SLOT_BYTES = 128
SLOT_BASE = HEADER_BYTES

ERROR_BYTES = 16 * 1024

# commands
CMD_NONE = 0
CMD_RUN_PLAN = 1      # run installed plan S_ARG from the start of its queue
RUN_PROFILE = 1 << 30 # flag in S_ARG of CMD_RUN_PLAN: record each step's start/end in the profile area
                      # (plan id = S_ARG & ~RUN_PROFILE; the dispatcher posts whatever plan_id it is given)
CMD_INSTALL = 2       # read an install message from the worker's pipe (plan id, queue)
CMD_RUN_TASK = 3      # eager runtime: read one task from the pipe and run it
CMD_EXIT = 4          # leave the worker loop and exit(0)
CMD_BIND = 5          # read a bound variant from the pipe: map shared memory, patch a plan's views
CMD_RELEASE = 6       # read (variant ids, memory keys) from the pipe: drop them

# states
ST_IDLE = 0
ST_BUSY = 1
ST_FINISHED = 2
ST_FAILED = 3
ST_ABORTED = 4


def slot_offset(slot: int) -> int:
    return SLOT_BASE + slot * SLOT_BYTES


def error_base(slots: int) -> int:
    end = SLOT_BASE + slots * SLOT_BYTES
    return (end + LINE - 1) // LINE * LINE


def error_offset(slots: int, slot: int) -> int:
    return error_base(slots) + slot * ERROR_BYTES


PROFILE_STEPS = 1 << 16                 # steps per slot a profiled run can record
PROFILE_SLOT_BYTES = PROFILE_STEPS * 16


def profile_base(slots: int) -> int:
    end = error_base(slots) + slots * ERROR_BYTES
    return (end + 4095) // 4096 * 4096


def profile_offset(slots: int, slot: int) -> int:
    return profile_base(slots) + slot * PROFILE_SLOT_BYTES


def control_bytes(slots: int) -> int:
    return profile_base(slots) + slots * PROFILE_SLOT_BYTES

# Status a dispatcher (native or Python) returns for a run; the slot involved goes to an out-param.
RUN_OK = 0           # every slot FINISHED
RUN_FAILED = 1       # a slot is FAILED: a kernel raised (traceback in its error area)
RUN_CRASHED = 2      # a worker process died (found with waitid(WEXITED|WNOHANG|WNOWAIT), not reaped)
RUN_TIMEOUT = 3      # the deadline passed
RUN_PENDING = 4      # the wait slice elapsed with the run still going: call the wait again. The slices
                     # hand control back to Python so Ctrl-C (KeyboardInterrupt) is noticed.
RUN_ABORTED = 5      # every slot is terminal, none FAILED, but some stopped ABORTED (H_ABORT was set
                     # with no failing worker): the run is incomplete and must not return results.
