"""Convolutions (`nn.functional.conv1d/conv2d/conv_transpose1d/conv_transpose2d`, `nn.Conv1d/Conv2d/ConvTranspose1d/
ConvTranspose2d`) against PyTorch: outputs and the gradients of input, weight and bias, weights copied from torch."""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from tests.helpers import assert_close, check_module_step, compare, randn

F, TF = nn.functional, torch.nn.functional
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note about its own copy


def _from_torch(model: nn.Module, tmodel: torch.nn.Module) -> nn.Module:
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    return model


def _check_module(m: nn.Module, t: torch.nn.Module, x: np.ndarray, device: str, atol: float = 1e-10,
                  **call: Any) -> None:
    """Same output as torch, and the same gradients for the input and every parameter."""
    check_module_step(m, t, x, device, atol, **call)


# ---- functional, float64: every option, gradients of input, weight and bias ----

CONV2D = [  # x shape, w shape, options
    ((2, 3, 5, 6), (4, 3, 3, 3), {}),
    ((1, 3, 5, 6), (4, 3, 3, 3), dict(padding=1)),  # batch 1
    ((2, 3, 7, 6), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),  # non-square everything
    ((2, 3, 8, 9), (5, 3, 3, 3), dict(stride=2)),  # stride that does not divide the size
    ((2, 3, 9, 10), (5, 3, 2, 4), dict(stride=3, padding=2)),
    ((2, 4, 6, 7), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ((2, 4, 6, 7), (8, 1, 3, 3), dict(groups=4, padding=1, stride=2)),  # depthwise with a channel multiplier
    ((2, 4, 6, 7), (4, 1, 3, 3), dict(groups=4, dilation=2, padding=2)),  # depthwise, dilated
    ((2, 3, 6, 7), (4, 3, 3, 3), dict(padding="same")),
    ((2, 3, 6, 7), (4, 3, 4, 2), dict(padding="same", dilation=(1, 3))),  # even kernel: asymmetric 'same'
    ((2, 3, 6, 7), (4, 3, 3, 4), dict(padding="valid")),
    ((1, 1, 4, 4), (1, 1, 1, 1), {}),
    ((2, 3, 5, 6), (4, 3, 5, 6), {}),  # the kernel covers the whole image
    ((3, 5, 6), (4, 3, 3, 3), dict(padding=1)),  # unbatched (c, h, w)
]


@pytest.mark.parametrize("xs,ws,kw", CONV2D, ids=[str(c) for c in range(len(CONV2D))])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(device: str, xs: tuple[int, ...], ws: tuple[int, ...], kw: dict, bias: bool) -> None:
    x, w, b = randn(*xs, seed=1), randn(*ws, seed=2), randn(ws[0], seed=3)
    if bias:
        compare(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b,
                device=device, atol=1e-10, rtol=1e-9)
    else:
        compare(lambda x, w: F.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw), x, w, device=device,
                atol=1e-10, rtol=1e-9)


CONV1D = [((2, 3, 9), (4, 3, 3), {}), ((1, 3, 10), (4, 3, 4), dict(stride=3, padding=2)),
          ((2, 4, 9), (6, 2, 3), dict(groups=2, dilation=2, padding=1)), ((2, 4, 9), (4, 1, 5), dict(groups=4)),
          ((2, 3, 8), (2, 3, 4), dict(padding="same")), ((3, 8), (2, 3, 3), dict(padding="valid"))]


@pytest.mark.parametrize("xs,ws,kw", CONV1D, ids=[str(c) for c in range(len(CONV1D))])
def test_conv1d(device: str, xs: tuple[int, ...], ws: tuple[int, ...], kw: dict) -> None:
    compare(lambda x, w, b: F.conv1d(x, w, b, **kw), lambda x, w, b: TF.conv1d(x, w, b, **kw), randn(*xs, seed=4),
            randn(*ws, seed=5), randn(ws[0], seed=6), device=device, atol=1e-10, rtol=1e-9)


