"""In-place Tensor methods. Tensors are values: an in-place op rebinds the tensor to its new value, so tensors
read before keep the values they read, and the tape keeps the old value as a shadow (no cycle)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..graph import shape_error
from . import grad_mode

if TYPE_CHECKING:
    from .tensor import Scalar, Tensor


class InplaceMixin:
    """assign, +=, add_, zero_, fill_, copy_, clamp_ and friends."""

    def assign(self, value: Tensor | Scalar) -> Tensor:
        """Replace this tensor's values (same shape and dtype), keeping its identity; returns self."""
        from .tensor import Tensor
        value = value if isinstance(value, Tensor) else self._const(value)
        if value.shape != self.shape:
            value = value.expand(self.shape)
        self._set_node(value.cast(self.dtype)._node)
        return self

    def _check_inplace(self) -> None:
        if grad_mode.enabled() and self.requires_grad and self.is_leaf:
            raise RuntimeError("a leaf tensor that requires grad is used in an in-place operation; wrap it in "
                               "fg.no_grad() or use .data")

    def _inplace(self, update: Any) -> Tensor:
        """Rebind self to `update(old self)`; the old value lives on in a shadow so the tape has no cycle."""
        self._check_inplace()
        old = self._wrap(self._node)
        old.requires_grad, old._ctx = self.requires_grad, self._ctx
        result = update(old)
        if result.shape != self.shape:
            raise shape_error(f"in-place op: result shape {result.shape} cannot be written into shape {self.shape}")
        return self._become(result)

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace(lambda old: old + other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace(lambda old: old - other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace(lambda old: old * other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace(lambda old: old / other)

    def add_(self, other: Any, alpha: Scalar = 1) -> Tensor:
        """In-place `self += alpha * other`."""
        return self._inplace(lambda old: old.add(other, alpha=alpha))

    def sub_(self, other: Any, alpha: Scalar = 1) -> Tensor:
        """In-place `self -= alpha * other`."""
        return self._inplace(lambda old: old.sub(other, alpha=alpha))

    def mul_(self, other: Any) -> Tensor:
        """In-place multiply."""
        return self._inplace(lambda old: old * other)

    def div_(self, other: Any) -> Tensor:
        """In-place divide."""
        return self._inplace(lambda old: old / other)

    def zero_(self) -> Tensor:
        """Fill with zeros in place."""
        return self._inplace(lambda old: old._const(0))

    def fill_(self, value: Scalar) -> Tensor:
        """Fill with `value` in place."""
        from .tensor import Tensor
        return self._inplace(lambda old: old._const(value) if not isinstance(value, Tensor)
                             else value.to(old.device).cast(old.dtype).expand(old.shape))

    def copy_(self, src: Tensor) -> Tensor:
        """Copy `src` (broadcast, cast, moved to this device) into this tensor in place."""
        return self._inplace(lambda old: src.to(self.device).cast(self.dtype).expand(self.shape))

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:
        """In-place clamp."""
        return self._inplace(lambda old: old.clamp(min, max))
