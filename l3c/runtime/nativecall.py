"""Trampolines: call a native kernel's C function with its arguments taken from a block of words.

The step loop (`steploop.py`) is compiled once, before the fork, and cannot know the C signatures of
kernels defined later; a C call needs its parameters' types at the call site (ints and doubles go to
different registers). So each signature gets a tiny function of one fixed type,

    i32 l3c_call_<kinds>(i64 fn, i64* block)      kinds: one letter per C parameter,
                                                  "i" int64 (pointers too), "d" double

that loads `block[j]` (a double by its bits) and calls `fn` with them: the loop calls any native
kernel through one indirect call to its trampoline. Built with llvmlite on first use per process
(about 2 ms, at install in a worker) and cached there.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Sequence

from ..registry import NativeFunction, c_arguments, pack_words
from . import native

_lock = threading.Lock()
_trampolines: dict[str, tuple[Any, int]] = {}     # kinds -> (MCJIT engine, address)


def _trampoline_ir(kinds: str) -> str:
    from llvmlite import ir

    i32, i64, f64 = ir.IntType(32), ir.IntType(64), ir.DoubleType()
    mod = ir.Module(name=f"l3c_call_{kinds or 'void'}")
    fn = ir.Function(mod, ir.FunctionType(i32, [i64, i64.as_pointer()]), "l3c_call")
    target, block = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    values = []
    for j, kind in enumerate(kinds):
        word = b.load(b.gep(block, [i64(j)]))
        values.append(word if kind == "i" else b.bitcast(word, f64))
    c_type = ir.FunctionType(i32, [i64 if kind == "i" else f64 for kind in kinds])
    b.ret(b.call(b.inttoptr(target, c_type.as_pointer()), values))
    return str(mod)


def trampoline(kinds: str) -> int:
    """The address of the trampoline for C parameters `kinds` (built once per process)."""
    entry = _trampolines.get(kinds)
    if entry is None:
        with _lock:
            entry = _trampolines.get(kinds)
            if entry is None:
                engine = native.compile_module(_trampoline_ir(kinds))
                entry = _trampolines[kinds] = (engine, engine.get_function_address("l3c_call"))
    return entry[1]


class NativeCall:
    """One native step, prepared at install: its C function, the trampoline for its signature and
    its argument block (addresses of the worker's arena views, counts, scalars), owned here."""

    def __init__(self, function: NativeFunction, args: Sequence[Any]) -> None:
        arguments = c_arguments(args)
        self.function = function
        self.kinds = "".join(kind for kind, _ in arguments)
        self.invoke = trampoline(self.kinds)
        words = pack_words(arguments)
        self.block = (ctypes.c_int64 * max(1, len(words)))(*words)
        self.keep = args                  # the views whose addresses the block holds

    @property
    def block_address(self) -> int:
        return ctypes.addressof(self.block)
