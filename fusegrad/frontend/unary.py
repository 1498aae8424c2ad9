"""Unary elementwise Tensor methods: exponentials and logarithms, trigonometry, activations, rounding.

All are compositions of the elementwise primitives. Where a formula would overflow or divide by zero in a branch
`where` does not take, that branch gets safe inputs, so the masked-out gradient is 0 * finite rather than NaN.
float16 composites run in float32 and round once, as PyTorch does on CPU.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import dtype as dt
from ..autograd import Composite
from ..graph import Op

if TYPE_CHECKING:
    from .tensor import Tensor

LOG2E = math.log2(math.e)
# d/dx erf(x) = 2 / sqrt(pi) * exp(-x^2): a few ops, where differentiating the polynomial below takes about 90
ERF = Composite("erf", lambda ctx, g: (g * (ctx.srcs[0].square().neg().exp() * (2 / math.sqrt(math.pi))),))
# d/dx x * Phi(x) = Phi(x) + x * phi(x): one fused kernel for the backward, sharing erf's exp(-x^2 / 2)
GELU = Composite("gelu", lambda ctx, g: (g * _gelu_slope(ctx.srcs[0]),))


def in_float32(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a composite formula on float16 input in float32 and round the result once (PyTorch's opmath)."""
    @functools.wraps(fn)
    def run(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.dtype == dt.float16:
            return fn(self.float(), *args, **kwargs).half()
        return fn(self, *args, **kwargs)
    return run


class UnaryMixin:
    """Unary math and activations for Tensor."""

    __slots__ = ()

    def sign(self: Tensor) -> Tensor:
        """-1, 0 or 1 (NaN gives 0); the gradient is 0."""
        if self.dtype == dt.bool_:
            return self
        x = self.detach()
        return self._zero_grad_from((x > 0).cast(self.dtype) - (x < 0).cast(self.dtype))

    def abs(self: Tensor) -> Tensor:
        """|self|; the gradient at 0 is 0, like PyTorch."""
        if self.dtype == dt.bool_:
            return self
        if self.dtype == dt.uint8:
            return self
        return self * self.sign()

    def exp2(self: Tensor) -> Tensor:
        """2 ** self."""
        x = self._float_operand()
        return x._apply(Op.EXP2, x)

    @in_float32
    def exp(self: Tensor) -> Tensor:
        """e ** self."""
        x = self._float_operand()
        return (x * LOG2E).exp2()

    def log2(self: Tensor) -> Tensor:
        """Base-2 logarithm."""
        x = self._float_operand()
        return x._apply(Op.LOG2, x)

    @in_float32
    def log(self: Tensor) -> Tensor:
        """Natural logarithm."""
        return self.log2() * math.log(2)

    @in_float32
    def log10(self: Tensor) -> Tensor:
        """Base-10 logarithm."""
        return self.log2() * math.log10(2)

    @in_float32
    def log1p(self: Tensor) -> Tensor:
        """log(1 + self), accurate for small values."""
        x = self._float_operand()
        u = x + 1
        exact = (u == 1).logical_or(u.isinf())  # where the correction term would be 0/0 or inf/inf
        safe = exact._select(2.0, u)  # a stand-in where unused, so that branch's gradient stays finite
        return exact._select((u == 1)._select(x, u.log()), safe.log() * (x / (safe - 1)))

    @in_float32
    def expm1(self: Tensor) -> Tensor:
        """exp(self) - 1, accurate for small values."""
        x = self._float_operand()
        u = x.exp()
        exact = (u == 1).logical_or(u.isinf()).logical_or(u == 0)  # u - 1 is already exact (or x is -inf)
        safe = exact._select(2.0, u)  # a stand-in where unused, so that branch's gradient stays finite
        return exact._select((u == 1)._select(x, u - 1), (safe - 1) * (x / safe.log()))

    def sqrt(self: Tensor) -> Tensor:
        """Square root."""
        x = self._float_operand()
        return x._apply(Op.SQRT, x)

    @in_float32
    def rsqrt(self: Tensor) -> Tensor:
        """1 / sqrt(self)."""
        return self.sqrt().reciprocal()

    def sin(self: Tensor) -> Tensor:
        """Sine."""
        x = self._float_operand()
        return x._apply(Op.SIN, x)

    @in_float32
    def cos(self: Tensor) -> Tensor:
        """Cosine."""
        x = self._float_operand()
        return (math.pi / 2 - x).sin()

    @in_float32
    def tan(self: Tensor) -> Tensor:
        """Tangent."""
        return self.sin() / self.cos()

    @in_float32
    def sigmoid(self: Tensor) -> Tensor:
        """1 / (1 + exp(-self)), computed from exp(-|self|) so neither branch overflows."""
        x = self._float_operand()
        pos = x >= 0
        z = (-pos._select(x, -x)).exp()  # not abs(): its zero gradient at 0 would zero sigmoid'(0)
        return pos._select(1 / (1 + z), z / (1 + z))

    @in_float32
    def tanh(self: Tensor) -> Tensor:
        """Hyperbolic tangent."""
        return 2 * (2 * self._float_operand()).sigmoid() - 1

    def relu(self: Tensor) -> Tensor:
        """max(self, 0); NaN stays NaN and the gradient at 0 is 0, like PyTorch."""
        return (self <= 0)._select(self._c(0), self)

    def leaky_relu(self: Tensor, negative_slope: float = 0.01) -> Tensor:
        """self where positive, else negative_slope * self."""
        return (self > 0)._select(self, self * negative_slope)

    @in_float32
    def elu(self: Tensor, alpha: float = 1.0) -> Tensor:
        """self where positive, else alpha * (exp(self) - 1); the gradient at 0 is alpha, like PyTorch."""
        x = self._float_operand()
        pos = x > 0
        return pos._select(x, alpha * pos._select(0.0, x).expm1())  # exp only sees x <= 0: no overflow

    @in_float32
    def silu(self: Tensor) -> Tensor:
        """self * sigmoid(self)."""
        return self * self.sigmoid()

    @in_float32
    def softplus(self: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
        """log(1 + exp(beta * self)) / beta, linear above the threshold like PyTorch."""
        x = self._float_operand()
        bx = x * beta
        over = bx > threshold
        return over._select(x, over._select(0.0, bx).exp().log1p() / beta)  # exp only sees bx <= threshold

    @in_float32
    def erf(self: Tensor) -> Tensor:
        """The error function (a rational approximation, absolute error below 5e-7)."""
        return self._composite(ERF, _erf_approximation, self._float_operand())

    @in_float32
    def gelu(self: Tensor, approximate: str = "none") -> Tensor:
        """Gaussian error linear unit; approximate='tanh' uses the tanh formula."""
        x = self._float_operand()
        if approximate == "tanh":
            return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return self._composite(GELU, lambda v: 0.5 * v * (1 + (v * (1 / math.sqrt(2))).erf()), x)

    def _zero_grad_from(self: Tensor, value: Tensor, *others: Tensor) -> Tensor:
        """`value` recorded as a function of self (and others, all of value's dtype) with zero gradient, like
        torch's floor, sign, round and rounding divisions: their outputs require grad and backpropagate zeros."""
        for src in (self, *others):
            if src.requires_grad:
                value = src._const(True, value.shape, dt.bool_)._select(value, src)
        return value

    def _integral(self: Tensor, adjust: Any) -> Tensor:
        """Round to an integer via a cast, leaving values too large to have a fraction (and inf/NaN) alone."""
        if not self.dtype.is_floating_point:
            return self
        x = self.detach()
        big = {dt.float16: 2.0**10, dt.float32: 2.0**23}.get(self.dtype, 2.0**52)
        t = x.cast(dt.int64).cast(self.dtype)
        return self._zero_grad_from((x.abs() < big)._select(adjust(t, x), x))

    def trunc(self: Tensor) -> Tensor:
        """Round toward zero."""
        return self._integral(lambda t, x: t)

    def floor(self: Tensor) -> Tensor:
        """Round toward negative infinity."""
        return self._integral(lambda t, x: t - (t > x).cast(x.dtype))

    def ceil(self: Tensor) -> Tensor:
        """Round toward positive infinity."""
        return self._integral(lambda t, x: t + (t < x).cast(x.dtype))

    def round(self: Tensor, decimals: int = 0) -> Tensor:
        """Round half to even, like PyTorch."""
        if decimals:
            scale = 10.0**decimals
            return (self * scale).round() / scale
        if not self.dtype.is_floating_point:
            return self
        f = self.floor()
        d = self - f
        half_odd = (d == 0.5).logical_and(f.fmod(2) != 0)
        return (d > 0.5).logical_or(half_odd)._select(f + 1, f)

    def lerp(self: Tensor, end: Any, weight: Any) -> Tensor:
        """self + weight * (end - self)."""
        return self + weight * (end - self)

    def frac(self: Tensor) -> Tensor:
        """The fractional part self - trunc(self), with self's sign (NaN at +-inf); the gradient is 1."""
        if not self.dtype.is_floating_point:
            raise TypeError(f"frac: needs a floating-point tensor, got {self.dtype.name} (as torch)")
        return self - self.trunc()

    def signbit(self: Tensor) -> Tensor:
        """True where the sign bit is set: negative values and -0.0 (bool result, no gradient)."""
        x = self.detach()
        if not x.dtype.is_floating_point:
            return x < 0 if x.dtype in (dt.int32, dt.int64) else x._const(False, dtype=dt.bool_)
        return (x < 0).logical_or(x.reciprocal() < 0)  # 1 / -0.0 is -inf: the one way to see the sign of a zero

    def nan_to_num(self: Tensor, nan: float = 0.0, posinf: float | None = None,
                   neginf: float | None = None) -> Tensor:
        """NaN, +inf, -inf replaced by nan, posinf, neginf (default: the dtype's extreme finite values)."""
        if not self.dtype.is_floating_point:
            return self.clone()
        top = float(np.finfo(self.dtype.np).max)
        with np.errstate(over="ignore"):  # a bound beyond the dtype's range rounds to inf, as in torch
            nan, pos, neg = (self.dtype.np(v).item() for v in (nan, top if posinf is None else posinf,
                                                                -top if neginf is None else neginf))
        out = (self == float("inf"))._select(self._const(pos, ()), self)
        out = (self == float("-inf"))._select(self._const(neg, ()), out)
        return self.isnan()._select(self._const(nan, ()), out)


# erf(x) = x * P(x^2) / Q(x^2) on [-4, 4] (Eigen's and XLA's float32 rational fit; |erf| rounds to 1 beyond):
# no exp and one division, and relative accuracy near 0 where 1 - poly * exp(-x^2) cancels
ERF_NUMERATOR = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
                 -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10)
ERF_DENOMINATOR = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
                   -1.45660718464996e-05)


def _polynomial(x: Tensor, coefficients: tuple[float, ...]) -> Tensor:
    """c0 + c1 x + c2 x^2 + ... by Horner's rule, each step a fused multiply-add."""
    out = x._muladd(coefficients[-1], coefficients[-2])
    for c in reversed(coefficients[:-2]):
        out = out._muladd(x, c)
    return out


def _erf_approximation(x: Tensor) -> Tensor:
    """erf by a rational fit, absolute error below 5e-7 in float32 (NaN stays NaN, +-inf give +-1)."""
    c = x.clamp(-4.0, 4.0)
    c2 = c * c
    return c * _polynomial(c2, ERF_NUMERATOR) / _polynomial(c2, ERF_DENOMINATOR)


def _gelu_slope(x: Tensor) -> Tensor:
    """d/dx gelu(x) = Phi(x) + x * phi(x); NaN at +-inf like PyTorch's (inf * 0)."""
    density = (-0.5 * x * x).exp() * (1 / math.sqrt(2 * math.pi))
    return 0.5 * (1 + _erf_approximation(x * (1 / math.sqrt(2)))) + x * density
