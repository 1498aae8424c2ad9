"""More of torch's API against torch: roll, diff, diag, trace, outer, mv, addmm, baddbmm, nan_to_num, hypot, atan2,
logaddexp, xlogy, count_nonzero, take_along_dim, signbit, frac, meshgrid, the *stack functions, tensordot,
var_mean/std_mean, is_tensor and as_tensor: values and gradients on every device, shapes with broadcasting, 0-d,
size-1 and empty dims, negative dims, and the errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, compare, randn

import fusegrad as fg

INF, NAN = float("inf"), float("nan")
# operands drawn from these, so zeros of both signs, infinities and NaN meet every other value
SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.5, -3.75, 1e-3, -1e30, 1e30, INF, -INF, NAN]


def _special_pair(dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair of SPECIAL values, as two 1-D arrays."""
    a, b = np.meshgrid(np.array(SPECIAL), np.array(SPECIAL), indexing="ij")
    return a.reshape(-1).astype(dtype), b.reshape(-1).astype(dtype)


def _raises(fg_call, torch_call, error) -> None:
    """Both libraries reject the input; fusegrad with `error`."""
    with pytest.raises(error):
        fg_call()
    with pytest.raises((RuntimeError, ValueError, IndexError, TypeError, NotImplementedError)):
        torch_call()


# ---- roll ----

ROLLS = [((5,), 2, None), ((2, 3), 1, None), ((2, 3), -4, 1), ((2, 3, 4), (1, -2), (0, 2)), ((2, 3), (1, 1), (1, 1)),
         ((2, 3), [7], [-2]), ((0, 3), 1, 0), ((), 3, None), ((1, 4), 5, -2), ((3, 0), 2, None)]


@pytest.mark.parametrize("shape,shifts,dims", ROLLS, ids=[str(r) for r in ROLLS])
def test_roll_matches_torch(device, shape, shifts, dims):
    def f(mod, x):
        return mod.roll(x, shifts) if dims is None else mod.roll(x, shifts, dims)
    compare(lambda x: f(fg, x), lambda x: f(torch, x), randn(*shape), device=device)
    compare(lambda x: x.roll(shifts, dims), lambda x: torch.roll(x, shifts, dims if dims is not None else ()),
            np.arange(int(np.prod(shape))).reshape(shape), device=device)


def test_roll_errors():
    x, t = fg.ones(2, 3), torch.ones(2, 3)
    _raises(lambda: x.roll((1, 2), 0), lambda: t.roll((1, 2), 0), fg.ShapeError)
    _raises(lambda: x.roll((1, 2)), lambda: t.roll((1, 2)), fg.ShapeError)
    _raises(lambda: x.roll((), ()), lambda: t.roll((), ()), fg.ShapeError)
    _raises(lambda: x.roll(1, 2), lambda: t.roll(1, 2), IndexError)
    _raises(lambda: fg.tensor(3.0).roll(1, 0), lambda: torch.tensor(3.0).roll(1, 0), IndexError)
    _raises(lambda: x.roll(1.5), lambda: t.roll(1.5), TypeError)


# ---- diff ----

DIFFS = [((5,), 1, -1, None, None), ((3, 4), 2, 0, None, None), ((3, 4), 1, 1, (3, 2), (3, 1)),
         ((3, 4), 5, -1, None, None), ((3, 4), 0, -1, (3, 1), None), ((2, 0), 1, -1, None, None),
         ((1, 4, 2), 1, -2, (1, 1, 2), None), ((4,), 3, 0, None, (2,)), ((2, 3), 1, 0, (0, 3), (1, 3))]


@pytest.mark.parametrize("shape,n,dim,pre,app", DIFFS, ids=[str(d) for d in DIFFS])
def test_diff_matches_torch(device, shape, n, dim, pre, app):
    arrays = [randn(*shape)] + [randn(*s, seed=i + 1) for i, s in enumerate((pre, app)) if s is not None]

    def call(mod, x, *extra):
        it = iter(extra)
        kw = {k: next(it) for k, s in (("prepend", pre), ("append", app)) if s is not None}
        return mod.diff(x, n, dim, **kw)
    compare(lambda *a: call(fg, *a), lambda *a: call(torch, *a), *arrays, device=device)
    compare(lambda x: x.diff(n, dim), lambda x: x.diff(n, dim), arrays[0], device=device)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_diff_integers_and_bools(device, dtype):
    x = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]]).astype(dtype)
    for n in (1, 2):
        compare(lambda a, n=n: fg.diff(a, n), lambda a, n=n: torch.diff(a, n), x, device=device)
    ext = np.array([[7], [0]], dtype=np.int32)  # promotes with the input, as torch.cat does
    compare(lambda a, b: fg.diff(a, append=b), lambda a, b: torch.diff(a, append=b), x, ext, device=device)


