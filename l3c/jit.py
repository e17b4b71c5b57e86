"""`@l3c.jit`: trace on the first call per signature, run the passes, cache, and run.

The cache key of a call is the shapes and dtypes of its array arguments and the types and values of
its static ones (`Jitted.cache_key(*args)` prints it). The cache holds the `cache_size` most
recently used signatures (`DEFAULT_CACHE_SIZE` unless `l3c.jit(cache_size=...)` says otherwise);
the least recently used one is evicted when a new one comes, and its compiled program, plan and
native dispatcher are freed once nothing else holds them (`step.cache_clear()` evicts them all). Set `L3C_LOG_COMPILES=1` to log every trace
with the reason (first call, or which argument changed); `L3C_STRICT_RETRACE=1` turns a retrace into
a `TraceError`. The cache is guarded by a lock, so a jitted function may be called from threads.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from . import inflight
from .compiled import Compiled
from .inflight import Limiter
from .errors import ConfigError, TraceError
from .ir import Config, Program
from .passes.deps import check_groups
from .trace import BoundArg, bind_arguments, bound_aliases, input_aliases, trace
from .trace.kernel import wrap_like
from .trace.source import trace_error, user_location, user_traceback


DEFAULT_CACHE_SIZE = 16       # signatures a jitted function keeps compiled


@dataclass(frozen=True)
class CacheKey:
    """Hashable and printable: `step(x: float32[128,64], w: float32[64,64], n=3)`."""

    function: str
    entries: tuple[tuple, ...]
    descriptions: tuple[str, ...]

    def __hash__(self) -> int:
        return hash(self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CacheKey) and self.entries == other.entries

    def __str__(self) -> str:
        return f"{self.function}({', '.join(self.descriptions)})"


@dataclass
class _Entry:
    program: Program                    # as traced (before passes); Jitted.eager runs this one
    compiled: Compiled | None = None    # after the passes, made on first lower()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0", "false", "False")


@contextlib.contextmanager
def _on_every_host(jitted: "Jitted") -> Iterator[None]:
    """Around what a call does before it runs, for `hosts > 1`: first an MPI launcher with `hosts`
    ranks (else `L3CError`, before tracing); then a failure in the block (a `TraceError`, a bad
    argument) still takes part in the call's agreement between ranks, so that every rank raises
    and the next call works on all of them (`l3c.runtime.hosts.calls`)."""
    if jitted.hosts == 1:
        yield
        return
    from .runtime.hosts.launcher import check_hosts
    check_hosts(jitted.hosts)
    try:
        yield
    except Exception as exc:
        from .runtime.hosts.calls import local_failure
        local_failure(exc, f"{jitted.fn.__name__}(...)", jitted.timeout)     # raises


def default_chips() -> int:
    """One chip per CPU this process may run on (its affinity mask, as `taskset` sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _setting(name: str, value: Any, low: int) -> int:
    """An integer setting of `l3c.jit` (bool is not one), at least `low`; else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        file, line = user_location()
        raise ConfigError(f"{file}:{line}: l3c.jit({name}={value!r}): {name} must be an integer "
                          f">= {low}")
    return int(value)


def _timeout(value: Any) -> float | None:
    """`timeout=`: None or infinity (no deadline), or a number of seconds > 0; else ConfigError
    (0 or less would time every run out and kill healthy workers)."""
    if value is None or value == float("inf"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value > 0:
        file, line = user_location()
        raise ConfigError(f"{file}:{line}: l3c.jit(timeout={value!r}): timeout must be None or a "
                          "number of seconds > 0")
    return float(value)


class Jitted:
    """A jitted orchestration function: `f(*args)` runs, `.lower(*args)` compiles, `.eager(*args)`
    runs the same calls through the dynamic runtime."""

    def __init__(self, fn: Callable, *, chips: int | None = None, sub_workers: int = 0,
                 hosts: int = 1, static_argnames: Iterable[str] = (), fuse_groups: bool = True,
                 timeout: float | None = None, max_inflight: int = 4,
                 cache_size: int = DEFAULT_CACHE_SIZE, costs: Any = None) -> None:
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        self.fn = fn
        self.chips = _setting("chips", chips, 1) if chips is not None else default_chips()
        self.sub_workers = _setting("sub_workers", sub_workers, 0)
        self.hosts = _setting("hosts", hosts, 1)
        self.static_argnames = tuple(static_argnames)
        self.fuse_groups = bool(fuse_groups)
        self.timeout = _timeout(timeout)
        self.max_inflight = _setting("max_inflight", max_inflight, 1)
        self.limiter = Limiter(self.max_inflight)   # runs in flight of every signature together
        self.cache_size = _setting("cache_size", cache_size, 1)
        self.costs = costs              # kernel costs for placement: see `use_costs`
        self.config = Config(chips=self.chips, sub_workers=self.sub_workers, hosts=self.hosts,
                             fuse_groups=self.fuse_groups)
        self.traces = 0                 # how many times the function was traced (tests, logs)
        self._cache: OrderedDict[CacheKey, _Entry] = OrderedDict()   # least recently used first
        self._last_key: CacheKey | None = None
        # Calls all positional, of plain arrays and plain scalars: (shapes, dtypes, statics, how the
        # arrays alias) -> its CacheKey, so such a call binds nothing (see `_fast_key`).
        self._fast: dict[tuple, CacheKey] = {}
        # (fast key, Compiled) of the call before when it had a fast key: a call with the same one
        # needs no lookup at all. Cleared by every other call and by evictions.
        self._hot: tuple[tuple, Compiled] | None = None
        self._defaults: dict[str, Any] | None = None
        self._lock = threading.RLock()
        wrap_like(self, fn)         # keeps the call path's attribute reads fast

    # ---- keys and tracing -----------------------------------------------------------------------
    def _bind(self, args: tuple, kwargs: dict) -> list[BoundArg]:
        return bind_arguments(self.fn, args, kwargs, self.static_argnames)

    def _key(self, bound: list[BoundArg]) -> CacheKey:
        entries = tuple(b.key() for b in bound)
        descriptions = tuple(b.describe() for b in bound)
        aliases = bound_aliases(bound, user_location())
        if any(a not in (-1, i) for i, a in enumerate(aliases)):   # the same array passed twice
            entries += (("aliases", "", aliases),)
            descriptions += (", ".join(f"{bound[i].name} is {bound[a].name}"
                                       for i, a in enumerate(aliases) if a not in (-1, i)),)
        return CacheKey(self.fn.__name__, entries, descriptions)

    def cache_key(self, *args: Any, **kwargs: Any) -> CacheKey:
        """The key a call with these arguments is cached under (printable)."""
        return self._key(self._bind(args, kwargs))

    def _retrace_reason(self, key: CacheKey) -> str:
        if self._last_key is None:
            return "first call"
        old = dict(zip((e[1] for e in self._last_key.entries), self._last_key.descriptions))
        changes = [f"{old.get(e[1], '?')} -> {d}" for e, d in zip(key.entries, key.descriptions)
                   if old.get(e[1]) != d or e not in self._last_key.entries]
        return "retrace: " + ("; ".join(changes) if changes else "new signature")

    def _entry(self, args: tuple, kwargs: dict) -> tuple[_Entry, list[BoundArg]]:
        bound = self._bind(args, kwargs)
        key = self._key(bound)
        evicted: list[_Entry] = []
        try:
            return self._lookup(key, bound, evicted), bound
        finally:
            # outside the cache lock: forgetting a plan waits for the pool, which may be running
            for old in evicted:
                if old.compiled is not None:
                    from .execute import release
                    release(old.compiled)

    def _lookup(self, key: CacheKey, bound: list[BoundArg], evicted: list[_Entry]) -> _Entry:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                reason = self._retrace_reason(key)
                if self._cache and _env_flag("L3C_STRICT_RETRACE"):
                    raise trace_error(f"{self.fn.__qualname__} would be traced again ({reason}) "
                                      "and L3C_STRICT_RETRACE=1 forbids retracing",
                                      "call it with the same shapes, dtypes and static values, or "
                                      "unset L3C_STRICT_RETRACE", user_location())
                if _env_flag("L3C_LOG_COMPILES"):
                    print(f"l3c: tracing {key} ({reason})", file=sys.stderr, flush=True)
                program = trace(self.fn, config=self.config, bound=bound)
                check_groups(program)        # before `.eager` too, which runs no pass
                self.traces += 1
                entry = self._cache[key] = _Entry(program)
                while len(self._cache) > self.cache_size:
                    evicted.append(self._cache.popitem(last=False)[1])
                    self._hot = None
            else:
                self._cache.move_to_end(key)
            self._last_key = key
            return entry

    def use_costs(self, costs: Any) -> None:
        """Place with these kernel costs from now on (a costs file from `l3c profile
        --save-costs`, or a dict kernel -> cost; None: the kernels' `cost=` hints only); the
        signatures compiled with other costs are evicted."""
        from .costs import resolve
        resolve(costs)                  # a bad file or dict fails here, not at the next call
        self.costs = costs
        self.cache_clear()

    def pass_options(self) -> Any:
        """The `PassOptions` this function's programs are compiled with."""
        from .passes import PassOptions
        if self.costs is None:
            return PassOptions(fuse_groups=self.fuse_groups)
        from .costs import resolve
        return PassOptions(fuse_groups=self.fuse_groups, **resolve(self.costs))

    def cache_clear(self) -> None:
        """Evict every compiled signature (their native code is freed once nothing holds them)."""
        with self._lock:
            evicted = list(self._cache.values())
            self._cache.clear()
            self._hot = None
        from .execute import release
        for old in evicted:
            if old.compiled is not None:
                release(old.compiled)

    def trace(self, *args: Any, **kwargs: Any) -> Program:
        """The traced program (before any pass) for these arguments; cached."""
        try:
            return self._entry(args, kwargs)[0].program
        except TraceError as exc:
            raise exc.with_traceback(user_traceback(exc.__traceback__)) from None

    def lower(self, *args: Any, **kwargs: Any) -> Compiled:
        """Trace (if needed) and run the passes; nothing is executed."""
        return self._lower_bound(args, kwargs)[0]

    def _lower_bound(self, args: tuple, kwargs: dict) -> tuple[Compiled, list[Any]]:
        """`lower`, and the call's arguments bound in parameter order (one bind per call)."""
        fast = self._fast_key(args, kwargs)
        hot = self._hot
        if fast is not None and hot is not None and hot[0] == fast:
            return hot[1], args                 # the same signature as the call before
        self._hot = None
        if fast is not None:
            key = self._fast.get(fast)
            if key is not None:
                with self._lock:        # an evicted signature misses here and is traced again
                    entry = self._cache.get(key)
                    if entry is not None and entry.compiled is not None:
                        self._cache.move_to_end(key)
                        self._last_key = key
                        self._hot = (fast, entry.compiled)
                        return entry.compiled, args
        try:
            entry, bound = self._entry(args, kwargs)
        except TraceError as exc:
            raise exc.with_traceback(user_traceback(exc.__traceback__)) from None
        with self._lock:
            if entry.compiled is None:
                if self._defaults is None:
                    self._defaults = {p.name: p.default
                                      for p in inspect.signature(self.fn).parameters.values()
                                      if p.default is not inspect.Parameter.empty}
                entry.compiled = Compiled(self._run_passes(entry.program), timeout=self.timeout,
                                          defaults=self._defaults, max_inflight=self.max_inflight)
            if fast is not None and len(bound) == len(args):
                if len(self._fast) >= 4 * self.cache_size:     # keys of evicted signatures
                    self._fast.clear()
                self._fast[fast] = self._last_key
            return entry.compiled, [b.value for b in bound]

    def _fast_key(self, args: tuple, kwargs: dict) -> tuple | None:
        """A cheap stand-in for the cache key when every argument is given by position and is a
        plain numpy array of a numeric dtype or a plain Python scalar and no static is named; None
        otherwise (the call then binds fully). Two calls with the same fast key have the same
        `CacheKey`: shapes, dtypes, static types and values, and array aliasing are all in it."""
        if kwargs or self.static_argnames or self.hosts > 1:
            return None
        parts: list[Any] = []
        arrays = 0
        for a in args:
            t = type(a)
            if t is np.ndarray:
                parts.append((a.shape, a.dtype.str))
                arrays += 1
            elif t in (int, float, bool, complex, str) and a == a:     # NaN != NaN: not cached
                parts.append((t, a))
            else:
                return None
        if arrays > 1:
            aliases, overlap = input_aliases(args)
            if overlap is not None:
                return None
            parts.append(aliases)
        return tuple(parts)

    def _run_passes(self, traced: Program, until: str | None = None) -> Program:
        from .passes import copy_program, run_passes
        # the traced program stays pristine for eager/dumps; static values are shared, not copied
        # (a copied `self` of a jitted method would no longer equal the caller's)
        program = copy_program(traced)
        if until == "trace":
            return program
        return run_passes(program, until=until, options=self.pass_options())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.hosts == 1:
            compiled, values = self._lower_bound(args, kwargs)
        else:
            with _on_every_host(self):
                compiled, values = self._lower_bound(args, kwargs)
        if inflight.busy():             # queue behind the runs in flight: see their effects
            return inflight.call_queued(compiled, values, self.limiter)
        return compiled._run_now(values)

    def submit(self, *args: Any, **kwargs: Any) -> inflight.Run:
        """Start a run and return its `l3c.Run` at once; `step(*args)` is
        `step.submit(*args).result()`. Tracing errors are raised by the run's `result()`."""
        try:
            with _on_every_host(self):
                compiled, values = self._lower_bound(args, kwargs)
        except Exception as exc:        # noqa: BLE001 - raised by the run's result()
            return inflight.failed(exc, self.fn.__name__)
        return inflight.submit(compiled, values, self.limiter)

    def eager(self, *args: Any, **kwargs: Any) -> Any:
        """Run the traced calls one by one through the dynamic runtime (the reference semantics).

        For `hosts=H > 1` (under the MPI launcher, every rank calling it) this is the single-host
        reference: every rank runs all the calls on its own pool of H*C chips and H*S sub workers,
        so global chip pins and groups across hosts are valid as they are, with rank 0's arguments
        (broadcast); every rank returns the same results and written inputs get the same values."""
        with _on_every_host(self):
            entry, bound = self._entry(args, kwargs)
        from .execute.eager import run_eager
        return run_eager(entry.program, [b.value for b in bound], timeout=self.timeout)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """`@l3c.jit` on a method: `obj.step(x)` passes `obj` as `self`, a static argument (part of
        the cache key by its hash and equality, so each instance hashing apart traces apart)."""
        if instance is None:
            return self
        first = next(iter(inspect.signature(self.fn).parameters), None)
        if first is not None and first not in self.static_argnames:
            self.static_argnames += (first,)
        return BoundJitted(self, instance)

    def __repr__(self) -> str:
        return (f"<l3c.jit {self.fn.__module__}:{self.fn.__qualname__} chips={self.chips} "
                f"sub_workers={self.sub_workers} hosts={self.hosts}>")


class BoundJitted:
    """A jitted method bound to an instance: every entry point of `Jitted`, with `self` first."""

    def __init__(self, jitted: Jitted, instance: Any) -> None:
        self.jitted = jitted
        self.instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.jitted(self.instance, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> inflight.Run:
        return self.jitted.submit(self.instance, *args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Compiled:
        return self.jitted.lower(self.instance, *args, **kwargs)

    def eager(self, *args: Any, **kwargs: Any) -> Any:
        return self.jitted.eager(self.instance, *args, **kwargs)

    def trace(self, *args: Any, **kwargs: Any) -> Program:
        return self.jitted.trace(self.instance, *args, **kwargs)

    def cache_key(self, *args: Any, **kwargs: Any) -> CacheKey:
        return self.jitted.cache_key(self.instance, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<bound {self.jitted!r} of {type(self.instance).__name__}>"


def jit(fn: Callable | None = None, *, chips: int | None = None, sub_workers: int = 0,
        hosts: int = 1, static_argnames: Iterable[str] = (), fuse_groups: bool = True,
        timeout: float | None = None, max_inflight: int = 4,
        cache_size: int = DEFAULT_CACHE_SIZE,
        costs: Any = None) -> Jitted | Callable[[Callable], Jitted]:
    """`@l3c.jit` or `@l3c.jit(chips=..., ...)`: make a `Jitted` orchestration function."""
    options = dict(chips=chips, sub_workers=sub_workers, hosts=hosts,
                   static_argnames=static_argnames, fuse_groups=fuse_groups, timeout=timeout,
                   max_inflight=max_inflight, cache_size=cache_size, costs=costs)
    if fn is None:
        return lambda f: Jitted(f, **options)
    return Jitted(fn, **options)
