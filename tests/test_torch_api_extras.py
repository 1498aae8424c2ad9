"""PyTorch API extras against torch: isclose/allclose, type_as, the new_* factories, inference_mode and
repeat_interleave (values on every device, gradients through type_as and repeat_interleave)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TORCH_DTYPES, assert_close, compare, randn

import fusegrad as fg

INF, NAN = float("inf"), float("nan")
# pools the operands are drawn from, so equal, nearly equal, far apart, infinite and NaN pairs all occur
FLOAT_POOL = [0.0, 1e-9, -1e-9, 1.0, 1.0 + 1e-7, 1.0 + 1e-6, 1.0 + 1e-4, 1.01, -1.0, 250.0, 250.001, INF, -INF, NAN]
INT_POOL = [0, 1, 2, -3, 100, 101, 1000, 1001, 16777216, 16777217]

# (shape of a, shape of b): same shape, broadcasting both ways, 0-d, size-1 and empty dims
SHAPE_PAIRS = [((4, 5), (4, 5)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 3), ()), ((), ()), ((1,), (6,)),
               ((0, 3), (1, 3)), ((2, 1, 3), (4, 1))]
TOLERANCES = [dict(), dict(rtol=0, atol=0), dict(rtol=1e-3, atol=0), dict(rtol=0, atol=1e-3),
              dict(rtol=0.01, atol=0.5), dict(equal_nan=True), dict(rtol=1e-3, atol=1e-6, equal_nan=True)]


def _pool(shape: tuple[int, ...], pool: list, dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(pool, dtype=dtype)[rng.integers(0, len(pool), size=shape)]


def _operands(kind: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if kind == "bool":
        return _pool(sa, [True, False], "bool", 1), _pool(sb, [True, False], "bool", 2)
    pool, dtype = (INT_POOL, "int64") if kind == "int64" else (FLOAT_POOL, kind)
    return _pool(sa, pool, dtype, 1), _pool(sb, pool, dtype, 2)


# ---- isclose / allclose ----

@pytest.mark.parametrize("kind", ["float32", "float64", "int64", "bool"])
@pytest.mark.parametrize("sa,sb", SHAPE_PAIRS, ids=[f"{a}-{b}" for a, b in SHAPE_PAIRS])
def test_isclose_matches_torch(device, kind, sa, sb):
    a, b = _operands(kind, sa, sb)
    for tol in TOLERANCES:
        compare(lambda x, y, tol=tol: x.isclose(y, **tol), None, a, b, device=device, grad=False)
        compare(lambda x, y, tol=tol: fg.isclose(x, y, **tol), lambda x, y, tol=tol: torch.isclose(x, y, **tol),
                a, b, device=device, grad=False)


def test_isclose_special_values(device):
    a = fg.tensor([INF, -INF, INF, NAN, NAN, 1.0, 0.0, 1.0], device=device)
    b = fg.tensor([INF, -INF, -INF, NAN, 1.0, NAN, 1e-9, 1.0 + 1e-6], device=device)
    want_plain = [True, True, False, False, False, False, True, True]
    assert a.isclose(b).tolist() == want_plain
    assert a.isclose(b, equal_nan=True).tolist() == [True, True, False, True, False, False, True, True]
    assert a.isclose(b, rtol=0, atol=0).tolist() == [True, True, False, False, False, False, False, False]
    assert a.isclose(b, rtol=INF).tolist() == torch.isclose(torch.tensor(a.numpy()), torch.tensor(b.numpy()),
                                                            rtol=INF).tolist()


def test_isclose_is_not_differentiable_and_asymmetric(device):
    x = fg.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = fg.tensor([1.05, 2.0], device=device)
    out = x.isclose(y, rtol=0.048, atol=0)
    assert out.dtype == fg.bool and not out.requires_grad
    # |x - y| <= rtol * |y|: the tolerance scales with `other`, so swapping the operands changes the answer
    assert out.tolist() == [True, True] and y.isclose(x, rtol=0.048, atol=0).tolist() == [False, True]


def test_isclose_errors_like_torch():
    x32, x64 = fg.ones(3), fg.ones(3, dtype=fg.float64)
    with pytest.raises(RuntimeError, match="same dtype"):
        x32.isclose(x64)
    with pytest.raises(RuntimeError):
        torch.ones(3).isclose(torch.ones(3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="same dtype"):
        fg.allclose(fg.ones(3, dtype=fg.int64), x32)
    with pytest.raises(RuntimeError, match="non-negative"):
        x32.isclose(x32, rtol=-1)
    with pytest.raises(RuntimeError, match="non-negative"):
        x32.isclose(x32, atol=-1e-3)
    with pytest.raises(TypeError, match="Tensor"):
        x32.isclose(1.0)
    with pytest.raises(fg.ShapeError):
        x32.isclose(fg.ones(4))


@pytest.mark.parametrize("kind", ["float32", "float64", "int64", "bool"])
def test_allclose_matches_torch(device, kind):
    for sa, sb in SHAPE_PAIRS:
        a, b = _operands(kind, sa, sb)
        for x, y in [(a, b), (a, a), (b, b)]:
            tx, ty = torch.tensor(x), torch.tensor(y)
            fx, fy = fg.tensor(x, dtype=x.dtype, device=device), fg.tensor(y, dtype=y.dtype, device=device)
            for tol in TOLERANCES:
                got, want = fx.allclose(fy, **tol), torch.allclose(tx, ty, **tol)
                assert type(got) is bool and got == want, (sa, sb, tol)
                assert fg.allclose(fx, fy, **tol) == want


def test_allclose_values(device):
    x = fg.tensor([[1.0, 2.0], [3.0, NAN]], device=device)
    assert x.allclose(x, equal_nan=True) is True
    assert x.allclose(x) is False
    assert fg.allclose(x[:, :1], fg.tensor([1.0 + 1e-6, 3.0], device=device).reshape(2, 1)) is True
    assert fg.allclose(x[:, :1], fg.tensor([1.001, 3.0], device=device).reshape(2, 1)) is False
    assert fg.allclose(fg.zeros(0, 3, device=device), fg.ones(1, 3, device=device)) is True  # empty: vacuously


# ---- type_as ----

@pytest.mark.parametrize("shape", [(3, 4), (), (1, 5), (0, 2)])
def test_type_as_float_to_float64_with_grad(device, shape):
    other = np.zeros(1, dtype=np.float64)
    compare(lambda x, o: (x.type_as(o) * 3.0).exp(), None, randn(*shape, seed=3).astype(np.float32), other,
            device=device, atol=1e-6, rtol=1e-6)
    x = fg.tensor(randn(*shape, seed=3).astype(np.float32), device=device, requires_grad=True)
    y = x.type_as(fg.zeros(1, dtype=fg.float64, device=device))
    assert y.dtype == fg.float64 and y.requires_grad and y.device == device


@pytest.mark.parametrize("src,dst", [("float32", "int64"), ("int64", "float32"), ("float64", "float32"),
                                     ("bool", "float64"), ("float32", "bool"), ("int64", "int64")])
def test_type_as_values(device, src, dst):
    data = np.array([[-2.7, 0.0, 1.5], [3.2, -0.4, 9.9]]).astype(src)
    compare(lambda x, o: x.type_as(o), None, data, np.zeros(2, dtype=dst), device=device, grad=False)


def test_type_as_moves_to_others_device():
    if not {"numpy", "cpu"} <= set(fg.available_devices()):
        pytest.skip("needs the numpy and cpu devices")
    x = fg.tensor([1, 2], device="numpy")
    y = x.type_as(fg.zeros(1, device="cpu"))
    assert y.device == "cpu" and y.dtype == fg.float32 and y.tolist() == [1.0, 2.0]
    with pytest.raises(TypeError):
        x.type_as(fg.float32)


# ---- new_* factories ----

@pytest.mark.parametrize("dtype", [fg.float32, fg.float64, fg.int64, fg.bool])
def test_new_factories_inherit_dtype_and_device(device, dtype):
    t_dtype = TORCH_DTYPES[np.dtype(dtype.np)]
    base = fg.zeros(2, dtype=dtype, device=device)
    tbase = torch.zeros(2, dtype=t_dtype)
    cases = [
        (lambda b: b.new_zeros(2, 3), "new_zeros varargs"),
        (lambda b: b.new_zeros((2, 3)), "new_zeros tuple"),
        (lambda b: b.new_zeros([]), "new_zeros 0-d"),
        (lambda b: b.new_ones(3, 0), "new_ones empty"),
        (lambda b: b.new_ones((1, 4)), "new_ones"),
        (lambda b: b.new_full((2, 2), 7), "new_full int"),
        (lambda b: b.new_full((3,), -2.5), "new_full float"),
        (lambda b: b.new_full((), True), "new_full bool 0-d"),
        (lambda b: b.new_tensor([[1.5, -2.7], [0.0, 3.0]]), "new_tensor floats"),
        (lambda b: b.new_tensor([1, 0, 5]), "new_tensor ints"),
        (lambda b: b.new_tensor(4.0), "new_tensor scalar"),
    ]
    for fn, what in cases:
        got, want = fn(base), fn(tbase)
        assert got.device == device, what
        assert got.dtype == dtype, what
        assert_close(got, want, what=what)
    empty = base.new_empty(2, 3)
    assert empty.shape == (2, 3) and empty.dtype == dtype and empty.device == device


def test_new_factories_overrides(device):
    base = fg.ones(3, dtype=fg.int64, device=device)
    tbase = torch.ones(3, dtype=torch.int64)
    for fn in [lambda b, d: b.new_zeros(2, dtype=d), lambda b, d: b.new_ones((2, 1), dtype=d),
               lambda b, d: b.new_full((2,), 2.5, dtype=d), lambda b, d: b.new_tensor([1, 2.5], dtype=d)]:
        got, want = fn(base, fg.float64), fn(tbase, torch.float64)
        assert got.dtype == fg.float64 and got.device == device
        assert_close(got, want)
    assert base.new_zeros(2, dtype="float16").dtype == fg.float16
    g = base.new_ones(2, 2, dtype=fg.float32, requires_grad=True)
    assert g.requires_grad and g.is_leaf and g.dtype == fg.float32
    (g * 3).sum().backward()
    assert g.grad.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert not base.new_zeros(2).requires_grad
    assert base.new_full((2,), 1.0, dtype=fg.float32, requires_grad=True).requires_grad
    assert base.new_tensor([1.0], dtype=fg.float32, requires_grad=True).requires_grad
    other = "numpy" if device != "numpy" else "cpu"
    if other in fg.available_devices():
        for t in [base.new_zeros(2, device=other), base.new_ones(2, device=fg.device(other)),
                  base.new_full((2,), 3, device=other), base.new_empty(2, device=other),
                  base.new_tensor([4, 5], device=other)]:
            assert t.device == other and t.dtype == fg.int64


def test_new_tensor_copies_a_tensor_detached(device):
    src = fg.tensor([1.25, -2.5], device=device, requires_grad=True)
    out = fg.zeros(1, dtype=fg.float64, device=device).new_tensor(src)
    assert out.dtype == fg.float64 and out.tolist() == [1.25, -2.5]
    assert not out.requires_grad and out.is_leaf
    ints = fg.zeros(1, dtype=fg.int64, device=device).new_tensor(src)
    assert ints.tolist() == torch.zeros(1, dtype=torch.int64).new_tensor([1.25, -2.5]).tolist() == [1, -2]


# ---- inference_mode ----

def test_inference_mode_context_manager():
    w = fg.ones(2, requires_grad=True)
    with fg.inference_mode():
        assert not fg.is_grad_enabled()
        y = w * 2
        with fg.inference_mode():  # nested
            assert not fg.is_grad_enabled()
        assert not fg.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    assert fg.is_grad_enabled() and (w * 2).requires_grad
    with pytest.raises(KeyError):
        with fg.inference_mode():
            raise KeyError("inside")
    assert fg.is_grad_enabled()  # restored after an exception


def test_inference_mode_false_records_like_torch():
    w = fg.ones(2, requires_grad=True)
    with fg.inference_mode(False):
        assert fg.is_grad_enabled() and (w * 2).requires_grad
    for ours, theirs in [(fg.no_grad, torch.no_grad), (fg.inference_mode, torch.inference_mode)]:
        with ours(), fg.inference_mode(False):
            got = fg.is_grad_enabled()
        with theirs(), torch.inference_mode(False):
            want = torch.is_grad_enabled()
        assert got == want
    assert fg.is_grad_enabled()


def test_inference_mode_decorator():
    w = fg.ones(2, requires_grad=True)

    @fg.inference_mode
    def bare(x):
        """Doc kept."""
        return x * 2, fg.is_grad_enabled()

    @fg.inference_mode()
    def called(x):
        return x * 2, fg.is_grad_enabled()

    @fg.inference_mode(mode=False)
    def off(x):
        return x * 2, fg.is_grad_enabled()

    for fn in (bare, called):
        y, enabled = fn(w)
        assert not enabled and not y.requires_grad
        assert fg.is_grad_enabled()
    assert bare.__name__ == "bare" and bare.__doc__ == "Doc kept."
    with fg.no_grad():
        y, enabled = off(w)
    assert enabled and y.requires_grad
    assert fg.is_grad_enabled()
    z = called(w)[0] + w  # a result made in inference mode joins a recorded graph afterwards (no_grad semantics)
    z.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0]


# ---- repeat_interleave ----

RI_CASES = [((3, 4), 2, None), ((3, 4), 3, 0), ((3, 4), 2, 1), ((3, 4), 2, -1), ((2, 3, 4), 2, -2),
            ((), 3, None), ((1, 5), 3, 0), ((5, 1), 2, 1), ((0, 3), 2, 0),
            ((0, 3), 2, 1), ((2, 0), 3, None), ((3, 4), 0, 1), ((3, 4), 0, None), ((3, 4), 1, 0)]


@pytest.mark.parametrize("shape,repeats,dim", RI_CASES, ids=[f"{s}-{r}-{d}" for s, r, d in RI_CASES])
def test_repeat_interleave_float64_with_grad(device, shape, repeats, dim):
    compare(lambda x: x.repeat_interleave(repeats, dim) * x.repeat_interleave(repeats, dim), None,
            randn(*shape, seed=4), device=device, atol=1e-9, rtol=1e-9)
    compare(lambda x: fg.repeat_interleave(x, repeats, dim=dim),
            lambda x: torch.repeat_interleave(x, repeats, dim=dim), randn(*shape, seed=5), device=device)


@pytest.mark.parametrize("kind", ["float32", "int64", "bool"])
def test_repeat_interleave_dtypes(device, kind):
    data = (randn(3, 4, seed=6) * 5).astype(kind) if kind != "bool" else randn(3, 4, seed=6) > 0
    for repeats, dim in [(2, None), (3, 0), (2, -1)]:
        compare(lambda x, r=repeats, d=dim: x.repeat_interleave(r, d), None, data, device=device, grad=True)
    compare(lambda x: x.repeat_interleave(2, dim=1, output_size=8), None, data, device=device)
    compare(lambda x: x.repeat_interleave(np.int64(2), 0), None, data, device=device)


def test_repeat_interleave_errors():
    x = fg.ones(2, 3)
    with pytest.raises(TypeError, match="int"):
        x.repeat_interleave(fg.tensor([1, 2]), dim=0)
    with pytest.raises(TypeError, match="int"):
        x.repeat_interleave(fg.tensor(2))
    with pytest.raises(TypeError):
        x.repeat_interleave(2.0)
    with pytest.raises(ValueError, match="non-negative"):
        x.repeat_interleave(-1)
    with pytest.raises(IndexError):
        x.repeat_interleave(2, dim=2)
    for dim in (0, -1, 1):  # torch takes no dim for a 0-d tensor
        with pytest.raises(IndexError):
            fg.tensor(5.0).repeat_interleave(2, dim=dim)
        with pytest.raises(IndexError):
            torch.tensor(5.0).repeat_interleave(2, dim=dim)
    with pytest.raises(fg.ShapeError, match="output_size"):
        x.repeat_interleave(2, dim=0, output_size=5)
    with pytest.raises(TypeError):
        fg.repeat_interleave([1, 2], 2)