def test_diff_errors():
    x, t = fg.ones(2, 3), torch.ones(2, 3)
    _raises(lambda: fg.tensor(1.0).diff(), lambda: torch.tensor(1.0).diff(), fg.ShapeError)
    _raises(lambda: x.diff(-1), lambda: t.diff(-1), ValueError)
    _raises(lambda: x.diff(1.5), lambda: t.diff(1.5), TypeError)
    _raises(lambda: x.diff(dim=2), lambda: t.diff(dim=2), IndexError)
    _raises(lambda: x.diff(prepend=fg.ones(1, 1)), lambda: t.diff(prepend=torch.ones(1, 1)), fg.ShapeError)
    _raises(lambda: x.diff(append=fg.ones(3)), lambda: t.diff(append=torch.ones(3)), fg.ShapeError)
    _raises(lambda: x.diff(prepend=1), lambda: t.diff(prepend=1), TypeError)


# ---- diag, trace ----

DIAGS = [((4,), 0), ((4,), 2), ((4,), -3), ((1,), 1), ((0,), 0), ((0,), -2), ((3, 4), 0), ((3, 4), 2), ((3, 4), -1),
         ((4, 3), 1), ((4, 3), -3), ((3, 4), 5), ((3, 4), -5), ((0, 3), 0), ((1, 1), 0), ((2, 2), 1)]


@pytest.mark.parametrize("shape,k", DIAGS, ids=[str(d) for d in DIAGS])
def test_diag_matches_torch(device, shape, k):
    compare(lambda x: fg.diag(x, k), lambda x: torch.diag(x, k), randn(*shape), device=device)
    compare(lambda x: x.diag(diagonal=k), lambda x: x.diag(diagonal=k), (randn(*shape) > 0), device=device)


@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 2), (0, 2), (1, 1)])
def test_trace_matches_torch(device, shape):
    compare(lambda x: fg.trace(x), lambda x: torch.trace(x), randn(*shape), device=device)
    for dtype in ("int32", "uint8", "int64"):  # integers sum as int64
        compare(lambda x: x.trace(), None, np.arange(int(np.prod(shape))).reshape(shape).astype(dtype),
                device=device)


def test_diag_trace_errors():
    _raises(lambda: fg.tensor(3.0).diag(), lambda: torch.tensor(3.0).diag(), fg.ShapeError)
    _raises(lambda: fg.ones(2, 2, 2).diag(), lambda: torch.ones(2, 2, 2).diag(), fg.ShapeError)
    _raises(lambda: fg.ones(2, 2).diag(1.5), lambda: torch.ones(2, 2).diag(1.5), TypeError)
    _raises(lambda: fg.ones(3).trace(), lambda: torch.ones(3).trace(), fg.ShapeError)
    _raises(lambda: fg.ones(2, 2, dtype=fg.bool).trace(), lambda: torch.ones(2, 2, dtype=torch.bool).trace(),
            TypeError)


# ---- outer, mv, addmm, baddbmm ----

@pytest.mark.parametrize("sa,sb,da,db", [((3,), (4,), "float64", "float64"), ((0,), (2,), "float32", "float32"),
                                         ((3,), (1,), "float32", "int64"), ((2,), (3,), "bool", "bool"),
                                         ((2,), (3,), "bool", "int32")])
def test_outer_matches_torch(device, sa, sb, da, db):
    a, b = randn(*sa, seed=1).astype(da), randn(*sb, seed=2).astype(db)
    compare(lambda x, y: fg.outer(x, y), lambda x, y: torch.outer(x, y), a, b, device=device)
    compare(lambda x, y: x.outer(y), lambda x, y: x.outer(y), a, b, device=device)


@pytest.mark.parametrize("sm,sv", [((3, 4), (4,)), ((0, 3), (3,)), ((2, 0), (0,)), ((1, 1), (1,))])
def test_mv_matches_torch(device, sm, sv):
    compare(lambda m, v: fg.mv(m, v), lambda m, v: torch.mv(m, v), randn(*sm, seed=1), randn(*sv, seed=2),
            device=device)
    ints = np.arange(int(np.prod(sm))).reshape(sm), np.arange(sv[0]) - 1
    compare(lambda m, v: m.mv(v), lambda m, v: m.mv(v), *ints, device=device)


ADDMM = [((2, 3), 1, 1), ((3,), 0.5, 2), ((1, 3), -1, 0.25), ((), 2, 1), ((2, 1), 0, 3), ((2, 3), 1.5, 0)]


@pytest.mark.parametrize("si,beta,alpha", ADDMM, ids=[str(a) for a in ADDMM])
def test_addmm_matches_torch(device, si, beta, alpha):
    arrays = randn(*si, seed=1), randn(2, 4, seed=2), randn(4, 3, seed=3)
    compare(lambda i, a, b: fg.addmm(i, a, b, beta=beta, alpha=alpha),
            lambda i, a, b: torch.addmm(i, a, b, beta=beta, alpha=alpha), *arrays, device=device)
    compare(lambda i, a, b: i.addmm(a, b, beta=beta, alpha=alpha),
            lambda i, a, b: i.addmm(a, b, beta=beta, alpha=alpha), *arrays, device=device)


