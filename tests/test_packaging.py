"""The package as users install it: the build ships `py.typed` (PEP 561), so type checkers read
l3c's hints, and every public function and method carries complete hints."""
from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import l3c

ROOT = Path(__file__).resolve().parents[1]


def test_the_build_ships_py_typed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(ROOT / "l3c", src / "l3c", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    # setuptools' build_py is the step that puts package files (and package data) into a wheel
    proc = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "build_py",
                           "--build-lib", str(tmp_path / "build")], cwd=src,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "build" / "l3c" / "cli.py").is_file()
    assert (tmp_path / "build" / "l3c" / "py.typed").is_file()


def _public_callables():
    """Everything `import l3c` exports, and the public methods and properties of its classes."""
    for name in dir(l3c):
        obj = getattr(l3c, name)
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if inspect.isclass(obj):
            if issubclass(obj, BaseException):
                if "__init__" in vars(obj):
                    yield f"l3c.{name}.__init__", obj.__init__
                continue
            for attr, member in vars(obj).items():
                if isinstance(member, property):
                    yield f"l3c.{name}.{attr}", member.fget
                elif inspect.isfunction(member) and (not attr.startswith("_")
                                                     or attr in ("__init__", "__call__")):
                    yield f"l3c.{name}.{attr}", member
        elif callable(obj):
            yield f"l3c.{name}", obj
    yield "l3c.cli.main", l3c.cli.main


def test_public_functions_have_complete_type_hints():
    import l3c.cli  # noqa: F401 - the console script's entry point is public too
    missing = []
    checked = 0
    for name, fn in _public_callables():
        sig = inspect.signature(fn)
        checked += 1
        missing += [f"{name}({p.name})" for p in sig.parameters.values()
                    if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{name} -> ?")
    assert checked > 30
    assert not missing, missing