CONVT2D = [  # x shape, w shape (in, out // groups, kh, kw), options
    ((2, 3, 4, 5), (3, 4, 3, 3), {}),
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(stride=2)),
    ((2, 3, 4, 5), (3, 2, 3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2))),
    ((2, 4, 4, 5), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1, groups=2)),
    ((2, 4, 3, 4), (4, 1, 3, 3), dict(stride=2, groups=4)),  # depthwise
    ((2, 3, 4, 5), (3, 2, 3, 2), dict(dilation=(2, 3), padding=(2, 1), stride=2, output_padding=(1, 0))),
    ((2, 3, 4, 5), (3, 2, 4, 4), dict(padding=3)),  # padding larger than the kernel's reach crops
    ((3, 4, 5), (3, 2, 3, 3), dict(stride=2, padding=1)),  # unbatched
]


@pytest.mark.parametrize("xs,ws,kw", CONVT2D, ids=[str(c) for c in range(len(CONVT2D))])
def test_conv_transpose2d(device: str, xs: tuple[int, ...], ws: tuple[int, ...], kw: dict) -> None:
    out = ws[1] * kw.get("groups", 1)
    compare(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw),
            randn(*xs, seed=7), randn(*ws, seed=8), randn(out, seed=9), device=device, atol=1e-10, rtol=1e-9)


def test_conv_transpose2d_positional_order_and_no_bias(device: str) -> None:
    # torch's positional order: stride, padding, output_padding, groups, dilation
    compare(lambda x, w: F.conv_transpose2d(x, w, None, 2, 1, 1, 2, 2),
            lambda x, w: TF.conv_transpose2d(x, w, None, 2, 1, 1, 2, 2), randn(2, 4, 3, 4, seed=10),
            randn(4, 2, 3, 3, seed=11), device=device, atol=1e-10)


def test_conv_transpose1d(device: str) -> None:
    kw = dict(stride=3, padding=1, output_padding=2, groups=2, dilation=2)
    compare(lambda x, w, b: F.conv_transpose1d(x, w, b, **kw), lambda x, w, b: TF.conv_transpose1d(x, w, b, **kw),
            randn(2, 4, 5, seed=12), randn(4, 3, 3, seed=13), randn(6, seed=14), device=device, atol=1e-10)


def test_conv2d_float32(device: str) -> None:
    compare(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
            lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1, groups=2),
            randn(2, 4, 9, 8, dtype=np.float32, seed=15), randn(6, 2, 3, 3, dtype=np.float32, seed=16),
            randn(6, dtype=np.float32, seed=17), device=device, atol=1e-4, rtol=1e-4)


def test_conv_transpose2d_float32(device: str) -> None:
    compare(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), lambda x, w: TF.conv_transpose2d(
        x, w, stride=2, padding=1), randn(2, 3, 5, 4, dtype=np.float32, seed=18),
        randn(3, 4, 4, 4, dtype=np.float32, seed=19), device=device, atol=1e-4, rtol=1e-4)


def test_conv2d_second_order(device: str) -> None:
    """The convolution is differentiable twice (its gradient is built from the same views)."""
    x, w = randn(1, 2, 5, 5, seed=20), randn(3, 2, 3, 3, seed=21)
    fx, fw = fg.tensor(x, device=device, requires_grad=True), fg.tensor(w, device=device, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (gx,) = fg.grad(F.conv2d(fx, fw, stride=2).square().sum(), [fx], create_graph=True)
    (tgx,) = torch.autograd.grad(TF.conv2d(tx, tw, stride=2).square().sum(), [tx], create_graph=True)
    gx.square().sum().backward()
    tgx.square().sum().backward()
    assert_close(fw.grad, tw.grad, atol=1e-9)


# ---- modules with weights copied from torch ----

MODULES = [
    ("Conv2d", (3, 4, 3), {}, (2, 3, 6, 7)),
    ("Conv2d", (3, 4, (3, 2)), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), bias=False), (1, 3, 7, 6)),
    ("Conv2d", (4, 6, 3), dict(groups=2, padding="same"), (2, 4, 5, 6)),
    ("Conv2d", (4, 4, 3), dict(groups=4, stride=2, padding=1), (2, 4, 7, 7)),  # depthwise
    ("Conv2d", (3, 4, 3), dict(padding=(1, 2), padding_mode="reflect"), (2, 3, 5, 6)),
    ("Conv2d", (3, 4, 3), dict(padding=2, padding_mode="replicate", stride=2), (2, 3, 5, 6)),
    ("Conv2d", (3, 4, (2, 3)), dict(padding="same", padding_mode="circular"), (2, 3, 5, 6)),
    ("Conv1d", (3, 5, 3), dict(stride=2, padding=1), (2, 3, 9)),
    ("Conv1d", (4, 2, 4), dict(groups=2, padding="same", padding_mode="reflect", dilation=2), (2, 4, 9)),
    ("Conv1d", (3, 5, 3), dict(padding=1, padding_mode="circular", bias=False), (3, 8)),  # unbatched
    ("ConvTranspose2d", (3, 4, 3), dict(stride=2, padding=1, output_padding=1), (2, 3, 4, 5)),
    ("ConvTranspose2d", (4, 6, (3, 2)), dict(stride=(1, 2), groups=2, dilation=(2, 1), bias=False), (1, 4, 3, 4)),
    ("ConvTranspose1d", (4, 2, 3), dict(stride=2, groups=2), (2, 4, 5)),
]


