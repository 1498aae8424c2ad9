"""Joining helpers with torch's names: hstack, vstack (row_stack), dstack, column_stack, and meshgrid.

The stacks reshape each tensor to enough dims and concatenate (`cat`, so dtypes promote as in torch); meshgrid
is reshapes and broadcasts, so none of them computes anything but the concatenation's sum of padded pieces.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..graph import shape_error
from .movement import cat

if TYPE_CHECKING:
    from .tensor import Tensor


def _tensors(tensors: Any, name: str) -> list[Tensor]:
    """The sequence of tensors a stacking function takes, checked."""
    from .tensor import Tensor
    if not isinstance(tensors, (tuple, list)):
        raise TypeError(f"{name}: expected a sequence of Tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a sequence of Tensors, got an element of type {type(t).__name__}")
    return list(tensors)


def _at_least(t: Tensor, ndim: int) -> Tensor:
    """torch.atleast_{1,2,3}d: a 1-D tensor becomes a row (1, n), then (1, n, 1); a matrix (m, n, 1)."""
    if t.ndim >= ndim:
        return t
    if t.ndim == 0:
        return t.reshape((1,) * ndim)
    if t.ndim == 1:
        return t.reshape((1, t.shape[0]) if ndim == 2 else (1, t.shape[0], 1))
    return t.unsqueeze(-1)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along the columns: dim 0 for 1-D tensors, else dim 1 (0-d tensors count as 1-D)."""
    ts = [_at_least(t, 1) for t in _tensors(tensors, "hstack")]
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along the rows (dim 0), 1-D tensors taken as rows (1, n)."""
    return cat([_at_least(t, 2) for t in _tensors(tensors, "vstack")], 0)


row_stack = vstack


def dstack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along the depth (dim 2), after making every tensor at least 3-D like torch.atleast_3d."""
    return cat([_at_least(t, 3) for t in _tensors(tensors, "dstack")], 2)


def column_stack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along dim 1, 0-d and 1-D tensors taken as columns (n, 1)."""
    return cat([t.reshape(t.numel(), 1) if t.ndim < 2 else t for t in _tensors(tensors, "column_stack")], 1)


def meshgrid(*tensors: Any, indexing: str = "ij") -> tuple[Tensor, ...]:
    """Coordinate grids of 0-d or 1-D tensors: output i varies along dim i ('ij'; 'xy' swaps the first two)."""
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = tuple(tensors[0])
    ts = _tensors(list(tensors), "meshgrid")
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for t in ts:
        if t.ndim > 1:
            raise shape_error(f"meshgrid: expects 0-d or 1-D tensors, got shape {t.shape}")
        if t.dtype != ts[0].dtype:
            raise TypeError(f"meshgrid: expects tensors of one dtype, got {ts[0].dtype.name} and {t.dtype.name}")
        if t.device != ts[0].device:
            raise shape_error(f"meshgrid: expects tensors on one device, got {ts[0].device} and {t.device}")
    axes = list(range(len(ts)))
    if indexing == "xy" and len(ts) > 1:  # x (the first tensor) varies along columns, y along rows
        axes[0], axes[1] = 1, 0
    shape = [1] * len(ts)
    for t, a in zip(ts, axes):
        shape[a] = t.numel()
    return tuple(t.reshape([t.numel() if i == a else 1 for i in range(len(ts))])._broadcast_to(tuple(shape))
                 for t, a in zip(ts, axes))