def test_addmm_edges(device):
    # beta=0 ignores the input's values, NaN included, and gives it a zero gradient
    nan_input = np.full((2, 3), NAN)
    compare(lambda i, a, b: fg.addmm(i, a, b, beta=0), lambda i, a, b: torch.addmm(i, a, b, beta=0),
            nan_input, randn(2, 4, seed=2), randn(4, 3, seed=3), device=device)
    i = fg.tensor(nan_input, device=device, requires_grad=True)
    fg.addmm(i, fg.ones(2, 4, dtype=fg.float64, device=device), fg.ones(4, 3, dtype=fg.float64, device=device),
             beta=0).sum().backward()
    assert i.grad is not None and i.grad.tolist() == [[0.0] * 3] * 2
    # an empty inner dim: the product is zeros
    compare(lambda i, a, b: fg.addmm(i, a, b, alpha=3), lambda i, a, b: torch.addmm(i, a, b, alpha=3),
            randn(2, 2), randn(2, 0), randn(0, 2), device=device)
    # integers: the scalars are truncated to ints, as torch converts them to the tensors' dtype
    ints = [np.arange(6).reshape(2, 3), np.arange(8).reshape(2, 4) - 3, np.arange(12).reshape(4, 3)]
    for beta, alpha in ((1, 1), (0.5, 2), (1.9, 2.7), (3, True)):
        compare(lambda i, a, b, be=beta, al=alpha: fg.addmm(i, a, b, beta=be, alpha=al),
                lambda i, a, b, be=beta, al=alpha: torch.addmm(i, a, b, beta=be, alpha=al), *ints, device=device)


BADDBMM = [((2, 3, 5), 1, 1), ((5,), 0.5, -2), ((1, 3, 1), 2, 0.5), ((), 0, 1), ((3, 5), -1, 1)]


@pytest.mark.parametrize("si,beta,alpha", BADDBMM, ids=[str(a) for a in BADDBMM])
def test_baddbmm_matches_torch(device, si, beta, alpha):
    arrays = randn(*si, seed=1), randn(2, 3, 4, seed=2), randn(2, 4, 5, seed=3)
    compare(lambda i, a, b: fg.baddbmm(i, a, b, beta=beta, alpha=alpha),
            lambda i, a, b: torch.baddbmm(i, a, b, beta=beta, alpha=alpha), *arrays, device=device)
    compare(lambda i, a, b: i.baddbmm(a, b, alpha=alpha), lambda i, a, b: i.baddbmm(a, b, alpha=alpha),
            *arrays, device=device)


def test_matrix_product_errors():
    f2, t2 = fg.ones(2, 3), torch.ones(2, 3)
    _raises(lambda: fg.outer(fg.ones(2, 1), fg.ones(3)), lambda: torch.outer(torch.ones(2, 1), torch.ones(3)),
            fg.ShapeError)
    _raises(lambda: fg.outer(fg.ones(2), fg.tensor(1.0)), lambda: torch.outer(torch.ones(2), torch.tensor(1.0)),
            fg.ShapeError)
    _raises(lambda: f2.mv(fg.ones(4)), lambda: t2.mv(torch.ones(4)), fg.ShapeError)
    _raises(lambda: f2.mv(fg.ones(3, 1)), lambda: t2.mv(torch.ones(3, 1)), fg.ShapeError)
    _raises(lambda: f2.mv(fg.ones(3, dtype=fg.float64)), lambda: t2.mv(torch.ones(3, dtype=torch.float64)),
            fg.ShapeError)
    _raises(lambda: fg.addmm(fg.ones(4, 3), fg.ones(2, 4), fg.ones(4, 3)),
            lambda: torch.addmm(torch.ones(4, 3), torch.ones(2, 4), torch.ones(4, 3)), fg.ShapeError)
    _raises(lambda: fg.addmm(fg.ones(3, dtype=fg.float64), fg.ones(2, 4), fg.ones(4, 3)),
            lambda: torch.addmm(torch.ones(3, dtype=torch.float64), torch.ones(2, 4), torch.ones(4, 3)),
            fg.ShapeError)
    _raises(lambda: fg.addmm(fg.ones(3), fg.ones(2, 4), fg.ones(5, 3)),
            lambda: torch.addmm(torch.ones(3), torch.ones(2, 4), torch.ones(5, 3)), fg.ShapeError)
    _raises(lambda: fg.addmm(fg.ones(3), fg.ones(4), fg.ones(4, 3)),
            lambda: torch.addmm(torch.ones(3), torch.ones(4), torch.ones(4, 3)), fg.ShapeError)
    _raises(lambda: fg.baddbmm(fg.ones(3), fg.ones(2, 2, 4), fg.ones(1, 4, 3)),
            lambda: torch.baddbmm(torch.ones(3), torch.ones(2, 2, 4), torch.ones(1, 4, 3)), fg.ShapeError)
    _raises(lambda: fg.baddbmm(fg.ones(3), fg.ones(2, 4), fg.ones(4, 3)),
            lambda: torch.baddbmm(torch.ones(3), torch.ones(2, 4), torch.ones(4, 3)), fg.ShapeError)


