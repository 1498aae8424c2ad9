"""Indexing Tensor methods: `x[...]` reads and writes, gather, index_select, masked_fill, one_hot, nonzero.

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
    """A parsed index: per source dim (start, stop, step, is_int), new dims from None, and tensor indices."""

    def __init__(self, x: Tensor, index: Any):
        from .tensor import Tensor
        items = list(index) if isinstance(index, tuple) else [index]
        items = [Tensor(np.asarray(i)) if isinstance(i, (list, np.ndarray)) else i for i in items]
        expanded = []
        for i in items:  # a bool mask stands for one integer index per dim it covers
            if isinstance(i, Tensor) and i.dtype == dt.bool_:
                expanded.extend(_mask_to_indices(i))
            else:
                expanded.append(i)
        items = expanded
        if sum(i is Ellipsis for i in items) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        if used > x.ndim:
            raise IndexError(f"too many indices for a tensor of shape {x.shape}: {used} given")
        if any(i is Ellipsis for i in items):
            at = next(k for k, i in enumerate(items) if i is Ellipsis)
            items[at:at + 1] = [slice(None)] * (x.ndim - used)
        items += [slice(None)] * (x.ndim - used)
        self.advanced = any(isinstance(i, Tensor) for i in items)
        self.items = items
        self.bounds: list[tuple[int, int]] = []
        self.steps: list[int] = []
        self.out_shape: list[int] = []  # shape after views, None dims added, int dims dropped
        self.tensor_dims: list[int] = []  # positions in out_shape of the tensor-indexed dims
        self.tensors: list[Tensor] = []
        d = 0
        for i in items:
            if i is None:
                self.out_shape.append(1)
                continue
            n = x.shape[d]
            if isinstance(i, Tensor) or (self.advanced and isinstance(i, (int, np.integer))):
                t = i if isinstance(i, Tensor) else x._wrap(x._const(int(i), (), dt.int64)._node)
                if t.dtype.is_floating_point:
                    raise IndexError(f"tensors used as indices must be integer or bool, got {t.dtype.name}")
                self.tensor_dims.append(len(self.out_shape))
                self.tensors.append(_wrap_negative(t, n, d))
                self.bounds.append((0, n))
                self.steps.append(1)
                self.out_shape.append(n)
            elif isinstance(i, (int, np.integer)):
                k = int(i)
                if not -n <= k < n:
                    raise IndexError(f"index {k} is out of bounds for dim {d} with size {n} (shape {x.shape})")
                k %= n
                self.bounds.append((k, k + 1))
                self.steps.append(1)
            elif isinstance(i, slice):
                start, stop, step = i.indices(n)
                if step <= 0:
                    raise ValueError(f"slice step must be positive, got {i.step} (use .flip() to reverse)")
                stop = max(stop, start)
                self.bounds.append((start, stop))
                self.steps.append(step)
                self.out_shape.append(len(range(start, stop, step)))
            else:
                raise IndexError(f"unsupported index {i!r} of type {type(i).__name__}")
            d += 1

    def view(self, x: Tensor) -> Tensor:
        """The basic part of the index as views of x."""
        return x._shrink(self.bounds)._stride(self.steps).reshape(tuple(self.out_shape))


def _wrap_negative(t: Tensor, n: int, dim: int) -> Tensor:
    """Negative indices count from the end; out-of-range ones are caught here when the index is already known."""
    if t._node.realized:
        vals = t.numpy()
        if vals.size and (vals.min() < -n or vals.max() >= n):
            bad = vals[(vals < -n) | (vals >= n)].flat[0]
            raise IndexError(f"index {bad} is out of bounds for dim {dim} with size {n}")
    t = t.long()
    return (t < 0).where(t + n, t)


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
        rest = [d for d in range(x.ndim) if d not in dims]
        x = x.permute(dims + rest)
        sizes = [x.shape[k] for k in range(len(dims))]
        flat = None
        for k, t in enumerate(plan.tensors):
            term = t._broadcast_to(bshape) * math.prod(sizes[k + 1:])
            flat = term if flat is None else flat + term
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
        from .tensor import Tensor
        self._check_inplace()
        plan = _Plan(self, index)
        if plan.advanced:  # scatter on the host: rare, and the shape of the write depends on index values
            arr = self.numpy()
            host_index = tuple(i.numpy() if isinstance(i, Tensor) else i for i in
                               (index if isinstance(index, tuple) else (index,)))
            arr[host_index] = value.numpy() if isinstance(value, Tensor) else value
            self._set_node(Tensor(arr, dtype=self.dtype, device=self.device)._node)
            return
        target = plan.view(self)
        v = value if isinstance(value, Tensor) else self._const(value, ())
        v = v.to(self.device).cast(self.dtype)._broadcast_to(target.shape)
        view_shape = tuple(len(range(b, e, s)) for (b, e), s in zip(plan.bounds, plan.steps))
        placed = _place(v.reshape(view_shape), plan.bounds, plan.steps, self.shape)
        mask = _place(self._const(True, view_shape, dt.bool_), plan.bounds, plan.steps, self.shape)
        self._become(mask.where(placed, self))

    def gather(self: Tensor, dim: int, index: Tensor) -> Tensor:
        """out[i][j] = self[index[i][j]][j] for dim=0 (and likewise for other dims), like torch.gather."""
        if index.ndim != self.ndim:
            raise shape_error(f"gather: index shape {index.shape} must have as many dims as the source {self.shape}")
        if self.ndim == 0:
            return self._apply(Op.GATHER, self.reshape(1), index.reshape(1), arg=0).reshape(())
        return self._apply(Op.GATHER, self, index, arg=self._dim(dim))

    def index_select(self: Tensor, dim: int, index: Tensor) -> Tensor:
        """The entries of `index` (1-D) along dim."""
        d = self._dim(dim)
        if index.ndim > 1:
            raise shape_error(f"index_select: index must be 1-D, got shape {index.shape}")
        index = _wrap_negative(index.reshape(-1), self.shape[d], d)
        shape = tuple(index.shape[0] if i == d else s for i, s in enumerate(self.shape))
        return self.gather(d, index.reshape([-1 if i == d else 1 for i in range(self.ndim)]).expand(shape))

    def masked_fill(self: Tensor, mask: Tensor, value: Any) -> Tensor:
        """`value` where mask is True, else self."""
        if not mask.dtype == dt.bool_:
            raise TypeError(f"masked_fill: mask must be bool, got {mask.dtype.name}")
        if broadcast_shape("masked_fill", self.shape, mask.shape) != self.shape:
            raise shape_error(f"masked_fill: mask shape {mask.shape} must broadcast to the tensor's shape {self.shape}")
        return mask.where(self._const(value, (), self.dtype), self)

    def one_hot(self: Tensor, num_classes: int = -1) -> Tensor:
        """int64 one-hot rows of length num_classes (-1: max + 1) for an integer tensor."""
        if self.dtype.is_floating_point or self.dtype == dt.bool_:
            raise TypeError(f"one_hot: needs an integer tensor, got {self.dtype.name}")
        if num_classes < 0:
            num_classes = int(self.max().item()) + 1 if self.numel() else 0
        pos = self._wrap(self._arange_node(num_classes, self.dtype))
        return (self.unsqueeze(-1) == pos).long()

    def nonzero(self: Tensor, as_tuple: bool = False) -> Tensor | tuple[Tensor, ...]:
        """Indices of the nonzero elements (computed now: the shape depends on the values)."""
        from .tensor import Tensor
        idx = np.nonzero(self.numpy())
        if as_tuple:
            return tuple(Tensor(i.astype(np.int64), device=self.device) for i in idx)
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
