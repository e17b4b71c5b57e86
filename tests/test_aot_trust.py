"""Schedule files a user can trust: a loaded schedule binds like the jitted function, notices a
changed kernel, refuses an edited file that would race, gets a normal file's mode, and `save()`
refuses or warns about kernels other processes cannot import."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import l3c
from l3c import aot
from l3c.codegen.dispatcher import generate_ir
from l3c.codegen.lower import lower
from l3c.ircodec import dec_program

ROOT = Path(__file__).resolve().parents[1]

KERNELS = '''
import l3c

@l3c.kernel
def scale(alpha: float, x: l3c.In, y: l3c.Out):
    y[...] = alpha * x

@l3c.kernel
def colsum(x: l3c.In, out: l3c.Out):
    out[...] = x.sum(axis=0)
'''

ORCH = '''
import numpy as np
import l3c
from {kernels} import scale, colsum

@l3c.jit(chips=2)
def step(a, b, tiles=2, bias=0.5):
    h = l3c.empty(a.shape, a.dtype)
    l3c.group(scale, [(bias, a[i::tiles], h[i::tiles]) for i in range(tiles)])
    g = l3c.empty(b.shape, b.dtype)
    scale(2.0, b, g)
    out = l3c.empty((a.shape[1],), a.dtype)
    colsum(h, out)
    out2 = l3c.empty((b.shape[1],), b.dtype)
    colsum(g, out2)
    return out, out2
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    kernels, orch = f"trk_{tag}", f"tro_{tag}"
    (tmp_path / f"{kernels}.py").write_text(KERNELS)
    (tmp_path / f"{orch}.py").write_text(ORCH.format(kernels=kernels))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, kernels, __import__(orch)


def arrays():
    return np.arange(24.0).reshape(6, 4), np.ones((3, 4))


def expected(a, b, bias=0.5):
    return (bias * a).sum(axis=0), (2.0 * b).sum(axis=0)


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def payload_of(path: Path) -> dict:
    return json.loads(path.read_bytes()[aot.HEADER.size:])


def reseal(path: Path, payload: dict) -> Path:
    """Write `payload` back with its plan and dispatcher IR lowered again from its (edited)
    program and the checksum recomputed, so only the loader's safety checks can refuse it."""
    plan = lower(dec_program(payload["program"], 64)).plan
    payload["plan"], payload["dispatcher_ir"] = aot.enc_plan(plan), generate_ir(plan)
    body = json.dumps(payload).encode()
    out = path.with_name("edited.l3c")
    out.write_bytes(aot.HEADER.pack(aot.MAGIC, aot.FORMAT_VERSION, len(body),
                                    hashlib.sha256(body).digest()) + body)
    return out


# ---- 1. binding -------------------------------------------------------------------------------
def test_loaded_schedule_binds_like_the_jitted_function(project, tmp_path):
    _, _, mod = project
    a, b = arrays()
    path = tmp_path / "s.l3c"
    mod.step.lower(a, b).save(path)
    loaded = l3c.load(path)
    for got in (loaded(a, b), loaded(a, b=b), loaded(a, b, 2, 0.5), loaded(b=b, a=a, bias=0.5)):
        for x, y in zip(got, expected(a, b)):
            np.testing.assert_array_equal(x, y)
    results, trace = loaded.profile(a, b)
    np.testing.assert_array_equal(results[0], expected(a, b)[0])
    assert trace["traceEvents"]
    with pytest.raises(l3c.ScheduleError, match="static argument 'bias' was 0.5"):
        loaded(a, b, bias=0.25)


def test_lowered_with_explicit_statics_binds_them_as_defaults(project):
    _, _, mod = project
    a, b = arrays()
    compiled = mod.step.lower(a, b, 2, 0.25)
    with pytest.raises(l3c.ScheduleError, match="static argument 'bias' was 0.25"):
        compiled(a, b)              # the jitted function's own default (0.5) binds first
    got = compiled(a, b, bias=0.25)
    np.testing.assert_array_equal(got[0], expected(a, b, 0.25)[0])


