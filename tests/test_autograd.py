"""Autograd semantics against PyTorch: backward, accumulation, grad modes, leaves, fg.grad, higher order, in-place."""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import fusegrad as fg
from tests.helpers import assert_close, randn


def pair(arr: np.ndarray, device: str, requires_grad: bool = True) -> tuple[fg.Tensor, torch.Tensor]:
    """The same data as a fusegrad and a torch tensor."""
    return (fg.tensor(arr, dtype=arr.dtype, device=device, requires_grad=requires_grad),
            torch.tensor(arr, requires_grad=requires_grad))


# ---------------------------------------------------------------- backward


@pytest.mark.parametrize("fn", [
    lambda x: (x * x * x).sum(),
    lambda x: (x.sin() * x.exp()).mean(),
    lambda x: x.tanh().sum() * x.sigmoid().sum(),
    lambda x: (x @ x.T).relu().sum(),
    lambda x: x[1:, ::2].sum() + x.amax(),
    lambda x: (x * x).sum().reshape(1, 1),
], ids=["cube", "sin_exp", "tanh_sigmoid", "gram_relu", "slice_max", "one_element"])
def test_backward_scalar(device: str, fn: Callable) -> None:
    fx, tx = pair(randn(3, 4, seed=1), device)
    fn(fx).backward()
    fn(tx).backward()
    assert_close(fx.grad, tx.grad, 1e-10, 1e-10)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 1, 4), ()])
def test_backward_with_gradient(device: str, shape: tuple[int, ...]) -> None:
    fx, tx = pair(randn(*shape, seed=2), device)
    up = randn(*shape, seed=3)
    (fx * fx).exp().backward(fg.tensor(up, dtype=up.dtype, device=device))
    (tx * tx).exp().backward(torch.tensor(up))
    assert_close(fx.grad, tx.grad, 1e-10, 1e-10)


def test_backward_needs_gradient_for_non_scalar(device: str) -> None:
    fx = fg.tensor(randn(2, 3), device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (fx * 2).backward()
    with pytest.raises(fg.ShapeError, match=r"\(2, 3\)"):
        (fx * 2).backward(fg.ones(3, 2, dtype=fg.float64, device=device))


def test_backward_without_requires_grad_raises(device: str) -> None:
    x = fg.tensor([1.0, 2.0], device=device)
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x * 2).sum().backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        fg.tensor([1.0], device=device, requires_grad=True).detach().sum().backward()


def test_gradient_accumulates_over_two_backward_calls(device: str) -> None:
    fx, tx = pair(randn(4, seed=4), device)
    for x in (fx, tx):
        (x * x).sum().backward()
        (x.sin() * 3).sum().backward()
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)
    assert_close(fx.grad, 2 * randn(4, seed=4) + 3 * np.cos(randn(4, seed=4)), 1e-12, 1e-12)


def test_shared_subexpressions_and_diamond(device: str) -> None:
    def fn(x: Any) -> Any:
        a = x * 2            # used by both arms of the diamond
        b = a.exp()
        c = a.sin() * x      # x used again
        d = b * c + a * a
        return (d + x).sum()
    fx, tx = pair(randn(5, seed=5), device)
    fn(fx).backward()
    fn(tx).backward()
    assert_close(fx.grad, tx.grad, 1e-10, 1e-10)


def test_same_tensor_as_both_operands(device: str) -> None:
    fx, tx = pair(randn(2, 2, seed=6), device)
    (fx @ fx + fx * fx - fx).sum().backward()
    (tx @ tx + tx * tx - tx).sum().backward()
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)


# ---------------------------------------------------------------- leaves, requires_grad, detach


def test_leaves_and_non_leaves(device: str) -> None:
    fx, tx = pair(randn(3, seed=7), device)
    for x in (fx, tx):
        y = x * 2
        z = (y * y).sum()
        z.backward()
        assert x.is_leaf and not y.is_leaf and not z.is_leaf
        assert y.requires_grad and z.requires_grad
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns when a non-leaf's .grad is read
            assert y.grad is None  # non-leaf gradients are not kept
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)
    plain = fg.tensor([1.0], device=device)
    assert plain.is_leaf and (plain * 2).is_leaf and not (plain * 2).requires_grad


