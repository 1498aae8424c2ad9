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
from .unary import UnaryMixin

if TYPE_CHECKING:
    from .tensor import Tensor

Scalar = bool | int | float


def broadcast_shape(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy/PyTorch broadcasting of shapes, or a ShapeError naming every shape and the failing dim."""
    if all(s == shapes[0] for s in shapes[1:]):
        return tuple(shapes[0]) if shapes else ()
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
    tensors = [x for x in items if isinstance(x, Tensor)]
    if dtype is None and len(tensors) == len(items):  # tensors alike in dtype, shape and device: nothing to do
        d, s, dev = tensors[0].dtype, tensors[0].shape, tensors[0].device
        if all(x.dtype is d and x.shape == s and x.device == dev for x in tensors):
            return tensors
    if len(tensors) < len(items):
        for x in items:
            if not isinstance(x, Tensor) and not _is_scalar(x):
                raise TypeError(f"{op}: unsupported operand type {type(x).__name__}")
    if dtype is None:
        first = tensors[0].dtype if tensors else None
        if len(tensors) == len(items) and all(x.dtype is first for x in tensors):
            dtype = first  # tensors of one dtype: nothing to promote
        else:
            dtype = dt.result_type(*[(x.dtype, 0 if x.ndim else 1) if isinstance(x, Tensor) else
                                     (dt.scalar_dtype(x), 2) for x in items])
    shape = broadcast_shape(op, *[x.shape for x in tensors])
    devices = {x.device for x in tensors if x.ndim} or {like.device}
    if len(devices) > 1:
        raise shape_error(f"{op}: tensors are on different devices {sorted(devices)}; move them with .to()")
    device = devices.pop()  # 0-d tensors elsewhere act as scalars and move, as in PyTorch
    items = [x.to(device) if isinstance(x, Tensor) and x.device != device else x for x in items]
    like = next((x for x in items if isinstance(x, Tensor)), like) if like.device != device else like
    # a scalar becomes a constant of the broadcast shape directly (one node, not a 0-d constant reshaped and expanded)
    return [x.cast(dtype)._broadcast_to(shape) if isinstance(x, Tensor) else
            like._const(_scalar_value(x, dtype), shape, dtype) for x in items]


def _scalar_value(x: Any, dtype: dt.DType) -> Scalar:
    """A Python scalar as a constant of `dtype`; integers wrap around like a C cast (torch: uint8 < -1 means < 255)."""
    v = x.item() if isinstance(x, np.generic) else x
    if dtype.is_integer and isinstance(v, int) and not isinstance(v, bool):
        bits = 8 * dtype.itemsize
        v %= 2**bits
        if dtype != dt.uint8 and v >= 2 ** (bits - 1):
            v -= 2**bits
    return v


class ElementwiseMixin(UnaryMixin):
    """Elementwise math for Tensor (the unary functions come from UnaryMixin)."""

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

    def _muladd(self: Tensor, b: Any, c: Any) -> Tensor:
        """self * b + c rounded once (the MULADD primitive): a Horner step in one instruction."""
        x, b, c = self._operands(b, c, op="muladd")
        return x._apply(Op.MULADD, x, b, c)

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
        if self.dtype == dt.bool_ or isinstance(other, (bool, np.bool_)) or getattr(other, "dtype", None) == dt.bool_:
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
        """True division; rounding_mode 'trunc' or 'floor' rounds the quotient like torch.div (gradient 0)."""
        if rounding_mode == "floor":
            return self.floor_divide(other)
        a, b = self._operands(other, op="div")
        if rounding_mode == "trunc":
            if not a.dtype.is_floating_point:
                return a._apply(Op.IDIV, a, b)
            a0, b0 = a.detach(), b.detach()
            q = (a0 - a0.fmod(b0)).div(b0).round()  # a - fmod(a, b) is an exact multiple of b: no 1-ulp misses
            return a._zero_grad_from((b0 == 0).logical_or(a0.isinf())._select(a0.div(b0), q), b)
        if rounding_mode is not None:
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        a, b = a._float_operand(), b._float_operand()
        return a._apply(Op.MUL, a, b.reciprocal())

    true_divide = div

    def floor_divide(self: Tensor, other: Any) -> Tensor:
        """Division rounded toward negative infinity (Python's //); the gradient is 0."""
        a0, b0 = self._operands(other, op="floor_divide")
        a, b = a0.detach(), b0.detach()
        mod = a.fmod(b)
        wrong_sign = (mod != 0).logical_and((b < 0) != (mod < 0))
        if not a.dtype.is_floating_point:
            q = a._apply(Op.IDIV, a, b)
            return q - wrong_sign.cast(q.dtype)
        q = (a - mod).div(b) - wrong_sign.cast(a.dtype)  # PyTorch's exact algorithm: fmod first, then divide
        fq = q.floor()
        return a0._zero_grad_from((b == 0)._select(a.div(b), (q - fq > 0.5)._select(fq + 1, fq)), b0)

    def fmod(self: Tensor, other: Any) -> Tensor:
        """Remainder with the sign of the dividend (C's fmod)."""
        a, b = self._operands(other, op="fmod")
        return a._apply(Op.MOD, a, b)

    def remainder(self: Tensor, other: Any) -> Tensor:
        """Remainder with the sign of the divisor (Python's %)."""
        a, b = self._operands(other, op="remainder")
        mod = a._apply(Op.MOD, a, b)
        return ((mod != 0).logical_and((b < 0) != (mod < 0)))._select(mod + b, mod)

    def pow(self: Tensor, exponent: Any) -> Tensor:
        """self ** exponent, with PyTorch's values and gradients for negative bases, zero bases and integers."""
        if _is_scalar(exponent) and not isinstance(exponent, (bool, np.bool_)) and math.isfinite(exponent):
            e = float(exponent)
            base = self._operands(exponent, op="pow")[0]
            if e == int(e) and abs(e) <= 64:
                if e < 0 and not base.dtype.is_floating_point:
                    raise RuntimeError("pow: integers to negative integer powers are not allowed")
                return base._int_power(int(e))
            if e == 0.5:
                return base.sqrt()
        base, e = self._operands(exponent, op="pow")
        if not base.dtype.is_floating_point:  # exact for the integer results the double result rounds to
            return base.double().pow(e.double()).round().cast(base.dtype)
        if base.dtype == dt.float16:
            return _pow_float(base.float(), e.float()).half()
        return _pow_float(base, e)

    def _int_power(self: Tensor, n: int) -> Tensor:
        """x ** n by repeated squaring, exact for integers and well-behaved for negative bases."""
        if n < 0:  # (1/x)^n, not 1/x^n: at x = 0 the gradient is -inf rather than -inf * 0
            return self.reciprocal()._int_power(-n)
        result, base = None, self
        while n:
            if n & 1:
                result = base if result is None else result * base
            n >>= 1
            if n:
                base = base * base
        return result if result is not None else self._zero_grad_from(self._c(1))

    def square(self: Tensor) -> Tensor:
        """self * self (bool squares to int64, like torch)."""
        x = self.cast(dt.int64) if self.dtype == dt.bool_ else self
        return x * x

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
        a, b = self._operands(other, op="ne")  # broadcast here so shape errors name this op
        return a.eq(b).logical_not()

    def lt(self: Tensor, other: Any) -> Tensor:
        """self < other."""
        return self._binary(Op.CMPLT, other, "lt")

    def gt(self: Tensor, other: Any) -> Tensor:
        """self > other."""
        return self._binary(Op.CMPLT, other, "gt", reverse=True)

    def le(self: Tensor, other: Any) -> Tensor:
        """self <= other (False where either is NaN)."""
        a, b = self._operands(other, op="le")
        return a.lt(b).logical_or(a.eq(b))

    def ge(self: Tensor, other: Any) -> Tensor:
        """self >= other (False where either is NaN)."""
        a, b = self._operands(other, op="ge")
        return a.gt(b).logical_or(a.eq(b))

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

    def isclose(self: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08,
                equal_nan: bool = False) -> Tensor:
        """|self - other| <= atol + rtol * |other| elementwise, as bool (equal infs are close; NaNs with equal_nan)."""
        from .tensor import Tensor
        if not isinstance(other, Tensor):
            raise TypeError(f"isclose: other must be a Tensor, got {type(other).__name__}")
        if other.dtype != self.dtype:  # torch promotes nothing here either
            raise RuntimeError(f"isclose: self ({self.dtype.name}) and other ({other.dtype.name}) must have the same "
                               "dtype; cast one with .to()")
        if rtol < 0 or atol < 0:
            raise RuntimeError(f"isclose: rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
        a, b = self.detach()._operands(other.detach(), op="isclose")  # a bool result: nothing to differentiate
        close = a.eq(b)
        if equal_nan and a.dtype.is_floating_point:
            close = close.logical_or(a.isnan().logical_and(b.isnan()))
        if rtol == 0 and atol == 0:
            return close
        if not a.dtype.is_floating_point:  # torch measures integer and bool errors in the default float type
            a, b = a.cast(dt.default_float), b.cast(dt.default_float)
        actual = (a - b).abs()
        return close.logical_or(actual.isfinite().logical_and(actual <= (b * rtol).abs() + atol))

    def allclose(self: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08,
                 equal_nan: bool = False) -> bool:
        """True when every element of self is close to other's (see isclose); computes now, like torch."""
        return bool(self.isclose(other, rtol, atol, equal_nan).all().item())

    # ---- selection ----

    def where(self: Tensor, condition: Tensor, other: Any) -> Tensor:
        """self where condition is True, else other (torch.Tensor.where)."""
        return condition._select(self, other)

    def _select(self: Tensor, x: Any, y: Any) -> Tensor:
        """x where self (a condition) is True, else y: torch.where(self, x, y), the form the library uses inside."""
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
            return (b < a)._select(b, a)
        return a._apply(Op.MAX, a.neg(), b.neg()).neg()

    def clamp(self: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 - PyTorch's names
        """Limit values to [min, max]; the gradient is 1 inside (bounds included), 0 outside; NaN stays NaN."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        out = self
        if min is not None:
            out = _nan_or(out < min, min)._select(min, out)
        if max is not None:
            out = _nan_or(out > max, max)._select(max, out)
        return out

    clip = clamp

    def clamp_min(self: Tensor, min: Any) -> Tensor:  # noqa: A002
        """Limit values from below."""
        return self.clamp(min=min)

    def clamp_max(self: Tensor, max: Any) -> Tensor:  # noqa: A002
        """Limit values from above."""
        return self.clamp(max=max)


def _nan_or(cond: Tensor, bound: Any) -> Tensor:
    """cond, or True where the clamp bound is NaN (torch's clamp propagates NaN bounds)."""
    if _is_scalar(bound):
        return cond.logical_or(True) if bound != bound else cond
    return cond.logical_or(bound.isnan()) if bound.dtype.is_floating_point else cond


def _pow_float(b: Tensor, e: Tensor) -> Tensor:
    """b ** e for float tensors of one shape and dtype, as exp2(e * log2|b|) with the sign of integer powers.

    Zero bases take a branch of their own whose primitive has torch's derivative e * 0 ** (e - 1) there (0, 1, +inf
    through sqrt, -inf through reciprocal), and the general branch sees 1 instead of 0 so its masked gradient is
    finite. Deviation: where torch's gradient is NaN (log of a negative base), this one is finite.
    """
    zero = b == 0
    safe = zero._select(1.0, b)
    mag = (e * safe.abs().log2()).exp2()
    e_is_int = e == e.floor()
    odd = e_is_int.logical_and(e.fmod(2) != 0)
    non_int = safe.isinf()._select(mag, b._c(float("nan")))  # (-inf) ** 0.5 is inf, (-2) ** 0.5 is NaN
    general = (safe < 0)._select(e_is_int._select(odd._select(-mag, mag), non_int), mag)
    general = (e == 0)._select(mag.isnan()._select(1.0, mag), general)  # x ** 0 is 1 even for inf/NaN bases
    general = (safe == 1).logical_and(e.isnan())._select(1.0, general)  # and 1 ** NaN is 1, as in C
    one, frac, neg = zero.logical_and(e == 1), zero.logical_and((e > 0).logical_and(e < 1)), zero.logical_and(e < 0)
    at_zero = (e == 0)._select(b._c(1.0), b._c(0.0))
    at_zero = one._select(b, at_zero)
    at_zero = frac._select(frac._select(b, 1.0).sqrt(), at_zero)
    at_zero = neg._select(neg._select(b, 1.0).reciprocal(), at_zero)
    return zero._select(at_zero, general)
