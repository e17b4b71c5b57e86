"""Proxy tensors: what an orchestration function holds while it is traced.

A `Tensor` proxy is a view of one base tensor (an input or an intermediate). It knows its shape and
dtype and the `Region` of the base it names, but no values: reading values raises `TraceError` at the
user's line. Basic slicing (ints, slices with negative indices and steps, `...`, `None`), `.T`,
`.transpose` and `.reshape` (where numpy's reshape is a view) make new views.

How the region is kept: `offset/shape/strides` (elements of the C-contiguous base) map view indices to
base elements, exactly as numpy's view does. Alongside, while every view axis still corresponds to one
base axis (slicing and transposing keep that), `_axes` records which base axis each view axis walks and
`_lines` holds one directed progression `(start, count, step)` per base axis (step may be negative);
its normalised form is the region's `box`. After a reshape the axes no longer line up with base axes;
the box is then recovered from the element set itself when that is small enough (else None).
Slice bounds outside the axis are clipped, as numpy does (a last tile `x[i:i + tile]` may overrun);
an integer index outside the axis raises, as numpy's IndexError does.
"""
from __future__ import annotations

import numbers
from typing import Any, TYPE_CHECKING

import numpy as np

from ..ir import Region, Shift
from .arrayspec import ArrayFacts
from .context import _local
from .records import make_region
from .strides import c_strides, reshape_strides, whole_geometry  # noqa: F401
from .boxes import BOX_ENUMERATION_LIMIT, Line, box_from_elements, normalise_box  # noqa: F401
from .loops import LoopIndex
from .shifted import affine_index, has_loop_index
from .source import trace_error
from .valueless import Valueless

if TYPE_CHECKING:
    from .tracer import Tracer


_new = object.__new__

# Views of one geometry (offset, shape, strides, axes, lines and box; not moving with a loop) share
# a dict of the views `x[i]` / `x[a:b:c]` made of them: key (i, or (a, b, c)) -> the first such
# view. The same slicing of another tensor of the same shape (`h[0::2]` of every block's `h`)
# then computes nothing and shares that view's region record (and its own dict of children).
# Each dict holds at most this many (cleared when full). A view whose first axis is longer than
# SLICE_CACHE_AXIS keeps none: its indices (`acc[b]` per block b) seldom repeat.
SLICE_CACHE_LIMIT = 1024
SLICE_CACHE_AXIS = 256


def new_whole(tracer: "Tracer", tensor: int, shape: tuple[int, ...], dtype: np.dtype,
              geometry: tuple) -> "Tensor":
    """`Tensor(tracer, tensor, shape, dtype)` for a shape of ints > 0 and a numpy dtype, given
    `tracer.whole_geometry(shape)` (what a new tensor's proxy is made of)."""
    view = _new(Tensor)
    view._tracer = tracer
    view._tensor = tensor
    view._base_shape = view.shape = shape
    view.dtype = dtype
    view._offset = 0
    view._strides, view._axes, view._lines, view._region, view._children = geometry
    view._box = view._lines
    view._shifts = ()
    view._access = view._access_for = None
    return view


