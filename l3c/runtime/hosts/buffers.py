"""Where each piece of a transfer lives on this host, as MPI buffers.

`Buffers.target(piece)`: the arena view itself when the piece is C-contiguous, else a pack buffer
with the way to gather it from / scatter it into the arena. `HostBuffers`: every such spec of one
host's sends, receives and final broadcasts, built once per pool generation so that the run loop
(`run.py`) does no set-up work between a producer completing and its `Isend`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import launcher
from ..hostplan import Piece, Transfer


def bytes_spec(a: np.ndarray) -> Any:
    """An MPI buffer spec of a C-contiguous array, as raw bytes (any dtype)."""
    MPI = launcher.mpi()
    return [a.reshape(-1).view(np.uint8), MPI.BYTE]


class Buffers:
    """Where each piece is read from / written to on this host: the arena itself when the piece is a
    C-contiguous view, else a per-piece buffer, gathered before send and scattered after receive."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def target(self, piece: Piece) -> tuple[np.ndarray, Any]:
        """(array to hand to MPI, how to move it into/out of the arena: None, a view, or an index)."""
        pool = self.pool
        if piece.view is not None:
            arr = pool.array(piece.view)
            if arr.flags.c_contiguous:
                return arr, None
            return np.empty(arr.shape, dtype=arr.dtype), arr
        flat = pool.array(flat_view(piece))
        return np.empty(piece.count, dtype=flat.dtype), (flat, np.asarray(piece.index, dtype=np.int64))

    @staticmethod
    def gather(buf: np.ndarray, how: Any) -> None:
        if how is None:
            return
        if isinstance(how, tuple):
            flat, idx = how
            np.take(flat, idx, out=buf)
        else:
            np.copyto(buf, how)

    @staticmethod
    def scatter(buf: np.ndarray, how: Any) -> None:
        if how is None:
            return
        if isinstance(how, tuple):
            flat, idx = how
            flat[idx] = buf
        else:
            np.copyto(how, buf)


class HostBuffers:
    """This host's MPI buffer specs for every piece it sends or receives, built once per pool
    generation (arena views, pack buffers of strided pieces), so the run loop does no set-up work
    between a producer completing and its `Isend`."""

    def __init__(self, run: Any) -> None:
        pool, MPI = run.pool, run.MPI
        self.generation = (pool.generation, run.ctrl)      # a pool restart replaces the arena

        def specs(tr: Transfer) -> list:
            out = []
            for piece in tr.pieces:
                buf, how = run.buffers.target(piece)
                out.append(([buf.reshape(-1).view(np.uint8), MPI.BYTE], buf, how))
            return out

        def native(specs: list) -> list[tuple[int, int]] | None:
            """(address, nbytes) of each piece, when the native poll can send them all as they
            lie in the arena (contiguous, under 2 GiB: MPI_Isend takes an int count)."""
            if not specs or any(how is not None or buf.nbytes >= 1 << 31 for _, buf, how in specs):
                return None
            return [(buf.ctypes.data, buf.nbytes) for _, buf, _ in specs]
        self.inbound = {tr.id: specs(tr) for tr in run.part.recvs}
        # the final broadcasts: (MPI buffer, how to move it into/out of the arena, root)
        self.final = [(*run.buffers.target(fp.piece), fp.root) for fp in run.dist.final]
        outbound: dict[int, list] = {}
        for tr in run.part.sends:
            out = specs(tr)
            outbound.setdefault(run.done_word(tr.src_slot), []).append(
                (tr.src_count, tr, out, native(out)))
        for items in outbound.values():
            items.sort(key=lambda e: (e[0], e[1].id))
        self.outbound = outbound


def flat_view(piece: Piece) -> Any:
    from ..plan import View
    n = (max(piece.index) + 1) if piece.index else 0
    return View(piece.base, (n,), (piece.itemsize,), piece.dtype)
