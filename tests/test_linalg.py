"""Contractions (@ matmul mm bmm dot einsum) against PyTorch, and conv2d/pooling composed from pad + unfold +
matmul/amax/mean the way the nn library will lower them."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias

import fusegrad as fg
from tests.helpers import compare, randn


def _t(x: Any) -> Any:
    """The transposed last two dims: a non-contiguous operand."""
    return x.transpose(-1, -2)


# (shape of a, shape of b): vectors, matrices, batches with broadcasting, size-1 and empty dims
MATMUL_SHAPES = [
    ((4,), (4,)), ((3,), (3, 5)), ((3, 4), (4,)), ((3, 4), (4, 5)), ((1, 4), (4, 1)), ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
    ((1, 3, 4), (6, 4, 2)), ((3, 0), (0, 5)), ((0, 4), (4, 5)), ((3, 4), (4, 0)), ((0,), (0,)), ((2, 0, 3), (3, 4)),
    ((0, 3, 4), (1, 4, 2)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_float64(device: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    compare(lambda a, b: a @ b, None, randn(*sa, seed=1), randn(*sb, seed=2), device=device, atol=1e-10, rtol=1e-10)
    compare(lambda a, b: a.matmul(b), None, randn(*sa, seed=3), randn(*sb, seed=4), device=device,
            atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_float32(device: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    compare(lambda a, b: fg.matmul(a, b) if isinstance(a, fg.Tensor) else torch.matmul(a, b), None,
            randn(*sa, dtype=np.float32, seed=5), randn(*sb, dtype=np.float32, seed=6), device=device,
            atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sa,sb", [((5, 7), (7, 3)), ((2, 5, 7), (7, 3)), ((7,), (7, 4)), ((0, 7), (7, 3))])
def test_matmul_float16_is_a_float32_product_rounded_once(device: str, sa: tuple[int, ...],
                                                          sb: tuple[int, ...]) -> None:
    a, b = randn(*sa, seed=7).astype(np.float16), randn(*sb, seed=8).astype(np.float16)
    out = (fg.tensor(a, device=device) @ fg.tensor(b, device=device)).numpy()
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16))


def test_matmul_k0_gives_zeros(device: str) -> None:
    out = fg.ones((3, 0), device=device) @ fg.ones((0, 5), device=device)
    assert out.shape == (3, 5)
    np.testing.assert_array_equal(out.numpy(), np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("sa,sb", [((4, 3), (5, 4)), ((2, 4, 3), (2, 5, 4)), ((3, 4), (5, 3)), ((1, 1), (1, 1))])
def test_matmul_transposed_operands(device: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    """Non-contiguous (transposed) views as operands, in either or both positions."""
    a, b = randn(*sa, seed=7), randn(*sb, seed=8)
    compare(lambda x, y: _t(x) @ _t(y), None, a, b, device=device, atol=1e-10)
    compare(lambda x, y: (_t(x) @ _t(y)) @ _t(_t(x) @ _t(y)), None, a, b, device=device, atol=1e-10)
    if sb[-1] == sa[-2]:
        compare(lambda x, y: _t(y @ x), None, a, b, device=device, atol=1e-10)


def test_matmul_sliced_operands(device: str) -> None:
    compare(lambda a, b: a[:, 1::2] @ b[::2], None, randn(3, 8, seed=9), randn(8, 2, seed=10), device=device,
            atol=1e-10)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_matmul_ints(device: str, dtype: type) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 9, (2, 3, 4)).astype(dtype), rng.integers(0, 9, (4, 5)).astype(dtype)
    compare(lambda x, y: (x @ y, x[0] @ y[:, 0], y[:, 1].dot(y[:, 2])), None, a, b, device=device)
    if dtype == np.int64:  # exact beyond float64's 53 bits
        big = np.array([[2**31 + 1, 3], [5, 7]], np.int64)
        compare(lambda x: x @ x, None, big, device=device)


def test_mm_bmm_dot(device: str) -> None:
    compare(lambda a, b: a.mm(b), None, randn(3, 4, seed=1), randn(4, 2, seed=2), device=device, atol=1e-10)
    compare(lambda a, b: _t(a).mm(b), None, randn(4, 3, seed=1), randn(4, 2, seed=2), device=device, atol=1e-10)
    compare(lambda a, b: a.bmm(b), None, randn(2, 3, 4, seed=3), randn(2, 4, 5, seed=4), device=device, atol=1e-10)
    compare(lambda a, b: a.bmm(_t(b)), None, randn(2, 3, 4, seed=3), randn(2, 5, 4, seed=4), device=device,
            atol=1e-10)
    compare(lambda a, b: a.dot(b), None, randn(5, seed=5), randn(5, seed=6), device=device, atol=1e-10)
    compare(lambda a, b: a.dot(b), None, randn(0, seed=5), randn(0, seed=6), device=device)
    compare(lambda a, b: fg.mm(a, b) if isinstance(a, fg.Tensor) else torch.mm(a, b), None,
            randn(2, 3, dtype=np.float32), randn(3, 1, dtype=np.float32), device=device)
    compare(lambda a, b: fg.bmm(a, b) if isinstance(a, fg.Tensor) else torch.bmm(a, b), None,
            randn(1, 2, 3, dtype=np.float32), randn(1, 3, 4, dtype=np.float32), device=device)
    compare(lambda a, b: fg.dot(a, b) if isinstance(a, fg.Tensor) else torch.dot(a, b), None,
            randn(3, dtype=np.float32), randn(3, dtype=np.float32), device=device)


def test_rmatmul_and_chained_grad(device: str) -> None:
    """A small MLP-like chain: gradients through several matmuls sharing operands."""
    compare(lambda x, w, v: ((x @ w).tanh() @ v @ _t(w)).sum(-1), None, randn(2, 3, 4, seed=1),
            randn(4, 4, seed=2), randn(4, 4, seed=3), device=device, atol=1e-10)


# ---- shape and dtype errors: fg.ShapeError naming both shapes ----

@pytest.mark.parametrize("call,sa,sb", [
    ("matmul", (3, 4), (5, 4)), ("matmul", (3,), (4,)), ("matmul", (3, 4), (3,)), ("matmul", (2, 3, 4), (3, 4, 5)),
    ("matmul", (4,), (3, 5, 2)), ("matmul", (), (3,)), ("mm", (3, 4), (4,)), ("mm", (2, 3, 4), (4, 5)),
    ("bmm", (2, 3, 4), (3, 4, 5)), ("bmm", (2, 3, 4), (2, 5, 6)), ("bmm", (3, 4), (4, 5)), ("dot", (3,), (4,)),
    ("dot", (3, 1), (3, 1)),
])
def test_contraction_shape_errors(device: str, call: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    a, b = fg.zeros(sa, device=device), fg.zeros(sb, device=device)
    with pytest.raises(fg.ShapeError) as info:
        getattr(a, call)(b)
    assert str(sa) in str(info.value) and str(sb) in str(info.value), str(info.value)
    with pytest.raises(RuntimeError):  # torch refuses these too
        getattr(torch.zeros(sa), call)(torch.zeros(sb))


@pytest.mark.parametrize("da,db", [(fg.float32, fg.float64), (fg.int64, fg.float32), (fg.int32, fg.int64)])
def test_matmul_dtype_mismatch_raises(device: str, da: fg.DType, db: fg.DType) -> None:
    """torch.matmul does not promote; neither do we, and the error names both shapes and dtypes."""
    a, b = fg.zeros((2, 3), dtype=da, device=device), fg.zeros((3, 4), dtype=db, device=device)
    for op in (lambda: a @ b, lambda: a.mm(b), lambda: a[0].dot(b[:, 0])):
        with pytest.raises(fg.ShapeError) as info:
            op()
        msg = str(info.value)
        assert da.name in msg and db.name in msg, msg
    with pytest.raises(fg.ShapeError, match=r"\(2, 3\).*\(3, 4\)"):
        a @ b


# ---- einsum ----

EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]), ("ij->j", [(2, 3)]), ("ij->i", [(2, 3)]), ("i,i->", [(4,)] * 2), ("i,j->ij", [(3,), (4,)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]), ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...ij,...jk->...ik", [(3, 4), (4, 2)]), ("ij,jk", [(2, 3), (3, 4)]), ("ba,ca", [(2, 3), (4, 3)]),
    ("bij,bjk->bik", [(1, 3, 4), (5, 4, 2)]), ("ij,jk->ik", [(2, 3), (1, 4)]), ("ij,ij->ij", [(1, 3), (2, 1)]),
    ("ij,kj->ikj", [(2, 3), (4, 3)]), ("ijk->kij", [(2, 3, 4)]), ("i,i->i", [(3,), (3,)]),
    ("ij,jk->", [(2, 3), (3, 4)]),
    ("...d,...d->...", [(2, 3, 4), (3, 4)]), ("bn,anm->bam", [(2, 3), (4, 3, 5)]), ("ij,jk->ki", [(0, 3), (3, 4)]),
    ("ij,jk->ik", [(2, 0), (0, 4)]), ("i,j", [(3,), (2,)]), ("ij", [(2, 3)]), ("ji", [(2, 3)]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM, ids=[f"{e}-{i}" for i, (e, _) in enumerate(EINSUM)])
def test_einsum(device: str, eq: str, shapes: list[tuple[int, ...]]) -> None:
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    compare(lambda *xs: fg.einsum(eq, *xs), lambda *xs: torch.einsum(eq, *xs), *arrays, device=device,
            atol=1e-10, rtol=1e-10)


def test_einsum_float32_transposed_and_list_operands(device: str) -> None:
    a, b = randn(4, 3, dtype=np.float32, seed=1), randn(5, 4, dtype=np.float32, seed=2)
    compare(lambda x, y: fg.einsum("ij,jk->ik", [_t(x), _t(y)]), lambda x, y: torch.einsum("ij,jk->ik", [_t(x), _t(y)]),
            a, b, device=device)
    compare(lambda x, y: fg.einsum(" i j , j k -> i k ", x.T, y.T), lambda x, y: torch.einsum("ij,jk->ik", x.T, y.T),
            a, b, device=device)


@pytest.mark.parametrize("eq,shapes", [
    ("ij,jk->ik", [(2, 3, 1), (3, 4)]), ("ijk->k", [(2, 3)]), ("i,i->", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (3, 4, 5)]), ("...ij->...ji", [(3,)]),
])
def test_einsum_subscripts_must_fit_shapes(device: str, eq: str, shapes: list[tuple[int, ...]]) -> None:
    ops = [fg.zeros(s, device=device) for s in shapes]
    with pytest.raises(fg.ShapeError) as info:
        fg.einsum(eq, *ops)
    assert any(str(s) in str(info.value) for s in shapes), str(info.value)
    with pytest.raises(RuntimeError):
        torch.einsum(eq, *[torch.zeros(s) for s in shapes])


@pytest.mark.parametrize("eq,n", [("ij,jk->il", 2), ("ij,jk->ik", 1), ("ij,jk->ik", 3)])
def test_einsum_bad_equations(device: str, eq: str, n: int) -> None:
    with pytest.raises((ValueError, NotImplementedError)):
        fg.einsum(eq, *[fg.zeros((2, 2), device=device)] * n)


# ---- conv2d and pooling composed from pad + unfold + matmul / amax / mean, as the nn library lowers them ----

def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


def conv2d(x: fg.Tensor, w: fg.Tensor, b: fg.Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1) -> fg.Tensor:
    """im2col as views: pad, windows over H then W, keep every dilation-th tap, then one matmul."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c = x.shape[:2]
    o, _, kh, kw = w.shape
    x = x.pad((pw, pw, ph, ph))
    win = x.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[:, :, :, :, ::dh, ::dw]  # n c oh ow kh kw
    oh, ow = win.shape[2:4]
    cols = win.permute(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, c * kh * kw)
    out = (cols @ w.reshape(o, c * kh * kw).T).permute(0, 3, 1, 2)
    return out if b is None else out + b.reshape(1, o, 1, 1)