class Tensor(ArrayFacts, Valueless):
    """A traced tensor view. Shape/dtype/slicing work; values do not exist at trace time."""

    __slots__ = ("_tracer", "_tensor", "_base_shape", "_offset", "shape", "_strides", "dtype",
                 "_axes", "_lines", "_box", "_region", "_shifts", "_access", "_access_for", "_children")

    def __init__(self, tracer: "Tracer", tensor: int, base_shape: tuple[int, ...], dtype: np.dtype,
                 offset: int = 0, shape: tuple[int, ...] | None = None,
                 strides: tuple[int, ...] | None = None, axes: tuple[int | None, ...] | None = None,
                 lines: tuple[Line, ...] | None = None,
                 box: tuple[Line, ...] | None = None, shifts: tuple[Shift, ...] = ()) -> None:
        self._tracer = tracer
        self._tensor = tensor
        self._base_shape = tuple(base_shape)
        self.dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        if shape is None:               # the whole base tensor
            shape = self._base_shape
            if 0 not in shape and not offset and not shifts:
                self.shape = shape
                self._offset, self._shifts, self._access, self._access_for = 0, (), None, None
                (self._strides, self._axes, self._lines, self._region,
                 self._children) = tracer.whole_geometry(shape)
                self._box = self._lines         # (whole: lines = box)
                return
            strides, axes, lines, _ = whole_geometry(shape)
        self._offset = offset
        self.shape = tuple(shape)
        self._strides = tuple(strides)
        self._axes = axes               # per view axis: base axis, -1 (new axis), or None (unknown)
        self._lines = lines             # per base axis directed progression, or None (unknown)
        self._shifts = shifts           # how the view moves with loop variables (`shifted.py`)
        if lines is not None:
            box = normalise_box(lines)
        elif box is None and not shifts:    # (a moving view's elements at 0 may lie outside)
            box = box_from_elements(offset, self.shape, self._strides, self._base_shape)
        if 0 in self.shape:             # e.g. a new axis sliced empty: no base axis says so
            box = tuple((0, 0, 1) for _ in self._base_shape)
        self._box = box
        self._region: Region | None = None
        # the last `Access` a call made of this view, and the kernel's (parameter, mode) pair it
        # was made for (`Tracer.record_call` reuses it)
        self._access: Any = None
        self._access_for: Any = None
        self._children: dict | None = None      # shared views made of this geometry (above)

    # ---- static facts (ndim, size, itemsize, nbytes: ArrayFacts) --------------------------------
    @property
    def strides(self) -> tuple[int, ...]:
        """Bytes to step along each axis, as numpy's view of the C-contiguous base would have."""
        return tuple(s * self.dtype.itemsize for s in self._strides)

    @property
    def region(self) -> Region:
        """The elements of the base tensor this view names (see `l3c.ir.Region`); made once per
        view (a view passed to many calls shares one record)."""
        region = self._region
        if region is None:
            region = self._region = make_region(self._offset, self.shape, self._strides, self._box,
                                                self._shifts)
        return region

    @property
    def tensor_id(self) -> int:
        return self._tensor

    def __len__(self) -> int:
        if not self.shape:
            raise trace_error("len() of a 0-d tensor", "use .shape or .size")
        return self.shape[0]

    def __repr__(self) -> str:
        dims = ",".join(map(str, self.shape))
        return f"<l3c.Tensor {self.dtype.name}[{dims}] view of tensor {self._tensor} {self.region}>"

    __hash__ = object.__hash__

    # ---- views ---------------------------------------------------------------------------------
    def _view(self, offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
              axes: tuple[int | None, ...] | None, lines: tuple[Line, ...] | None,
              box: tuple[Line, ...] | None = None,
              shifts: tuple[Shift, ...] | None = None) -> "Tensor":
        shifts = self._shifts if shifts is None else shifts
        if lines is None or 0 in shape:
            return Tensor(self._tracer, self._tensor, self._base_shape, self.dtype, offset, shape,
                          strides, axes, lines, box, shifts)
        return self._kept_axes(offset, shape, strides, axes, lines, normalise_box(lines), shifts)

    def _kept_axes(self, offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
                   axes: tuple[int, ...], lines: tuple[Line, ...], box: tuple[Line, ...],
                   shifts: tuple[Shift, ...]) -> "Tensor":
        """What __init__ makes of a non-empty view that keeps its axes (`box` is
        `normalise_box(lines)`), without re-checking what this view's own construction
        established (slicing is the tracer's most frequent call)."""
        view = _new(Tensor)
        view._tracer = self._tracer
        view._tensor = self._tensor
        view._base_shape = self._base_shape
        view.dtype = self.dtype
        view._offset = offset
        view.shape = shape
        view._strides = strides
        view._axes = axes
        view._lines = lines
        view._box = box
        view._region = view._access = view._access_for = view._children = None
        view._shifts = shifts
        return view

    def _check_alive(self) -> None:
        self._tracer.check_usable(self)

    def __getitem__(self, key: Any) -> "Tensor":
        tracer = self._tracer
        if (self._shifts or not tracer.active or self._tensor in tracer.dead
                or getattr(_local, "tracer", None) is not tracer):
            self._check_alive()           # raises, or checks a moving view's loop variables
        kind = type(key)
        if (kind is int or kind is slice) and self._lines is not None and self.shape:
            view = self._first_axis(key, kind is int)
            if view is not None:
                return view
        key = key if kind is tuple else (key,)
        if len(key) <= len(self.shape):
            for k in key:
                if type(k) is not int and type(k) is not slice:
                    break
            else:
                # the common case (ints and slices only) needs none of the checks below
                return self._index(key + (slice(None),) * (len(self.shape) - len(key)))
        for k in key:
            if type(k) is int or type(k) is slice:
                continue
            if not (k is None or k is Ellipsis or isinstance(k, slice) or type(k) is LoopIndex
                    or (isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_)))):
                raise trace_error(
                    f"index {k!r} ({type(k).__name__}) into a {self._desc()} is not basic slicing",
                    "l3c views support ints, start:stop:step slices, ... and None; gather/scatter "
                    "inside a kernel instead")
        if sum(k is Ellipsis for k in key) > 1:
            raise trace_error(f"more than one '...' in an index into a {self._desc()}",
                              "use a single Ellipsis")
        consuming = sum(k is not None and k is not Ellipsis for k in key)
        if consuming > self.ndim:
            raise trace_error(f"too many indices ({consuming}) for a {self._desc()}",
                              f"index at most {self.ndim} axes")
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - consuming) + key[at + 1:]
        else:
            key = key + (slice(None),) * (self.ndim - consuming)
        return self._index(key)

    def _first_axis(self, key: Any, is_int: bool) -> "Tensor | None":
        """`x[i]` or `x[a:b:c]` (one int or slice, on the first axis) of a non-empty view that
        keeps its axes; None where `_index` must decide (an empty result, an index out of
        bounds, a bound that is not an int), which then raises the right error. Looked up in, or
        added to, the children of this view's geometry when it has such a dict."""
        children = self._children
        if children is None or self.shape[0] > SLICE_CACHE_AXIS:
            return self._first_axis_view(key, is_int)
        if is_int:
            spelled: Any = key
        else:
            start, stop, step = spelled = (key.start, key.stop, key.step)
            if not ((start is None or type(start) is int) and (stop is None or type(stop) is int)
                    and (step is None or type(step) is int)):
                return self._first_axis_view(key, is_int)
        known = children.get(spelled)
        if known is not None:
            # a view of this tensor with the geometry of `known` (of a tensor of the same shape),
            # sharing its region record and its dict of children: most slicing in a long trace
            # repeats a view made before
            view = _new(Tensor)
            view._tracer = self._tracer
            view._tensor = self._tensor
            view._base_shape = self._base_shape
            view.dtype = self.dtype
            view._offset = known._offset
            view.shape = known.shape
            view._strides = known._strides
            view._axes = known._axes
            view._lines = known._lines
            view._box = known._box
            region = known._region
            view._region = region if region is not None else known.region
            children = known._children
            if children is None:
                children = known._children = {}
            view._children = children
            view._access = view._access_for = None
            view._shifts = ()
            return view
        view = self._first_axis_view(key, is_int)
        if view is not None:
            if len(children) >= SLICE_CACHE_LIMIT:
                children.clear()
            children[spelled] = view
        return view

    def _first_axis_view(self, key: Any, is_int: bool) -> "Tensor | None":
        """`_first_axis` computed."""
        shape = self.shape
        if 0 in shape:
            return None
        n = shape[0]
        axes, lines = self._axes, self._lines
        base_axis = axes[0]
        if is_int:
            if not -n <= key < n:
                return None
            start = key + n if key < 0 else key
            count, step = 1, 1
            shape, strides, axes = shape[1:], self._strides[1:], axes[1:]
        else:
            try:
                start, stop, step = key.indices(n)
            except Exception:          # noqa: BLE001 - a loop variable or a bad bound: _index
                return None
            count = len(range(start, stop, step))
            if not count:
                return None
            strides = self._strides
            shape = (count,) + shape[1:]
            strides = (strides[0] * step,) + strides[1:]
        offset = self._offset + start * self._strides[0]
        if base_axis < 0:               # an axis of length 1 that `None` added
            return self._kept_axes(offset, shape, strides, axes, lines, self._box, self._shifts)
        first, _, base_step = lines[base_axis]
        first += start * base_step
        base_step *= step
        new_lines = list(lines)
        new_lines[base_axis] = (first, count, base_step)
        box = list(self._box)
        if count == 1:
            box[base_axis] = (first, 1, 1)
        elif base_step < 0:
            box[base_axis] = (first + (count - 1) * base_step, count, -base_step)
        else:
            box[base_axis] = (first, count, base_step)
        return self._kept_axes(offset, shape, strides, axes, tuple(new_lines), tuple(box),
                               self._shifts)

    def _index(self, key: tuple) -> "Tensor":
        """The view for a normalised key: one int, slice or None per axis (None adds one); a key
        with loop variables (`x[i]`, `x[4 * i : 4 * i + 4]`) is `shifted.affine_index`'s (found
        where an int or slice bound fails, so plain keys pay nothing for it)."""
        offset, shape, strides, axes = self._offset, [], [], []
        lines = list(self._lines) if self._lines is not None else None
        my_shape, my_strides, my_axes = self.shape, self._strides, self._axes
        axis = 0                        # the view axis the next consuming entry applies to
        for k in key:
            if k is None:
                shape.append(1)
                strides.append(0)
                axes.append(-1)
                continue
            n, stride = my_shape[axis], my_strides[axis]
            base_axis = my_axes[axis] if my_axes is not None else None
            if type(k) is slice or isinstance(k, slice):
                try:
                    start, stop, step = k.indices(n)
                except Exception:
                    if has_loop_index(key):
                        return affine_index(self, key)
                    self._check_slice(k, n, axis)       # says which bound is wrong
                    raise
                count = len(range(start, stop, step))
                if count:
                    offset += start * stride
                shape.append(count)
                strides.append(stride * step)
                axes.append(base_axis)
                if lines is not None and base_axis is not None and base_axis >= 0:
                    s0, _, st0 = lines[base_axis]
                    lines[base_axis] = (s0 + start * st0, count, st0 * step)
            else:
                if type(k) is LoopIndex:
                    return affine_index(self, key)
                i = int(k)
                if not -n <= i < n:
                    raise trace_error(
                        f"index {i} is out of bounds for axis {axis} of size {n} of a {self._desc()}",
                        f"use an index in [{-n}, {n})")
                i %= n
                offset += i * stride
                if lines is not None and base_axis is not None and base_axis >= 0:
                    s0, _, st0 = lines[base_axis]
                    lines[base_axis] = (s0 + i * st0, 1, st0)
            axis += 1
        known = lines is not None and None not in axes
        return self._view(offset, tuple(shape), tuple(strides), tuple(axes) if known else None,
                          tuple(lines) if known else None)

    def _axes_at(self, axis: int) -> int | None:
        return self._axes[axis] if self._axes is not None else None

    def _check_slice(self, k: slice, n: int, axis: int) -> None:
        for bound in (k.start, k.stop, k.step):
            if bound is not None and type(bound) is not int and not isinstance(bound, numbers.Integral):
                raise trace_error(f"slice {k} has a non-integer bound {bound!r} ({type(bound).__name__})",
                                  "slice with Python ints (shapes and static arguments are ints)")
        if k.step == 0:
            raise trace_error(f"slice with step 0 into axis {axis} of a {self._desc()}",
                              "use a non-zero step")

    @property
    def T(self) -> "Tensor":  # noqa: N802 - numpy's name
        return self.transpose()

    def transpose(self, *axes: int) -> "Tensor":
        """A view with permuted axes (reversed when none are given), like numpy."""
        self._check_alive()
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        perm = tuple(range(self.ndim))[::-1] if not axes else tuple(int(a) % max(self.ndim, 1)
                                                                       for a in axes)
        if sorted(perm) != list(range(self.ndim)):
            raise trace_error(f"transpose axes {axes} do not permute the {self.ndim} axes of a "
                              f"{self._desc()}", f"pass a permutation of range({self.ndim})")
        return self._view(self._offset, tuple(self.shape[p] for p in perm),
                          tuple(self._strides[p] for p in perm),
                          tuple(self._axes[p] for p in perm) if self._axes is not None else None,
                          self._lines, self._box)

    def is_contiguous(self) -> bool:
        """Whether the view covers one C-ordered run of base elements (size-1 axes ignored)."""
        expected = 1
        for n, s in zip(reversed(self.shape), reversed(self._strides)):
            if n == 1:
                continue
            if s != expected:
                return False
            expected *= n
        return True

    def reshape(self, *shape: Any) -> "Tensor":
        """A view with a new shape, exactly when numpy's reshape of this view is a view (its
        elements unchanged); a TraceError when numpy would have to copy."""
        self._check_alive()
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        try:
            shape = tuple(int(d) for d in shape)
        except TypeError:
            raise trace_error(f"reshape({shape!r}) of a {self._desc()} needs int dimensions",
                              "pass ints (one may be -1)") from None
        if shape.count(-1) > 1 or any(d < -1 for d in shape):
            raise trace_error(f"reshape{shape} of a {self._desc()} is invalid",
                              "give non-negative dimensions and at most one -1")
        known = 1
        for d in shape:
            if d != -1:
                known *= d
        if -1 in shape:
            if known == 0 or self.size % known:
                raise trace_error(f"cannot reshape a {self._desc()} into {shape}",
                                  f"the new shape must hold {self.size} elements")
            shape = tuple(self.size // known if d == -1 else d for d in shape)
        elif known != self.size:
            raise trace_error(f"cannot reshape a {self._desc()} ({self.size} elements) into {shape}",
                              f"the new shape must hold {self.size} elements")
        if shape == self.shape:
            return self
        strides = c_strides(shape) if self.size == 0 else reshape_strides(self.shape,
                                                                             self._strides, shape)
        if strides is None:
            raise trace_error(f"reshape of a {self._desc()} with strides {list(self.strides)} bytes "
                              f"into {shape} is not a view (numpy would copy it)",
                              "reshape the contiguous tensor before slicing it, or copy the view "
                              "into an l3c.empty tensor with a kernel first")
        return self._view(self._offset, shape, strides, None, None, self._box)

    # ---- description and iteration (what needs values raises: `valueless.py`) ------------------
    def _desc(self) -> str:
        dims = ",".join(map(str, self.shape))
        return f"{self.dtype.name}[{dims}] tensor"

    def __iter__(self) -> Any:
        if not self.shape:
            raise trace_error("iteration over a 0-d tensor", "index it with [...] instead")
        return (self[i] for i in range(self.shape[0]))