def test_requires_grad_(device: str) -> None:
    x = fg.tensor(randn(3, seed=8), dtype=fg.float64, device=device)
    assert not x.requires_grad
    assert x.requires_grad_() is x and x.requires_grad
    (x * 3).sum().backward()
    assert_close(x.grad, np.full(3, 3.0), 0, 0)
    y = x * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    x.requires_grad_(False)
    assert not (x * 2).requires_grad


@pytest.mark.parametrize("dtype", [fg.int64, fg.int32, fg.uint8, fg.bool_])
def test_integer_tensors_cannot_require_grad(device: str, dtype: fg.DType) -> None:
    with pytest.raises(RuntimeError, match="floating"):
        fg.tensor([1, 0], dtype=dtype, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="floating"):
        fg.tensor([1, 0], dtype=dtype, device=device).requires_grad_()


def test_integer_results_do_not_require_grad(device: str) -> None:
    fx, tx = pair(randn(4, seed=9), device)
    for x in (fx, tx):
        for out in (x > 0, x.long(), x.argmax(), x.int() + 1):
            assert not out.requires_grad and out.is_leaf
        with pytest.raises(RuntimeError):
            (x > 0).double().sum().backward()


def test_detach_stops_gradient(device: str) -> None:
    fx, tx = pair(randn(4, seed=10), device)
    for x in (fx, tx):
        d = x.detach()
        assert not d.requires_grad and d.is_leaf
        (x * d.exp() + d * d).sum().backward()
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)
    assert_close(fx.grad, np.exp(randn(4, seed=10)), 1e-12, 1e-12)


# ---------------------------------------------------------------- grad modes


def test_no_grad_context_and_decorator(device: str) -> None:
    x = fg.tensor([1.0, 2.0], device=device, requires_grad=True)
    assert fg.is_grad_enabled()
    with fg.no_grad():
        assert not fg.is_grad_enabled()
        y = x * 2
    assert fg.is_grad_enabled() and not y.requires_grad and y.is_leaf

    @fg.no_grad()
    def double(t: fg.Tensor) -> fg.Tensor:
        assert not fg.is_grad_enabled()
        return t * 2
    assert not double(x).requires_grad and fg.is_grad_enabled()
    assert double.__name__ == "double"

    @fg.no_grad  # without parentheses too, like torch
    def triple(t: fg.Tensor) -> fg.Tensor:
        return t * 3
    assert not triple(x).requires_grad and fg.is_grad_enabled()


def test_enable_grad_inside_no_grad(device: str) -> None:
    x = fg.tensor([1.0, 2.0], device=device, requires_grad=True)
    with fg.no_grad():
        with fg.enable_grad():
            assert fg.is_grad_enabled()
            y = (x * x).sum()
        assert not fg.is_grad_enabled()
        z = x * 3
    assert y.requires_grad and not z.requires_grad
    y.backward()
    assert_close(x.grad, np.array([2.0, 4.0], np.float32), 0, 0)

    @fg.enable_grad()
    def tracked(t: fg.Tensor) -> fg.Tensor:
        return t * 2
    with fg.no_grad():
        assert tracked(x).requires_grad


def test_set_grad_enabled_call_and_decorator(device: str) -> None:
    x = fg.tensor([1.0], device=device, requires_grad=True)
    try:
        fg.set_grad_enabled(False)  # a plain call switches at once, like torch.set_grad_enabled
        assert not fg.is_grad_enabled() and not (x * 2).requires_grad
    finally:
        fg.set_grad_enabled(True)
    assert fg.is_grad_enabled()

    @fg.set_grad_enabled(False)
    def untracked(t: fg.Tensor) -> fg.Tensor:
        return t * 2
    assert fg.is_grad_enabled()  # decorating does not switch the mode
    assert not untracked(x).requires_grad and fg.is_grad_enabled()


