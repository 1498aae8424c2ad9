"""Pooling (`nn.functional.max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d` and their modules) against
PyTorch: outputs, indices and input gradients, including windows with tied maxima (torch's first-max gradient)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from tests.helpers import assert_close, compare, randn

F, TF = nn.functional, torch.nn.functional


def _ties(*shape: int, seed: int) -> np.ndarray:
    """Small integers: most windows hold several equal maxima."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.float64)


# ---- max pooling ----

MAX2D = [  # x shape, args (kernel_size, stride, padding), keyword options
    ((2, 3, 6, 6), (2,), {}),
    ((1, 2, 7, 6), (3, 2, 1), {}),  # batch 1, stride that does not divide the size
    ((2, 2, 7, 9), ((3, 2), (2, 3), (1, 0)), {}),  # non-square
    ((2, 2, 8, 7), (3, 1, 1), {}),  # overlapping windows
    ((2, 2, 9, 8), (3, 2, 1), dict(dilation=2)),
    ((2, 2, 7, 8), ((2, 3), 2, (1, 1)), dict(dilation=(2, 1), ceil_mode=True)),
    ((2, 2, 7, 7), (2, 2), dict(ceil_mode=True)),
    ((2, 2, 5, 8), (3, (3, 2), 1), dict(ceil_mode=True)),
    ((3, 7, 6), (3, 2, 1), {}),  # unbatched (c, h, w)
    ((1, 1, 3, 3), (3,), {}),
]


@pytest.mark.parametrize("xs,args,kw", MAX2D, ids=[str(i) for i in range(len(MAX2D))])
@pytest.mark.parametrize("data", ["random", "ties"])
def test_max_pool2d(device: str, xs: tuple[int, ...], args: tuple, kw: dict, data: str) -> None:
    x = randn(*xs, seed=1) if data == "random" else _ties(*xs, seed=2)
    compare(lambda x: F.max_pool2d(x, *args, **kw), lambda x: TF.max_pool2d(x, *args, **kw), x, device=device,
            atol=1e-12)


@pytest.mark.parametrize("xs,args,kw", MAX2D[:8], ids=[str(i) for i in range(8)])
def test_max_pool2d_return_indices(device: str, xs: tuple[int, ...], args: tuple, kw: dict) -> None:
    compare(lambda x: F.max_pool2d(x, *args, **kw, return_indices=True),
            lambda x: TF.max_pool2d(x, *args, **kw, return_indices=True), _ties(*xs, seed=3), device=device)


def test_max_pool2d_gradient_goes_to_the_first_max_only(device: str) -> None:
    """All-equal windows: torch gives the whole gradient to the first element of each window (amax would share)."""
    x = fg.ones(1, 1, 4, 4, dtype=fg.float64, device=device, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    want = np.zeros((4, 4))
    want[::2, ::2] = 1
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], want)


def test_max_pool2d_after_relu_zeros(device: str) -> None:
    """ReLU makes many exact zeros: ties that must route the gradient like torch's."""
    compare(lambda x: F.max_pool2d(x.relu() - 1, 3, 2, 1).tanh(), lambda x: TF.max_pool2d(x.relu() - 1, 3, 2,
            1).tanh(), randn(2, 3, 9, 8, seed=4) - 1.0, device=device, atol=1e-12)


def test_max_pool2d_float32_and_integers(device: str) -> None:
    compare(lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), lambda x: TF.max_pool2d(x, 3, 2, 1, ceil_mode=True),
            randn(2, 3, 8, 7, dtype=np.float32, seed=5), device=device, atol=1e-6)
    ints = np.random.default_rng(6).integers(-50, 50, (2, 2, 7, 6))
    compare(lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1), ints, device=device)


def test_max_pool2d_propagates_nan(device: str) -> None:
    x = randn(1, 1, 4, 4, seed=7)
    x[0, 0, 1, 2] = np.nan
    compare(lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2), x, device=device)


MAX1D = [((2, 3, 9), (3,), {}), ((1, 2, 10), (3, 2, 1), dict(ceil_mode=True)), ((2, 2, 11), (2, 3, 1), dict(
    dilation=3)), ((3, 8), (4, 3, 2), {})]


