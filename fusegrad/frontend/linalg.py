"""Contractions: matmul with PyTorch's 1-D and batch-broadcasting rules, and einsum lowered to one batched MATMUL."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import dtype as dt
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

    def mv(self: Tensor, vec: Tensor) -> Tensor:
        """Product of a matrix and a 1-D vector."""
        if self.ndim != 2 or getattr(vec, "ndim", None) != 1:
            raise shape_error(f"mv: needs a matrix and a 1-D vector, got shapes {self.shape} and "
                              f"{getattr(vec, 'shape', type(vec).__name__)}")
        return self.matmul(vec)

    def outer(self: Tensor, vec2: Tensor) -> Tensor:
        """Outer product of two 1-D tensors, out[i, j] = self[i] * vec2[j] (dtypes promoted, like torch)."""
        if self.ndim != 1 or getattr(vec2, "ndim", None) != 1:
            raise shape_error(f"outer: needs two 1-D tensors, got shapes {self.shape} and "
                              f"{getattr(vec2, 'shape', type(vec2).__name__)}")
        return self.unsqueeze(1) * vec2.unsqueeze(0)

    def trace(self: Tensor) -> Tensor:
        """Sum of a matrix's main diagonal (integers sum as int64)."""
        if self.ndim != 2:
            raise shape_error(f"trace: needs a matrix, got shape {self.shape}")
        if self.dtype == dt.bool_:
            raise TypeError("trace: not implemented for bool tensors (as in torch)")
        return self.diag().sum()

    def addmm(self: Tensor, mat1: Tensor, mat2: Tensor, *, beta: float = 1, alpha: float = 1) -> Tensor:
        """beta * self + alpha * (mat1 @ mat2), self broadcast to the product's shape (torch.addmm)."""
        if getattr(mat1, "ndim", None) != 2 or getattr(mat2, "ndim", None) != 2:
            raise shape_error(f"addmm: mat1 and mat2 must be matrices, got shapes {getattr(mat1, 'shape', None)} "
                              f"and {getattr(mat2, 'shape', None)}")
        return self._add_product(mat1.mm(mat2), beta, alpha, "addmm")

    def baddbmm(self: Tensor, batch1: Tensor, batch2: Tensor, *, beta: float = 1, alpha: float = 1) -> Tensor:
        """beta * self + alpha * (batch1 @ batch2) over a batch, self broadcast to the product's shape."""
        return self._add_product(batch1.bmm(batch2), beta, alpha, "baddbmm")

    def _add_product(self: Tensor, product: Tensor, beta: float, alpha: float, name: str) -> Tensor:
        """beta * self + alpha * product; beta=0 ignores self's values (NaN too) and passes it a zero gradient."""
        if self.dtype != product.dtype:
            raise shape_error(f"{name}: input dtype {self.dtype.name} differs from the product's {product.dtype.name}; "
                              "cast one first")
        if broadcast_shape(name, self.shape, product.shape) != product.shape:
            raise shape_error(f"{name}: input shape {self.shape} cannot be broadcast to the product's {product.shape}")
        if not self.dtype.is_floating_point:  # torch converts the scalars to the tensors' dtype
            beta, alpha = int(beta), int(alpha)
        scaled = product if alpha == 1 else product * alpha
        if beta == 0:
            return self._zero_grad_from(scaled)
        return (self if beta == 1 else self * beta) + scaled


def tensordot(a: Tensor, b: Tensor, dims: int | Sequence[Sequence[int]] | Tensor = 2) -> Tensor:
    """Contract the last `dims` dims of a with the first of b, or the listed (dims of a, dims of b)."""
    from .tensor import Tensor
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"tensordot: a and b must be Tensors, got {type(a).__name__} and {type(b).__name__}")
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, (int, np.integer)) and not isinstance(dims, bool):
        if dims < 0:
            raise ValueError(f"tensordot: dims must be non-negative, got {dims}")
        if dims > min(a.ndim, b.ndim):
            raise shape_error(f"tensordot: cannot contract {dims} dims of shapes {a.shape} and {b.shape}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    elif (isinstance(dims, (tuple, list)) and len(dims) == 2
          and all(isinstance(ds, (tuple, list)) for ds in dims)):
        da, db = [a._dim(d) for d in dims[0]], [b._dim(d) for d in dims[1]]
        if len(da) != len(db):
            raise shape_error(f"tensordot: dims {dims} lists {len(da)} dims of a but {len(db)} of b")
        if len(set(da)) != len(da) or len(set(db)) != len(db):
            raise shape_error(f"tensordot: dims {dims} names a dim more than once")
    else:
        raise TypeError(f"tensordot: dims must be an int or two lists of dims, got {dims!r}")
    sizes = []
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j] and 1 not in (a.shape[i], b.shape[j]):
            raise shape_error(f"tensordot: contracted dims differ: dim {i} of {a.shape} has size {a.shape[i]}, dim "
                              f"{j} of {b.shape} has {b.shape[j]}")
        sizes.append(max(a.shape[i], b.shape[j]))  # a size-1 side is broadcast, as in torch
    free_a, free_b = [d for d in range(a.ndim) if d not in da], [d for d in range(b.ndim) if d not in db]
    shape_a, shape_b = tuple(a.shape[d] for d in free_a), tuple(b.shape[d] for d in free_b)
    k = math.prod(sizes)
    left = a.permute(free_a + da)._broadcast_to(shape_a + tuple(sizes)).reshape(math.prod(shape_a), k)
    right = b.permute(db + free_b)._broadcast_to(tuple(sizes) + shape_b).reshape(k, math.prod(shape_b))
    return left.matmul(right).reshape(shape_a + shape_b)


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
