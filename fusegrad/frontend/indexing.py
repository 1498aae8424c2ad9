"""Indexing Tensor methods: `x[...]` reads and writes, gather, index_select, masked_fill, triu/tril, one_hot,
nonzero.

Basic indices (ints, slices, None, ...) are views: SHRINK, STRIDE and RESHAPE. Integer-tensor indices are a
GATHER over the indexed dims flattened into one. Bool masks have data-dependent shapes, so they are turned into
integer indices on the host first, as PyTorch does.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import dtype as dt
from ..graph import Op, shape_error
from . import grad_mode
from .elementwise import broadcast_shape

if TYPE_CHECKING:
    from .tensor import Tensor


class _Plan:
    """A parsed index, with PyTorch's rules: ints select (basic, even next to tensor indices), None and bools add
    a dim, slices view, integer tensors (and lists, and bool masks turned into integer tensors) are advanced.

    Per source dim it keeps (start, stop, step) for the view; `out_shape` is the shape after the basic part, and
    `tensor_dims` are the positions in it that the advanced `tensors` index.
    """

    def __init__(self, x: Tensor, index: Any):
        items = [_as_item(i, x.device) for i in (list(index) if isinstance(index, tuple) else [index])]
        if sum(i is Ellipsis for i in items) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        used = sum(_dims_consumed(i) for i in items)
        if used > x.ndim:
            raise IndexError(f"too many indices for a tensor of shape {x.shape}: {used} dims indexed")
        at = next((k for k, i in enumerate(items) if i is Ellipsis), len(items))
        items[at:at + 1] = [slice(None)] * (x.ndim - used)
        self.bounds: list[tuple[int, int]] = []
        self.steps: list[int] = []
        self.out_shape: list[int] = []
        self.empty_dims: list[int] = []  # dims added by a False index: size 1 in the view, then shrunk to 0
        self.tensor_dims: list[int] = []
        self.tensors: list[Tensor] = []
        self.valid: list[Tensor] = []  # for lazy index tensors: where they are in range (checked when computed)
        d = 0
        for i in items:
            if i is None or isinstance(i, bool):
                if i is False:
                    self.empty_dims.append(len(self.out_shape))
                self.out_shape.append(1)
                continue
            if _is_tensor(i) and i.dtype == dt.bool_:
                mask_dims = x.shape[d:d + i.ndim]
                if i.shape != mask_dims:
                    raise IndexError(f"the shape of the mask {i.shape} at index {d} does not match the shape "
                                     f"{mask_dims} of the indexed dims of the tensor {x.shape}")
                for t in _mask_to_indices(i):
                    self._add_tensor(x, t, d)
                    d += 1
                continue
            if _is_tensor(i):
                self._add_tensor(x, i, d)
            elif isinstance(i, (int, np.integer)):
                n, k = x.shape[d], int(i)
                if not -n <= k < n:
                    raise IndexError(f"index {k} is out of bounds for dim {d} with size {n} (shape {x.shape})")
                self.bounds.append((k % n, k % n + 1))
                self.steps.append(1)
            elif isinstance(i, slice):
                start, stop, step = i.indices(x.shape[d])
                if step <= 0:
                    raise ValueError(f"slice step must be positive, got {i.step} (use .flip() to reverse)")
                stop = max(stop, start)
                self.bounds.append((start, stop))
                self.steps.append(step)
                self.out_shape.append(len(range(start, stop, step)))
            else:
                raise IndexError(f"unsupported index {i!r} of type {type(i).__name__}: use ints, slices, None, ..., "
                                 "bools, or integer/bool tensors")
            d += 1

    @property
    def advanced(self) -> bool:
        """True when some dims are indexed by integer tensors."""
        return bool(self.tensors)

    def _add_tensor(self, x: Tensor, t: Tensor, d: int) -> None:
        if t.dtype.is_floating_point:
            raise IndexError(f"tensors used as indices must be integer or bool tensors, got {t.dtype.name}")
        n = x.shape[d]
        self.tensor_dims.append(len(self.out_shape))
        wrapped, valid = _wrap_negative(t, n, d)
        self.tensors.append(wrapped)
        if valid is not None:
            self.valid.append(valid)
        self.bounds.append((0, n))
        self.steps.append(1)
        self.out_shape.append(n)

    def view(self, x: Tensor) -> Tensor:
        """The basic part of the index as views of x."""
        out = x._shrink(self.bounds)._stride(self.steps).reshape(tuple(self.out_shape))
        if self.empty_dims:
            out = out._shrink([(0, 0) if k in self.empty_dims else (0, s) for k, s in enumerate(out.shape)])
        return out


def _is_tensor(x: Any) -> bool:
    from .tensor import Tensor
    return isinstance(x, Tensor)


def _as_item(i: Any, device: str) -> Any:
    """One index item in a normal form: lists and arrays become tensors, 0-d bool tensors Python bools."""
    from .tensor import Tensor
    if isinstance(i, np.bool_):
        return bool(i)
    if isinstance(i, (list, np.ndarray)):
        arr = np.asarray(i)
        if arr.size == 0 and arr.dtype.kind == "f":  # x[[]] selects nothing, like an empty int64 index
            arr = arr.astype(np.int64)
        return Tensor(arr, device=device)
    if isinstance(i, Tensor) and i.dtype == dt.bool_ and i.ndim == 0:
        if grad_mode.shape_only():
            raise shape_error("indexing with a 0-d bool tensor gives a data-dependent shape, which eval_shape "
                              "cannot know")
        return bool(i.item())
    if isinstance(i, Tensor) and i.device != device:  # like torch, index tensors may live on another device
        return i.to(device)
    return i


def _dims_consumed(i: Any) -> int:
    """How many source dims an index item uses up."""
    if i is None or i is Ellipsis or isinstance(i, bool):
        return 0
    if _is_tensor(i) and i.dtype == dt.bool_:
        return i.ndim
    return 1


def _wrap_negative(t: Tensor, n: int, dim: int) -> tuple[Tensor, Tensor | None]:
    """Negative indices count from the end. A known index is range-checked here; a lazy one comes back with a
    mask of where it is in range, so the gather can be pointed out of bounds (and raise) where it is not."""
    valid = None
    if t._node.realized:
        vals = t.numpy()
        if vals.size and (vals.min() < -n or vals.max() >= n):
            bad = vals[(vals < -n) | (vals >= n)].flat[0]
            raise IndexError(f"index {bad} is out of bounds for dim {dim} with size {n}")
    else:
        valid = (t >= -n) & (t < n)
    t = t.long()
    return (t < 0)._select(t + n, t), valid


def _mask_to_indices(mask: Tensor) -> list[Tensor]:
    """A bool mask as one int64 index tensor per dim (a host round trip, as in PyTorch)."""
    from .tensor import Tensor
    if grad_mode.shape_only():
        raise shape_error("indexing with a bool mask gives a data-dependent shape, which eval_shape cannot know")
    return [Tensor(i.astype(np.int64), device=mask.device) for i in np.nonzero(mask.numpy())]


class IndexingMixin:
    """Indexing for Tensor."""

    __slots__ = ()

    def __getitem__(self: Tensor, index: Any) -> Tensor:
        plan = _Plan(self, index)
        x = plan.view(self)
        if not plan.advanced:
            return x
        bshape = broadcast_shape("index", *[t.shape for t in plan.tensors])
        dims = plan.tensor_dims
        x = x.permute(dims + [d for d in range(x.ndim) if d not in dims])
        sizes = [x.shape[k] for k in range(len(dims))]
        flat = None
        for k, t in enumerate(plan.tensors):  # the indexed dims flattened into one, row-major
            term = t._broadcast_to(bshape) * math.prod(sizes[k + 1:])
            flat = term if flat is None else flat + term
        if plan.valid:  # a lazy index out of range points the gather at -1, so computing it raises IndexError
            ok = plan.valid[0]._broadcast_to(bshape)
            for v in plan.valid[1:]:
                ok = ok & v._broadcast_to(bshape)
            flat = ok._select(flat, -1)
        x = x.reshape((math.prod(sizes),) + x.shape[len(dims):])
        count = math.prod(bshape)
        idx = flat.reshape((count,) + (1,) * (x.ndim - 1)).expand((count,) + x.shape[1:])
        out = x.gather(0, idx).reshape(bshape + x.shape[1:])
        if dims == list(range(dims[0], dims[0] + len(dims))) and dims[0] > 0:  # adjacent: result dims stay in place
            nb = len(bshape)
            order = list(range(nb, nb + dims[0])) + list(range(nb)) + list(range(nb + dims[0], out.ndim))
            out = out.permute(order)
        return out

    def __setitem__(self: Tensor, index: Any, value: Any) -> None:
        """Write `value` (broadcast to the indexed shape, cast to this dtype) into the indexed places.

        Basic indices write through pads and a `where`, all lazy. Integer-tensor indices find the written places
        on the host (the index values decide them) and gather the value into place, so gradients reach `value`.
        """
        from .tensor import Tensor
        self._check_inplace()
        plan = _Plan(self, index)
        if isinstance(value, Tensor):
            v = value.to(self.device)
        elif isinstance(value, (bool, int, float, np.generic)):
            v = self._const(value.item() if isinstance(value, np.generic) else value, ())
        else:
            v = Tensor(np.asarray(value), device=self.device)
        v = v.cast(self.dtype)
        if plan.advanced:
            places = Tensor(np.arange(self.numel(), dtype=np.int64).reshape(self.shape), device=self.device)
            pos = places[index].numpy()
            v = v._broadcast_to(pos.shape)
            if pos.size == 0:
                return
            source = np.full(self.numel(), -1, np.int64)
            source[pos.reshape(-1)] = np.arange(pos.size)  # repeated places: the last write wins, as in torch
            mask = Tensor((source >= 0).reshape(self.shape), device=self.device)
            picks = Tensor(np.maximum(source, 0), device=self.device)
            placed = v.reshape(-1).gather(0, picks).reshape(self.shape)
        else:
            target = plan.view(self)
            v = v._broadcast_to(target.shape)
            if target.numel() == 0:
                return
            view_shape = tuple(len(range(b, e, s)) for (b, e), s in zip(plan.bounds, plan.steps))
            placed = _place(v.reshape(view_shape), plan.bounds, plan.steps, self.shape)
            mask = _place(self._const(True, view_shape, dt.bool_), plan.bounds, plan.steps, self.shape)
        self._inplace(lambda old: mask._select(placed, old))

    def gather(self: Tensor, dim: int, index: Tensor) -> Tensor:
        """out[i][j] = self[index[i][j]][j] for dim=0 (and likewise for other dims), like torch.gather."""
        if index.ndim != self.ndim:
            raise shape_error(f"gather: index shape {index.shape} must have as many dims as the source {self.shape}")
        if self.ndim == 0:
            return self._apply(Op.GATHER, self.reshape(1), index.reshape(1), arg=0).reshape(())
        return self._apply(Op.GATHER, self, index, arg=self._dim(dim))

    def take_along_dim(self: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:
        """Elements at `indices` along dim (other dims broadcast; dim=None: of the flattened tensor)."""
        from .tensor import Tensor
        if not isinstance(indices, Tensor):
            raise TypeError(f"take_along_dim: indices must be a Tensor, got {type(indices).__name__}")
        if indices.dtype != dt.int64:
            raise TypeError(f"take_along_dim: indices must be int64, got {indices.dtype.name} (as in torch)")
        if dim is None:
            return self.reshape(-1).take_along_dim(indices.reshape(-1), 0)
        if self.ndim == 0:
            raise IndexError(f"take_along_dim: dim {dim} given for a 0-d tensor (dim=None takes from it)")
        d = self._dim(dim)
        if indices.ndim != self.ndim:
            raise shape_error(f"take_along_dim: indices shape {indices.shape} must have as many dims as the input "
                              f"{self.shape}")
        rest = list(broadcast_shape("take_along_dim", self.shape[:d] + self.shape[d + 1:],
                                    indices.shape[:d] + indices.shape[d + 1:]))
        index, valid = _wrap_negative(indices, self.shape[d], d)
        if valid is not None:  # out of range: make the gather raise when it runs
            index = valid._select(index, -1)
        index = index._broadcast_to(tuple(rest[:d] + [indices.shape[d]] + rest[d:]))
        return self._broadcast_to(tuple(rest[:d] + [self.shape[d]] + rest[d:])).gather(d, index)

    def index_select(self: Tensor, dim: int, index: Tensor) -> Tensor:
        """The entries of `index` (1-D) along dim."""
        d = self._dim(dim)
        if index.ndim > 1:
            raise shape_error(f"index_select: index must be 1-D, got shape {index.shape}")
        if index.dtype not in (dt.int32, dt.int64):  # a float index would silently truncate
            raise shape_error(f"index_select: index must be int32/int64, got {index.dtype.name}")
        index, valid = _wrap_negative(index.reshape(-1), self.shape[d], d)
        if valid is not None:  # out of range: make the gather raise when it runs
            index = valid._select(index, -1)
        shape = tuple(index.shape[0] if i == d else s for i, s in enumerate(self.shape))
        return self.gather(d, index.reshape([-1 if i == d else 1 for i in range(self.ndim)]).expand(shape))

    def masked_fill(self: Tensor, mask: Tensor, value: Any) -> Tensor:
        """`value` where mask is True, else self."""
        if not mask.dtype == dt.bool_:
            raise TypeError(f"masked_fill: mask must be bool, got {mask.dtype.name}")
        if broadcast_shape("masked_fill", self.shape, mask.shape) != self.shape:
            raise shape_error(f"masked_fill: mask shape {mask.shape} must broadcast to the tensor's shape {self.shape}")
        return mask._select(self._const(value, (), self.dtype), self)

    def triu(self: Tensor, diagonal: int = 0) -> Tensor:
        """The upper triangle of the last two dims (col - row >= diagonal), zeros elsewhere, like torch.triu.

        `torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)` is the usual causal "do not attend" mask.
        """
        return self._triangle(diagonal, upper=True)

    def tril(self: Tensor, diagonal: int = 0) -> Tensor:
        """The lower triangle of the last two dims (col - row <= diagonal), zeros elsewhere, like torch.tril."""
        return self._triangle(diagonal, upper=False)

    def _triangle(self: Tensor, diagonal: int, upper: bool) -> Tensor:
        name = "triu" if upper else "tril"
        if self.ndim < 2:
            raise shape_error(f"{name}: needs a tensor with at least 2 dims, got shape {self.shape}")
        if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
            raise TypeError(f"{name}: diagonal must be an int, got {type(diagonal).__name__}")
        rows, cols = self.shape[-2:]
        offset = self._wrap(self._arange_node(cols, dt.int64)).reshape(1, cols) \
            - self._wrap(self._arange_node(rows, dt.int64)).reshape(rows, 1)  # col - row
        keep = offset >= int(diagonal) if upper else offset <= int(diagonal)
        return keep._select(self, self._const(0, (), self.dtype))

    def one_hot(self: Tensor, num_classes: int = -1) -> Tensor:
        """int64 one-hot rows of length num_classes (-1: max + 1) for an integer tensor."""
        if self.dtype.is_floating_point or self.dtype == dt.bool_:
            raise TypeError(f"one_hot: needs an integer tensor, got {self.dtype.name}")
        if num_classes < 0 or self._node.realized:  # known values are checked, as torch does; lazy ones are not
            vals = self.numpy()
            if num_classes < 0 and not vals.size:
                raise RuntimeError("one_hot: cannot infer the number of classes from an empty tensor")
            if vals.size and vals.min() < 0:
                raise RuntimeError(f"one_hot: class values must be non-negative, got {vals.min()}")
            if num_classes < 0:
                num_classes = int(vals.max()) + 1
            elif vals.size and vals.max() >= num_classes:
                raise RuntimeError(f"one_hot: class value {vals.max()} is not smaller than num_classes={num_classes}")
        pos = self._wrap(self._arange_node(num_classes, self.dtype))
        return (self.unsqueeze(-1) == pos).long()

    def nonzero(self: Tensor, as_tuple: bool = False) -> Tensor | tuple[Tensor, ...]:
        """Indices of the nonzero elements (computed now: the shape depends on the values)."""
        from .tensor import Tensor
        values = self.numpy()
        idx = np.nonzero(values.reshape(-1) if self.ndim == 0 else values)  # 0-d acts as 1-D in tuple form
        if as_tuple:
            return tuple(Tensor(i.astype(np.int64), device=self.device) for i in idx)
        if self.ndim == 0:
            return Tensor(np.zeros((len(idx[0]), 0), np.int64), device=self.device)
        return Tensor(np.stack(idx, axis=1).astype(np.int64).reshape(-1, self.ndim), device=self.device)


def _place(v: Tensor, bounds: list[tuple[int, int]], steps: list[int], full: tuple[int, ...]) -> Tensor:
    """The inverse of shrink-then-stride: v's elements at their places in a zero tensor of shape `full`."""
    for d, step in enumerate(steps):
        if step == 1:
            continue
        s = v.shape
        v = v.reshape(s[:d + 1] + (1,) + s[d + 1:])._pad([(0, step - 1) if i == d + 1 else (0, 0)
                                                          for i in range(len(s) + 1)])
        v = v.reshape(s[:d] + (s[d] * step,) + s[d + 1:])
        v = v._shrink([(0, bounds[d][1] - bounds[d][0]) if i == d else (0, n) for i, n in enumerate(v.shape)])
    return v._pad([(b, n - e) for (b, e), n in zip(bounds, full)])
