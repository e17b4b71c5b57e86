"""A schedule split over several hosts, as plain data: each host's plan, the transfers between hosts
and the broadcasts after a run.

Code generation (`l3c.codegen.hosts`) builds these from a placed, memory-planned program; each
host's rank runs its part (`l3c.runtime.hosts`). Transfer ids are the MPI tags within a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .plan import MovingView, View, Wait

if TYPE_CHECKING:
    from ..codegen.lower import LoweredProgram


@dataclass(frozen=True)
class Piece:
    """Elements of one tensor that move as one message.

    `view`: the elements are exactly this arena view (the same on every host). Otherwise `index`
    holds flat element indices into the tensor starting at byte `base`, gathered into a contiguous
    buffer to send and scattered after receiving."""

    tensor: int
    count: int                            # elements
    itemsize: int
    view: View | None = None
    base: int = 0
    dtype: str = ""
    index: tuple[int, ...] | None = None

    @property
    def nbytes(self) -> int:
        return self.count * self.itemsize

    def __str__(self) -> str:
        if self.view is not None:
            return f"t{self.tensor}@{self.view.offset}:{self.count}"
        return f"t{self.tensor}[{self.count} elements]"


@dataclass(frozen=True)
class Transfer:
    """Task `producer`'s results (`pieces`, maybe none: a token) from host `src` to host `dst`."""

    id: int                               # global index: the MPI tag within a run
    src: int
    dst: int
    producer: int                         # task id on `src`
    src_slot: int                         # the producer's local slot on `src`
    src_count: int                        # ... and the S_DONE value once it completed
    order: int                            # 1-based landing position on `dst`
    consumers: tuple[int, ...]            # tasks on `dst` that wait for it
    pieces: tuple[Piece, ...] = ()
    sent_order: int = 0                   # 1-based position of its sent item on `src` (0: none)
    sent_waiters: tuple[int, ...] = ()    # tasks on `src` that wait until the send completed
    gate_slots: tuple[tuple[int, int], ...] = ()   # (local slot, count) on `dst` done before Irecv
    gate_order: int = 0                   # `dst`'s landing counter reached before its Irecv

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.pieces)


@dataclass(frozen=True)
class FinalPiece:
    """After a run, host `root` broadcasts these elements (a result or a written input)."""

    root: int
    piece: Piece


@dataclass(frozen=True)
class CommPiece:
    """One written region a send reads or a landing writes in a plan with loops: its arena view
    (moving with loop variables when the region does) and the bytes of its tensor, which the view
    must stay inside (`lo`, `hi`: [first byte, end))."""

    view: View | MovingView
    lo: int
    hi: int


@dataclass(frozen=True)
class CommStep:
    """A send ("send": post the producer's regions as they are in this instance) or a landing
    ("recv": receive them into this host's arena) of a plan with loops, in the queue the host's
    parent runs (`HostPart.comm`, between the same control steps as every worker's queue).
    `transfer`: the MPI tag within a run; `peer`: the other host; `task`: the producer."""

    kind: str
    transfer: int
    peer: int
    task: int
    pieces: tuple[CommPiece, ...]
    waits: tuple[Wait, ...] = ()
    loc: str = ""


@dataclass(frozen=True)
class HostPart:
    """One host's share: its lowered plan (`plan.sub_workers` includes the landing slot), the
    transfers it sends and receives, and its landing sequence."""

    host: int
    lowered: LoweredProgram
    sends: tuple[Transfer, ...]           # by producer id
    recvs: tuple[Transfer, ...]           # inbound, in landing order
    sequence: tuple[tuple[str, Transfer], ...] = ()   # ("recv" | "sent", transfer), counter order
    # a program with loops: the queue of the landing slot, run by the parent (`l3c.runtime.hosts.
    # looprun`): the loops' control steps and the CommSteps; None for loop-free programs
    comm: tuple | None = None


@dataclass
class DistPlan:
    """A program split over `hosts`: one part per host, every transfer, the final broadcasts."""

    hosts: int
    parts: tuple[HostPart, ...]
    transfers: tuple[Transfer, ...]
    final: tuple[FinalPiece, ...]
    stats: dict = field(default_factory=dict)