@pytest.mark.parametrize("xs,args,kw", MAX1D, ids=[str(i) for i in range(len(MAX1D))])
def test_max_pool1d(device: str, xs: tuple[int, ...], args: tuple, kw: dict) -> None:
    compare(lambda x: F.max_pool1d(x, *args, **kw, return_indices=True),
            lambda x: TF.max_pool1d(x, *args, **kw, return_indices=True), _ties(*xs, seed=8), device=device)
    compare(lambda x: F.max_pool1d(x, *args, **kw), lambda x: TF.max_pool1d(x, *args, **kw), randn(*xs, seed=9),
            device=device, atol=1e-12)


# ---- average pooling ----

AVG2D = [
    ((2, 3, 6, 6), (2,), {}),
    ((1, 2, 7, 6), (3, 2, 1), {}),
    ((2, 2, 7, 6), (3, 2, 1), dict(count_include_pad=False)),
    ((2, 2, 7, 9), ((3, 2), (2, 3), (1, 1)), dict(ceil_mode=True)),
    ((2, 2, 7, 9), ((3, 2), (2, 3), (1, 1)), dict(ceil_mode=True, count_include_pad=False)),
    ((2, 2, 8, 6), ((4, 3), (3, 2), (2, 1)), dict(ceil_mode=True)),  # a window reaching past the padding
    ((2, 2, 7, 6), (3, 2, 1), dict(ceil_mode=True, divisor_override=5)),
    ((2, 2, 8, 7), (3, 1, 1), dict(count_include_pad=False)),
    ((3, 7, 6), (3, 2, 1), {}),  # unbatched
]


@pytest.mark.parametrize("xs,args,kw", AVG2D, ids=[str(i) for i in range(len(AVG2D))])
def test_avg_pool2d(device: str, xs: tuple[int, ...], args: tuple, kw: dict) -> None:
    compare(lambda x: F.avg_pool2d(x, *args, **kw), lambda x: TF.avg_pool2d(x, *args, **kw), randn(*xs, seed=10),
            device=device, atol=1e-12)


def test_avg_pool2d_float32(device: str) -> None:
    compare(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
            lambda x: TF.avg_pool2d(x, 3, 2, 1, count_include_pad=False), randn(2, 3, 9, 8, dtype=np.float32, seed=11),
            device=device, atol=1e-6)


AVG1D = [((2, 3, 9), (3,), {}), ((1, 2, 10), (4, 3, 2), dict(ceil_mode=True, count_include_pad=False)),
         ((2, 2, 10), (4, 3, 2), dict(ceil_mode=True)), ((3, 8), (3, 2, 1), {})]


@pytest.mark.parametrize("xs,args,kw", AVG1D, ids=[str(i) for i in range(len(AVG1D))])
def test_avg_pool1d(device: str, xs: tuple[int, ...], args: tuple, kw: dict) -> None:
    compare(lambda x: F.avg_pool1d(x, *args, **kw), lambda x: TF.avg_pool1d(x, *args, **kw), randn(*xs, seed=12),
            device=device, atol=1e-12)


# ---- adaptive average pooling ----

ADAPTIVE2D = [((2, 3, 8, 6), (4, 3)), ((2, 3, 7, 10), (3, 4)), ((1, 2, 7, 10), 5), ((2, 2, 5, 6), (9, 13)),
              ((2, 2, 7, 10), (None, 4)), ((2, 2, 7, 10), (3, None)), ((2, 2, 7, 10), 1), ((3, 9, 7), (4, 7)),
              ((2, 1, 7, 5), (7, 5))]


@pytest.mark.parametrize("xs,size", ADAPTIVE2D, ids=[str(i) for i in range(len(ADAPTIVE2D))])
def test_adaptive_avg_pool2d(device: str, xs: tuple[int, ...], size: Any) -> None:
    compare(lambda x: F.adaptive_avg_pool2d(x, size), lambda x: TF.adaptive_avg_pool2d(x, size), randn(*xs, seed=13),
            device=device, atol=1e-12)


