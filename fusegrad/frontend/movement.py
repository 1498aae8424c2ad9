"""Movement Tensor methods: reshapes, permutations, broadcasting, concatenation, splitting, padding and windows.

All of them lower to the movement primitives (RESHAPE PERMUTE EXPAND PAD SHRINK FLIP STRIDE), which compute
nothing: a compiled device folds them into index arithmetic.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..dtype import bool_, int64
from ..graph import Op, shape_error
from .elementwise import broadcast_shape, promote

if TYPE_CHECKING:
    from .tensor import Tensor


def _sizes(args: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept both f(2, 3) and f((2, 3)), like PyTorch."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(int(a) for a in args)


def _int_list(value: Any, op: str, name: str) -> list[int]:
    """An int or a sequence of ints as a list (roll's shifts and dims), or a TypeError naming the argument."""
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise TypeError(f"{op}: {name} must be an int or a sequence of ints, got {value!r}")
    return [int(v) for v in items]


class MovementMixin:
    """Shape-changing methods for Tensor."""

    __slots__ = ()

    # ---- primitive wrappers ----

    def _broadcast_to(self: Tensor, shape: tuple[int, ...]) -> Tensor:
        if shape == self.shape:
            return self
        if len(shape) < self.ndim:
            raise shape_error(f"expand: cannot broadcast shape {self.shape} to fewer dims {shape}")
        x = self.reshape((1,) * (len(shape) - self.ndim) + self.shape)
        if any(a != b and a != 1 for a, b in zip(x.shape, shape)):
            raise shape_error(f"expand: shape {self.shape} cannot be broadcast to {shape} (only size-1 dims can grow)")
        return x._apply(Op.EXPAND, x, arg=tuple(shape))

    def _shrink(self: Tensor, bounds: Sequence[tuple[int, int]]) -> Tensor:
        bounds = tuple(bounds)
        if bounds == tuple((0, s) for s in self.shape):
            return self
        return self._apply(Op.SHRINK, self, arg=bounds)

    def _pad(self: Tensor, pads: Sequence[tuple[int, int]]) -> Tensor:
        pads = tuple(pads)
        if all(p == (0, 0) for p in pads):
            return self
        return self._apply(Op.PAD, self, arg=pads)

    def _stride(self: Tensor, steps: Sequence[int]) -> Tensor:
        steps = tuple(steps)
        return self if all(s == 1 for s in steps) else self._apply(Op.STRIDE, self, arg=steps)

    def _narrow_dim(self: Tensor, dim: int, start: int, end: int) -> Tensor:
        return self._shrink([(start, end) if d == dim else (0, s) for d, s in enumerate(self.shape)])

    # ---- reshaping ----

    def reshape(self: Tensor, *shape: Any) -> Tensor:
        """Same elements in a new shape; one dim may be -1 (inferred)."""
        shape = _sizes(shape)
        if shape.count(-1) > 1 or any(s < -1 for s in shape):
            raise shape_error(f"reshape: invalid target shape {shape} for {self.shape} (at most one -1, no other "
                              "negative sizes)")
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            if known == 0 or self.numel() % known:
                raise shape_error(f"reshape: cannot infer -1 in {shape} for shape {self.shape} ({self.numel()} "
                                  "elements)")
            shape = tuple(self.numel() // known if s == -1 else s for s in shape)
        if shape == self.shape:
            return self
        if math.prod(shape) != self.numel():
            raise shape_error(f"reshape: cannot reshape {self.shape} ({self.numel()} elements) to {shape} "
                              f"({math.prod(shape)} elements)")
        return self._apply(Op.RESHAPE, self, arg=shape)

    def view(self: Tensor, *shape: Any) -> Tensor:
        """Alias of reshape (fusegrad never needs a contiguous copy for it)."""
        return self.reshape(*shape)

    def view_as(self: Tensor, other: Tensor) -> Tensor:
        """Reshape to other's shape."""
        return self.reshape(other.shape)

    def reshape_as(self: Tensor, other: Tensor) -> Tensor:
        """Reshape to other's shape."""
        return self.reshape(other.shape)

    def flatten(self: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dims start_dim..end_dim into one."""
        if self.ndim == 0:
            return self.reshape(1)
        s, e = self._dim(start_dim), self._dim(end_dim)
        if s > e:
            raise shape_error(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
        return self.reshape(self.shape[:s] + (math.prod(self.shape[s:e + 1]),) + self.shape[e + 1:])

    def unflatten(self: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
        """Split one dim into several (one of sizes may be -1)."""
        d = self._dim(dim)
        sizes = tuple(sizes)
        if -1 in sizes:
            known = math.prod(s for s in sizes if s != -1)
            sizes = tuple(self.shape[d] // max(known, 1) if s == -1 else s for s in sizes)
        if math.prod(sizes) != self.shape[d]:
            raise shape_error(f"unflatten: sizes {sizes} do not multiply to dim {dim} of shape {self.shape}")
        return self.reshape(self.shape[:d] + sizes + self.shape[d + 1:])

    def squeeze(self: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
        """Drop size-1 dims (all, or those named that have size 1)."""
        if dim is None:
            dims = {i for i, s in enumerate(self.shape) if s == 1}
        else:
            dims = {self._dim(d) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
            dims = {d for d in dims if self.ndim and self.shape[d] == 1}
        return self.reshape(tuple(s for i, s in enumerate(self.shape) if i not in dims))

    def unsqueeze(self: Tensor, dim: int) -> Tensor:
        """Insert a size-1 dim at `dim`."""
        d = self._dim(dim, extra=1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def contiguous(self: Tensor) -> Tensor:
        """Returns self: fusegrad tensors have no memory layout a user can see."""
        return self

    def clone(self: Tensor) -> Tensor:
        """A new tensor with the same values whose gradient flows back to self."""
        return self._apply(Op.RESHAPE, self, arg=self.shape)

    # ---- permuting ----

    def permute(self: Tensor, *dims: Any) -> Tensor:
        """Reorder dims."""
        dims = _sizes(dims)
        if len(dims) != self.ndim:
            raise shape_error(f"permute: {len(dims)} dims {dims} given for a tensor of shape {self.shape}")
        order = tuple(self._dim(d) for d in dims)
        return self if order == tuple(range(self.ndim)) else self._apply(Op.PERMUTE, self, arg=order)

    def transpose(self: Tensor, dim0: int, dim1: int) -> Tensor:
        """Swap two dims."""
        order = list(range(self.ndim))
        a, b = self._dim(dim0), self._dim(dim1)
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    swapaxes = transpose

    @property
    def T(self: Tensor) -> Tensor:  # noqa: N802 - PyTorch's name
        """All dims reversed (for a matrix: its transpose)."""
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self: Tensor) -> Tensor:  # noqa: N802 - PyTorch's name
        """The last two dims swapped (batched matrix transpose)."""
        if self.ndim < 2:
            raise shape_error(f"mT needs at least 2 dims, got shape {self.shape}")
        return self.transpose(-2, -1)

    def movedim(self: Tensor, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:
        """Move dims (one, or several given as tuples) to new positions; the others keep their order."""
        src = [self._dim(d) for d in (source if isinstance(source, (tuple, list)) else (source,))]
        dst = [self._dim(d) for d in (destination if isinstance(destination, (tuple, list)) else (destination,))]
        if len(src) != len(dst) or len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise shape_error(f"movedim: source {source} and destination {destination} must be equally many distinct "
                              f"dims of shape {self.shape}")
        rest = iter(d for d in range(self.ndim) if d not in src)
        placed = dict(zip(dst, src))
        return self.permute([placed[i] if i in placed else next(rest) for i in range(self.ndim)])

    # ---- broadcasting ----

    def expand(self: Tensor, *sizes: Any) -> Tensor:
        """Broadcast size-1 dims to larger sizes without copying; -1 keeps a size."""
        sizes = _sizes(sizes)
        if len(sizes) < self.ndim:
            raise shape_error(f"expand: the target {sizes} has fewer dims than the shape {self.shape}")
        lead = len(sizes) - self.ndim
        target = tuple(self.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
        if any(s < 0 for s in target):
            raise shape_error(f"expand: cannot expand shape {self.shape} to {sizes}: -1 is not allowed for a new "
                              "leading dim")
        return self._broadcast_to(target)

    def expand_as(self: Tensor, other: Tensor) -> Tensor:
        """Broadcast to other's shape."""
        return self.expand(other.shape)

    def broadcast_to(self: Tensor, *shape: Any) -> Tensor:
        """Broadcast to `shape` with NumPy's rules."""
        shape = _sizes(shape)
        if broadcast_shape("broadcast_to", self.shape, shape) != shape:
            raise shape_error(f"broadcast_to: shape {self.shape} cannot be broadcast to {shape}")
        return self._broadcast_to(shape)

    def repeat(self: Tensor, *sizes: Any) -> Tensor:
        """Tile the tensor `sizes[i]` times along dim i (leading new dims allowed)."""
        sizes = _sizes(sizes)
        if len(sizes) < self.ndim:
            raise shape_error(f"repeat: {len(sizes)} repeat counts {sizes} for a tensor of shape {self.shape}")
        base = (1,) * (len(sizes) - self.ndim) + self.shape
        x = self.reshape(tuple(v for s in base for v in (1, s)))
        x = x.expand(tuple(v for r, s in zip(sizes, base) for v in (r, s)))
        return x.reshape(tuple(r * s for r, s in zip(sizes, base)))

    def repeat_interleave(self: Tensor, repeats: int, dim: int | None = None, *,
                          output_size: int | None = None) -> Tensor:
        """Repeat each element `repeats` times along dim (dim=None: of the flattened tensor), like torch."""
        if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool):
            raise TypeError(f"repeat_interleave: repeats must be a Python int (the same count for every element), got "
                            f"{type(repeats).__name__}; a tensor of per-element repeats is not supported")
        repeats = int(repeats)
        if repeats < 0:
            raise ValueError(f"repeat_interleave: repeats must be non-negative, got {repeats}")
        if dim is not None and self.ndim == 0:
            raise IndexError(f"repeat_interleave: a 0-d tensor takes dim=None only (got dim={dim}), as in torch")
        x, d = (self.flatten(), 0) if dim is None else (self, self._dim(dim))
        n = x.shape[d] * repeats
        if output_size is not None and output_size != n:
            raise shape_error(f"repeat_interleave: output_size {output_size} does not match the {n} elements that "
                              f"{repeats} repeats of dim {d} of shape {x.shape} make")
        y = x.unsqueeze(d + 1).expand(x.shape[:d + 1] + (repeats,) + x.shape[d + 1:])
        return y.reshape(x.shape[:d] + (n,) + x.shape[d + 1:])

    # ---- joining and splitting ----

    def cat(self: Tensor, *others: Tensor, dim: int = 0) -> Tensor:
        """Concatenate self and others along `dim` (see the module-level `cat`)."""
        return cat([self, *others], dim)

    def split(self: Tensor, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces of `split_size` along dim (the last may be shorter), or of the listed sizes."""
        d = self._dim(dim)
        n = self.shape[d]
        if isinstance(split_size_or_sections, int):
            step = split_size_or_sections
            if step <= 0 and n:
                raise ValueError(f"split: split_size must be positive, got {step}")
            sizes = [min(step, n - i) for i in range(0, n, step)] if n else [0]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != n:
                raise shape_error(f"split: sections {sizes} do not add up to dim {dim} of shape {self.shape}")
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return tuple(self._narrow_dim(d, s, s + k) for s, k in zip(starts, sizes))

    def chunk(self: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """Split into `chunks` pieces of equal size (the last may be smaller, and there may be fewer)."""
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.shape[self._dim(dim)]
        if n == 0:  # torch gives `chunks` empty pieces here
            return tuple(self for _ in range(chunks))
        return self.split(math.ceil(n / chunks), dim)

    def unbind(self: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
        """The slices along `dim`, with that dim removed."""
        return tuple(t.squeeze(dim) for t in self.split(1, dim))

    def narrow(self: Tensor, dim: int, start: int, length: int) -> Tensor:
        """`length` elements of dim starting at `start`."""
        d = self._dim(dim)
        start = start + self.shape[d] if start < 0 else start
        if not (0 <= start and length >= 0 and start + length <= self.shape[d]):
            raise shape_error(f"narrow: start {start} and length {length} do not fit dim {dim} of shape {self.shape}")
        return self._narrow_dim(d, start, start + length)

    # ---- rolling, differences, diagonals ----

    def roll(self: Tensor, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None) -> Tensor:
        """Shift elements along dims, wrapping around the end; dims=None rolls the flattened tensor."""
        shift_list = _int_list(shifts, "roll", "shifts")
        if dims is None:
            if len(shift_list) != 1:
                raise shape_error(f"roll: shifts {shifts} needs as many dims, got dims=None (one shift only)")
            return self.flatten().roll(shift_list, 0).reshape(self.shape)
        dim_list = _int_list(dims, "roll", "dims")
        if not shift_list or len(shift_list) != len(dim_list):
            raise shape_error(f"roll: shifts {shifts} and dims {dims} must be equally many (and at least one)")
        if self.ndim == 0:
            raise IndexError(f"roll: dims {dims} given for a 0-d tensor (dims=None rolls it)")
        out = self
        for shift, dim in zip(shift_list, dim_list):
            d = self._dim(dim)
            n = self.shape[d]
            k = shift % n if n else 0
            if k:  # the last k elements move to the front
                out = cat([out._narrow_dim(d, n - k, n), out._narrow_dim(d, 0, n - k)], d)
        return out

    def diff(self: Tensor, n: int = 1, dim: int = -1, prepend: Tensor | None = None,
             append: Tensor | None = None) -> Tensor:
        """The n-th forward difference along dim, after joining prepend and append on; bool tensors xor."""
        from .tensor import Tensor
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"diff: n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"diff: the order n must be non-negative, got {n}")
        if self.ndim == 0:
            raise shape_error("diff: expects a tensor with at least one dim, got a 0-d tensor")
        d = self._dim(dim)
        pieces = [self]
        for name, extra in (("prepend", prepend), ("append", append)):
            if extra is None:
                continue
            if not isinstance(extra, Tensor):
                raise TypeError(f"diff: {name} must be a Tensor, got {type(extra).__name__}")
            if extra.ndim != self.ndim or any(a != b for i, (a, b) in enumerate(zip(extra.shape, self.shape))
                                              if i != d):
                raise shape_error(f"diff: {name} shape {extra.shape} must match the input's {self.shape} except "
                                  f"along dim {dim}")
            pieces.insert(0 if name == "prepend" else len(pieces), extra)
        if n == 0:
            return self
        x = cat(pieces, d) if len(pieces) > 1 else self
        for _ in range(n):
            m = x.shape[d]
            later, earlier = x._narrow_dim(d, min(1, m), m), x._narrow_dim(d, 0, max(m - 1, 0))
            x = later.logical_xor(earlier) if x.dtype == bool_ else later - earlier
        return x

    def diag(self: Tensor, diagonal: int = 0) -> Tensor:
        """A 1-D tensor as a matrix with it on the `diagonal`-th diagonal, or a matrix's diagonal as 1-D."""
        if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
            raise TypeError(f"diag: diagonal must be an int, got {type(diagonal).__name__}")
        k = int(diagonal)
        if self.ndim == 1:
            m = self.shape[0] + abs(k)
            pos = self._wrap(self._arange_node(m, int64))
            on = (pos.reshape(1, m) - pos.reshape(m, 1)) == k  # col - row
            # the element of row i (k >= 0) or of column i (k < 0) is v[i]; padding makes it length m
            v = self._pad([(0, abs(k))])
            return on._select(v.reshape(m, 1) if k >= 0 else v.reshape(1, m), self._const(0, ()))
        if self.ndim != 2:
            raise shape_error(f"diag: supports 1-D and 2-D tensors, got shape {self.shape}")
        rows, cols = self.shape
        x = self._shrink([(0, rows), (min(k, cols), cols)] if k >= 0 else [(min(-k, rows), rows), (0, cols)])
        size = min(x.shape)
        x = x._shrink([(0, size), (0, size)]).reshape(size * size)
        return x._stride([size + 1]) if size > 1 else x  # element i * (size + 1) of the flattened square is (i, i)

    # ---- flipping, padding, windows ----

    def flip(self: Tensor, *dims: Any) -> Tensor:
        """Reverse the order of elements along dims."""
        axes = tuple(sorted({self._dim(d) for d in _sizes(dims)}))
        return self._apply(Op.FLIP, self, arg=axes) if axes else self

    def pad(self: Tensor, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Tensor:
        """torch.nn.functional.pad: (left, right) of the last dim first; negative amounts crop."""
        if mode != "constant":
            raise NotImplementedError(f"pad: mode {mode!r} is not supported yet (only 'constant')")
        if len(pad) % 2 or len(pad) // 2 > self.ndim:
            raise shape_error(f"pad: padding {tuple(pad)} must have an even length of at most 2 * ndim for shape "
                              f"{self.shape}")
        pairs = [(0, 0)] * (self.ndim - len(pad) // 2) + [(pad[i], pad[i + 1]) for i in range(len(pad) - 2, -1, -2)]
        for (b, a), s in zip(pairs, self.shape):
            if s + b + a < 0 or -b > s or -a > s:
                raise shape_error(f"pad: padding {tuple(pad)} crops more than shape {self.shape} holds")
        x = self._shrink([(max(0, -b), s - max(0, -a)) for (b, a), s in zip(pairs, self.shape)])
        grow = [(max(0, b), max(0, a)) for b, a in pairs]
        out = x._pad(grow)
        if value != 0 and any(b or a for b, a in grow):
            mask = x._const(True, dtype=bool_)._pad(grow)
            out = mask._select(out, value)
        return out

    def unfold(self: Tensor, dimension: int, size: int, step: int) -> Tensor:
        """Sliding windows of `size` every `step` along a dim, as a new last dim (the view conv and pooling use)."""
        d = self._dim(dimension)
        n = self.shape[d] if self.ndim else 1
        if size < 1 or step < 1 or size > n:
            raise shape_error(f"unfold: windows of size {size} and step {step} do not fit dim {dimension} of shape "
                              f"{self.shape}")
        count = (n - size) // step + 1
        if self.ndim and step == size:  # windows side by side: a reshape, whose gradient is a reshape too
            x = self._narrow_dim(d, 0, count * size)
            return x.reshape(x.shape[:d] + (count, size) + x.shape[d + 1:]).movedim(d + 1, -1)
        if not self.ndim:
            return self.reshape(1)
        return self._apply(Op.UNFOLD, self, arg=(d, size, step))  # overlapping windows: index arithmetic only


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate tensors (promoted to one dtype) along an existing dim.

    Each piece is padded with zeros to the full length and the pieces are added: no copy kernel is needed.
    """
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    if any(t.ndim > 1 for t in tensors):  # torch (legacy) skips 1-D empty pieces when joining higher-rank ones
        tensors = [t for t in tensors if t.shape != (0,)]
    first = tensors[0]
    if first.ndim == 0:
        raise shape_error("cat: zero-dimensional tensors cannot be concatenated")
    d = first._dim(dim)
    if all(t.dtype == first.dtype for t in tensors):
        dtype = first.dtype
    else:
        dtype = promote([t._const(0, ()) if t.ndim else t for t in tensors], "cat", first)[0].dtype
    for t in tensors:
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != d):
            raise shape_error(f"cat: shapes {[x.shape for x in tensors]} differ outside dim {dim}")
    total = sum(t.shape[d] for t in tensors)
    out, start = None, 0
    for t in tensors:
        piece = t.cast(dtype)._pad([(start, total - start - t.shape[d]) if i == d else (0, 0)
                                    for i in range(t.ndim)])
        out = piece if out is None else out._apply(Op.ADD, out, piece)  # same shape and dtype: the primitive
        start += t.shape[d]
    return out


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for t in tensors:
        if t.shape != tensors[0].shape:
            raise shape_error(f"stack: all tensors need the same shape, got {[x.shape for x in tensors]}")
    d = tensors[0]._dim(dim, extra=1)
    return cat([t.unsqueeze(d) for t in tensors], d)
