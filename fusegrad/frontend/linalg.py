"""Contractions: matmul with PyTorch's 1-D and batch-broadcasting rules, and einsum lowered to one batched MATMUL."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..graph import Op, ShapeError, shape_error
from .elementwise import broadcast_shape

if TYPE_CHECKING:
    from .tensor import Tensor


class LinalgMixin:
    """Matrix products for Tensor."""

    __slots__ = ()

    def matmul(self: Tensor, other: Tensor) -> Tensor:
        """Matrix product: 1-D operands are vectors, leading dims broadcast as batch dims (like torch.matmul)."""
        a, b = self, other
        if a.ndim == 0 or b.ndim == 0:
            raise shape_error(f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}")
        if a.dtype != b.dtype:
            raise shape_error(f"matmul: operand dtypes differ ({a.shape} {a.dtype.name} and {b.shape} {b.dtype.name}); "
                              "matmul does not promote, cast one first")
        a2 = a.unsqueeze(0) if a.ndim == 1 else a
        b2 = b.unsqueeze(-1) if b.ndim == 1 else b
        if a2.shape[-1] != b2.shape[-2]:
            raise shape_error(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({a2.shape[-1]} columns "
                              f"vs {b2.shape[-2]} rows)")
        if b2.ndim == 2 and a2.ndim > 2:  # one matrix for every batch (a Linear on (B, T, C)): one product, not B
            lead = a2.shape[:-1]
            out = a2.reshape(-1, a2.shape[-1]).matmul(b2).reshape(lead + b2.shape[-1:])
            return out.squeeze(-1) if b.ndim == 1 else out
        try:
            batch = broadcast_shape("matmul", a2.shape[:-2], b2.shape[:-2])
        except ShapeError:  # name the operands' full shapes, not only their batch dims
            raise shape_error(f"matmul: shapes {a.shape} and {b.shape} have batch dims {a2.shape[:-2]} and "
                              f"{b2.shape[:-2]} that cannot be broadcast (sizes must be equal or 1)") from None
        a2 = a2._broadcast_to(batch + a2.shape[-2:])
        b2 = b2._broadcast_to(batch + b2.shape[-2:])
        out = a2._apply(Op.MATMUL, a2, b2)
        if a.ndim == 1:
            out = out.squeeze(-2)
        if b.ndim == 1:
            out = out.squeeze(-1)
        return out

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matmul(other)

    def __rmatmul__(self: Tensor, other: Tensor) -> Tensor:
        return other.matmul(self)

    def mm(self: Tensor, other: Tensor) -> Tensor:
        """2-D matrix product."""
        if self.ndim != 2 or other.ndim != 2:
            raise shape_error(f"mm: needs two matrices, got shapes {self.shape} and {other.shape}")
        return self.matmul(other)

    def bmm(self: Tensor, other: Tensor) -> Tensor:
        """Batched product of (b, n, m) and (b, m, p) without broadcasting."""
        if self.ndim != 3 or other.ndim != 3 or self.shape[0] != other.shape[0]:
            raise shape_error(f"bmm: needs (b, n, m) and (b, m, p), got shapes {self.shape} and {other.shape}")
        return self.matmul(other)

    def dot(self: Tensor, other: Tensor) -> Tensor:
        """Inner product of two 1-D tensors."""
        if self.ndim != 1 or other.ndim != 1 or self.shape != other.shape:
            raise shape_error(f"dot: needs two 1-D tensors of equal length, got {self.shape} and {other.shape}")
        return self.matmul(other)


def _parse(equation: str, operands: tuple[Tensor, ...]) -> tuple[list[str], str]:
    """Operand subscripts (ellipses spelt out as capital letters) and the output subscript."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {equation!r} names {len(terms)} operands but {len(operands)} were given")
    n_ell = 0
    spelt = []
    for term, t in zip(terms, operands):
        letters = term.replace("...", "")
        if not letters.isalpha() and letters or any(c.isupper() for c in letters):
            raise ValueError(f"einsum: subscripts must be lower-case letters and '...', got {term!r}")
        k = t.ndim - len(letters) if "..." in term else 0
        if k < 0 or ("..." not in term and len(letters) != t.ndim):
            raise shape_error(f"einsum: subscript {term!r} does not fit operand shape {t.shape}")
        n_ell = max(n_ell, k)
        spelt.append(term.replace("...", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[26 - k:] if k else ""))
    ell = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[26 - n_ell:] if n_ell else ""
    if arrow:
        out = out.replace("...", ell)
    else:
        joined = "".join(spelt)
        out = ell + "".join(sorted(c for c in set(joined) if c.islower() and joined.count(c) == 1))
    for s in spelt:
        if len(set(s)) != len(s):
            raise NotImplementedError(f"einsum: repeated subscripts within one operand (diagonals) in {equation!r}")
    return spelt, out


def einsum(equation: str, *operands: Tensor) -> Tensor:
    """Einstein summation for one or two operands, e.g. 'bij,bjk->bik', 'ij->ji', '...d,...d->...'."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if len(operands) not in (1, 2):
        raise NotImplementedError("einsum: only one or two operands are supported")
    terms, out = _parse(equation, operands)
    sizes: dict[str, int] = {}
    for term, t in zip(terms, operands):
        for c, n in zip(term, t.shape):
            if sizes.get(c, n) != n and 1 not in (sizes.get(c), n):
                raise shape_error(f"einsum: index {c!r} has sizes {sizes[c]} and {n} in {equation!r} "
                                  f"(shapes {[o.shape for o in operands]})")
            sizes[c] = max(sizes.get(c, n), n) if n != 1 else sizes.get(c, n)
    if any(c not in "".join(terms) for c in out):
        raise ValueError(f"einsum: output subscript in {equation!r} names an index no operand has")
    # sum away indices that only one operand has and the output does not keep
    reduced = []
    for i, (term, t) in enumerate(zip(terms, operands)):
        others = "".join(terms[:i] + terms[i + 1:])
        drop = [c for c in term if c not in out and c not in others]
        if drop:
            t = t.sum(tuple(term.index(c) for c in drop))
            term = "".join(c for c in term if c not in drop)
        reduced.append((term, t))
    if len(reduced) == 1:
        term, t = reduced[0]
        return t.permute([term.index(c) for c in out])
    (ta, a), (tb, b) = reduced
    batch = [c for c in out if c in ta and c in tb]
    left = [c for c in out if c in ta and c not in tb]
    right = [c for c in out if c in tb and c not in ta]
    contract = [c for c in ta if c in tb and c not in out]

    def arrange(t: Tensor, term: str, groups: list[list[str]]) -> Tensor:
        order = [c for g in groups for c in g]
        t = t.permute([term.index(c) for c in order])._broadcast_to(tuple(sizes[c] for c in order))
        return t.reshape(tuple(sizes[c] for c in groups[0]) + tuple(math.prod(sizes[c] for c in g)
                                                                   for g in groups[1:]))

    a = arrange(a, ta, [batch, left, contract])
    b = arrange(b, tb, [batch, contract, right])
    res = (a.cast(b.dtype) if a.dtype != b.dtype else a).matmul(b)
    res = res.reshape(tuple(sizes[c] for c in batch + left + right))
    order = batch + left + right
    return res.permute([order.index(c) for c in out])
