"""The `l3c` command line (also `python -m l3c`).

    l3c dump-ir TARGET [--arg SPEC]... [--costs FILE] [--format text|json|dot|svg|png] [--after PASS]
                [-o FILE]
    l3c compile TARGET [--arg SPEC]... [--costs FILE] -o FILE
    l3c run FILE --input IN.npz [--output OUT.npz] [--timeout SECONDS]
    l3c profile TARGET [--arg SPEC]... [--costs FILE] -o TIMELINE.html|TRACE.json [--save-costs FILE]
    l3c demo
    l3c --version

TARGET is `path/to/file.py:function` or `package.module:function` naming an `l3c.jit` function.
SPEC is `dtype[dims]` (`f32[128,64]`, `i64[10]`, `f64[]`: an `l3c.ArraySpec` for `dump-ir` and
`compile`, which allocate nothing of that shape; zeros of it for `profile`, which runs) or a
Python literal (a static argument). Every error exits with status 1 and one line on stderr,
`l3c: error: ...`, without a traceback; an interrupted command (Ctrl-C) exits with 130.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import re
import shutil
import sys
from typing import Any, Sequence

import numpy as np

from .ir import PASS_ORDER
from .trace.arrayspec import ArraySpec

DTYPE_ALIASES = {
    "f16": "float16", "f32": "float32", "f64": "float64",
    "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
    "bool": "bool",
}
_ARRAY_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\[(.*)\]\s*$")


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit 2
        raise CLIError(message)


# ---- arguments ----------------------------------------------------------------------------------
def parse_dtype(name: str) -> np.dtype:
    """`f32` style aliases, or a numeric numpy dtype name (`float32`, `int64`, `bool_`)."""
    if name in DTYPE_ALIASES:
        return np.dtype(DTYPE_ALIASES[name])
    try:
        dtype = np.dtype(name)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biufc":
        raise CLIError(f"unknown dtype {name!r} (use {'/'.join(DTYPE_ALIASES)} "
                       "or a numpy name like float32)")
    return dtype


def parse_arg_spec(spec: str) -> Any:
    """`dtype[dims]` -> an `l3c.ArraySpec` (nothing allocated: what `dump-ir` and `compile`
    lower with); anything else -> a Python literal."""
    match = _ARRAY_SPEC.match(spec)
    if match:
        dtype = parse_dtype(match.group(1))
        body = match.group(2).strip()
        dims: list[int] = []
        if body:
            for part in body.split(","):
                part = part.strip()
                if not part.isdigit():
                    raise CLIError(f"malformed dims in --arg {spec!r}: {part!r} is not a "
                                   "non-negative integer (write e.g. f32[128,64])")
                dims.append(int(part))
        return ArraySpec(tuple(dims), dtype)
    try:
        return ast.literal_eval(spec)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise CLIError(f"bad --arg {spec!r}: expected dtype[dims] like f32[128,64] or a Python "
                       "literal like 3, 0.5, True, 'name'") from None


def load_target(target: str) -> Any:
    """Import `path/file.py:fn` or `pkg.mod:fn` and return the named `l3c.jit` function."""
    from .jit import Jitted
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise CLIError(f"bad TARGET {target!r}: write path/to/file.py:function or "
                       "package.module:function")
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = os.path.abspath(module_part)
        if not os.path.isfile(path):
            raise CLIError(f"no such file: {module_part}")
        module = _import_file(path)
    else:
        _cwd_on_path()
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            if exc.name and module_part.startswith(exc.name):
                raise CLIError(f"no module named {module_part!r}") from None
            raise CLIError(f"importing {module_part} failed: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a user module that fails to import
            raise CLIError(f"importing {module_part} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"{module_part} has no function {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, Jitted):
        raise CLIError(f"{target} is not an l3c.jit function (it is a {type(obj).__name__}); "
                       "decorate it with @l3c.jit")
    return obj


def _cwd_on_path() -> None:
    """Like `python -m`: modules under the working folder are importable (also by `l3c run`,
    whose workers import kernels by the "module:qualname" path recorded at compile time)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _import_file(path: str) -> Any:
    """Import a file so that its kernels get an import path a schedule loaded in another process can
    import again: `examples/mm.py` under the working folder becomes module `examples.mm` (run `l3c
    run` from the same folder); a file elsewhere becomes its stem, with its folder on sys.path."""
    rel = os.path.relpath(path, os.getcwd())
    parts = os.path.splitext(rel)[0].split(os.sep)
    if not rel.startswith("..") and all(p.isidentifier() for p in parts):
        _cwd_on_path()
        name = ".".join(parts)
        try:
            return importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a user module that fails to import
            raise CLIError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    name = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == path:
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a user module that fails to import
        del sys.modules[name]
        raise CLIError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _target_args(ns: argparse.Namespace) -> tuple[Any, list[Any]]:
    """The jitted function and its arguments, arrays as `ArraySpec`s: lowering allocates nothing
    of their shapes."""
    jitted = load_target(ns.target)
    args = [parse_arg_spec(s) for s in ns.arg]
    if getattr(ns, "costs", None):
        jitted.use_costs(ns.costs)
    return jitted, args