@pytest.mark.parametrize("xs,size", [((2, 3, 10), 4), ((2, 3, 12), 4), ((3, 5), 8), ((1, 2, 9), 1)])
def test_adaptive_avg_pool1d(device: str, xs: tuple[int, ...], size: int) -> None:
    compare(lambda x: F.adaptive_avg_pool1d(x, size), lambda x: TF.adaptive_avg_pool1d(x, size), randn(*xs, seed=14),
            device=device, atol=1e-12)


def test_adaptive_avg_pool2d_float32(device: str) -> None:
    compare(lambda x: F.adaptive_avg_pool2d(x, (3, 5)), lambda x: TF.adaptive_avg_pool2d(x, (3, 5)),
            randn(2, 4, 11, 7, dtype=np.float32, seed=15), device=device, atol=1e-6)


# ---- modules: the same results, attributes and repr as torch ----

MODULES = [("MaxPool2d", (3,), dict(stride=2, padding=1), (2, 3, 7, 8)),
           ("MaxPool2d", ((2, 3),), dict(dilation=(2, 1), ceil_mode=True), (1, 2, 7, 8)),
           ("MaxPool2d", (2,), dict(return_indices=True), (2, 2, 6, 6)),
           ("MaxPool1d", (3, 2, 1), dict(ceil_mode=True), (2, 3, 10)),
           ("AvgPool2d", (3,), dict(stride=2, padding=1, count_include_pad=False, ceil_mode=True), (2, 3, 8, 7)),
           ("AvgPool2d", ((2, 3), 2), dict(divisor_override=4), (2, 3, 8, 7)),
           ("AvgPool1d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 10)),
           ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 8, 7)), ("AdaptiveAvgPool2d", (5,), {}, (2, 3, 8, 7)),
           ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 10))]


@pytest.mark.parametrize("cls,args,kw,xs", MODULES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MODULES)])
def test_module_matches_torch(device: str, cls: str, args: tuple, kw: dict, xs: tuple[int, ...]) -> None:
    m, t = getattr(nn, cls)(*args, **kw), getattr(torch.nn, cls)(*args, **kw)
    assert repr(m) == repr(t)
    for name in ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices", "count_include_pad",
                 "divisor_override", "output_size"):
        assert getattr(m, name, None) == getattr(t, name, None), name
    assert list(m.state_dict()) == [] and list(m.parameters()) == []
    compare(m, t, _ties(*xs, seed=16), device=device, atol=1e-12)


# ---- errors ----

def test_errors(device: str) -> None:
    x = fg.zeros(1, 1, 4, 4, device=device)
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="at most half"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(fg.ShapeError, match="too small"):
        F.max_pool2d(x, 3, dilation=2)
    with pytest.raises(fg.ShapeError, match="4-D"):
        F.max_pool2d(fg.zeros(4, 4, device=device), 2)
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(x, (2, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        F.avg_pool2d(fg.zeros(1, 1, 4, 4, dtype=fg.int64, device=device), 2)


def test_pooling_output_feeds_training(device: str) -> None:
    """Pooling inside a model: conv -> max pool -> adaptive avg pool -> linear, every gradient like torch's."""
    def build(lib: Any) -> Any:
        n = lib.nn
        return n.Sequential(n.Conv2d(2, 4, 3, padding=1), n.ReLU(), n.MaxPool2d(2, ceil_mode=True),
                            n.AdaptiveAvgPool2d((2, 3)), n.Flatten(), n.Linear(24, 3))
    torch.manual_seed(0)
    t = build(torch).double()
    m = build(fg).to(fg.float64).to(device)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    x = randn(2, 2, 7, 9, seed=17)
    out, tout = m(fg.tensor(x, device=device)), t(torch.tensor(x))
    assert_close(out, tout, atol=1e-12)
    out.square().sum().backward()
    tout.square().sum().backward()
    for (name, p), tp in zip(m.named_parameters(), t.parameters()):
        assert_close(p.grad, tp.grad, atol=1e-10, what=f"{name} grad")