def test_grad_mode_restored_after_exception(device: str) -> None:
    with pytest.raises(ZeroDivisionError):
        with fg.no_grad():
            raise ZeroDivisionError
    assert fg.is_grad_enabled()
    with fg.set_grad_enabled(False):
        assert not fg.is_grad_enabled()
        with fg.set_grad_enabled(True):
            assert fg.is_grad_enabled()
        assert not fg.is_grad_enabled()
    assert fg.is_grad_enabled()


# ---------------------------------------------------------------- fg.grad


def test_grad_matches_torch_autograd_grad(device: str) -> None:
    (fa, ta), (fb, tb) = pair(randn(3, 2, seed=11), device), pair(randn(2, seed=12), device)
    up = randn(3, seed=13)
    fo = [(fa * fb).sum(1), (fa.exp() @ fb).sum()]
    to = [(ta * tb).sum(1), (ta.exp() @ tb).sum()]
    fg_grads = fg.grad(fo, [fa, fb], grad_outputs=[fg.tensor(up, dtype=fg.float64, device=device), None])
    torch_grads = torch.autograd.grad(to, [ta, tb], grad_outputs=[torch.tensor(up), None])
    for g, t in zip(fg_grads, torch_grads):
        assert_close(g, t, 1e-12, 1e-12)
        assert not g.requires_grad
    assert fa.grad is None and fb.grad is None  # fg.grad returns gradients instead of accumulating them


def test_grad_allow_unused_and_non_leaf_inputs(device: str) -> None:
    fx, tx = pair(randn(3, seed=14), device)
    fu, tu = pair(randn(3, seed=15), device)
    fy, ty = fx.exp(), tx.exp()
    fz, tz = (fy * fy).sum(), (ty * ty).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        fg.grad(fz, [fx, fu])
    gx, gu, gy = fg.grad(fz, [fx, fu, fy], allow_unused=True)
    tgx, tgu, tgy = torch.autograd.grad(tz, [tx, tu, ty], allow_unused=True)
    assert gu is None and tgu is None
    assert_close(gx, tgx, 1e-12, 1e-12)
    assert_close(gy, tgy, 1e-12, 1e-12)
    with pytest.raises(RuntimeError, match="grad_outputs"):
        fg.grad(fy, fx)


# ---------------------------------------------------------------- higher order


@pytest.mark.parametrize("fn", [
    lambda x: x * x * x,
    lambda x: x.sin(),
    lambda x: x.exp(),
    lambda x: x.tanh(),
    lambda x: x.sigmoid() * x.sqrt(),
    lambda x: (x.log() / (x + 1)),
    lambda x: (x - 0.7).erf(),  # composites with their own gradient rules: exact derivatives of every order
    lambda x: x.softmax(0) * x.sin(),
    lambda x: x.log_softmax(0) * x.cos(),
], ids=["cube", "sin", "exp", "tanh", "sigmoid_sqrt", "log_div", "erf", "softmax", "log_softmax"])
def test_second_derivative_elementwise(device: str, fn: Callable) -> None:
    fx, tx = pair(randn(5, seed=16, low=0.2), device)
    (fg1,) = fg.grad(fn(fx).sum(), fx, create_graph=True)
    (tg1,) = torch.autograd.grad(fn(tx).sum(), tx, create_graph=True)
    assert fg1.requires_grad
    assert_close(fg1, tg1, 1e-10, 1e-10)
    (fg2,) = fg.grad(fg1.sum(), fx)
    (tg2,) = torch.autograd.grad(tg1.sum(), tx)
    assert_close(fg2, tg2, 1e-9, 1e-9)


def test_second_derivative_of_gelu(device: str) -> None:
    fx, tx = pair(randn(7, seed=17), device)
    (fg1,) = fg.grad(fg.nn.functional.gelu(fx).sum(), fx, create_graph=True)
    (tg1,) = torch.autograd.grad(torch.nn.functional.gelu(tx).sum(), tx, create_graph=True)
    assert_close(fg1, tg1, 1e-6, 1e-6)  # the erf value is an approximation (error < 5e-7), its derivative is not
    (fg2,) = fg.grad((fg1 * fx).sum(), fx)
    (tg2,) = torch.autograd.grad((tg1 * tx).sum(), tx)
    assert_close(fg2, tg2, 1e-6, 1e-6)