# ---- nan_to_num, signbit, frac ----

@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_nan_to_num_matches_torch(device, dtype):
    with np.errstate(over="ignore"):  # 1e30 is inf in float16
        x = np.array(SPECIAL * 2).astype(dtype).reshape(4, 6)
    for kw in (dict(), dict(nan=1.5), dict(posinf=7.0), dict(nan=-2.0, posinf=1e300, neginf=-4.0),
               dict(nan=INF, neginf=0.5)):
        compare(lambda a, kw=kw: fg.nan_to_num(a, **kw), lambda a, kw=kw: torch.nan_to_num(a, **kw), x,
                device=device)
    compare(lambda a: a.nan_to_num(1.0, 2.0, 3.0), lambda a: a.nan_to_num(1.0, 2.0, 3.0), x[0], device=device)
    compare(lambda a: a.nan_to_num(), None, np.array(3.0, dtype=dtype), device=device)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_nan_to_num_leaves_integers(device, dtype):
    compare(lambda a: a.nan_to_num(nan=1.5), lambda a: a.nan_to_num(nan=1.5),
            np.array([[0, 1, 2], [3, 0, 5]]).astype(dtype), device=device)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64", "int32", "uint8", "bool"])
def test_signbit_matches_torch(device, dtype):
    with np.errstate(over="ignore"):  # 1e30 is inf in float16; -1 wraps to 255 in uint8
        x = np.array(SPECIAL if dtype.startswith("float") else [0, 1, -1, 7, -8, 0]).astype(dtype)
    compare(lambda a: fg.signbit(a), lambda a: torch.signbit(a), x, device=device)
    compare(lambda a: a.signbit(), None, x.reshape(2, -1), device=device)
    compare(lambda a: a.signbit(), None, x.reshape(2, -1)[:, :0], device=device)  # empty
    compare(lambda a: a.signbit(), None, x[:1].reshape(()), device=device)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_frac_matches_torch(device, dtype):
    values = SPECIAL + [1.5, -1.5, 2.75, -0.25, 1e6 + 0.5, -123.125]
    compare(lambda a: fg.frac(a), lambda a: torch.frac(a), np.array(values, dtype=dtype), device=device)
    compare(lambda a: a.frac(), None, randn(3, 1, 4, dtype=dtype) * 10, device=device)


def test_elementwise_unary_errors():
    _raises(lambda: fg.ones(3, dtype=fg.int64).frac(), lambda: torch.ones(3, dtype=torch.int64).frac(), TypeError)


# ---- hypot, atan2, logaddexp, xlogy ----

SHAPE_PAIRS = [((4, 5), (4, 5)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 3), ()), ((), ()), ((0, 3), (1, 3)),
               ((2, 1, 3), (4, 1))]
