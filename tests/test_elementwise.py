"""Elementwise ops against torch: arithmetic (forward and gradients), unary math and activations, comparisons and
logic, selection, and the NaN/inf/large-magnitude edge cases where gradients must stay finite."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import compare, randn

import fusegrad as fg

# (shape of a, shape of b, view applied to a first): broadcasting, 0-d, size-1, empty, non-contiguous
BINARY_SHAPES = [
    ((3, 4), (3, 4), None),
    ((3, 1), (1, 4), None),
    ((), (2, 3), None),
    ((2, 3), (), None),
    ((1,), (5,), None),
    ((0, 3), (1, 3), None),
    ((2, 1, 3), (4, 1), None),
    ((4, 3), (3, 4), "T"),
    ((6, 4), (3, 4), "step"),
]
UNARY_SHAPES = [((3, 4), None), ((), None), ((1, 5), None), ((0, 2), None), ((4, 3), "T"), ((6, 2), "step")]


def _view(kind: str | None):
    """The same non-contiguous view in both frameworks: a transpose or a strided slice."""
    if kind == "T":
        return lambda x: x.transpose(0, 1)
    if kind == "step":
        return lambda x: x[::2]
    return lambda x: x


def _away_from_zero(x: np.ndarray) -> np.ndarray:
    """Divisors: |x| >= 0.5, so quotients stay moderate."""
    return np.sign(x + 1e-12) * (np.abs(x) + 0.5)


def _ids(shapes):
    return [f"{a}-{b}-{v}" for a, b, v in shapes]


# name -> (function run on both frameworks, domain of b); a is normal unless the op says so
BINARY_OPS = {
    "add": (lambda a, b: a + b, None),
    "sub": (lambda a, b: a - b, None),
    "mul": (lambda a, b: a * b, None),
    "div": (lambda a, b: a / b, "nonzero"),
    "add_alpha": (lambda a, b: a.add(b, alpha=2.5), None),
    "sub_alpha": (lambda a, b: a.sub(b, alpha=-3), None),
    "div_trunc": (lambda a, b: a.div(b, rounding_mode="trunc"), "nonzero"),
    "div_floor": (lambda a, b: a.div(b, rounding_mode="floor"), "nonzero"),
    "fmod": (lambda a, b: a.fmod(b), "nonzero"),
    "remainder": (lambda a, b: a.remainder(b), "nonzero"),
    "mod_op": (lambda a, b: a % b, "nonzero"),
    "pow_pos_base": (lambda a, b: (a.abs() + 0.5) ** b, None),
    "maximum": (lambda a, b: a.maximum(b), None),
    "minimum": (lambda a, b: a.minimum(b), None),
    "lerp": (lambda a, b: a.lerp(b, 0.3), None),
}


@pytest.mark.parametrize("name", list(BINARY_OPS))
@pytest.mark.parametrize("sa,sb,view", BINARY_SHAPES, ids=_ids(BINARY_SHAPES))
def test_binary_float64_with_grad(device, name, sa, sb, view):
    fn, domain = BINARY_OPS[name]
    a, b = randn(*sa, seed=1), randn(*sb, seed=2)
    if domain == "nonzero":
        b = _away_from_zero(b)
    v = _view(view)
    compare(lambda x, y: fn(v(x), y), None, a, b, device=device, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow_pos_base", "maximum", "minimum", "remainder"])
def test_binary_float32(device, name):
    fn, domain = BINARY_OPS[name]
    a, b = randn(3, 1, 4, dtype=np.float32, seed=3), randn(5, 1, dtype=np.float32, seed=4)
    if domain == "nonzero":
        b = _away_from_zero(b)
    compare(fn, None, a, b, device=device, atol=1e-5, rtol=1e-5)


def test_floordiv_operator_forward(device):
    # torch has no derivative for floor_divide, so only values are compared (div(rounding_mode='floor') checks grads)
    a, b = randn(4, 5, seed=5) * 4, _away_from_zero(randn(5, seed=6))
    compare(lambda x, y: x // y, None, a, b, device=device, grad=False, atol=1e-12)
    compare(lambda x: x // 0.7, None, a, device=device, grad=False, atol=1e-12)
    compare(lambda x: 3.5 // x, None, b, device=device, grad=False, atol=1e-12)


SCALAR_CASES = {
    "add": lambda x: x + 2.5, "radd": lambda x: 2.5 + x, "sub": lambda x: x - 3, "rsub": lambda x: 3 - x,
    "mul": lambda x: x * -1.5, "rmul": lambda x: 2 * x, "div": lambda x: x / 4, "rdiv": lambda x: 1.5 / x,
    "fmod": lambda x: x.fmod(0.75), "mod": lambda x: x % 0.75, "rmod": lambda x: 2.0 % x, "neg": lambda x: -x,
    "pos": lambda x: +x, "div_trunc": lambda x: x.div(0.6, rounding_mode="trunc"),
    "div_floor": lambda x: x.div(-0.6, rounding_mode="floor"), "max_0d": lambda x: x.maximum(torch.tensor(0.2))
    if isinstance(x, torch.Tensor) else x.maximum(fg.tensor(0.2)),
    "lerp_tensor_weight": lambda x: x.lerp(x * 0 + 1, x.abs() / 3),
}


@pytest.mark.parametrize("name", list(SCALAR_CASES))
@pytest.mark.parametrize("shape", [(3, 4), (), (0,)])
def test_scalar_operands_and_reflected(device, name, shape):
    x = _away_from_zero(randn(*shape, seed=7))
    grad = name != "rmod"  # torch has no derivative for remainder(Scalar, Tensor)
    compare(SCALAR_CASES[name], None, x, device=device, grad=grad, atol=1e-9, rtol=1e-9)


POW_EXPONENTS = [2, 3, -1, 0.5, 2.5, 0, 1, -2, 0.0, 3.0, 10]


@pytest.mark.parametrize("e", POW_EXPONENTS)
def test_pow_scalar_exponent(device, e):
    pos = randn(3, 4, seed=8, low=0.2)
    compare(lambda x: x ** e, None, pos, device=device, atol=1e-9, rtol=1e-9)
    compare(lambda x: x.pow(e), None, pos.astype(np.float32), device=device, atol=1e-5, rtol=1e-5)
    if float(e).is_integer():  # negative bases with integer exponents are real
        mixed = randn(2, 5, seed=9)
        compare(lambda x: x ** e, None, mixed, device=device, atol=1e-9, rtol=1e-9)


def test_pow_negative_base_tensor_integer_exponent(device):
    base = randn(3, 4, seed=10)
    exps = np.array([0.0, 1.0, 2.0, 3.0])
    # the exponent is a constant: torch's exponent gradient is NaN at negative bases
    compare(lambda x: x ** (torch.tensor(exps) if isinstance(x, torch.Tensor) else fg.tensor(exps, device=x.device)),
            None, base,
            device=device, atol=1e-9, rtol=1e-9)
    compare(lambda x: x ** 0.5, None, base, device=device, grad=False)  # NaN for negative bases


ZERO_BASE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.5])


@pytest.mark.parametrize("e", [2.5, 1.5, 0.3, 0.5, 2, 1, 0, -1, -2])
def test_pow_at_zero_base(device, e):
    # gradients at 0 are torch's e * 0 ** (e - 1): 0, 1 or +-inf, never NaN
    compare(lambda x: x ** e, None, ZERO_BASE, device=device, atol=1e-12)
    exps = ZERO_BASE * 0 + e
    compare(lambda x: x ** (torch.tensor(exps) if isinstance(x, torch.Tensor) else fg.tensor(exps, device=x.device)),
            None,
            ZERO_BASE, device=device, atol=1e-12)
    if e >= 0:  # torch's exponent gradient at a zero base is masked to 0 for e >= 0 (and -inf below)
        compare(lambda x, y: x ** y, None, ZERO_BASE, exps, device=device, atol=1e-12)


def test_pow_special_values(device):
    b = np.array([np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0])
    for e in (0, 0.0, 2, 0.5, -1.5, 3, 2.5):
        compare(lambda x, e=e: x ** e, None, b, device=device, grad=False)
    compare(lambda x, y: x ** y, None, np.array([1.0, 2.0, 3.0]), np.array([np.nan, 0.0, np.inf]), device=device,
            grad=False)


def test_rpow_and_int_pow(device):
    x = randn(2, 3, seed=11)
    compare(lambda t: 2 ** t, None, x, device=device, atol=1e-9, rtol=1e-9)
    compare(lambda t: 0.5 ** t, None, x, device=device, atol=1e-9, rtol=1e-9)
    ints = np.array([[-3, -2, 0], [1, 2, 5]], dtype=np.int64)
    for fn in (lambda t: t ** 2, lambda t: t ** 3, lambda t: t.pow(0), lambda t: t ** 2.5, lambda t: 2 ** t,
               lambda t: t ** 2.0, lambda t: t ** -1.0, lambda t: t ** t.abs(), lambda t: 3 ** t.abs()):
        compare(fn, None, ints, device=device)
    compare(lambda t: t ** 3, None, np.array([7, 2], np.uint8), device=device)  # wraps around, like torch
    for t in (fg.tensor([2, 3]), torch.tensor([2, 3])):
        with pytest.raises(RuntimeError):
            t ** -1


@pytest.mark.parametrize("op", ["//", "%", "div_trunc", "fmod"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64])
def test_floor_semantics_on_negative_values(device, op, dtype):
    a = np.array([-7, -6, -1, 0, 1, 6, 7, -7, 7, -3], dtype=dtype)
    b = np.array([2, -2, 3, -3, 5, 4, -4, -2, 2, 7], dtype=dtype)
    fns = {"//": lambda x, y: x // y, "%": lambda x, y: x % y, "fmod": lambda x, y: x.fmod(y),
           "div_trunc": lambda x, y: x.div(y, rounding_mode="trunc")}
    compare(fns[op], None, a, b, device=device, grad=False)
    compare(lambda x: fns[op](x, -3), None, a, device=device, grad=False)
    if dtype in (np.float32, np.float64):
        compare(lambda x, y: fns[op](x * 0.75, y), None, a, b, device=device, grad=False)


def test_division_by_zero(device):
    a, z = np.array([1.0, -1.0, 0.0, np.inf]), np.zeros(4)
    for fn in (lambda x, y: x / y, lambda x, y: x.fmod(y), lambda x, y: x % y, lambda x, y: x // y,
               lambda x, y: x.div(y, rounding_mode="trunc"), lambda x, y: x.div(y, rounding_mode="floor")):
        compare(fn, None, a, z, device=device, grad=False)
    # rounding divisions have zero gradient even where the quotient overflows
    big, tiny = np.array([1e300, -7.5, 0.3, 5.0]), np.array([1e-10, 2.5, 0.1, 0.0])
    for mode in ("trunc", "floor"):
        compare(lambda x, y, m=mode: x.div(y, rounding_mode=m), None, big, tiny, device=device)


def test_true_division_of_ints_gives_float32(device):
    a, b = np.array([7, -7, 3], np.int64), np.array([2, 2, -4], np.int32)
    compare(lambda x, y: x / y, None, a, b, device=device)
    compare(lambda x: x / 2, None, a, device=device)
    compare(lambda x: 1 / x, None, b, device=device)
    assert (fg.tensor([1, 2]) / fg.tensor([2, 4])).dtype == fg.float32


# name -> (function, low end of the uniform input domain or None for normal data, atol)
UNARY_OPS = {
    "abs": (lambda x: x.abs(), None), "exp": (lambda x: x.exp(), None), "exp2": (lambda x: x.exp2(), None),
    "log": (lambda x: x.log(), 0.1), "log2": (lambda x: x.log2(), 0.1), "log10": (lambda x: x.log10(), 0.1),
    "log1p": (lambda x: x.log1p(), -0.9), "expm1": (lambda x: x.expm1(), None), "sqrt": (lambda x: x.sqrt(), 0.1),
    "rsqrt": (lambda x: x.rsqrt(), 0.1), "sin": (lambda x: x.sin(), None), "cos": (lambda x: x.cos(), None),
    "tan": (lambda x: x.tan(), -1.2), "tanh": (lambda x: x.tanh(), None), "sigmoid": (lambda x: x.sigmoid(), None),
    "relu": (lambda x: x.relu(), None), "leaky_relu": (lambda x: torch.nn.functional.leaky_relu(x, 0.1)
                                                       if isinstance(x, torch.Tensor) else x.leaky_relu(0.1), None),
    "gelu_tanh": (lambda x: torch.nn.functional.gelu(x, approximate="tanh") if isinstance(x, torch.Tensor)
                  else x.gelu(approximate="tanh"), None),
    "silu": (lambda x: torch.nn.functional.silu(x) if isinstance(x, torch.Tensor) else x.silu(), None),
    "softplus": (lambda x: torch.nn.functional.softplus(x) if isinstance(x, torch.Tensor) else x.softplus(), None),
    "softplus_beta": (lambda x: torch.nn.functional.softplus(x * 10, beta=2, threshold=5)
                      if isinstance(x, torch.Tensor) else (x * 10).softplus(beta=2, threshold=5), None),
    "elu": (lambda x: torch.nn.functional.elu(x, alpha=0.7) if isinstance(x, torch.Tensor) else x.elu(0.7), None),
    "sign": (lambda x: x.sign(), None), "floor": (lambda x: (x * 3).floor(), None),
    "ceil": (lambda x: (x * 3).ceil(), None), "round": (lambda x: (x * 3).round(), None),
    "trunc": (lambda x: (x * 3).trunc(), None), "reciprocal": (lambda x: x.reciprocal(), 0.2),
    "square": (lambda x: x.square(), None), "neg": (lambda x: x.neg(), None),
    "clamp": (lambda x: x.clamp(-0.5, 0.7), None), "clip": (lambda x: x.clip(-0.5, 0.7), None),
    "clamp_min": (lambda x: x.clamp(min=-0.2), None), "clamp_max": (lambda x: x.clamp(max=0.3), None),
    "clamp_crossed": (lambda x: x.clamp(0.5, -0.5), None),
}
ERF_LIKE = {  # erf is a rational approximation with |error| < 5e-7, so tolerances are looser
    "erf": lambda x: x.erf(),
    "gelu": lambda x: torch.nn.functional.gelu(x) if isinstance(x, torch.Tensor) else x.gelu(),
}


@pytest.mark.parametrize("name", list(UNARY_OPS))
@pytest.mark.parametrize("shape,view", UNARY_SHAPES, ids=[f"{s}-{v}" for s, v in UNARY_SHAPES])
def test_unary_float64_with_grad(device, name, shape, view):
    fn, low = UNARY_OPS[name]
    v = _view(view)
    compare(lambda x: fn(v(x)), None, randn(*shape, seed=12, low=low), device=device, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", list(UNARY_OPS))
def test_unary_float32(device, name):
    fn, low = UNARY_OPS[name]
    compare(fn, None, randn(4, 5, dtype=np.float32, seed=13, low=low), device=device, atol=2e-6, rtol=2e-5)


@pytest.mark.parametrize("name", list(ERF_LIKE))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erf_approximation(device, name, dtype):
    x = np.concatenate([randn(50, seed=14) * 2, [0.0, -0.0, 1e-4, -3.0, 6.0, -6.0]]).astype(dtype)
    # the derivative of the approximation is what flows back: its error is larger than the value's
    atol = 1e-6 if dtype == np.float32 else 2e-7  # gelu(-3) = 1.5 * (1 + erf(-2.12)) scales erf's error by 1.5
    compare(ERF_LIKE[name], None, x, device=device, atol=atol, rtol=1e-6, grad_atol=5e-6, grad_rtol=1e-5)


@pytest.mark.parametrize("dtype,atol", [(np.float32, 5e-7), (np.float64, 1e-7)])
def test_erf_error_bound_on_a_dense_grid(device, dtype, atol):
    x = np.linspace(-7, 7, 100_001).astype(dtype)
    out = fg.tensor(x, device=device).erf().numpy()
    np.testing.assert_allclose(out, torch.erf(torch.from_numpy(x.astype(np.float64))).numpy(), atol=atol, rtol=0)
    # relative accuracy near 0, where 1 - poly * exp(-x^2) would cancel
    tiny = np.array([1e-4, -3e-6, 1e-30], dtype)
    np.testing.assert_allclose(fg.tensor(tiny, device=device).erf().numpy(), tiny * (2 / np.sqrt(np.pi)), rtol=1e-6)


def test_rounding_ties_and_integers(device):
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -0.0, 0.49999997, 1e20, -1e20], np.float32)
    for fn in (lambda x: x.round(), lambda x: x.floor(), lambda x: x.ceil(), lambda x: x.trunc()):
        compare(fn, None, halves, device=device)
        compare(fn, None, halves.astype(np.float64), device=device)
    compare(lambda x: x.round(decimals=2), None, np.array([1.2345, -2.5551, 0.125]), device=device, atol=1e-12)
    ints = np.array([-3, 0, 4], np.int64)
    for fn in (lambda x: x.abs(), lambda x: x.sign(), lambda x: x.floor(), lambda x: x.round(), lambda x: -x,
               lambda x: x.square(), lambda x: x.clamp(-1, 2), lambda x: x.relu()):
        compare(fn, None, ints, device=device)
    compare(lambda x: x.exp(), None, ints, device=device)  # integer inputs to float functions give float32
    compare(lambda x: x.sqrt(), None, np.array([0, 4, 9], np.int32), device=device)


@pytest.mark.parametrize("name", [n for n, (_, low) in UNARY_OPS.items() if low is None or low > -1] + list(ERF_LIKE))
def test_unary_float16(device, name):
    # float16 composites run in float32 and round once, like torch's CPU kernels
    fn = UNARY_OPS[name][0] if name in UNARY_OPS else ERF_LIKE[name]
    low = UNARY_OPS[name][1] if name in UNARY_OPS else None
    x = randn(4, 6, dtype=np.float16, seed=26, low=low)
    compare(fn, None, x, device=device, atol=2e-3, rtol=2e-3, grad_atol=5e-3, grad_rtol=1e-2)


def test_activations_at_kinks(device):
    x = np.array([-1.0, 0.0, 0.0, 1.0])
    for fn in (lambda t: t.relu(), lambda t: t.abs(), lambda t: t.clamp(0.0, 1.0), lambda t: t.sign()):
        compare(fn, None, x, device=device)
    compare(lambda t: t.maximum(t * 0), None, x, device=device)  # ties split the gradient evenly, like torch


def test_large_magnitudes_keep_gradients_finite(device):
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    for name in ("sigmoid", "tanh", "softplus", "softplus_beta", "silu", "gelu_tanh", "elu", "expm1", "relu"):
        compare(UNARY_OPS[name][0], None, x, device=device, atol=1e-9, rtol=1e-9)
    compare(UNARY_OPS["sigmoid"][0], None, x.astype(np.float32), device=device, atol=1e-7)
    compare(UNARY_OPS["tanh"][0], None, x.astype(np.float32), device=device, atol=1e-6)
    t = fg.tensor([-100.0], requires_grad=True)
    t.sigmoid().sum().backward()
    assert np.isfinite(t.grad.numpy()).all() and t.grad.item() == pytest.approx(math.exp(-100), rel=1e-5)
    compare(lambda t: t.exp(), None, np.array([-800.0, 0.0, 700.0, 800.0]), device=device, atol=0, rtol=1e-12)


@pytest.mark.parametrize("name", ["exp", "expm1", "log1p", "sigmoid", "tanh", "softplus", "relu", "silu", "elu",
                                  "clamp", "leaky_relu", "gelu_tanh", "abs", "square", "floor", "sign", "erf"])
def test_gradients_at_infinity(device, name):
    x = np.array([np.inf, -np.inf, 0.5])
    if name == "log1p":
        x = x[[0, 2]]
    fn = ERF_LIKE[name] if name in ERF_LIKE else UNARY_OPS[name][0]
    compare(fn, None, x, device=device, atol=5e-7 if name == "erf" else 1e-9, rtol=1e-9)


NAN_INF = np.array([np.nan, np.inf, -np.inf, 0.0, -2.0, 3.0])
NAN_CASES = {
    "relu": lambda x: x.relu(), "exp": lambda x: x.exp(), "log": lambda x: x.log(), "abs": lambda x: x.abs(),
    "sqrt": lambda x: x.sqrt(), "clamp": lambda x: x.clamp(-1, 1), "clamp_min": lambda x: x.clamp(min=0),
    "maximum": lambda x: x.maximum(x.flip(0)), "minimum": lambda x: x.minimum(x.flip(0)),
    "sigmoid": lambda x: x.sigmoid(), "tanh": lambda x: x.tanh(), "floor": lambda x: x.floor(),
    "round": lambda x: x.round(), "sign": lambda x: x.sign(), "reciprocal": lambda x: x.reciprocal(),
    "mul": lambda x: x * 2, "div0": lambda x: x / 0.0, "log1p": lambda x: x.log1p(), "expm1": lambda x: x.expm1(),
}


@pytest.mark.parametrize("name", list(NAN_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate(device, name, dtype):
    compare(NAN_CASES[name], None, NAN_INF.astype(dtype), device=device, grad=False)


COMPARISONS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "eq": lambda a, b: a.eq(b), "ne": lambda a, b: a.ne(b),
    "lt": lambda a, b: a.lt(b), "le": lambda a, b: a.le(b), "gt": lambda a, b: a.gt(b), "ge": lambda a, b: a.ge(b),
}


@pytest.mark.parametrize("name", list(COMPARISONS))
def test_comparisons_are_bool(device, name):
    fn = COMPARISONS[name]
    a = np.array([[1.0, 2.0, np.nan, -np.inf], [0.0, -1.0, 3.0, np.inf]])
    b = np.array([1.0, 3.0, np.nan, 0.0])
    compare(fn, None, a, b, device=device)
    compare(fn, None, a.astype(np.float32), a[::-1].copy(), device=device)  # mixed dtypes
    compare(fn, None, np.array([3, -1, 2], np.int64), np.array([[2], [3]], np.int32), device=device)
    compare(fn, None, np.array([True, False]), np.array([[True], [False]]), device=device)
    compare(lambda x: fn(x, 2), None, a, device=device)
    compare(lambda x: fn(x, 2.5), None, np.array([1, 2, 3], np.int64), device=device)
    compare(lambda x: fn(x.transpose(0, 1), 0.5), None, randn(3, 2, seed=15), device=device)
    compare(lambda x: fn(x, x), None, np.zeros((0, 2)), device=device)
    t = fg.tensor([1.0, 2.0], requires_grad=True)
    assert fn(t, 1.5).dtype == fg.bool_ and not fn(t, 1.5).requires_grad


LOGICAL = {
    "and": lambda a, b: a.logical_and(b), "or": lambda a, b: a.logical_or(b), "xor": lambda a, b: a.logical_xor(b),
    "&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b,
}


@pytest.mark.parametrize("name", list(LOGICAL))
def test_logical_ops(device, name):
    fn = LOGICAL[name]
    p, q = np.array([True, True, False, False]), np.array([[True], [False]])
    compare(fn, None, p, q, device=device)
    if name in ("and", "or", "xor"):  # logical_* accept any dtype (nonzero is True)
        compare(fn, None, np.array([0.0, 2.0, -1.0]), np.array([3, 0, 0], np.int64), device=device)
        compare(lambda a: fn(a, a.flip(0)), None, np.array([0.0, np.nan, 1.0]), device=device)


def test_not_and_invert(device):
    compare(lambda a: a.logical_not(), None, np.array([True, False]), device=device)
    compare(lambda a: ~a, None, np.array([[True, False]]), device=device)
    compare(lambda a: a.logical_not(), None, np.array([0.0, 1.5, np.nan]), device=device)
    compare(lambda a: a.logical_not(), None, np.array([0, 3], np.int32), device=device)


@pytest.mark.parametrize("fn", [lambda x: x.isnan(), lambda x: x.isinf(), lambda x: x.isfinite()],
                         ids=["isnan", "isinf", "isfinite"])
def test_nan_inf_predicates(device, fn):
    compare(fn, None, NAN_INF, device=device)
    compare(fn, None, NAN_INF.astype(np.float16), device=device)
    compare(fn, None, np.array([1, -2], np.int64), device=device)
    compare(fn, None, np.array([True]), device=device)


def test_where(device):
    c = np.array([[True, False, True]])
    x, y = randn(2, 1, seed=16), randn(3, seed=17)
    compare(lambda cc, a, b: torch.where(cc, a, b) if isinstance(cc, torch.Tensor) else fg.where(cc, a, b),
            None, c, x, y, device=device, atol=1e-12)
    compare(lambda a: torch.where(a > 0, a, 0.0) if isinstance(a, torch.Tensor) else fg.where(a > 0, a, 0.0),
            None, x, device=device, atol=1e-12)
    compare(lambda a: torch.where(a > 0, 1, a) if isinstance(a, torch.Tensor) else fg.where(a > 0, 1, a),
            None, randn(4, seed=18).astype(np.float32), device=device)
    ints = np.array([1, 2, 3], np.int32)
    compare(lambda a: torch.where(a > 1, a, 2.5) if isinstance(a, torch.Tensor) else fg.where(a > 1, a, 2.5),
            None, ints, device=device)


@pytest.mark.parametrize("weight", ["scalar", "tensor"])
def test_lerp(device, weight):
    a, b, w = randn(2, 3, seed=19), randn(3, seed=20), randn(2, 1, seed=21, low=0.0)
    if weight == "scalar":
        compare(lambda s, e: s.lerp(e, 0.75), None, a, b, device=device, atol=1e-12)
        compare(lambda s, e: torch.lerp(s, e, 0.25) if isinstance(s, torch.Tensor) else fg.lerp(s, e, 0.25),
                None, a, b, device=device, atol=1e-12)
    else:
        compare(lambda s, e, ww: s.lerp(e, ww), None, a, b, w, device=device, atol=1e-12)


@pytest.mark.parametrize("bounds", ["tensor", "tensor_min", "tensor_max", "broadcast"])
def test_clamp_tensor_bounds(device, bounds):
    x, lo, hi = randn(3, 4, seed=22), randn(3, 4, seed=23) - 0.5, randn(3, 4, seed=24) + 0.5
    if bounds == "tensor":
        compare(lambda t, a, b: t.clamp(a, b), None, x, lo, hi, device=device)
        compare(lambda t, a, b: t.clip(min=a, max=b), None, x, lo, hi, device=device)
    elif bounds == "tensor_min":
        compare(lambda t, a: t.clamp(min=a), None, x, lo, device=device)
    elif bounds == "tensor_max":
        compare(lambda t, b: t.clamp(max=b), None, x, hi, device=device)
    else:
        compare(lambda t, a, b: t.clamp(a, b), None, x, lo[:1], hi[:, :1].copy(), device=device)


def test_clamp_boundary_gradient_and_errors(device):
    compare(lambda t: t.clamp(-1.0, 1.0), None, np.array([-1.0, 1.0, -2.0, 2.0, 0.0]), device=device)
    compare(lambda t: t.clamp(min=float("nan")), None, np.array([-1.0, 2.0]), device=device, grad=False)
    compare(lambda t, lo: t.clamp(lo, lo * 0 + 1), None, np.array([-1.0, 2.0]), np.array([np.nan, 0.0]), device=device,
            grad=False)
    compare(lambda t: t.clamp(0, 5), None, np.array([-3, 2, 9], np.int64), device=device)
    compare(lambda t: t.clamp(0.5, 5), None, np.array([-3, 2, 9], np.int64), device=device)
    with pytest.raises((ValueError, RuntimeError)):
        fg.tensor([1.0]).clamp()


def test_module_level_functions(device):
    x = randn(2, 3, seed=25, low=0.1)
    for name in ("exp", "log", "sqrt", "sigmoid", "tanh", "abs", "neg", "square", "erf", "reciprocal", "sign"):
        compare(lambda t, n=name: getattr(torch if isinstance(t, torch.Tensor) else fg, n)(t), None, x,
                device=device, atol=5e-7)
    for name in ("add", "sub", "mul", "div", "maximum", "minimum", "pow", "fmod", "remainder", "eq", "lt"):
        compare(lambda t, n=name: getattr(torch if isinstance(t, torch.Tensor) else fg, n)(t, t.flip(0) + 0.5),
                None, x, device=device, atol=1e-9)


def test_unsupported_operands_are_named():
    x = fg.ones(3)
    with pytest.raises(TypeError, match="add: unsupported operand type str"):
        x + "a"
    with pytest.raises(TypeError, match="where: unsupported operand type list"):
        fg.where(x > 0, x, [1.0])


def test_bool_arithmetic_errors_like_torch():
    b = fg.tensor([True, False])
    with pytest.raises(TypeError):
        b - b
    with pytest.raises(TypeError):
        b.neg()
    with pytest.raises(TypeError):
        fg.tensor([1, 2]) & fg.tensor([3, 4])  # bitwise integer ops are not implemented (torch has them)
    with pytest.raises(fg.ShapeError):
        fg.ones(2, 3) + fg.ones(4)


def test_tensor_where_method_follows_torch(device: str) -> None:
    """x.where(cond, y) is torch.where(cond, x, y): self is the value, not the condition."""
    x, y = randn(3, 4, seed=1), randn(3, 4, seed=2)
    compare(lambda a, b: a.where(a > 0, b), None, x, y, device=device)
    compare(lambda a, b: a.where(a > 0, 0.5), None, x, y, device=device)
