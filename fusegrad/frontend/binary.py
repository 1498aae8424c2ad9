"""Binary elementwise math with torch's names: hypot, atan2 (arctan2), logaddexp, xlogy.

Each is a composite (one tape entry, `Tensor._composite`) whose gradient is torch's own formula, so the gradients
agree with torch's at the edges too (zeros, infinities, NaN), where the chain rule through the steps would differ.
Operands are promoted and broadcast first; integers compute in the default float type, float16 in float32.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import dtype as dt
from ..autograd import Composite, Context
from . import grad_mode
from .unary import _polynomial

if TYPE_CHECKING:
    from .tensor import Tensor

# Cephes' atan: x + x^3 P(x^2) / Q(x^2) on [0, 0.66], and pi/4 + atan((x - 1) / (x + 1)) above: within 1 ulp of
# float64's atan (P and Q in ascending powers; Q is monic)
ATAN_P = (-6.485021904942025371773e1, -1.228866684490136173410e2, -7.500855792314704667340e1,
          -1.615753718733365076637e1, -8.750608600031904122785e-1)
ATAN_Q = (1.945506571482613964425e2, 4.853903996359136964868e2, 4.328810604912902668951e2,
          1.650270098316988542046e2, 2.485846490142306297962e1, 1.0)
ATAN_MOREBITS = 6.123233995736765886130e-17  # pi/2 - float64(pi/2): half of it is what float64's pi/4 lacks


def _atan_unit(t: Tensor) -> Tensor:
    """atan(t) for t in [0, 1]."""
    big = t > 0.66
    u = big._select((t - 1) / (t + 1), t)
    z = u * u
    r = u + u * (z * _polynomial(z, ATAN_P) / _polynomial(z, ATAN_Q))
    return big._select((r + ATAN_MOREBITS / 2) + math.pi / 4, r)


def _atan2(y: Tensor, x: Tensor) -> Tensor:
    """atan2 from atan of min(|x|, |y|) / max(|x|, |y|) in [0, 1], unfolded to the quadrant by the operands' signs
    (sign bits, so -0.0 gives -0.0 or -pi as in C)."""
    ax, ay = x.abs(), y.abs()
    big, small = ax.maximum(ay), ax.minimum(ay)
    t = small / (big == 0)._select(1.0, big)
    t = ax.isinf().logical_and(ay.isinf())._select(1.0, t)  # both infinite: the diagonal
    r = _atan_unit(t)
    r = (ay > ax)._select(math.pi / 2 - r, r)
    r = x.signbit()._select(math.pi - r, r)
    return y.signbit()._select(-r, r)


def _hypot(a: Tensor, b: Tensor) -> Tensor:
    """sqrt(a^2 + b^2) as max * sqrt(1 + (min / max)^2), which neither overflows nor underflows; inf if either is."""
    aa, bb = a.abs(), b.abs()
    big, small = aa.maximum(bb), aa.minimum(bb)
    r = small / (big == 0)._select(1.0, big)
    out = big * (r * r + 1).sqrt()
    return aa.isinf().logical_or(bb.isinf())._select(float("inf"), out)


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """log(exp(a) + exp(b)) = max + log1p(exp(-|a - b|)); equal infinities give themselves."""
    out = a.maximum(b) + (-(a - b).abs()).exp().log1p()
    return a.isinf().logical_and(a == b)._select(a, out)


def _xlogy(x: Tensor, y: Tensor) -> Tensor:
    """x * log(y), 0 where x is 0 unless y is NaN."""
    out = (x == 0)._select(0.0, x * y.log())
    return y.isnan()._select(float("nan"), out)


def _output(ctx: Context, fn: Any) -> Tensor:
    """The composite's result for its rule: recomputed under create_graph so higher orders see it as a function."""
    return fn(*ctx.srcs) if grad_mode.enabled() else ctx.srcs[0]._wrap(ctx.out)


def _atan2_gradient(ctx: Context, g: Tensor) -> tuple[Tensor, Tensor]:
    y, x = ctx.srcs
    r2 = x * x + y * y
    zero = r2 == 0  # torch gives 0 where x^2 + y^2 is 0 (the origin, or underflow), not 0 * inf
    recip = zero._select(0.0, zero._select(1.0, r2).reciprocal())
    return g * x * recip, g * -y * recip


def _hypot_gradient(ctx: Context, g: Tensor) -> tuple[Tensor, Tensor]:
    a, b = ctx.srcs
    out = _output(ctx, _hypot)
    return g * a / out, g * b / out


def _logaddexp_gradient(ctx: Context, g: Tensor) -> tuple[Tensor, Tensor]:
    a, b = ctx.srcs
    return g / ((b - a).exp() + 1), g / ((a - b).exp() + 1)


def _xlogy_gradient(ctx: Context, g: Tensor) -> tuple[Tensor, Tensor]:
    x, y = ctx.srcs
    dx = (x == 0).logical_and(y <= 0)._select(0.0, g.xlogy(y))
    return dx, g * x / y


ATAN2 = Composite("atan2", _atan2_gradient)
HYPOT = Composite("hypot", _hypot_gradient)
LOGADDEXP = Composite("logaddexp", _logaddexp_gradient)
XLOGY = Composite("xlogy", _xlogy_gradient)


class BinaryMathMixin:
    """hypot, atan2, logaddexp and xlogy for Tensor."""

    __slots__ = ()

    def _binary_composite(self: Tensor, other: Any, name: str, composite: Composite, fn: Any,
                          ints: bool = True, scalars: bool = False) -> Tensor:
        """fn(self, other) as one tape entry, on operands promoted, broadcast and made floating-point (integers in
        the default float type where `ints`, else an error as in torch; float16 in float32, rounded once)."""
        from .tensor import Tensor
        if not scalars and not isinstance(other, Tensor):
            raise TypeError(f"{name}(): argument 'other' must be a Tensor, not {type(other).__name__}")
        a, b = self._operands(other, op=name)
        if not a.dtype.is_floating_point:
            if not ints:
                raise TypeError(f"{name}: not implemented for {a.dtype.name} tensors (as in torch); use .float()")
            a, b = a.cast(dt.default_float), b.cast(dt.default_float)
        half = a.dtype == dt.float16
        if half:
            a, b = a.float(), b.float()
        out = a._composite(composite, fn, a, b)
        return out.half() if half else out

    def hypot(self: Tensor, other: Tensor) -> Tensor:
        """sqrt(self^2 + other^2) without overflow; the gradient is self / hypot (NaN at the origin, as torch)."""
        return self._binary_composite(other, "hypot", HYPOT, _hypot, ints=False)

    def atan2(self: Tensor, other: Tensor) -> Tensor:
        """The angle of the point (other, self) in (-pi, pi], elementwise (torch.atan2(y, x))."""
        return self._binary_composite(other, "atan2", ATAN2, _atan2)

    arctan2 = atan2

    def logaddexp(self: Tensor, other: Tensor) -> Tensor:
        """log(exp(self) + exp(other)), computed without overflow."""
        return self._binary_composite(other, "logaddexp", LOGADDEXP, _logaddexp, ints=False)

    def xlogy(self: Tensor, other: Any) -> Tensor:
        """self * log(other), 0 where self is 0 (unless other is NaN); other may be a Python number."""
        return self._binary_composite(other, "xlogy", XLOGY, _xlogy, scalars=True)