@pytest.mark.parametrize("cls,args,kw,xs", MODULES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MODULES)])
def test_module_matches_torch(device: str, cls: str, args: tuple, kw: dict, xs: tuple[int, ...]) -> None:
    torch.manual_seed(3)
    t = getattr(torch.nn, cls)(*args, **kw).double()
    m = getattr(nn, cls)(*args, **kw, dtype=fg.float64, device=device)
    assert m.weight.shape == tuple(t.weight.shape) and m.weight.device == device
    assert list(m.state_dict()) == list(t.state_dict())
    _check_module(_from_torch(m, t), t, randn(*xs, seed=4), device)
    # and back: fusegrad weights load into torch with the same keys and shapes
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})


@pytest.mark.parametrize("size", [(9, 11), (2, 3, 9, 12), (2, 3, 10, 11)])
def test_conv_transpose2d_output_size(device: str, size: tuple[int, ...]) -> None:
    torch.manual_seed(4)
    t = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()
    m = _from_torch(nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, dtype=fg.float64, device=device), t)
    _check_module(m, t, randn(2, 3, 5, 6, seed=5), device, output_size=size)
    with pytest.raises(ValueError, match="valid sizes range"):
        m(fg.zeros(2, 3, 5, 6, dtype=fg.float64, device=device), output_size=(12, 11))


REPRS = [("Conv2d", (3, 4, 3), {}), ("Conv2d", (4, 8, (3, 5)), dict(stride=2, padding=(1, 2), dilation=3, groups=2,
                                                                     bias=False, padding_mode="reflect")),
         ("Conv2d", (2, 4, 3), dict(padding="same", padding_mode="circular")), ("Conv2d", (2, 4, 3), dict(padding=0)),
         ("Conv1d", (2, 4, 5), dict(padding="valid", stride=1)), ("Conv1d", (2, 4, 5), dict(padding=2)),
         ("ConvTranspose2d", (2, 4, 3), dict(stride=2, output_padding=1, groups=2)),
         ("ConvTranspose1d", (2, 4, 3), dict(dilation=2, bias=False))]


@pytest.mark.parametrize("cls,args,kw", REPRS, ids=[str(i) for i in range(len(REPRS))])
def test_repr_and_attributes_match_torch(cls: str, args: tuple, kw: dict) -> None:
    m, t = getattr(nn, cls)(*args, **kw), getattr(torch.nn, cls)(*args, **kw)
    assert repr(m) == repr(t)
    for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                 "output_padding", "groups", "padding_mode"):
        assert getattr(m, name) == getattr(t, name), name


@pytest.mark.parametrize("cls,args,kw", [("Conv2d", (16, 32, 3), {}), ("Conv2d", (8, 16, (5, 3)), dict(groups=4)),
                                         ("Conv1d", (3, 200, 7), {}), ("ConvTranspose2d", (32, 24, 3), dict(groups=2))])