def _windows(x: fg.Tensor, k: Any, stride: Any, padding: Any, value: float) -> fg.Tensor:
    (kh, kw), (ph, pw) = _pair(k), _pair(padding)
    sh, sw = _pair(stride if stride is not None else k)
    return x.pad((pw, pw, ph, ph), value=value).unfold(2, kh, sh).unfold(3, kw, sw)


def max_pool2d(x: fg.Tensor, k: Any, stride: Any = None, padding: Any = 0) -> fg.Tensor:
    """Max over windows; padding is -inf so it never wins."""
    return _windows(x, k, stride, padding, float("-inf")).amax((-2, -1))


def avg_pool2d(x: fg.Tensor, k: Any, stride: Any = None, padding: Any = 0) -> fg.Tensor:
    """Mean over windows, zero padding counted (torch's count_include_pad=True default)."""
    return _windows(x, k, stride, padding, 0.0).mean((-2, -1))


CONV = [  # (x shape, w shape, stride, padding, dilation)
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 0, 1), ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1), ((2, 3, 5, 6), (4, 3, 3, 3), 2, 1, 1),
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 2, 2), ((2, 3, 7, 6), (4, 3, 3, 2), (2, 1), (1, 0), (1, 2)),
    ((1, 1, 4, 4), (1, 1, 1, 1), 1, 0, 1), ((2, 3, 5, 6), (4, 3, 5, 6), 1, 0, 1), ((1, 2, 6, 6), (3, 2, 2, 2), 3, 0, 1),
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation", CONV)
def test_conv2d_from_unfold_and_matmul(device: str, xs: tuple[int, ...], ws: tuple[int, ...], stride: Any,
                                       padding: Any, dilation: Any) -> None:
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    compare(lambda x, w, b: conv2d(x, w, b, **kw), lambda x, w, b: F.conv2d(x, w, b, **kw), randn(*xs, seed=1),
            randn(*ws, seed=2), randn(ws[0], seed=3), device=device, atol=1e-10, rtol=1e-9)