def _write(text: str, path: str | None) -> None:
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    with open(path, "w") as f:
        f.write(text)


# ---- commands -----------------------------------------------------------------------------------
def cmd_dump_ir(ns: argparse.Namespace) -> int:
    from .irdump import dump
    from .viz.dot import RENDER_FORMATS, render
    jitted, args = _target_args(ns)
    if ns.format in RENDER_FORMATS and shutil.which("dot") is None:
        render(None, ns.format)            # the one-line "install graphviz" error, before tracing
    if jitted.hosts > 1:                  # planned here for every host; no launcher needed
        program = _lower_for_hosts(jitted, args, jitted.hosts, until=ns.after).program
    elif ns.after is None:
        program = jitted.lower(*args).program
    else:
        program = jitted._run_passes(jitted.trace(*args), until=ns.after)
    if ns.format == "svg":                # drawn in Python: no Graphviz needed
        from .viz.graph_svg import to_svg
        _write(to_svg(program), ns.output)
        return 0
    if ns.format in RENDER_FORMATS:
        data = render(program, ns.format)
        if ns.output is None or ns.output == "-":
            sys.stdout.buffer.write(data)
        else:
            with open(ns.output, "wb") as f:
                f.write(data)
        return 0
    _write(dump(program, ns.format), ns.output)
    return 0


def cmd_compile(ns: argparse.Namespace) -> int:
    jitted, args = _target_args(ns)
    hosts = ns.hosts if ns.hosts is not None else jitted.hosts
    if hosts < 1:
        raise CLIError(f"--hosts must be at least 1, got {hosts}")
    if hosts == 1 and jitted.hosts == 1:
        jitted.lower(*args).save(ns.output)
    else:
        _lower_for_hosts(jitted, args, hosts).save(ns.output)
    return 0


def _lower_for_hosts(jitted: Any, args: list[Any], hosts: int, until: str | None = None) -> Any:
    """Trace and plan for `hosts` hosts here, without an MPI launcher: the file holds every
    host's part and runs with `mpiexec -n HOSTS l3c run FILE ...`."""
    import dataclasses

    from .compiled import Compiled
    from .passes import run_passes
    from .passes.deps import check_groups
    from .trace import bind_arguments, trace
    config = dataclasses.replace(jitted.config, hosts=hosts)
    bound = bind_arguments(jitted.fn, tuple(args), {}, jitted.static_argnames)
    traced = trace(jitted.fn, config=config, bound=bound)
    check_groups(traced)
    program = run_passes(traced, until=until, options=jitted.pass_options())
    return Compiled(program, timeout=jitted.timeout)


def result_names(result: Any) -> dict[str, np.ndarray]:
    """The results of a run by the names `l3c run` writes: `out0, out1, ...` in order for a tensor
    or a tuple/list of them; inside a dict its keys, joined by "." to the path above
    (`(h, {"s": a, "p": (b, c)})` -> out0, out1.s, out1.p.0, out1.p.1; a dict at the top: its keys)."""
    named: dict[str, np.ndarray] = {}

    def walk(value: Any, path: list[str], keyed: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, path + [str(k)], True)
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                walk(v, path + [f"out{i}" if not path else str(i)], keyed)
        elif value is not None:
            name = ".".join(path) if keyed else f"out{len(named)}"
            if name in named:
                raise CLIError(f"two results would both be written as {name!r}; give the "
                               "function's dict results distinct keys")
            named[name] = np.asarray(value)

    walk(result, [], False)
    return named