# ---- 2. changed kernels -----------------------------------------------------------------------
@pytest.mark.parametrize("change, outcome", [
    (("y[...] = alpha * x", "y[...] = alpha * x + 0.0"), "warning"),
    (("def scale(alpha: float, x: l3c.In, y: l3c.Out)", "def scale(alpha: float, x: l3c.In, "
      "y: l3c.Out, extra: int = 0)"), "now takes (alpha, x: l3c.In, y: l3c.Out, extra)"),
    (("def scale(alpha: float, x: l3c.In, y: l3c.Out)", "def scale(alpha: float, x: l3c.Out, "
      "y: l3c.In)"), "now takes (alpha, x: l3c.Out, y: l3c.In)"),
])
def test_load_compares_kernels_with_what_the_file_recorded(project, tmp_path, change, outcome):
    _, kernels, mod = project
    a, b = arrays()
    path = tmp_path / "s.l3c"
    mod.step.lower(a, b).save(path)
    source = tmp_path / f"{kernels}.py"
    source.write_text(source.read_text().replace(*change))
    script = textwrap.dedent(f"""
        import warnings, numpy as np, l3c
        warnings.simplefilter("error", l3c.ScheduleWarning)
        try:
            l3c.load({str(path)!r})
        except l3c.ScheduleWarning as w:
            print("WARNING", w)
        except l3c.ScheduleError as e:
            print("ERROR", e)
        else:
            print("LOADED")
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    if outcome == "warning":
        assert out.startswith("WARNING") and f"kernel {kernels}:scale has changed" in out, out
    else:
        assert out.startswith("ERROR") and f"kernel {kernels}:scale {outcome}" in out, out
        assert "compiled for (alpha, x: l3c.In, y: l3c.Out)" in out


def test_unchanged_kernels_load_without_warning(project, tmp_path):
    _, _, mod = project
    a, b = arrays()
    path = tmp_path / "s.l3c"
    mod.step.lower(a, b).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        l3c.load(path)


# ---- 3. re-checked dependencies ---------------------------------------------------------------
def _happens_before(program: dict, dropped: tuple[int, int] | None = None) -> nx.DiGraph:
    """The stored edges (each task's `waits`) and each worker's queue order."""
    g = nx.DiGraph()
    g.add_nodes_from(t["id"] for t in program["tasks"])
    g.add_edges_from((w["task"], t["id"]) for t in program["tasks"] for w in t["waits"]
                     if (w["task"], t["id"]) != dropped)
    last = {}
    for t in program["tasks"]:
        key = (t["worker"], t["chip"])
        if key in last:
            g.add_edge(last[key], t["id"])
        last[key] = t["id"]
    return g


def test_removing_a_raw_edge_is_refused_even_with_the_checksum_recomputed(project, tmp_path):
    _, _, mod = project
    a, b = arrays()
    path = tmp_path / "s.l3c"
    mod.step.lower(a, b).save(path)
    payload = payload_of(path)
    prog = payload["program"]
    victims = [(w["task"], t["id"]) for t in prog["tasks"] for w in t["waits"]
               if "RAW" in w["kinds"]
               and not nx.has_path(_happens_before(prog, (w["task"], t["id"])), w["task"], t["id"])]
    assert victims, "the program has no RAW edge that nothing else orders"
    u, v = victims[0]
    task = prog["tasks"][v]
    task["waits"] = [w for w in task["waits"] if w["task"] != u]
    task["deps"] = [w["task"] for w in task["waits"]]
    with pytest.raises(l3c.ScheduleError, match=f"unsafe schedule: tasks {u} and {v} both access"):
        l3c.load(reseal(path, payload))


def test_arena_offsets_that_overlap_live_tensors_are_refused(project, tmp_path):
    _, _, mod = project
    a, b = arrays()
    path = tmp_path / "s.l3c"
    mod.step.lower(a, b).save(path)
    assert isinstance(l3c.load(reseal(path, payload_of(path))), l3c.Compiled)   # resealing is neutral
    payload = payload_of(path)
    tensors = {t["name"]: t for t in payload["program"]["tensors"]}
    # h and g are written on different chips and read later: both are live at once
    tensors["t1"]["arena_offset"] = tensors["t0"]["arena_offset"]
    with pytest.raises(l3c.ScheduleError, match="share arena bytes"):
        l3c.load(reseal(path, payload))


# ---- 4. file mode -----------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_file_gets_the_mode_a_normal_file_gets(project, tmp_path, umask, mode):
    _, _, mod = project
    a, b = arrays()
    old = os.umask(umask)
    try:
        mod.step.lower(a, b).save(tmp_path / "s.l3c")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "s.l3c").st_mode) == mode
    os.chmod(tmp_path / "s.l3c", 0o640)              # an existing file keeps its mode
    mod.step.lower(a, b).save(tmp_path / "s.l3c")
    assert stat.S_IMODE(os.stat(tmp_path / "s.l3c").st_mode) == 0o640


# ---- 5. kernels no other process can import -----------------------------------------------------
def test_save_refuses_a_kernel_defined_inside_a_function(tmp_path):
    def make():
        @l3c.kernel
        def inner(x: l3c.In, y: l3c.Out):
            y[...] = x
        return inner

    inner = make()

    @l3c.jit(chips=1)
    def f(x):
        y = l3c.empty_like(x)
        inner(x, y)
        return y

    compiled = f.lower(np.ones(3))
    with pytest.raises(l3c.ScheduleError, match="kernel test_save_refuses_a_kernel_defined_inside_"
                                                "a_function.make.inner is defined inside a function"):
        compiled.save(tmp_path / "s.l3c")
    assert not (tmp_path / "s.l3c").exists()


def test_save_warns_about_a_kernel_defined_in_main(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np, l3c

        @l3c.kernel
        def scale(x: l3c.In, y: l3c.Out):
            y[...] = 2 * x

        @l3c.jit(chips=1)
        def f(x):
            y = l3c.empty_like(x)
            scale(x, y)
            return y

        f.lower(np.ones(3)).save({str(tmp_path / 's.l3c')!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ScheduleWarning" in proc.stderr and "kernel scale is defined in the script" in proc.stderr
    assert "move the kernel into a module" in proc.stderr
