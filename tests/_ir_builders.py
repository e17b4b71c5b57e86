"""Build IR Programs by hand for the pass tests (the tracer is tested on its own).

`region(shape, index)` computes a Region the way numpy basic slicing would (offset/shape/strides
from a real numpy view, and the box per base axis); `program(...)` makes a Program from a list of
`call(...)` records.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from l3c.ir import Access, Config, Program, Region, ResultRef, ScalarArg, Task, TensorInfo


def _box_axis(index, n: int) -> tuple[int, int, int]:
    if isinstance(index, (int, np.integer)):
        i = int(index) % n
        return (i, 1, 1)
    start, stop, step = index.indices(n)
    values = range(start, stop, step)
    count = len(values)
    if count == 0:
        return (0, 0, 1)
    if count == 1:
        return (values[0], 1, 1)
    return (min(values[0], values[-1]), count, abs(step))


def region(shape: tuple[int, ...], index=(), transpose: bool = False, keep_box: bool = True) -> Region:
    """Region of `base[index]` (optionally `.T`) for a C-contiguous base of `shape`."""
    if not isinstance(index, tuple):
        index = (index,)
    index = index + (slice(None),) * (len(shape) - len(index))
    base = np.zeros(shape, dtype=np.int8)
    view = base[index + (Ellipsis,)]      # a 0-d view (not a scalar copy) for all-int indexes
    if transpose:
        view = view.T
    offset = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    box = tuple(_box_axis(ix, n) for ix, n in zip(index, shape)) if keep_box else None
    return Region(int(offset), tuple(view.shape), tuple(int(s) for s in view.strides), box)


def random_index(rng: random.Random, shape):
    index = []
    for n in shape:
        r = rng.random()
        if r < 0.2:
            index.append(rng.randrange(n))
        elif r < 0.3:
            index.append(slice(None))
        else:
            step = rng.choice([1, 1, 2, 3, -1, -2, 5])
            a, b = rng.randrange(-1, n + 1), rng.randrange(-1, n + 1)
            index.append(slice(a if a >= 0 else None, b if b >= 0 else None, step))
    return tuple(index)



@dataclass
class Call:
    kernel: str
    args: list                       # (tensor name, index, mode) or (param, scalar value)
    worker: str = "chip"
    pin: int | None = None
    group: str | None = None         # calls with the same label form one explicit l3c.group
    scope: tuple[int, ...] = ()


def call(kernel: str, *args, worker: str = "chip", pin: int | None = None,
         group: str | None = None, scope: tuple[int, ...] = ()) -> Call:
    return Call(kernel if ":" in kernel else f"tests.k:{kernel}", list(args), worker, pin, group,
                scope)


def program(tensors: dict, calls: list[Call], *, chips: int = 2, sub_workers: int = 1,
            results: tuple[str, ...] = (), fuse_groups: bool = True) -> Program:
    """`tensors`: name -> shape, or name -> dict(shape=, kind=, dtype=, scope=)."""
    prog = Program(name="tests:prog", loc="prog.py:1",
                   config=Config(chips=chips, sub_workers=sub_workers, fuse_groups=fuse_groups))
    ids = {}
    for name, spec in tensors.items():
        if not isinstance(spec, dict):
            spec = {"shape": spec}
        kind = spec.get("kind", "input" if name.startswith("arg") else "intermediate")
        ids[name] = len(prog.tensors)
        prog.tensors.append(TensorInfo(id=len(prog.tensors), name=name, kind=kind,
                                       shape=tuple(spec["shape"]),
                                       dtype=spec.get("dtype", "float32"),
                                       loc=f"prog.py:{100 + len(prog.tensors)}",
                                       scope=tuple(spec.get("scope", ()))))
    labels: dict[str, int] = {}
    for tid, c in enumerate(calls):
        args = []
        for k, arg in enumerate(c.args):
            if len(arg) == 3:
                name, index, mode = arg
                if isinstance(index, Region):      # a hand-made region (e.g. without a box)
                    reg = index
                elif isinstance(index, str) and index == "T":
                    reg = region(prog.tensors[ids[name]].shape, (), transpose=True)
                else:
                    reg = region(prog.tensors[ids[name]].shape, index)
                args.append(Access(f"p{k}", ids[name], reg, mode))
            else:
                args.append(ScalarArg(arg[0], arg[1]))
        task = Task(id=tid, kernel=c.kernel, worker=c.worker, args=tuple(args),
                    loc=f"prog.py:{10 + tid}", scope=tuple(c.scope), pin=c.pin)
        if c.group is not None:
            if c.group not in labels:
                labels[c.group] = len(prog.groups)
                prog.groups.append([])
            task.group = labels[c.group]
            task.group_rank = len(prog.groups[task.group])
            prog.groups[task.group].append(tid)
        prog.add_task(task)
    refs = []
    for name in results:
        info = prog.tensors[ids[name]]
        refs.append(ResultRef(info.id, Region.whole(info.shape), info.dtype))
    prog.results = ("tuple", refs) if refs else None
    return prog