def read_inputs(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file; a CLIError saying what the file is when it is not one."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise CLIError(f"no such file: {path}") from None
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    if magic.startswith(b"\x93NUMPY"):
        raise CLIError(f"{path} is a .npy file (one array); --input needs an .npz holding one array "
                       "per parameter: np.savez('in.npz', arg0=x, arg1=w)")
    if not magic.startswith(b"PK"):
        raise CLIError(f"{path} is not an .npz file (np.savez writes one: np.savez('in.npz', "
                       "arg0=x, arg1=w))")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise CLIError(f"{path} holds an object array, which l3c never unpickles; save "
                           "numeric arrays") from None
        raise CLIError(f"{path} is a damaged .npz file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - zipfile/zlib errors of a damaged archive
        raise CLIError(f"{path} is a damaged .npz file: {type(exc).__name__}: {exc}") from None


def _input_names(compiled: Any, inputs: dict[str, np.ndarray], path: str) -> dict[int, str]:
    """Which .npz entry feeds each array parameter (by position): `arg<i>` by the parameter's
    position (the documented names), the parameters' own names, or `arg<k>` counting array
    parameters only (with statics first, `h(k, x)`, both readings of "arg0" exist). Exactly one
    scheme must name every array in different entries: two that would read different entries
    are ambiguous, refused rather than guessed."""
    params = compiled.program.params
    arrays = [(i, p) for i, p in enumerate(params) if p.tensor is not None]
    schemes = {"by position (arg0 is the first parameter)": [f"arg{i}" for i, _ in arrays],
               "by parameter name": [p.name for _, p in arrays],
               "counting array parameters only": [f"arg{k}" for k in range(len(arrays))]}
    fits: dict[tuple[str, ...], str] = {}
    for how, names in schemes.items():
        if all(n in inputs for n in names):
            fits.setdefault(tuple(names), how)
    if not fits:
        i, param = next((i, p) for i, p in arrays if f"arg{i}" not in inputs)
        given = ", ".join(sorted(inputs)) or "nothing"
        raise CLIError(f"{path} has no array 'arg{i}' for parameter {param.name!r} "
                       f"(it has {given})")
    if len(fits) > 1:
        readings = "; ".join(f"{how}: {', '.join(names)}" for names, how in fits.items())
        raise CLIError(f"{path} fits more than one naming of the inputs ({readings}), which would "
                       "read different arrays; keep only the entries of one naming")
    names = next(iter(fits))
    return dict(zip((i for i, _ in arrays), names))


def cmd_run(ns: argparse.Namespace) -> int:
    from .compiled import load
    _cwd_on_path()
    if not os.path.isfile(ns.file):
        raise CLIError(f"no such file: {ns.file}")
    if ns.timeout is not None and not ns.timeout > 0:
        raise CLIError(f"--timeout must be a number of seconds > 0, got {ns.timeout}")
    compiled = load(ns.file)
    if ns.timeout is not None:
        compiled.timeout = ns.timeout
    inputs = read_inputs(ns.input)
    by_position = _input_names(compiled, inputs, ns.input)
    args = [inputs[by_position[i]] if p.tensor is not None else p.static   # statics: fixed
            for i, p in enumerate(compiled.program.params)]
    named = result_names(compiled(*args))
    if compiled.program.config.hosts > 1:       # under mpiexec: every rank has the results
        from .runtime.hosts.launcher import check_hosts
        if check_hosts(compiled.program.config.hosts) != 0:
            return 0                            # rank 0 writes and prints them
    if ns.output:
        try:
            np.savez(ns.output, **named)
        except OSError as exc:
            raise CLIError(f"cannot write {ns.output}: {exc.strerror or exc}") from None
    for name, value in named.items():
        dims = ",".join(map(str, value.shape))
        print(f"{name}: {value.dtype}[{dims}]")
    return 0


def cmd_profile(ns: argparse.Namespace) -> int:
    from . import execute, profile
    jitted, specs = _target_args(ns)
    args = [np.zeros(a.shape, a.dtype) if isinstance(a, ArraySpec) else a for a in specs]
    compiled = jitted.lower(*args)           # bound with defaults as `jitted(*args)` would be
    _, trace = execute.profile(compiled, *compiled._bind(args, {}), capacity=ns.max_instances)
    if jitted.hosts > 1:                     # under mpiexec every rank has the trace: rank 0
        from .runtime.context import host_id  # writes it
        if host_id() != 0:
            return 0
    sys.stdout.write(profile.report(trace, ns.output, trace.save(ns.output)))
    if ns.save_costs:
        from .costs import save_measured
        sys.stdout.write(save_measured(trace, ns.save_costs))
    return 0


def cmd_demo(ns: argparse.Namespace) -> int:
    from . import demo
    return int(demo.main(ns.rest) or 0)


# Commands whose modules parse their own arguments: everything after the command name is theirs.
_FORWARDED = {"demo": cmd_demo}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = _Parser(prog="l3c", description="Compile multi-chip orchestration code from Python.")
    parser.add_argument("--version", action="version", version=f"l3c {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    def target_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("target", metavar="TARGET", help="path/to/file.py:function or pkg.mod:function")
        p.add_argument("--arg", action="append", default=[], metavar="SPEC",
                       help="dtype[dims] (f32[128,64]) for an array, or a Python literal for a static")
        p.add_argument("--costs", default=None, metavar="FILE",
                       help="kernel costs measured by `l3c profile --save-costs FILE` (placement)")
        return p

    p = target_command("dump-ir", "print the IR of a jitted function")
    p.add_argument("--format", choices=("text", "json", "dot", "svg", "png"), default="text",
                   help="svg: the task graph drawn by l3c (no Graphviz needed); png renders the "
                        "DOT view with Graphviz's dot program")
    p.add_argument("--after", choices=PASS_ORDER, default=None, metavar="PASS",
                   help=f"stop after this pass ({', '.join(PASS_ORDER)}); default: all")
    p.add_argument("-o", "--output", default=None, metavar="FILE")
    p.set_defaults(func=cmd_dump_ir)

    p = target_command("compile", "compile a jitted function into a schedule file")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--hosts", type=int, default=None, metavar="H",
                   help="plan for H hosts (default: the jit's hosts=); run the file with "
                        "`mpiexec -n H l3c run FILE ...`")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a schedule file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--input", required=True, metavar="IN.npz")
    p.add_argument("--output", default=None, metavar="OUT.npz")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="fail with l3c.Timeout after this many seconds (default: the schedule's)")
    p.set_defaults(func=cmd_run)

    p = target_command("profile", "run once with every task timed; write a self-contained HTML "
                       "timeline (-o NAME.html) or a Chrome trace / Perfetto JSON (-o NAME.json)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html|FILE.json")
    p.add_argument("--save-costs", default=None, metavar="FILE",
                   help="also write each kernel's measured median time (us), for later compiles "
                        "(l3c.jit(costs=FILE), l3c dump-ir/compile --costs FILE)")
    p.add_argument("--max-instances", type=int, default=None, metavar="N", help="loops: record "
                   "each worker's first N step instances (default: all that fit); count the others")
    p.set_defaults(func=cmd_profile)

    sub.add_parser("demo", help="run the bundled example end to end", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (errors: 1, with one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _FORWARDED:
            return _FORWARDED[argv[0]](argparse.Namespace(rest=argv[1:]))
        ns = build_parser().parse_args(argv)
        return ns.func(ns)
    except SystemExit as exc:            # --help (0), or a subcommand that exits on purpose
        return 0 if exc.code in (0, None) else 1
    except KeyboardInterrupt:
        print("l3c: error: interrupted", file=sys.stderr)
        return 130                       # 128 + SIGINT, as shells report it
    except BaseException as exc:  # noqa: BLE001 - every error is one line, never a traceback
        message = str(exc) if isinstance(exc, CLIError) else _describe(exc)
        print("l3c: error: " + " ".join(message.split()), file=sys.stderr)
        return 1


def _describe(exc: BaseException) -> str:
    from .errors import L3CError
    if isinstance(exc, L3CError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
