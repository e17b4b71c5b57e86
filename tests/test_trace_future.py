"""String annotations (`from __future__ import annotations`) still declare access modes."""
from __future__ import annotations

import numpy as np

import l3c
from l3c import In, Out


@l3c.kernel
def add(x: l3c.In, y: In, out: Out, k: int):
    out[...] = x + y + k


@l3c.kernel
def local_names(x: "l3c.InOut"):
    x += 1


def test_string_annotations_are_resolved():
    assert add.modes == {"x": "In", "y": "In", "out": "Out", "k": None}
    assert local_names.modes == {"x": "InOut"}


def test_string_annotated_kernel_traces():
    def f(a):
        out = l3c.empty_like(a)
        add(a, a, out, 2)
        return out

    program = l3c.jit(f, chips=1).trace(np.zeros(3))
    assert [a.mode for a in program.tasks[0].accesses] == ["In", "In", "Out"]