BINARY = {"hypot": (lambda a, b: fg.hypot(a, b), torch.hypot),
          "atan2": (lambda a, b: fg.atan2(a, b), torch.atan2),
          "arctan2": (lambda a, b: a.arctan2(b), torch.arctan2),
          "logaddexp": (lambda a, b: fg.logaddexp(a, b), torch.logaddexp),
          "xlogy": (lambda a, b: fg.xlogy(a, b), torch.xlogy)}


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("sa,sb", SHAPE_PAIRS, ids=[f"{a}-{b}" for a, b in SHAPE_PAIRS])
def test_binary_math_matches_torch(device, name, sa, sb):
    f, t = BINARY[name]
    low = 0.1 if name == "xlogy" else None  # xlogy's y away from 0, where its gradient is large
    a, b = randn(*sa, seed=1) * 3, randn(*sb, seed=2, low=low) * (1 if low else 3)
    compare(f, t, a, b, device=device, atol=1e-10, rtol=1e-10)
    compare(f, t, a.astype(np.float32), b.astype(np.float32), device=device, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_math_special_values(device, name, dtype):
    """Zeros of both signs, infinities, NaN and huge values: values and torch's gradients there."""
    f, t = BINARY[name]
    a, b = _special_pair(dtype)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == "float32" else dict(atol=1e-12, rtol=1e-12)
    compare(f, t, a, b, device=device, **tol)


def test_binary_math_extremes():
    # no overflow in hypot and logaddexp where the naive formulas overflow, and atan2 over every angle
    big = np.array([3e38, -3e38, 1e-44, 2e30], dtype=np.float32)
    for f, t in (BINARY["hypot"], BINARY["logaddexp"]):
        compare(f, t, big, big[::-1].copy(), atol=0, rtol=1e-6)
    angles = np.linspace(-np.pi, np.pi, 2001)
    compare(BINARY["atan2"][0], BINARY["atan2"][1], np.sin(angles) * 5, np.cos(angles) * 5, atol=1e-14, rtol=1e-14)
    compare(BINARY["atan2"][0], BINARY["atan2"][1], np.sin(angles).astype(np.float32),
            np.cos(angles).astype(np.float32), atol=3e-7, rtol=1e-6)
    compare(BINARY["logaddexp"][0], BINARY["logaddexp"][1], randn(50) * 100, randn(50, seed=3) * 100,
            atol=1e-12, rtol=1e-12)


def test_binary_math_dtypes(device):
    ints = np.array([[0, 1, -2], [3, -4, 5]]), np.array([2, 0, -1])
    for name in ("atan2", "xlogy"):  # integers and bools compute in float32
        compare(*BINARY[name], *ints, device=device)
        compare(*BINARY[name], ints[0] > 0, ints[1] > 0, device=device)
    # mixed float dtypes promote; a 0-d float64 operand does not lift a float32 tensor
    for name in BINARY:
        compare(*BINARY[name], randn(2, 3, dtype=np.float32, low=0.5), randn(3, seed=2, low=0.5), device=device)
        compare(*BINARY[name], randn(2, 3, dtype=np.float32, low=0.5), np.array(1.5), device=device)
        compare(*BINARY[name], randn(2, 3, dtype=np.float16, low=0.5), randn(2, 3, dtype=np.float16, seed=2,
                                                                           low=0.5), device=device, atol=1e-3,
                rtol=1e-3)
    # xlogy takes a Python number on either side
    x = randn(2, 3, low=0.5)
    compare(lambda a: fg.xlogy(a, 2.5), lambda a: torch.xlogy(a, 2.5), x, device=device)
    compare(lambda a: fg.xlogy(2, a), lambda a: torch.xlogy(2, a), x, device=device)
    compare(lambda a: a.xlogy(3), lambda a: a.xlogy(3), x.astype(np.float32), device=device)
    compare(lambda a: fg.xlogy(0, a), lambda a: torch.xlogy(0, a), np.array([0.0, NAN, 2.0]), device=device)


def test_binary_math_errors():
    x, t = fg.ones(3), torch.ones(3)
    for name in ("hypot", "atan2", "logaddexp"):  # other must be a tensor
        _raises(lambda n=name: getattr(x, n)(2.0), lambda n=name: getattr(t, n)(2.0), TypeError)
    for name in ("hypot", "logaddexp"):  # not defined on integers, as in torch
        _raises(lambda n=name: getattr(fg, n)(x.long(), x.long()),
                lambda n=name: getattr(torch, n)(t.long(), t.long()), TypeError)
    _raises(lambda: fg.xlogy(2, 3), lambda: torch.xlogy(2, 3), TypeError)
    _raises(lambda: fg.atan2(fg.ones(2, 3), fg.ones(4)), lambda: torch.atan2(torch.ones(2, 3), torch.ones(4)),
            fg.ShapeError)
    _raises(lambda: fg.xlogy(fg.ones(2), fg.ones(3)), lambda: torch.xlogy(torch.ones(2), torch.ones(3)),
            fg.ShapeError)


def test_binary_math_second_order():
    # the composites' gradient rules are differentiable: compare d2/da db against torch's
    for name in BINARY:
        f, t = BINARY[name]
        a, b = randn(5, seed=4), randn(5, seed=5, low=0.5)
        fa, fb = fg.tensor(a, requires_grad=True), fg.tensor(b, requires_grad=True)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        (ga,) = fg.grad(f(fa, fb).sum(), [fa], create_graph=True)
        (tga,) = torch.autograd.grad(t(ta, tb).sum(), [ta], create_graph=True)
        assert_close(fg.grad((ga * ga).sum(), [fb])[0], torch.autograd.grad((tga * tga).sum(), [tb])[0],
                     atol=1e-10, rtol=1e-10, what=name)


# ---- count_nonzero ----

@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2), [1], (), (-3, -2, -1)])
def test_count_nonzero_matches_torch(device, dim):
    x = np.array([0.0, 1.0, -0.0, NAN, 2.0, 0.0, INF, 0.0])[np.random.default_rng(0).integers(0, 8, (2, 3, 4))]
    for arr in (x, x.astype(np.int64), x != 0, x[:, :0]):
        compare(lambda a: fg.count_nonzero(a, dim), lambda a: torch.count_nonzero(a, dim), arr, device=device)
    compare(lambda a: a.count_nonzero(), lambda a: a.count_nonzero(), np.array(0.5), device=device)
    compare(lambda a: a.count_nonzero(0), lambda a: a.count_nonzero(0), np.array(0.0), device=device)


