"""Reduction Tensor methods, all built on the SUM and REDUCE_MAX primitives (which keep reduced dims as size 1)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import dtype as dt
from ..autograd import Composite, Context
from ..graph import Op, shape_error
from . import grad_mode

if TYPE_CHECKING:
    from .tensor import Tensor


def _softmax(x: Tensor, dim: int) -> Tensor:
    e = (x - x.amax(dim, keepdim=True).detach()).exp()
    return e / e.sum(dim, keepdim=True)


def _log_softmax(x: Tensor, dim: int) -> Tensor:
    return x - x.logsumexp(dim, keepdim=True)


def _output(ctx: Context, value: Any) -> Tensor:
    """A composite's result for its gradient rule: recomputed from the input when the gradient itself is being
    differentiated (create_graph), else the value already computed."""
    return value(ctx.srcs[0], ctx.arg) if grad_mode.enabled() else ctx.srcs[0]._wrap(ctx.out)


def _softmax_gradient(ctx: Context, g: Tensor) -> tuple[Tensor]:
    y = _output(ctx, _softmax)
    return (y * (g - (g * y).sum(ctx.arg, keepdim=True)),)


def _log_softmax_gradient(ctx: Context, g: Tensor) -> tuple[Tensor]:
    return (g - _output(ctx, _log_softmax).exp() * g.sum(ctx.arg, keepdim=True),)


# softmax's gradient is y * (g - sum(g * y)): shorter than the chain rule through exp, sum and division
SOFTMAX = Composite("softmax", _softmax_gradient)
LOG_SOFTMAX = Composite("log_softmax", _log_softmax_gradient)


class ValuesIndices(NamedTuple):
    """What max/min over a dim return, like torch.return_types.max."""

    values: Tensor
    indices: Tensor


class ReduceMixin:
    """Reductions for Tensor."""

    __slots__ = ()

    def _axes(self: Tensor, dim: int | Sequence[int] | None) -> tuple[int, ...]:
        if dim is None:
            return tuple(range(self.ndim))
        if isinstance(dim, int) and self.ndim:  # the common case: one dim
            return (self._dim(dim),)
        dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
        axes = tuple(sorted({self._dim(d) for d in dims})) if self.ndim else ()
        if len(axes) != len(dims) and self.ndim:
            raise shape_error(f"reduction: dim {dim} names a dim more than once for shape {self.shape}")
        return axes

    def _reduce(self: Tensor, op: Op, dim: int | Sequence[int] | None, keepdim: bool) -> Tensor:
        axes = self._axes(dim)
        out = self._apply(op, self, arg=axes) if axes else self
        if keepdim or not axes:
            return out
        return out._apply(Op.RESHAPE, out, arg=tuple(s for i, s in enumerate(self.shape) if i not in axes))

    def _count(self: Tensor, dim: int | Sequence[int] | None) -> int:
        return math.prod(self.shape[a] for a in self._axes(dim))

    def sum(self: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False,
            dtype: dt.DType | None = None) -> Tensor:
        """Sum over dims (all by default); integers and bools sum as int64, like PyTorch."""
        dtype = dt.to_dtype(dtype) or (self.dtype if self.dtype.is_floating_point else dt.int64)
        return self.cast(dtype)._reduce(Op.SUM, dim, keepdim)

    def mean(self: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False,
             dtype: dt.DType | None = None) -> Tensor:
        """Average over dims; NaN over an empty dim."""
        x = self.cast(dt.to_dtype(dtype)) if dtype is not None else self
        if not x.dtype.is_floating_point:
            raise TypeError(f"mean() needs a floating-point tensor, got {x.dtype.name}; pass dtype= or use .float()")
        n = x._count(dim)
        return x.sum(dim, keepdim) * (1 / n if n else float("nan"))

    def var(self: Tensor, dim: int | Sequence[int] | None = None, unbiased: bool | None = None,
            keepdim: bool = False, *, correction: int | None = None) -> Tensor:
        """Variance with Bessel's correction by default (correction=1)."""
        corr = correction if correction is not None else (1 if unbiased is None or unbiased else 0)
        n = self._count(dim)
        centered = self - self.mean(dim, keepdim=True)
        return (centered * centered).sum(dim, keepdim) / max(n - corr, 0)

    def std(self: Tensor, dim: int | Sequence[int] | None = None, unbiased: bool | None = None,
            keepdim: bool = False, *, correction: int | None = None) -> Tensor:
        """Standard deviation (square root of var); its gradient is 0 where it is 0, as in torch (not inf * 0)."""
        v = self.var(dim, unbiased, keepdim, correction=correction)
        zero = v == 0
        return zero._select(0.0, zero._select(1.0, v).sqrt())

    def count_nonzero(self: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
        """How many elements are nonzero (NaN counts) over dims, all by default (also for dim=()), as int64."""
        return (self != 0).sum(None if isinstance(dim, (tuple, list)) and not dim else dim)

    def amax(self: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Maximum over dims; ties share the gradient evenly."""
        if self.numel() == 0 and self._count(dim) == 0:
            raise shape_error(f"max: cannot reduce over an empty dim of shape {self.shape} (no identity)")
        return self._reduce(Op.REDUCE_MAX, dim, keepdim)

    def amin(self: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Minimum over dims."""
        if self.dtype == dt.bool_:
            return self.logical_not().amax(dim, keepdim).logical_not()
        if self.dtype == dt.uint8:  # negation would wrap around
            return 255 - (255 - self).amax(dim, keepdim)
        return -(-self).amax(dim, keepdim)

    def max(self: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor | ValuesIndices:
        """Max of all elements; with `dim` a (values, indices) pair; with a tensor, the elementwise maximum."""
        from .tensor import Tensor
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is None:
            return self.amax()
        return self._values_at(self.argmax(dim, keepdim=True), dim, keepdim, self.amax)

    def min(self: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor | ValuesIndices:
        """Min of all elements; with `dim` a (values, indices) pair; with a tensor, the elementwise minimum."""
        from .tensor import Tensor
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is None:
            return self.amin()
        return self._values_at(self.argmin(dim, keepdim=True), dim, keepdim, self.amin)

    def _values_at(self: Tensor, idx: Tensor, dim: int, keepdim: bool, extreme: Any) -> ValuesIndices:
        """(values, indices) of max/min over dim; the values' gradient goes only to the chosen (first) index,
        as in torch, rather than being shared among ties as amax/amin do."""
        if self.ndim == 0 or not self.requires_grad:
            values = extreme(dim, keepdim=True)
        else:
            d = self._dim(dim)
            n = self.shape[d]
            pos = self._wrap(self._arange_node(n, dt.int64)).reshape([n if i == d else 1 for i in range(self.ndim)])
            values = (pos == idx)._select(self, 0)._reduce(Op.SUM, d, True)  # where, not *: inf/NaN elsewhere stay out
        if not keepdim:
            values, idx = values.squeeze(dim), idx.squeeze(dim)
        return ValuesIndices(values, idx)

    def argmax(self: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index of the first maximum (NaN counts as the maximum), as int64."""
        if dim is None:
            out = self.flatten().argmax(0)
            return out.reshape((1,) * self.ndim) if keepdim else out
        d = self._dim(dim)
        x = self.detach()
        best = x.amax(d, keepdim=True)
        hit = (x == best).logical_or(x.isnan()) if x.dtype.is_floating_point else x == best
        n = self.shape[d] if self.ndim else 1
        pos = x._wrap(x._arange_node(n, dt.int64)).reshape([n if i == d else 1 for i in range(self.ndim)])
        return (-(hit._select(-pos, -n).amax(d, keepdim))) if self.ndim else pos.sum() * 0

    def argmin(self: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index of the first minimum (NaN counts as the minimum), as int64."""
        if self.dtype == dt.bool_:
            return self.logical_not().argmax(dim, keepdim)
        if self.dtype == dt.uint8:
            return (255 - self).argmax(dim, keepdim)
        return (-self).argmax(dim, keepdim)

    def all(self: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """True where every element is nonzero (True over an empty dim)."""
        out = self.logical_not().any(dim, keepdim).logical_not()
        return out.cast(dt.uint8) if self.dtype == dt.uint8 else out

    def any(self: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """True where some element is nonzero (False over an empty dim)."""
        b = self.bool()
        if b._count(dim) == 0:
            shape = b._reduce(Op.SUM, dim, keepdim).shape
            out = b._const(False, shape)
        else:
            out = b._reduce(Op.REDUCE_MAX, dim, keepdim)
        return out.cast(dt.uint8) if self.dtype == dt.uint8 else out  # torch keeps uint8 for all/any of uint8

    def prod(self: Tensor, dim: int | None = None, keepdim: bool = False, dtype: dt.DType | None = None) -> Tensor:
        """Product over a dim (all by default), as a tree of pairwise multiplications: exact for integers, and
        the gradient is right even where elements are zero."""
        dtype = dt.to_dtype(dtype) or (self.dtype if self.dtype.is_floating_point else dt.int64)
        x = self.cast(dtype)
        if dim is None:
            out = x.flatten().prod(0)
            return out.reshape((1,) * self.ndim) if keepdim else out
        d = x._dim(dim)
        if x.ndim == 0:
            return x
        x = x.movedim(d, -1)
        n = x.shape[-1]
        width = 1 << max(0, (n - 1).bit_length())
        if width != n:  # pad with ones to a power of two
            x = x.pad((0, width - n), value=1)
        while x.shape[-1] > 1:
            half = x.shape[-1] // 2
            x = x.narrow(-1, 0, half) * x.narrow(-1, half, half)
        out = x.movedim(-1, d)
        return out if keepdim else out.squeeze(d)

    def logsumexp(self: Tensor, dim: int | Sequence[int], keepdim: bool = False) -> Tensor:
        """log(sum(exp(x))) computed stably; -inf where every element is -inf (or the dim is empty)."""
        x = self._float_operand()
        if x._count(dim) == 0:  # no max to subtract; the sum is 0 and its log -inf
            return x.exp().sum(dim, keepdim).log()
        m = x.amax(dim, keepdim=True).detach()
        m = m.isinf()._select(0.0, m)
        out = (x - m).exp().sum(dim, keepdim=True).log() + m
        return out if keepdim else out.squeeze(self._axes(dim))

    def softmax(self: Tensor, dim: int, dtype: dt.DType | None = None) -> Tensor:
        """exp(x) / sum(exp(x)) along dim, computed stably."""
        x = self.cast(dt.to_dtype(dtype)) if dtype is not None else self._float_operand()
        if x._count(dim) == 0:  # nothing to normalize, and no max over an empty dim
            return x
        d = x._dim(dim) if x.ndim else 0
        return self._composite(SOFTMAX, lambda t: _softmax(t, d), x, arg=d)

    def log_softmax(self: Tensor, dim: int, dtype: dt.DType | None = None) -> Tensor:
        """x - logsumexp(x) along dim."""
        x = self.cast(dt.to_dtype(dtype)) if dtype is not None else self._float_operand()
        if x._count(dim) == 0:
            return _log_softmax(x, dim)
        d = x._dim(dim) if x.ndim else 0
        return self._composite(LOG_SOFTMAX, lambda t: _log_softmax(t, d), x, arg=d)

    def cumsum(self: Tensor, dim: int, dtype: dt.DType | None = None) -> Tensor:
        """Running sum along dim: a masked sum over a triangle, so it fuses and differentiates like any reduce."""
        dtype = dt.to_dtype(dtype) or (self.dtype if self.dtype.is_floating_point else dt.int64)
        x = self.cast(dtype)
        if x.ndim == 0:
            return x
        d = x._dim(dim)
        x = x.movedim(d, -1)
        n = x.shape[-1]
        pos = x._wrap(x._arange_node(n, dt.int64))
        tri = pos.reshape(n, 1) >= pos.reshape(1, n)  # tri[i, j]: element j counts toward output i
        rows = x.unsqueeze(-2).expand(x.shape[:-1] + (n, n))
        out = tri._select(rows, x._const(0, ())).sum(-1, dtype=dtype)
        return out.movedim(-1, d)


def var_mean(input: Tensor, dim: int | Sequence[int] | None = None, unbiased: bool | None = None,  # noqa: A002
             keepdim: bool = False, *, correction: int | None = None) -> tuple[Tensor, Tensor]:
    """(variance, mean) over dims, like torch.var_mean (Bessel's correction=1 by default)."""
    _check_tensor(input, "var_mean")
    mean = input.mean(dim, keepdim)  # first: it rejects integer tensors, as torch does
    return input.var(dim, unbiased, keepdim, correction=correction), mean


def std_mean(input: Tensor, dim: int | Sequence[int] | None = None, unbiased: bool | None = None,  # noqa: A002
             keepdim: bool = False, *, correction: int | None = None) -> tuple[Tensor, Tensor]:
    """(standard deviation, mean) over dims, like torch.std_mean (Bessel's correction=1 by default)."""
    _check_tensor(input, "std_mean")
    mean = input.mean(dim, keepdim)
    return input.std(dim, unbiased, keepdim, correction=correction), mean


def _check_tensor(x: Any, name: str) -> None:
    from .tensor import Tensor
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
