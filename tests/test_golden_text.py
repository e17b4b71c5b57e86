"""The canonical text form of the IR (`compiled.dump()`) compared with golden files.

The text form is deterministic (program order, sorted sets), so any change to a pass that moves a
dependency, a placement, a group or an arena offset shows up here as a readable diff. When a change
is meant, rewrite the files with `L3C_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_text.py`
and review `git diff tests/golden` before committing.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from l3c.cli import load_target

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")

# name -> (target, arguments): small, fixed shapes so the files stay readable.
CASES = {
    "tiled_matmul": ("examples/tiled_matmul.py:tiled_matmul",
                     lambda: (np.zeros((16, 8), np.float32), np.zeros((8, 16), np.float32))),
    "axpy_rows": ("examples/axpy_rows.py:step",
                  lambda: (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))),
    "jacobi": ("examples/jacobi.py:jacobi", lambda: (np.zeros((34, 16)), 6)),
}


def _text(name: str) -> str:
    target, make_args = CASES[name]
    cwd = os.getcwd()
    os.chdir(ROOT)                  # targets are paths relative to the repository
    try:
        jitted = load_target(target)
    finally:
        os.chdir(cwd)
    text = jitted.lower(*make_args()).dump("text")
    # Inputs are located at the first caller's line: a test file's (the signature may have been
    # traced by another test first), which moves with every edit there.
    return re.sub(r"@ test_\w+\.py:\d+", "@ <caller>", text)


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_form_matches_golden_file(name):
    text = _text(name)
    path = os.path.join(GOLDEN, f"{name}.txt")
    if os.environ.get("L3C_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        golden = f.read()
    assert text == golden, (f"{name}: the canonical text form changed; if that is meant, rerun "
                            "with L3C_UPDATE_GOLDEN=1 and review the diff")


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_form_is_deterministic_across_lowerings(name):
    """Two fresh lowerings of the same signature print identically (no set or dict order leaks)."""
    assert _text(name) == _text(name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_running_a_program_does_not_change_its_dump(name):
    """Lowering and running read the placed program; they never write into it."""
    target, make_args = CASES[name]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        jitted = load_target(target)
    finally:
        os.chdir(cwd)
    compiled = jitted.lower(*make_args())
    before = compiled.dump("text")
    compiled(*make_args())
    assert compiled.dump("text") == before
