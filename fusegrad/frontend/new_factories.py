"""Tensor.new_* factories (new_zeros, new_ones, new_full, new_empty, new_tensor): the module-level factories of
`creation.py` with this tensor's dtype and device as defaults, like torch."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..dtype import DType

if TYPE_CHECKING:
    from .tensor import Tensor


class NewFactoriesMixin:
    """`new_*` methods for Tensor: new tensors that default to self's dtype and device (never to its values)."""

    __slots__ = ()

    def new_full(self: Tensor, size: Sequence[int], fill_value: bool | int | float, *,
                 dtype: DType | str | None = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
        """A tensor of `size` filled with `fill_value`, with self's dtype and device unless given."""
        from .creation import full
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_zeros(self: Tensor, *size: Any, dtype: DType | str | None = None, device: str | None = None,
                  requires_grad: bool = False) -> Tensor:
        """Zeros of `size` (`new_zeros(2, 3)` or `new_zeros((2, 3))`), with self's dtype and device unless given."""
        from .creation import zeros
        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_ones(self: Tensor, *size: Any, dtype: DType | str | None = None, device: str | None = None,
                 requires_grad: bool = False) -> Tensor:
        """Ones of `size`, with self's dtype and device unless given."""
        from .creation import ones
        return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_empty(self: Tensor, *size: Any, dtype: DType | str | None = None, device: str | None = None,
                  requires_grad: bool = False) -> Tensor:
        """An 'uninitialized' tensor of `size` (zeros, as fg.empty), with self's dtype and device unless given."""
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_tensor(self: Tensor, data: Any, dtype: DType | str | None = None, device: str | None = None,
                   requires_grad: bool = False) -> Tensor:
        """A copy of `data` (lists, scalars, arrays or a Tensor, detached) as self's dtype and device unless given."""
        from .creation import tensor
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)