def test_default_init_has_torch_bounds(cls: str, args: tuple, kw: dict) -> None:
    """kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights, and the bias the same bound,
    with fan_in = weight.shape[1] * kernel size (for transposed convolutions too, as in torch)."""
    m, t = getattr(nn, cls)(*args, **kw), getattr(torch.nn, cls)(*args, **kw)
    fan_in = math.prod(t.weight.shape[1:])
    bound = 1 / math.sqrt(fan_in)
    for p, tp in ((m.weight, t.weight), (m.bias, t.bias)):
        v = p.numpy()
        assert v.shape == tuple(tp.shape) and v.dtype == np.float32 and p.requires_grad
        assert np.abs(v).max() <= bound and np.abs(tp.detach().numpy()).max() <= bound
        assert v.std() > 0.4 * bound  # uniform on [-b, b] has std b / sqrt(3) ~ 0.58 b
    assert abs(m.weight.numpy().std() - bound / math.sqrt(3)) < 0.1 * bound
    m.reset_parameters()
    assert np.abs(m.weight.numpy()).max() <= bound


# ---- errors, named like torch's ----

def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        nn.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        nn.Conv2d(4, 4, 3, groups=0)
    with pytest.raises(ValueError, match="Invalid padding string"):
        nn.Conv2d(4, 4, 3, padding="full")
    with pytest.raises(ValueError, match="not supported for strided convolutions"):
        nn.Conv2d(4, 4, 3, padding="same", stride=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(4, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match='Only "zeros" padding mode'):
        nn.ConvTranspose2d(4, 4, 3, padding_mode="reflect")


def test_shape_errors(device: str) -> None:
    x = fg.zeros(2, 3, 5, 5, device=device)
    with pytest.raises(fg.ShapeError, match="input channels"):
        F.conv2d(x, fg.zeros(4, 2, 3, 3, device=device))  # 3 channels, weight wants 2
    with pytest.raises(fg.ShapeError, match="smaller than the dilated kernel"):
        F.conv2d(x, fg.zeros(4, 3, 3, 3, device=device), dilation=3)
    with pytest.raises(fg.ShapeError, match="4-D"):
        F.conv2d(fg.zeros(5, 5, device=device), fg.zeros(4, 3, 3, 3, device=device))
    with pytest.raises(fg.ShapeError, match="bias"):
        F.conv2d(x, fg.zeros(4, 3, 3, 3, device=device), fg.zeros(3, device=device))
    with pytest.raises(ValueError, match="strided"):
        F.conv2d(x, fg.zeros(4, 3, 3, 3, device=device), padding="same", stride=2)
    with pytest.raises(ValueError, match="output padding"):
        F.conv_transpose2d(x, fg.zeros(3, 2, 3, 3, device=device), stride=2, output_padding=2)
    with pytest.raises(fg.ShapeError, match="too small"):
        F.conv_transpose2d(x, fg.zeros(3, 2, 1, 1, device=device), padding=3)
    with pytest.raises(ValueError, match="reflect padding"):
        nn.Conv1d(1, 1, 3, padding=4, padding_mode="reflect")(fg.zeros(1, 1, 4, device=device))


# ---- a LeNet-5-like network end to end ----

def _lenet(lib: Any) -> Any:
    n = lib.nn
    return n.Sequential(n.Conv2d(1, 6, 5), n.Tanh(), n.MaxPool2d(2), n.Conv2d(6, 16, 5), n.ReLU(), n.AvgPool2d(2),
                        n.Flatten(), n.Linear(400, 120), n.ReLU(), n.Linear(120, 84), n.ReLU(), n.Linear(84, 10))


def test_lenet5_end_to_end(device: str) -> None:
    torch.manual_seed(5)
    t = _lenet(torch).double()
    m = _from_torch(_lenet(fg).to(fg.float64).to(device), t)
    assert repr(m) == repr(t)
    x, y = randn(3, 1, 32, 32, seed=6), np.array([3, 0, 9])
    loss = F.cross_entropy(m(fg.tensor(x, device=device)), fg.tensor(y, device=device))
    tloss = TF.cross_entropy(t(torch.tensor(x)), torch.tensor(y))
    assert_close(loss, tloss, atol=1e-12)
    loss.backward()
    tloss.backward()
    for (name, p), tp in zip(m.named_parameters(), t.parameters()):
        assert_close(p.grad, tp.grad, atol=1e-12, rtol=1e-9, what=f"{name} grad")


def test_lenet5_unbatched_and_float32(device: str) -> None:
    torch.manual_seed(6)
    t = _lenet(torch)
    m = _from_torch(_lenet(fg).to(device), t)
    x = randn(1, 1, 32, 32, dtype=np.float32, seed=7)
    _check_module(m, t, x, device, atol=1e-4)
    assert_close(m[:6](fg.tensor(x[0], device=device)), t[:6](torch.tensor(x[0])), atol=1e-5)


# ---- the windows: the UNFOLD primitive, whose gradient sums shifted slices (small windows) or SUMs over the taps
# (large ones), and a reshape (windows side by side) ----

UNFOLD_PATHS = [((2, 3, 11), 2, 3, 1), ((2, 3, 11), 2, 3, 2), ((2, 3, 12), 2, 4, 4), ((2, 3, 13), 2, 4, 4),
                ((4, 40), 1, 17, 3), ((40, 4), 0, 20, 1), ((2, 13), 1, 3, 5), ((3, 60), 1, 17, 40), ((5,), 0, 5, 1)]


@pytest.mark.parametrize("shape,dim,size,step", UNFOLD_PATHS, ids=[str(c) for c in range(len(UNFOLD_PATHS))])
def test_unfold_every_path_and_its_gradient(device: str, shape: tuple[int, ...], dim: int, size: int,
                                            step: int) -> None:
    compare(lambda x: x.unfold(dim, size, step) * 1.5, lambda x: x.unfold(dim, size, step) * 1.5, randn(*shape),
            device=device)


def test_unfold_of_padded_and_strided_input(device: str) -> None:
    """Windows over padding (validity then depends on window and tap) and over a strided, flipped view."""
    compare(lambda x: x.pad((2, 1)).unfold(-1, 3, 2) * 2,
            lambda x: torch.nn.functional.pad(x, (2, 1)).unfold(-1, 3, 2) * 2, randn(3, 7), device=device)
    compare(lambda x: x[:, ::2].flip(1).unfold(1, 2, 1).exp(), lambda x: x[:, ::2].flip(1).unfold(1, 2, 1).exp(),
            randn(2, 9), device=device)


def test_conv2d_both_product_layouts(device: str) -> None:
    """Small images share one product over the batch, large ones have one product per image (outputs and all
    gradients agree with torch either way)."""
    for xs, ws, stride in [((3, 4, 9, 9), (6, 4, 3, 3), (1, 2)), ((2, 16, 48, 48), (16, 16, 3, 3), 1)]:
        assert (ws[0] * ws[1] * 9 * xs[2] * xs[3] >= nn.conv.BATCHED_GEMM_MIN) == (stride == 1)
        compare(lambda x, w, s=stride: F.conv2d(x, w, padding=1, stride=s),
                lambda x, w, s=stride: TF.conv2d(x, w, padding=1, stride=s), randn(*xs, seed=1), randn(*ws, seed=2),
                device=device, atol=1e-9, rtol=1e-9)


# ---- the lowering is one big matmul over views: a ResNet-sized layer takes seconds on numpy ----

def test_conv2d_resnet_layer_is_fast_on_numpy() -> None:
    x, w = randn(32, 32, 56, 56, dtype=np.float32, seed=8), randn(64, 32, 3, 3, dtype=np.float32, seed=9) * 0.1
    fx, fw = fg.tensor(x, device="numpy", requires_grad=True), fg.tensor(w, device="numpy", requires_grad=True)
    start = time.perf_counter()
    y = F.conv2d(fx, fw, padding=1)
    y.realize()
    y.sum().backward()
    fw.grad.realize()
    fx.grad.realize()
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"conv2d forward + backward took {elapsed:.1f} s"
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = TF.conv2d(tx, tw, padding=1)
    ty.sum().backward()
    assert_close(y, ty, atol=1e-3, rtol=1e-4)
    assert_close(fw.grad, tw.grad, atol=1e-1, rtol=1e-4)  # sums of 100k float32 terms
    assert_close(fx.grad, tx.grad, atol=1e-4, rtol=1e-4)
