"""Kernels used by the runtime tests; importable by path so workers can resolve them either way."""
import os
import signal
import time

import numpy as np

from l3c.runtime import context

STATE = {"value": 0}


def add_one(x):
    x += 1


def scale(alpha, x, y):
    y[...] = alpha * x


def copy(src, dst):
    dst[...] = src


def whoami(out):
    out[...] = (context.chip_id(), context.group_rank(), context.group_size(), os.getpid())


def set_global(value):
    STATE["value"] = value


def read_global(out):
    out[...] = STATE["value"]


def boom(x):
    raise ValueError(f"boom on chip {context.chip_id()}")


def die_signal(x):
    os.kill(os.getpid(), signal.SIGKILL)


def die_exit(x):
    os._exit(7)


def hang(x):
    time.sleep(120)


def handshake(flags, out):
    """Set my flag, then wait (bounded) for every other member's flag: succeeds only if all run at once."""
    me = context.chip_id()
    flags[me] = 1
    deadline = time.monotonic() + 10
    while not np.all(flags[: out.shape[0]] == 1):
        if time.monotonic() > deadline:
            raise RuntimeError("peers never ran concurrently")
        time.sleep(0.0005)
    out[me] = 1


def double(x):
    x *= 2


def record_rank(out):
    out[context.group_rank()] = (context.chip_id(), context.group_size(), os.getpid())


def zero(x):
    x[...] = 0
