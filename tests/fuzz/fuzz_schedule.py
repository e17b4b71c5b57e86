"""Coverage-guided fuzzing of `l3c.load` with atheris (optional; not collected by pytest, not in CI).

    pip install atheris
    python tests/fuzz/fuzz_schedule.py -atheris_runs=20000          # or -max_total_time=600

The seed corpus is a real schedule file. Each input is tried twice: as a whole file, and as a JSON
payload sealed with a valid header and checksum (so the fuzzer reaches the content checks). The only
allowed outcomes are a loaded `Compiled` or `l3c.ScheduleError`; anything else is a finding.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import numpy as np
    import l3c
    from l3c import aot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
TMP = tempfile.mkdtemp(prefix="l3c-fuzz-")
PATH = os.path.join(TMP, "input.l3c")


@l3c.kernel
def scale(alpha: float, x: l3c.In, y: l3c.Out):
    y[...] = alpha * x


@l3c.jit(chips=2, sub_workers=1)
def step(x):
    h = l3c.empty(x.shape, x.dtype)
    l3c.group(scale, [(2.0, x[i::2], h[i::2]) for i in range(2)])
    return h


def try_load(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        l3c.load(PATH)
    except l3c.ScheduleError:
        pass


def test_one(data: bytes) -> None:
    try_load(data)
    try_load(aot.HEADER.pack(aot.MAGIC, aot.FORMAT_VERSION, len(data),
                             hashlib.sha256(data).digest()) + data)


def main() -> None:
    seed = os.path.join(TMP, "corpus")
    os.makedirs(seed, exist_ok=True)
    good = os.path.join(TMP, "good.l3c")
    step.lower(np.arange(6.0)).save(good)
    with open(good, "rb") as f:
        body = f.read()[aot.HEADER.size:]
    with open(os.path.join(seed, "payload.json"), "wb") as f:
        f.write(body)
    atheris.Setup(sys.argv + [seed], test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
