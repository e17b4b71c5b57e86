"""Compile llvmlite IR text to machine code in this process (MCJIT), with named external symbols.

One place for what every native piece of l3c does the same way: the runtime's atomics and waits
(`sync`), the workers' step loop (`steploop`), each plan's dispatcher (`l3c.codegen.dispatcher`)
and the several-host poll (`l3c.runtime.hosts.poll`). Each builds its IR, names the C functions it
calls, and wraps the compiled functions with ctypes; the returned engine owns the machine code and must
stay referenced while that code can run.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

# Linux x86-64 system calls the native pieces make (futex waits and wakes on shared words, and a
# yield of the core between spin rounds).
SYS_FUTEX = 202
SYS_SCHED_YIELD = 24
FUTEX_WAIT = 0             # shared (not FUTEX_PRIVATE): the words live in a cross-process mapping
FUTEX_WAKE = 1

_lock = threading.Lock()          # llvmlite's global state (targets, symbols) is not thread-safe
_libc = ctypes.CDLL(None, use_errno=True)


def address(fn: Any) -> int:
    """The address of a ctypes function pointer (a libc or Python C-API function)."""
    return ctypes.cast(fn, ctypes.c_void_p).value


def libc(*names: str) -> dict[str, int]:
    """{name: address} of libc functions, for `compile_module`'s symbols."""
    return {name: address(getattr(_libc, name)) for name in names}


def compile_module(ir_text: str, symbols: dict[str, int] | None = None) -> Any:
    """Parse, verify and JIT-compile `ir_text` (opt level 2, this CPU), after registering
    `symbols` (name -> address) for its external declarations. Returns the MCJIT engine."""
    import llvmlite.binding as llvm

    with _lock:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        for name, where in (symbols or {}).items():
            llvm.add_symbol(name, where)
        module = llvm.parse_assembly(ir_text)
        module.verify()
        # a fresh target machine each time: the engine takes ownership of (and frees) it
        target = llvm.Target.from_default_triple().create_target_machine(opt=2)
        engine = llvm.create_mcjit_compiler(module, target)
        engine.finalize_object()
    return engine
