"""Elementwise Tensor methods: broadcasting, type promotion, arithmetic, comparisons and activations.

Everything here is a composition of the elementwise primitives; where a formula would overflow or divide by zero
in a branch `where` does not take, the branch gets safe inputs so gradients stay finite.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import dtype as dt
from ..graph import Op, shape_error

if TYPE_CHECKING:
    from .tensor import Tensor

Scalar = bool | int | float
LOG2E = math.log2(math.e)


def broadcast_shape(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy/PyTorch broadcasting of shapes, or a ShapeError naming every shape and the failing dim."""
    ndim = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for d in range(ndim):
        sizes = {p[d] for p in padded} - {1}
        if len(sizes) > 1:
            raise shape_error(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast: "
                              f"dim {d - ndim} has sizes {sorted(sizes)} (sizes must be equal or 1)")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _is_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float, np.bool_, np.integer, np.floating))


def promote(items: list[Any], op: str, like: Tensor, dtype: dt.DType | None = None) -> list[Tensor]:
    """Tensors and scalars promoted to one dtype (PyTorch's rules) and broadcast to one shape; `like` makes consts."""
    from .tensor import Tensor
    for x in items:
        if not isinstance(x, Tensor) and not _is_scalar(x):
            raise TypeError(f"{op}: unsupported operand type {type(x).__name__}")
    tensors = [x for x in items if isinstance(x, Tensor)]
    if dtype is None:
        dtype = dt.result_type(*[(x.dtype, 0 if x.ndim else 1) if isinstance(x, Tensor) else (dt.scalar_dtype(x), 2)
                                 for x in items])
    shape = broadcast_shape(op, *[x.shape for x in tensors])
    devices = {x.device for x in tensors} | {like.device}
    if len(devices) > 1:
        raise shape_error(f"{op}: tensors are on different devices {sorted(devices)}; move them with .to()")
    return [(x if isinstance(x, Tensor) else like._const(x.item() if isinstance(x, np.generic) else x, (), dtype))
            .cast(dtype)._broadcast_to(shape) for x in items]