def test_third_derivative_of_cube(device: str) -> None:
    x = fg.tensor([0.5, -2.0], dtype=fg.float64, device=device, requires_grad=True)
    (g1,) = fg.grad((x ** 3).sum(), x, create_graph=True)
    (g2,) = fg.grad(g1.sum(), x, create_graph=True)
    (g3,) = fg.grad(g2.sum(), x)
    assert_close(g1, 3 * x.detach().numpy() ** 2, 1e-12, 1e-12)
    assert_close(g2, 6 * x.detach().numpy(), 1e-12, 1e-12)
    assert_close(g3, np.full(2, 6.0), 1e-12, 1e-12)


@pytest.mark.parametrize("loss", [
    lambda z, t: -(z.log_softmax(-1) * t).sum(),
    lambda z, t: (z.softmax(-1) * t).sum() ** 2,
    lambda z, t: z.logsumexp(-1).sum(),
], ids=["cross_entropy", "softmax_sq", "logsumexp"])
def test_hessian_vector_product_softmax_losses(device: str, loss: Callable) -> None:
    target = np.eye(4)[[1, 3, 0]]
    v = randn(3, 4, seed=18)
    (fz, tz) = pair(randn(3, 4, seed=17), device)
    (fg1,) = fg.grad(loss(fz, fg.tensor(target, device=device)), fz, create_graph=True)
    (tg1,) = torch.autograd.grad(loss(tz, torch.tensor(target)), tz, create_graph=True)
    (fh,) = fg.grad((fg1 * fg.tensor(v, device=device)).sum(), fz)
    (th,) = torch.autograd.grad((tg1 * torch.tensor(v)).sum(), tz)
    assert_close(fg1, tg1, 1e-10, 1e-10)
    assert_close(fh, th, 1e-9, 1e-9)


def _mlp(x: Any, w1: Any, b1: Any, w2: Any) -> Any:
    """A two-layer tanh MLP with a squared loss, for fusegrad and torch alike (same method names)."""
    return ((x @ w1 + b1).tanh() @ w2).square().mean()


def test_hessian_vector_product_mlp(device: str) -> None:
    arrays = [randn(5, 3, seed=20), randn(3, 4, seed=21), randn(4, seed=22), randn(4, 2, seed=23)]
    vs = [randn(3, 4, seed=24), randn(4, seed=25), randn(4, 2, seed=26)]
    f = [pair(a, device, requires_grad=i > 0)[0] for i, a in enumerate(arrays)]
    t = [torch.tensor(a, requires_grad=i > 0) for i, a in enumerate(arrays)]
    fgs = fg.grad(_mlp(*f), f[1:], create_graph=True)
    tgs = torch.autograd.grad(_mlp(*t), t[1:], create_graph=True)
    zero = fg.zeros((), dtype=fg.float64, device=device)
    fdot = sum(((g * fg.tensor(v, device=device)).sum() for g, v in zip(fgs, vs)), zero)
    tdot = sum((g * torch.tensor(v)).sum() for g, v in zip(tgs, vs))
    for got, want in zip(fg.grad(fdot, f[1:]), torch.autograd.grad(tdot, t[1:])):
        assert_close(got, want, 1e-10, 1e-10)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_double_backward_through_dot_backward(device: str) -> None:
    """backward(create_graph=True) leaves a differentiable .grad, like torch."""
    fx, tx = pair(randn(3, seed=27), device)
    for x in (fx, tx):
        (x.exp() * x).sum().backward(create_graph=True)
        assert x.grad.requires_grad
        g = x.grad
        x.grad = None
        (g * g).sum().backward()
    assert_close(fx.grad, tx.grad, 1e-10, 1e-10)


# ---------------------------------------------------------------- misc


