"""Task Bench's dependency patterns (Slaughter et al., "Task Bench: A Parameterized Benchmark for
Evaluating Parallel Runtime Performance", SC20, section 3), written from the paper's definitions.

A graph is `steps` timesteps of `width` points. `PATTERNS[name](t, x, width, radix)` gives the
points of timestep t-1 that point (t, x) depends on, as a sorted tuple without repeats, or None when
(t, x) is not a task of the graph (only `tree` leaves points out). Timestep 0 has no dependencies.

    trivial              no dependencies at all
    no_comm              x (each point is its own chain)
    stencil_1d           x-1, x, x+1 (those inside 0..width-1)
    stencil_1d_periodic  x-1, x, x+1 modulo width
    dom                  x-1, x (a "dominance" wave: the 2-D sweep's dependencies)
    tree                 a binary tree fanning out: timestep t has min(2^t, width) points, point x
                         depends on its parent x with bit t-1 cleared
    fft                  the butterfly: x, x - 2^k, x + 2^k (inside the width) with k = (t-1) modulo
                         log2(width)
    all_to_all           every point of timestep t-1
    nearest              the `radix` points nearest x (x-(radix-1)//2 .. x+radix//2, clipped)
    spread               `radix` points spread evenly over the width, shifted by one each timestep:
                         (x + i*width//radix + t) modulo width
    random_nearest       x and each other point of `nearest` with probability 1/2, chosen by a hash
                         of (t, x, point) so that every runner builds the same graph
"""
from __future__ import annotations

import hashlib
from typing import Callable, Optional

Deps = Optional[tuple]


def _clip(points, width: int) -> tuple:
    return tuple(sorted({d for d in points if 0 <= d < width}))


def trivial(t: int, x: int, width: int, radix: int) -> Deps:
    return ()


def no_comm(t: int, x: int, width: int, radix: int) -> Deps:
    return (x,) if t > 0 else ()


def stencil_1d(t: int, x: int, width: int, radix: int) -> Deps:
    return _clip((x - 1, x, x + 1), width) if t > 0 else ()


def stencil_1d_periodic(t: int, x: int, width: int, radix: int) -> Deps:
    return tuple(sorted({(x - 1) % width, x, (x + 1) % width})) if t > 0 else ()


def dom(t: int, x: int, width: int, radix: int) -> Deps:
    return _clip((x - 1, x), width) if t > 0 else ()


def tree(t: int, x: int, width: int, radix: int) -> Deps:
    if x >= min(1 << min(t, 62), width):
        return None
    return (x & ~(1 << (t - 1)),) if t > 0 else ()


def fft(t: int, x: int, width: int, radix: int) -> Deps:
    if t == 0:
        return ()
    levels = max(1, (width - 1).bit_length())
    step = 1 << ((t - 1) % levels)
    return _clip((x - step, x, x + step), width)


def all_to_all(t: int, x: int, width: int, radix: int) -> Deps:
    return tuple(range(width)) if t > 0 else ()


def nearest(t: int, x: int, width: int, radix: int) -> Deps:
    return _clip(range(x - (radix - 1) // 2, x + radix // 2 + 1), width) if t > 0 else ()


def spread(t: int, x: int, width: int, radix: int) -> Deps:
    if t == 0:
        return ()
    gap = max(1, width // radix)
    return tuple(sorted({(x + i * gap + t) % width for i in range(min(radix, width))}))


def _coin(t: int, x: int, d: int) -> bool:
    return hashlib.blake2b(f"{t},{x},{d}".encode(), digest_size=1).digest()[0] & 1 == 1


def random_nearest(t: int, x: int, width: int, radix: int) -> Deps:
    if t == 0:
        return ()
    return tuple(d for d in nearest(t, x, width, radix) or () if d == x or _coin(t, x, d))


PATTERNS: dict[str, Callable[[int, int, int, int], Deps]] = {
    f.__name__: f for f in (trivial, no_comm, stencil_1d, stencil_1d_periodic, dom, tree, fft,
                            all_to_all, nearest, spread, random_nearest)}
