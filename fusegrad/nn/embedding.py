"""`Embedding` and `nn.functional.embedding`: rows of a weight table looked up by integer indices.

The lookup is `index_select`, a gather, so an index out of range is an `IndexError` as in torch. Its gradient is
autograd's rule for a row selection: one product, one_hot(indices)^T @ grad. (The general gather gradient compares
every index with every row at every feature: measured with 4096 rows and 64 features, 2-7x slower than the product
on the cpu device.)
"""
from __future__ import annotations

from typing import Any

import fusegrad as fg
from fusegrad import Tensor

from . import init
from .module import Module, Parameter

__all__ = ["Embedding", "embedding"]


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    """torch's rule: negative counts from the end; out of range is an AssertionError."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise AssertionError("Padding_idx must be within num_embeddings")
    return padding_idx % num_embeddings


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """weight[input]: shape input.shape + (embedding_dim,); the padding_idx row gets no gradient.

    max_norm and scale_grad_by_freq are not supported; sparse gradients are computed dense.
    """
    if max_norm is not None or scale_grad_by_freq:
        raise NotImplementedError("embedding: max_norm and scale_grad_by_freq are not supported")
    if weight.ndim != 2:
        raise fg.ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {weight.shape}")
    if input.dtype not in (fg.int32, fg.int64):
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {input.dtype.name} instead")
    num, dim = weight.shape
    pad = _padding_index(padding_idx, num)
    flat = input.reshape(-1)
    flat = flat.masked_fill(flat < 0, num)  # torch does not count negative indices from the end here: out of range
    out = weight.index_select(0, flat)  # a gather: an index out of range is an IndexError, eager and jitted
    if pad is not None and fg.is_grad_enabled() and weight.requires_grad:  # the padding row gets no gradient
        out = fg.where((flat == pad).unsqueeze(-1), weight[pad].detach(), out)
    return out.reshape(input.shape + (dim,))


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table initialised N(0, 1) (the padding_idx row zero), looked up by index."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Tensor | None = None, _freeze: bool = False,
                 device: str | None = None, dtype: Any = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = _padding_index(padding_idx, num_embeddings)
        self.max_norm, self.norm_type, self.scale_grad_by_freq = max_norm, norm_type, scale_grad_by_freq
        if _weight is None:
            self.weight = Parameter(fg.empty(num_embeddings, embedding_dim, device=device, dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise AssertionError("Shape of weight does not match num_embeddings and embedding_dim")
            self.weight = Parameter(_weight, requires_grad=not _freeze)
        self.sparse = sparse

    def reset_parameters(self) -> None:
        """N(0, 1), then the padding row zero."""
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            with fg.no_grad():
                self.weight.data[self.padding_idx] = 0.0
                self.weight.realize()

    def forward(self, input: Tensor) -> Tensor:
        return embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> Embedding:
        """An Embedding holding `embeddings` (2-D) as its weight, frozen unless freeze=False; the padding row is
        kept as given."""
        if embeddings.ndim != 2:
            raise AssertionError("Embeddings parameter is expected to be 2-dimensional")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight=embeddings,
                   _freeze=freeze)