def test_long_chain_does_not_recurse(device: str) -> None:
    n = max(3000, sys.getrecursionlimit() + 500)
    x = fg.tensor([0.5, 1.5], dtype=fg.float64, device=device, requires_grad=True)
    y = x
    for i in range(n):
        y = y * 1.0001 if i % 2 else y + 0.001
    y.sum().backward()
    assert_close(x.grad, np.full(2, 1.0001 ** (n // 2)), 1e-9, 1e-9)
    assert_close(y, 1.0001 ** (n // 2) * np.array([0.5, 1.5]) + 0.001 * sum(1.0001 ** k for k in range(1, n // 2 + 1)),
                 1e-9, 1e-9)


@pytest.mark.parametrize("src,dst", [(fg.float64, fg.float32), (fg.float32, fg.float64), (fg.float32, fg.float16)])
def test_to_dtype_is_differentiable(device: str, src: fg.DType, dst: fg.DType) -> None:
    arr = randn(4, seed=28).astype(src.np)
    fx, tx = pair(arr, device)
    tdst = {fg.float64: torch.float64, fg.float32: torch.float32, fg.float16: torch.float16}[dst]
    (fx.to(dst) * fx.to(dst)).sum().backward()
    (tx.to(tdst) * tx.to(tdst)).sum().backward()
    assert fx.grad.dtype == src
    assert_close(fx.grad, tx.grad, 1e-2 if dst == fg.float16 else 1e-6, 1e-3)


def test_mlp_sgd_matches_torch_trajectory(device: str) -> None:
    rng = np.random.default_rng(30)
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 1))
    init = [rng.standard_normal((3, 8)) * 0.5, np.zeros(8), rng.standard_normal((8, 1)) * 0.5, np.zeros(1)]
    fp = [fg.tensor(w, device=device, requires_grad=True) for w in init]
    tp = [torch.tensor(w, requires_grad=True) for w in init]
    fxy = [fg.tensor(a, device=device) for a in (x, y)]
    txy = [torch.tensor(a) for a in (x, y)]
    losses = []
    for _ in range(5):
        for params, (xx, yy), no_grad in ((fp, fxy, fg.no_grad), (tp, txy, torch.no_grad)):
            w1, b1, w2, b2 = params
            loss = (((xx @ w1 + b1).relu() @ w2 + b2 - yy) ** 2).mean()
            loss.backward()
            with no_grad():
                for p in params:
                    p -= 0.1 * p.grad
                    p.grad = None
            losses.append(loss.item())
        assert losses[-2] == pytest.approx(losses[-1], rel=1e-12, abs=1e-12)
        for f, t in zip(fp, tp):
            assert_close(f, t, 1e-12, 1e-12)
            assert f.is_leaf and f.requires_grad
    assert losses[-1] < losses[0] * 0.9


# ---------------------------------------------------------------- in-place ops

INPLACE = {
    "iadd": lambda y, o: y.__iadd__(o),
    "isub": lambda y, o: y.__isub__(o),
    "imul": lambda y, o: y.__imul__(o),
    "itruediv": lambda y, o: y.__itruediv__(o),
    "add_": lambda y, o: y.add_(o, alpha=0.5),
    "sub_": lambda y, o: y.sub_(o, alpha=2),
    "mul_": lambda y, o: y.mul_(o),
    "div_": lambda y, o: y.div_(o),
    "copy_": lambda y, o: y.copy_(o),
    "zero_": lambda y, o: y.zero_(),
    "fill_": lambda y, o: y.fill_(1.5),
}


@pytest.mark.parametrize("name", INPLACE)
@pytest.mark.parametrize("other_grad", [True, False])
def test_inplace_on_non_leaf_gradient(device: str, name: str, other_grad: bool) -> None:
    fx, tx = pair(randn(2, 3, seed=40), device)
    fo, to = pair(randn(3, seed=41, low=0.5), device, requires_grad=other_grad)
    for x, o in ((fx, fo), (tx, to)):
        y = x * 2.0 + 1  # not exp: torch refuses in-place updates of outputs its backward saved
        same = INPLACE[name](y, o)
        assert same is y and not y.is_leaf and y.requires_grad
        (y * x).sum().backward()  # x is read again after the update: the old and new values both matter
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)
    if other_grad:
        assert_close(fo.grad if fo.grad is not None else np.zeros(3), to.grad if to.grad is not None
                     else np.zeros(3), 1e-12, 1e-12)


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_on_leaf_requiring_grad(device: str, name: str) -> None:
    arr, other = randn(2, 3, seed=42), randn(3, seed=43, low=0.5)
    fx, tx = pair(arr, device)
    fo, to = fg.tensor(other, device=device), torch.tensor(other)
    with pytest.raises(RuntimeError, match="leaf"):
        INPLACE[name](fx, fo)
    with pytest.raises(RuntimeError, match="leaf"):
        INPLACE[name](tx, to)
    with fg.no_grad():
        INPLACE[name](fx, fo)
    with torch.no_grad():
        INPLACE[name](tx, to)
    assert_close(fx, tx, 1e-12, 1e-12)
    assert fx.is_leaf and fx.requires_grad and fx.grad is None
    (fx * fx).sum().backward()  # the leaf's new value is what its gradient sees
    assert_close(fx.grad, 2 * tx.detach().numpy(), 1e-12, 1e-12)


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_through_data(device: str, name: str) -> None:
    arr, other = randn(2, 3, seed=44), randn(3, seed=45, low=0.5)
    fx, tx = pair(arr, device)
    INPLACE[name](fx.data, fg.tensor(other, device=device))
    INPLACE[name](tx.data, torch.tensor(other))
    assert_close(fx, tx, 1e-12, 1e-12)
    assert fx.is_leaf and fx.requires_grad
    fx.data = fg.tensor(arr, device=device)  # assigning .data replaces the values too
    assert_close(fx, arr, 0, 0)


def test_inplace_on_plain_tensor_from_tracked_source(device: str) -> None:
    fx, tx = pair(randn(3, seed=46), device)
    fb, tb = fg.zeros(3, dtype=fg.float64, device=device), torch.zeros(3, dtype=torch.float64)
    for b, x in ((fb, fx), (tb, tx)):
        b += x.sin()  # a plain tensor updated from a tracked one joins the tape
        assert b.requires_grad and not b.is_leaf
        (b * b).sum().backward()
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)