def test_count_nonzero_errors():
    _raises(lambda: fg.ones(2, 3).count_nonzero(5), lambda: torch.ones(2, 3).count_nonzero(5), IndexError)
    _raises(lambda: fg.ones(2, 3).count_nonzero((0, -2)), lambda: torch.ones(2, 3).count_nonzero((0, -2)),
            fg.ShapeError)


# ---- take_along_dim ----

TAKES = [((3, 4), (3, 2), 1), ((3, 4), (1, 4), 0), ((3, 4), (5, 1), 0), ((2, 1, 4), (2, 3, 2), -1),
         ((3, 4), (3, 0), 1), ((1, 4), (3, 2), 1), ((3, 4), (6,), None), ((), (), None), ((3, 4), (2, 2), None)]


@pytest.mark.parametrize("sx,si,dim", TAKES, ids=[str(t) for t in TAKES])
def test_take_along_dim_matches_torch(device, sx, si, dim):
    x = randn(*sx)
    n = (sx[dim] if dim is not None else int(np.prod(sx))) or 1
    idx = np.random.default_rng(1).integers(-n, n, si)  # negative indices count from the end
    compare(lambda a, i: fg.take_along_dim(a, i, dim), lambda a, i: torch.take_along_dim(a, i % n, dim), x, idx,
            device=device)
    compare(lambda a, i: a.take_along_dim(i, dim=dim), lambda a, i: a.take_along_dim(i % n, dim=dim),
            np.arange(int(np.prod(sx))).reshape(sx), idx, device=device)


def test_take_along_dim_lazy_indices(device):
    # indices computed in the same graph (not known on the host): in range they work, out of range they raise
    x = fg.tensor(randn(3, 4), device=device)
    i = fg.tensor([[0], [1], [3]], device=device)
    assert_close(x.take_along_dim(i * 1 - 1, 1), torch.take_along_dim(torch.tensor(x.numpy()), torch.tensor(
        [[3], [0], [2]]), 1))
    with pytest.raises(IndexError):
        x.take_along_dim(i + 2, 1).numpy()


def test_take_along_dim_errors():
    x, t = fg.ones(2, 3), torch.ones(2, 3)
    i, ti = fg.tensor([[0, 1]]), torch.tensor([[0, 1]])
    _raises(lambda: x.take_along_dim(i, 0), lambda: t.take_along_dim(ti, 0), fg.ShapeError)
    _raises(lambda: x.take_along_dim(fg.tensor([0, 1]), 0), lambda: t.take_along_dim(torch.tensor([0, 1]), 0),
            fg.ShapeError)
    _raises(lambda: x.take_along_dim(i.int(), 1), lambda: t.take_along_dim(ti.int(), 1), TypeError)
    _raises(lambda: x.take_along_dim(i.float(), 1), lambda: t.take_along_dim(ti.float(), 1), TypeError)
    _raises(lambda: x.take_along_dim(i, 2), lambda: t.take_along_dim(ti, 2), IndexError)
    _raises(lambda: fg.tensor(3.0).take_along_dim(fg.tensor(0), 0),
            lambda: torch.tensor(3.0).take_along_dim(torch.tensor(0), 0), IndexError)
    with pytest.raises(IndexError):  # torch reads out of bounds here; fusegrad refuses
        x.take_along_dim(fg.tensor([[2, 0, 1]]), 0)


# ---- meshgrid and the stacks ----

MESHES = [[(3,), (4,)], [(2,), (), (3,)], [(5,)], [(0,), (3,)], [(2,), (1,), (3,), (2,)], [(), ()]]


@pytest.mark.parametrize("shapes", MESHES, ids=[str(m) for m in MESHES])
@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid_matches_torch(device, shapes, indexing):
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    compare(lambda *a: fg.meshgrid(*a, indexing=indexing), lambda *a: torch.meshgrid(*a, indexing=indexing),
            *arrays, device=device)
    compare(lambda *a: fg.meshgrid(list(a), indexing=indexing), lambda *a: torch.meshgrid(list(a), indexing=indexing),
            *arrays, device=device)


def test_meshgrid_defaults_to_ij(device):
    compare(lambda a, b: fg.meshgrid(a, b), lambda a, b: torch.meshgrid(a, b, indexing="ij"), np.arange(3),
            np.arange(4), device=device)


