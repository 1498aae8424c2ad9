"""sort, argsort, topk and msort with PyTorch's semantics, composed from primitives (there is no sort primitive).

`sort` ranks by counting: element i goes to position #{j sorting before i}, ties broken by index (so it is always
stable, which `stable=False` allows too). That costs n^2 comparisons per sorted row, fused into one reduction, so it
suits rows up to a few thousand. `topk` of a few largest elements instead takes k maxima one after another (k * n
work): the k most likely tokens of a large vocabulary. NaN sorts as the largest value, as in torch. Values are
gathered at the indices, so their gradient flows back to the elements they came from.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import dtype as dt
from .movement import cat
from .reduce import ValuesIndices

if TYPE_CHECKING:
    from .tensor import Tensor

TOPK_BY_MAXIMA = 16  # topk of the k largest, k at most this (and below n), takes k maxima instead of sorting the row
LOWEST = {dt.uint8: 0, dt.int32: -2**31, dt.int64: -2**63}  # the least value of each integer dtype


class SortMixin:
    """Sorting for Tensor."""

    def sort(self: Tensor, dim: int = -1, descending: bool = False, *, stable: bool = False) -> ValuesIndices:
        """(values, indices) along dim, ascending unless `descending`; equal elements keep their order."""
        if self.ndim == 0:
            self._dim(dim)
            return ValuesIndices(self.clone(), self._positions(1).reshape(()))
        d = self._dim(dim)
        indices = self.detach().movedim(d, -1)._sorted_positions(descending).movedim(-1, d)
        return ValuesIndices(self.gather(d, indices), indices)

    def argsort(self: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        """The indices that sort the tensor along dim (`sort(...).indices`)."""
        return self.sort(dim, descending, stable=stable).indices

    def msort(self: Tensor) -> Tensor:
        """Sorted along the first dim (`sort(0).values`)."""
        return self.sort(0).values

    def topk(self: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:  # noqa: A002
        """The k largest (or, with largest=False, smallest) elements along dim, in order, and their indices."""
        d = self._dim(dim)
        n = self.shape[d] if self.ndim else 1
        if not 0 <= k <= n:
            raise RuntimeError(f"topk: k ({k}) must be in [0, {n}] for dim {dim} of size {n} (shape {self.shape})")
        if self.ndim == 0:  # the element itself, for k = 0 too (as torch does)
            return ValuesIndices(self.clone(), self._positions(1).reshape(()))
        if largest and 0 < k <= TOPK_BY_MAXIMA and k < n:
            indices = self.detach().movedim(d, -1)._leading_positions(k).movedim(-1, d)
        else:
            indices = self.sort(d, descending=largest).indices.narrow(d, 0, k)
        return ValuesIndices(self.gather(d, indices), indices)

    # ---- helpers over the last dim of a detached tensor ----

    def _positions(self: Tensor, n: int) -> Tensor:
        """0..n-1 as int64 on this tensor's device."""
        return self._wrap(self._arange_node(n, dt.int64))

    def _sorted_positions(self: Tensor, descending: bool) -> Tensor:
        """For each row (last dim), the index of the element at each sorted position."""
        n = self.shape[-1]
        x_i, x_j = self.unsqueeze(-1), self.unsqueeze(-2)  # comparing element i (rows) with element j (columns)
        j_first = x_j > x_i if descending else x_j < x_i
        same = x_j == x_i
        if self.dtype.is_floating_point:  # NaN is the largest value and equals itself here
            nan_i, nan_j = x_i.isnan(), x_j.isnan()
            j_first = j_first.logical_or(nan_j.logical_and(nan_i.logical_not()) if descending
                                         else nan_i.logical_and(nan_j.logical_not()))
            same = same.logical_or(nan_i.logical_and(nan_j))
        pos = self._positions(n)
        earlier = pos.unsqueeze(0) < pos.unsqueeze(1)  # [i, j]: j < i
        rank = j_first.logical_or(same.logical_and(earlier)).long().sum(-1)  # where element i goes
        lands = rank.unsqueeze(-1) == pos  # [i, k]: element i goes to position k
        return lands._select(pos.unsqueeze(-1), 0).sum(-2)

    def _leading_positions(self: Tensor, k: int) -> Tensor:
        """For each row (last dim), the indices of its k largest elements in order, the first index first among
        equals: k maxima, each over the elements earlier ones left (a taken one reads as the lowest value)."""
        n = self.shape[-1]
        lowest = False if self.dtype == dt.bool_ else LOWEST.get(self.dtype, float("-inf"))
        pos = self._positions(n)
        taken = self._const(False, dtype=dt.bool_)
        picked = []
        for _ in range(k):
            best = taken._select(self._const(lowest, ()), self).amax(-1, keepdim=True)
            hit = self == best
            if self.dtype.is_floating_point:
                hit = hit.logical_or(self.isnan().logical_and(best.isnan()))
            first = hit.logical_and(taken.logical_not())._select(pos, n).amin(-1, keepdim=True)
            picked.append(first)
            taken = taken.logical_or(pos == first)
        return cat(picked, -1)