def test_inplace_keeps_values_read_before(device: str) -> None:
    # torch raises here (a saved tensor was modified in place); fusegrad rebinds, so z keeps the old y
    fx, tx = pair(randn(3, seed=47), device)
    y = fx * 2
    z = y * y
    y += 1
    (z + y).sum().backward()
    t_y = tx * 2
    (t_y * t_y + (t_y + 1)).sum().backward()
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)
    assert_close(y, 2 * randn(3, seed=47) + 1, 1e-12, 1e-12)


def test_leaf_updated_after_use_keeps_the_value_read(device: str) -> None:
    # torch raises here (a saved leaf was modified in place); fusegrad differentiates the values that were read
    w = fg.tensor([1.0, 2.0], dtype=fg.float64, device=device, requires_grad=True)
    x = fg.tensor([3.0, 5.0], dtype=fg.float64, device=device, requires_grad=True)
    z = (w * x).sum()
    with fg.no_grad():
        w.mul_(10.0)
    z.backward()
    assert_close(x.grad, np.array([1.0, 2.0]), 0, 0)
    assert_close(w.grad, np.array([3.0, 5.0]), 0, 0)
    assert w.is_leaf


def test_realize_between_build_and_backward(device: str) -> None:
    fx, tx = pair(randn(3, seed=48), device)
    fy, ty = fx.sin(), tx.sin()
    fz, tz = (fy * fy * fx).sum(), (ty * ty * tx).sum()
    fy.numpy()  # realizing rebinds y to its computed buffer; the tape is unaffected
    fz.realize()
    fz.backward()
    tz.backward()
    assert_close(fx.grad, tx.grad, 1e-12, 1e-12)