def test_meshgrid_errors():
    a, t = fg.ones(2), torch.ones(2)
    _raises(lambda: fg.meshgrid(a, fg.ones(3, 1)), lambda: torch.meshgrid(t, torch.ones(3, 1), indexing="ij"),
            fg.ShapeError)
    _raises(lambda: fg.meshgrid(a, fg.ones(3, dtype=fg.int64)),
            lambda: torch.meshgrid(t, torch.ones(3, dtype=torch.int64), indexing="ij"), TypeError)
    _raises(lambda: fg.meshgrid(indexing="xy"), lambda: torch.meshgrid(indexing="xy"), ValueError)
    _raises(lambda: fg.meshgrid(a, a, indexing="yx"), lambda: torch.meshgrid(t, t, indexing="yx"), ValueError)
    _raises(lambda: fg.meshgrid(a, [1, 2]), lambda: torch.meshgrid(t, [1, 2], indexing="ij"), TypeError)


STACKS = {"hstack": [[(2,), (3,)], [(2, 1), (2, 3)], [(), ()], [(2, 3, 1), (2, 1, 1)], [(0,), (4,)]],
          "vstack": [[(3,), (2, 3)], [(), ()], [(2, 3, 4), (1, 3, 4)], [(3,), (3,), (0, 3)]],
          "row_stack": [[(3,), (2, 3)], [(1,), (1,)]],
          "dstack": [[(3,), (3,)], [(2, 3), (2, 3, 2)], [(), ()], [(2, 3, 4, 5), (2, 3, 1, 5)]],
          "column_stack": [[(3,), (3, 2)], [(), ()], [(), (1, 2)], [(2, 3, 4), (2, 1, 4)], [(0,), (0, 2)]]}
STACK_CASES = [(name, shapes) for name, cases in STACKS.items() for shapes in cases]


@pytest.mark.parametrize("name,shapes", STACK_CASES, ids=[f"{n}-{s}" for n, s in STACK_CASES])
def test_stacks_match_torch(device, name, shapes):
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    compare(lambda *a: getattr(fg, name)(list(a)), lambda *a: getattr(torch, name)(list(a)), *arrays, device=device)
    mixed = [arrays[0].astype(np.float32), (arrays[1] * 10).astype(np.int64)] + arrays[2:]  # promoted like cat
    compare(lambda *a: getattr(fg, name)(tuple(a)), lambda *a: getattr(torch, name)(tuple(a)), *mixed, device=device)


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_errors(name):
    f, t = getattr(fg, name), getattr(torch, name)
    _raises(lambda: f([]), lambda: t([]), ValueError)
    _raises(lambda: f(fg.ones(2, 3)), lambda: t(torch.ones(2, 3)), TypeError)
    _raises(lambda: f([fg.ones(2, 3), fg.ones(3, 4, 5)]), lambda: t([torch.ones(2, 3), torch.ones(3, 4, 5)]),
            fg.ShapeError)
    _raises(lambda: f([fg.ones(2), 3]), lambda: t([torch.ones(2), 3]), TypeError)


# ---- tensordot ----

TENSORDOTS = [((2, 3, 4), (3, 4, 5), 2), ((2, 3, 4), (4, 5), 1), ((2, 3), (4,), 0), ((), (), 0), ((3,), (3,), 1),
              ((2, 3, 4), (3, 4, 5), ([1, 2], [0, 1])), ((2, 3, 4), (4, 5, 3), ([-2, -1], [2, 0])),
              ((2, 3, 4), (5, 4, 3), [[2, 1], [1, 2]]), ((2, 3, 4), (1, 4, 5), ([1, 2], [0, 1])),
              ((2, 0, 4), (0, 4, 5), 2), ((2, 3), (3, 0), 1), ((3, 4), (3, 4), 2)]


@pytest.mark.parametrize("sa,sb,dims", TENSORDOTS, ids=[str(t) for t in TENSORDOTS])
def test_tensordot_matches_torch(device, sa, sb, dims):
    compare(lambda a, b: fg.tensordot(a, b, dims), lambda a, b: torch.tensordot(a, b, dims), randn(*sa, seed=1),
            randn(*sb, seed=2), device=device, atol=1e-10, rtol=1e-10)


def test_tensordot_dims_forms(device):
    a, b = np.arange(24).reshape(2, 3, 4), np.arange(60).reshape(3, 4, 5)
    compare(lambda x, y: fg.tensordot(x, y), lambda x, y: torch.tensordot(x, y), a, b, device=device)
    compare(lambda x, y: fg.tensordot(x, y, fg.tensor(2)), lambda x, y: torch.tensordot(x, y, torch.tensor(2)), a, b,
            device=device)
    compare(lambda x, y: fg.tensordot(x, y, dims=[[1], [0]]), lambda x, y: torch.tensordot(x, y, dims=[[1], [0]]),
            a.astype(np.float32), b.astype(np.float32), device=device)