def test_conv2d_float32_without_bias(device: str) -> None:
    compare(lambda x, w: conv2d(x, w, padding=1), lambda x, w: F.conv2d(x, w, padding=1),
            randn(2, 3, 5, 6, dtype=np.float32, seed=4), randn(4, 3, 3, 3, dtype=np.float32, seed=5), device=device,
            atol=1e-4, rtol=1e-4)


POOL = [((2, 3, 5, 6), 2, None, 0), ((2, 3, 5, 6), 3, 1, 1), ((2, 3, 5, 6), 3, 2, 1), ((1, 2, 4, 4), (2, 1), (1, 2), 0),
        ((2, 1, 6, 5), 2, 2, 1), ((1, 1, 3, 3), 3, None, 0)]
PoolFn = Callable[..., Any]


@pytest.mark.parametrize("xs,k,stride,padding", POOL)
@pytest.mark.parametrize("ours,theirs", [(max_pool2d, F.max_pool2d), (avg_pool2d, F.avg_pool2d)], ids=["max", "avg"])
def test_pool2d_from_unfold(device: str, ours: PoolFn, theirs: PoolFn, xs: tuple[int, ...], k: Any, stride: Any,
                            padding: Any) -> None:
    # random data has no ties inside a window, where max_pool2d (one index) and amax (shared) would differ
    compare(lambda x: ours(x, k, stride, padding), lambda x: theirs(x, k, stride, padding), randn(*xs, seed=6),
            device=device, atol=1e-10)
    compare(lambda x: ours(x, k, stride, padding), lambda x: theirs(x, k, stride, padding),
            randn(*xs, dtype=np.float32, seed=7), device=device, atol=1e-5)


def test_conv_then_pool_chain(device: str) -> None:
    """A LeNet-style block: conv -> relu -> max pool -> avg pool, gradients to input, weight and bias."""
    def fn(lib: Any, x: Any, w: Any, b: Any) -> Any:
        y = (conv2d(x, w, b, padding=1) if lib is fg else F.conv2d(x, w, b, padding=1)).relu()
        return avg_pool2d(max_pool2d(y, 2), (1, 2)) if lib is fg else F.avg_pool2d(F.max_pool2d(y, 2), (1, 2))
    compare(lambda *a: fn(fg, *a), lambda *a: fn(torch, *a), randn(2, 3, 6, 8, seed=8), randn(4, 3, 3, 3, seed=9),
            randn(4, seed=10), device=device, atol=1e-10)