class ElementwiseMixin:
    """Elementwise math for Tensor."""

    __slots__ = ()

    # ---- operands: promotion and broadcasting ----

    def _operands(self: Tensor, *others: Any, op: str = "op", dtype: dt.DType | None = None) -> list[Tensor]:
        """Self and others promoted to one dtype (PyTorch's rules) and broadcast to one shape."""
        return promote([self, *others], op, self, dtype)

    def _binary(self: Tensor, op: Op, other: Any, name: str, reverse: bool = False) -> Tensor:
        a, b = self._operands(other, op=name)
        if reverse:
            a, b = b, a
        return a._apply(op, a, b)

    def _float_operand(self: Tensor) -> Tensor:
        """Integers and bools become the default float type, as PyTorch does for exp, log, sqrt, ..."""
        return self if self.dtype.is_floating_point else self.cast(dt.default_float)

    def _c(self: Tensor, value: Scalar) -> Tensor:
        """A constant of this tensor's shape and dtype."""
        return self._const(value)

    # ---- arithmetic ----

    def add(self: Tensor, other: Any, alpha: Scalar = 1) -> Tensor:
        """self + alpha * other."""
        return self._binary(Op.ADD, other if alpha == 1 else other * alpha, "add")

    def sub(self: Tensor, other: Any, alpha: Scalar = 1) -> Tensor:
        """self - alpha * other."""
        if self.dtype == dt.bool_ or (getattr(other, "dtype", None) == dt.bool_):
            raise TypeError("subtraction of bool tensors is not supported; use logical_xor")
        a, b = self._operands(other if alpha == 1 else other * alpha, op="sub")
        return a._apply(Op.ADD, a, b.neg())

    def mul(self: Tensor, other: Any) -> Tensor:
        """Elementwise product."""
        return self._binary(Op.MUL, other, "mul")

    def neg(self: Tensor) -> Tensor:
        """-self."""
        if self.dtype == dt.bool_:
            raise TypeError("negation of a bool tensor is not supported; use logical_not")
        return self._apply(Op.NEG, self)

    def reciprocal(self: Tensor) -> Tensor:
        """1 / self."""
        x = self._float_operand()
        return x._apply(Op.RECIP, x)

    def div(self: Tensor, other: Any, rounding_mode: str | None = None) -> Tensor:
        """True division; rounding_mode 'trunc' or 'floor' rounds the quotient like torch.div."""
        if rounding_mode == "floor":
            return self.floor_divide(other)
        a, b = self._operands(other, op="div")
        if rounding_mode == "trunc":
            if not a.dtype.is_floating_point:
                return a._apply(Op.IDIV, a, b)
            return (a - a.fmod(b)).div(b).round()  # a - fmod(a, b) is an exact multiple of b
        if rounding_mode is not None:
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        a, b = a._float_operand(), b._float_operand()
        return a._apply(Op.MUL, a, b.reciprocal())

    true_divide = div

    def floor_divide(self: Tensor, other: Any) -> Tensor:
        """Division rounded toward negative infinity (Python's //)."""
        a, b = self._operands(other, op="floor_divide")
        mod = a.fmod(b)
        wrong_sign = (mod != 0).logical_and((b < 0) != (mod < 0))
        if not a.dtype.is_floating_point:
            q = a._apply(Op.IDIV, a, b)
            return q - wrong_sign.cast(q.dtype)
        q = (a - mod).div(b) - wrong_sign.cast(a.dtype)  # PyTorch's exact algorithm: fmod first, then divide
        fq = q.floor()
        return (b == 0).where(a.div(b), (q - fq > 0.5).where(fq + 1, fq))

    def fmod(self: Tensor, other: Any) -> Tensor:
        """Remainder with the sign of the dividend (C's fmod)."""
        a, b = self._operands(other, op="fmod")
        return a._apply(Op.MOD, a, b)

    def remainder(self: Tensor, other: Any) -> Tensor:
        """Remainder with the sign of the divisor (Python's %)."""
        a, b = self._operands(other, op="remainder")
        mod = a._apply(Op.MOD, a, b)
        return ((mod != 0).logical_and((b < 0) != (mod < 0))).where(mod + b, mod)

    def pow(self: Tensor, exponent: Any) -> Tensor:
        """self ** exponent, with PyTorch's results for negative bases and integer exponents."""
        if _is_scalar(exponent) and not isinstance(exponent, (bool, np.bool_)):
            e = float(exponent)
            if e == int(e) and abs(e) <= 64 and (self.dtype.is_floating_point or e >= 0):
                return self._int_power(int(e))
            if e == 0.5:
                return self.sqrt()
        base, e = self._operands(exponent, op="pow")
        if not base.dtype.is_floating_point:
            return base.double().pow(e.double()).cast(base.dtype)
        mag = (e * base.abs().log2()).exp2()
        e_is_int = e == e.floor()
        odd = e_is_int.logical_and(e.fmod(2) != 0)
        signed = (base < 0).where(e_is_int.where(odd.where(-mag, mag), base._c(float("nan"))), mag)
        return (e == 0).where(base._c(1.0), signed)

    def _int_power(self: Tensor, n: int) -> Tensor:
        """x ** n by repeated squaring, exact for integers and well-behaved for negative bases."""
        if n < 0:
            return self._int_power(-n).reciprocal()
        result, base = None, self
        while n:
            if n & 1:
                result = base if result is None else result * base
            n >>= 1
            if n:
                base = base * base
        return result if result is not None else self._c(1)

    def square(self: Tensor) -> Tensor:
        """self * self."""
        return self * self

    def __add__(self, other: Any) -> Tensor:
        return self.add(other)

    def __radd__(self: Tensor, other: Any) -> Tensor:
        return self._binary(Op.ADD, other, "add", reverse=True)

    def __sub__(self, other: Any) -> Tensor:
        return self.sub(other)

    def __rsub__(self: Tensor, other: Any) -> Tensor:
        return self._operands(other, op="sub")[1].sub(self)

    def __mul__(self, other: Any) -> Tensor:
        return self.mul(other)

    def __rmul__(self: Tensor, other: Any) -> Tensor:
        return self._binary(Op.MUL, other, "mul", reverse=True)

    def __truediv__(self, other: Any) -> Tensor:
        return self.div(other)

    def __rtruediv__(self: Tensor, other: Any) -> Tensor:
        return self._operands(other, op="div")[1].div(self)

    def __floordiv__(self, other: Any) -> Tensor:
        return self.floor_divide(other)

    def __rfloordiv__(self: Tensor, other: Any) -> Tensor:
        return self._operands(other, op="floor_divide")[1].floor_divide(self)

    def __mod__(self, other: Any) -> Tensor:
        return self.remainder(other)

    def __rmod__(self: Tensor, other: Any) -> Tensor:
        return self._operands(other, op="remainder")[1].remainder(self)

    def __pow__(self, other: Any) -> Tensor:
        return self.pow(other)

    def __rpow__(self: Tensor, other: Any) -> Tensor:
        return self._operands(other, op="pow")[1].pow(self)

    def __neg__(self) -> Tensor:
        return self.neg()

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self.abs()

    # ---- comparisons and logic (results are bool) ----

    def eq(self: Tensor, other: Any) -> Tensor:
        """self == other."""
        return self._binary(Op.CMPEQ, other, "eq")

    def ne(self: Tensor, other: Any) -> Tensor:
        """self != other."""
        return self.eq(other).logical_not()

    def lt(self: Tensor, other: Any) -> Tensor:
        """self < other."""
        return self._binary(Op.CMPLT, other, "lt")

    def gt(self: Tensor, other: Any) -> Tensor:
        """self > other."""
        return self._binary(Op.CMPLT, other, "gt", reverse=True)

    def le(self: Tensor, other: Any) -> Tensor:
        """self <= other (False where either is NaN)."""
        return self.lt(other).logical_or(self.eq(other))

    def ge(self: Tensor, other: Any) -> Tensor:
        """self >= other (False where either is NaN)."""
        return self.gt(other).logical_or(self.eq(other))

    __eq__ = eq  # type: ignore[assignment]
    __ne__ = ne  # type: ignore[assignment]
    __lt__ = lt
    __gt__ = gt
    __le__ = le
    __ge__ = ge

    def logical_not(self: Tensor) -> Tensor:
        """Elementwise not (nonzero is True)."""
        b = self.bool()
        return b._apply(Op.CMPEQ, b, b._c(False))

    def logical_and(self: Tensor, other: Any) -> Tensor:
        """Elementwise and."""
        a, b = self._operands(other, op="logical_and", dtype=dt.bool_)
        return a._apply(Op.MUL, a, b)

    def logical_or(self: Tensor, other: Any) -> Tensor:
        """Elementwise or."""
        a, b = self._operands(other, op="logical_or", dtype=dt.bool_)
        return a._apply(Op.ADD, a, b)

    def logical_xor(self: Tensor, other: Any) -> Tensor:
        """Elementwise exclusive or."""
        a, b = self._operands(other, op="logical_xor", dtype=dt.bool_)
        return a.ne(b)

    def _bool_only(self: Tensor, other: Any, name: str) -> None:
        if self.dtype != dt.bool_ or (not _is_scalar(other) and other.dtype != dt.bool_):
            raise TypeError(f"{name} is supported on bool tensors only (bitwise integer ops are not implemented)")

    def __and__(self: Tensor, other: Any) -> Tensor:
        self._bool_only(other, "&")
        return self.logical_and(other)

    def __or__(self: Tensor, other: Any) -> Tensor:
        self._bool_only(other, "|")
        return self.logical_or(other)

    def __xor__(self: Tensor, other: Any) -> Tensor:
        self._bool_only(other, "^")
        return self.logical_xor(other)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self: Tensor) -> Tensor:
        self._bool_only(True, "~")
        return self.logical_not()

    def isnan(self: Tensor) -> Tensor:
        """True where the value is NaN."""
        return self.ne(self)

    def isinf(self: Tensor) -> Tensor:
        """True where the value is +inf or -inf."""
        return self.abs().eq(float("inf")) if self.dtype.is_floating_point else self._const(False, dtype=dt.bool_)

    def isfinite(self: Tensor) -> Tensor:
        """True where the value is neither inf nor NaN."""
        return self.isinf().logical_or(self.isnan()).logical_not()

    # ---- selection ----

    def where(self: Tensor, x: Any, y: Any) -> Tensor:
        """`x` where self (as a condition) is True, else `y` (tensor.where(x, y) = torch.where(self, x, y))."""
        cond = self.bool()
        a, b = promote([x, y], "where", cond)
        shape = broadcast_shape("where", cond.shape, a.shape)
        cond, a, b = cond._broadcast_to(shape), a._broadcast_to(shape), b._broadcast_to(shape)
        return cond._apply(Op.WHERE, cond, a, b)

    def maximum(self: Tensor, other: Any) -> Tensor:
        """Elementwise max, NaN-propagating; ties split the gradient."""
        return self._binary(Op.MAX, other, "maximum")

    def minimum(self: Tensor, other: Any) -> Tensor:
        """Elementwise min, NaN-propagating; ties split the gradient."""
        a, b = self._operands(other, op="minimum")
        if a.dtype.category == 0:
            return a.logical_and(b)
        if a.dtype == dt.uint8:  # negation would wrap around
            return (b < a).where(b, a)
        return a._apply(Op.MAX, a.neg(), b.neg()).neg()

    def clamp(self: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 - PyTorch's names
        """Limit values to [min, max]; the gradient is 1 inside (bounds included), 0 outside; NaN stays NaN."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        out = self
        if min is not None:
            out = (out < min).where(min, out)
        if max is not None:
            out = (out > max).where(max, out)
        return out

    clip = clamp

    def clamp_min(self: Tensor, min: Any) -> Tensor:  # noqa: A002
        """Limit values from below."""
        return self.clamp(min=min)

    def clamp_max(self: Tensor, max: Any) -> Tensor:  # noqa: A002
        """Limit values from above."""
        return self.clamp(max=max)

    # ---- unary math ----

    def sign(self: Tensor) -> Tensor:
        """-1, 0 or 1 (NaN gives 0)."""
        return (self > 0).cast(self.dtype) - (self < 0).cast(self.dtype)

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

    def exp(self: Tensor) -> Tensor:
        """e ** self."""
        x = self._float_operand()
        return (x * LOG2E).exp2()

    def log2(self: Tensor) -> Tensor:
        """Base-2 logarithm."""
        x = self._float_operand()
        return x._apply(Op.LOG2, x)

    def log(self: Tensor) -> Tensor:
        """Natural logarithm."""
        return self.log2() * math.log(2)

    def log10(self: Tensor) -> Tensor:
        """Base-10 logarithm."""
        return self.log2() * math.log10(2)

    def log1p(self: Tensor) -> Tensor:
        """log(1 + self), accurate for small values."""
        x = self._float_operand()
        u = x + 1
        exact = u == 1
        return exact.where(x, u.log() * (x / exact.where(1.0, u - 1)))

    def expm1(self: Tensor) -> Tensor:
        """exp(self) - 1, accurate for small values."""
        x = self._float_operand()
        u = x.exp()
        exact = (u == 1).logical_or(u.isinf())
        return exact.where((u == 1).where(x, u - 1), (u - 1) * (x / exact.where(1.0, u.log())))

    def sqrt(self: Tensor) -> Tensor:
        """Square root."""
        x = self._float_operand()
        return x._apply(Op.SQRT, x)

    def rsqrt(self: Tensor) -> Tensor:
        """1 / sqrt(self)."""
        return self.sqrt().reciprocal()

    def sin(self: Tensor) -> Tensor:
        """Sine."""
        x = self._float_operand()
        return x._apply(Op.SIN, x)

    def cos(self: Tensor) -> Tensor:
        """Cosine."""
        x = self._float_operand()
        return (math.pi / 2 - x).sin()

    def tan(self: Tensor) -> Tensor:
        """Tangent."""
        return self.sin() / self.cos()

    def sigmoid(self: Tensor) -> Tensor:
        """1 / (1 + exp(-self)), computed from exp(-|self|) so neither branch overflows."""
        x = self._float_operand()
        z = (-x.abs()).exp()
        return (x >= 0).where(1 / (1 + z), z / (1 + z))

    def tanh(self: Tensor) -> Tensor:
        """Hyperbolic tangent."""
        return 2 * (2 * self._float_operand()).sigmoid() - 1

    def relu(self: Tensor) -> Tensor:
        """max(self, 0); NaN stays NaN and the gradient at 0 is 0, like PyTorch."""
        return (self <= 0).where(self._c(0), self)

    def leaky_relu(self: Tensor, negative_slope: float = 0.01) -> Tensor:
        """self where positive, else negative_slope * self."""
        return (self > 0).where(self, self * negative_slope)

    def elu(self: Tensor, alpha: float = 1.0) -> Tensor:
        """self where positive, else alpha * (exp(self) - 1)."""
        return (self > 0).where(self, alpha * self.minimum(0).expm1())

    def silu(self: Tensor) -> Tensor:
        """self * sigmoid(self)."""
        return self * self.sigmoid()

    def softplus(self: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
        """log(1 + exp(beta * self)) / beta, linear above the threshold like PyTorch."""
        bx = self._float_operand() * beta
        return (bx > threshold).where(self._float_operand(), bx.minimum(threshold).exp().log1p() / beta)

    def erf(self: Tensor) -> Tensor:
        """The error function (Abramowitz-Stegun 7.1.26, absolute error below 1.5e-7)."""
        x = self._float_operand()
        t = 1 / (1 + 0.3275911 * x.abs())
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        return x.sign() * (1 - poly * (-x * x).exp())

    def gelu(self: Tensor, approximate: str = "none") -> Tensor:
        """Gaussian error linear unit; approximate='tanh' uses the tanh formula."""
        x = self._float_operand()
        if approximate == "tanh":
            return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return 0.5 * x * (1 + (x * (1 / math.sqrt(2))).erf())

    def _integral(self: Tensor, adjust: Any) -> Tensor:
        """Round to an integer via a cast, leaving values too large to have a fraction (and inf/NaN) alone."""
        if not self.dtype.is_floating_point:
            return self
        big = {dt.float16: 2.0**10, dt.float32: 2.0**23}.get(self.dtype, 2.0**52)
        t = self.cast(dt.int64).cast(self.dtype)
        return (self.abs() < big).where(adjust(t), self)

    def trunc(self: Tensor) -> Tensor:
        """Round toward zero."""
        return self._integral(lambda t: t)

    def floor(self: Tensor) -> Tensor:
        """Round toward negative infinity."""
        return self._integral(lambda t: t - (t > self).cast(self.dtype))

    def ceil(self: Tensor) -> Tensor:
        """Round toward positive infinity."""
        return self._integral(lambda t: t + (t < self).cast(self.dtype))

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
        return (d > 0.5).logical_or(half_odd).where(f + 1, f)

    def lerp(self: Tensor, end: Any, weight: Any) -> Tensor:
        """self + weight * (end - self)."""
        return self + weight * (end - self)