def test_tensordot_errors():
    a, b, ta, tb = fg.ones(2, 3, 4), fg.ones(3, 4, 5), torch.ones(2, 3, 4), torch.ones(3, 4, 5)
    _raises(lambda: fg.tensordot(a, b, 1), lambda: torch.tensordot(ta, tb, 1), fg.ShapeError)
    _raises(lambda: fg.tensordot(a, b, -1), lambda: torch.tensordot(ta, tb, -1), ValueError)
    _raises(lambda: fg.tensordot(a, b, 4), lambda: torch.tensordot(ta, tb, 4), fg.ShapeError)
    _raises(lambda: fg.tensordot(a, b, ([1], [0, 1])), lambda: torch.tensordot(ta, tb, ([1], [0, 1])), fg.ShapeError)
    _raises(lambda: fg.tensordot(a, b, ([1, 1], [0, 0])), lambda: torch.tensordot(ta, tb, ([1, 1], [0, 0])),
            fg.ShapeError)
    _raises(lambda: fg.tensordot(a, b, (1, 0)), lambda: torch.tensordot(ta, tb, (1, 0)), TypeError)
    _raises(lambda: fg.tensordot(a, b, 2.0), lambda: torch.tensordot(ta, tb, 2.0), TypeError)
    _raises(lambda: fg.tensordot(a, b.double()), lambda: torch.tensordot(ta, tb.double()), fg.ShapeError)
    _raises(lambda: fg.tensordot(a, b, ([5], [0])), lambda: torch.tensordot(ta, tb, ([5], [0])), IndexError)


# ---- var_mean, std_mean ----

MOMENTS = [dict(), dict(dim=1), dict(dim=(0, 2), keepdim=True), dict(dim=-1, correction=0), dict(dim=[0, 1],
           correction=2), dict(dim=0, unbiased=False), dict(keepdim=True)]


@pytest.mark.parametrize("fn", ["var_mean", "std_mean"])
@pytest.mark.parametrize("kw", MOMENTS, ids=[str(k) for k in MOMENTS])
def test_moments_match_torch(device, fn, kw):
    f, t = getattr(fg, fn), getattr(torch, fn)
    compare(lambda x: f(x, **kw), lambda x: t(x, **kw), randn(3, 4, 5), device=device, atol=1e-10, rtol=1e-10)
    compare(lambda x: f(x, **kw), lambda x: t(x, **kw), randn(3, 1, 4, dtype=np.float32), device=device)


def test_moments_edges(device):
    for f, t in ((fg.var_mean, torch.var_mean), (fg.std_mean, torch.std_mean)):
        compare(lambda x, f=f: f(x), lambda x, t=t: t(x), np.array(2.0), device=device, grad=False)  # n - 1 = 0
        compare(lambda x, f=f: f(x, 0), lambda x, t=t: t(x, 0), np.ones((0, 3)), device=device, grad=False)
        # correction >= n: inf variances (the gradient there is NaN, not torch's +-inf: see Tensor.var)
        compare(lambda x, f=f: f(x, 1, correction=3), lambda x, t=t: t(x, 1, correction=3), randn(2, 3),
                device=device, grad=False)
        compare(lambda x, f=f: f(x, 1, True), lambda x, t=t: t(x, 1, True), randn(2, 3), device=device)  # unbiased
        assert isinstance(f(fg.ones(3)), tuple)
        _raises(lambda f=f: f(fg.ones(3, dtype=fg.int64)), lambda t=t: t(torch.ones(3, dtype=torch.int64)), TypeError)
        _raises(lambda f=f: f(fg.ones(2, 3), dim=5), lambda t=t: t(torch.ones(2, 3), dim=5), IndexError)
        _raises(lambda f=f: f([1.0, 2.0]), lambda t=t: t([1.0, 2.0]), TypeError)


# ---- is_tensor, as_tensor ----

def test_is_tensor_and_as_tensor(device):
    x = fg.ones(3, device=device, requires_grad=True)
    assert fg.is_tensor(x) and not fg.is_tensor([1.0]) and not fg.is_tensor(np.ones(2)) and not fg.is_tensor(1.0)
    assert fg.as_tensor(x) is x and fg.as_tensor(x, dtype=fg.float32, device=device) is x
    y = fg.as_tensor(x, dtype=fg.float64)
    assert y.dtype == fg.float64 and y.requires_grad and y.device == device  # converted on the tape, like torch
    (y * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]
    for data, kw in (([1, 2], {}), ([1, 2], dict(dtype=fg.float64)), (3.5, {}), (np.arange(4, dtype=np.int32), {}),
                     ([[True, False]], {}), (np.float64(2.0), {})):
        want = torch.as_tensor(data, **({"dtype": torch.float64} if kw else {}))
        got = fg.as_tensor(data, device=device, **kw)
        assert got.device == device
        assert_close(got, want)
    assert fg.as_tensor([1.0], device=device).device == device
    _raises(lambda: fg.as_tensor([[1, 2], [3]]), lambda: torch.as_tensor([[1, 2], [3]]), ValueError)
    with pytest.raises(TypeError):  # the forwarders take a Tensor first, as torch does
        fg.roll([1, 2], 1)
