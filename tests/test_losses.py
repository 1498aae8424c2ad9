"""Losses in functional and module form against PyTorch (float64): values and the gradients of input and target
for every `reduction`, class-index and probability targets, class weights, ignore_index and label smoothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from tests.helpers import assert_close, compare, randn

F, TF = nn.functional, torch.nn.functional

REDUCTIONS = ["mean", "sum", "none"]
TOL = dict(atol=1e-10, rtol=1e-8)


def _labels(*shape: int, classes: int, seed: int = 0, ignore: int | None = None) -> np.ndarray:
    """int64 class indices; every third one is `ignore` when given."""
    y = np.random.default_rng(seed).integers(0, classes, shape).astype(np.int64)
    if ignore is not None:
        y.reshape(-1)[::3] = ignore
    return y


def _probs(*shape: int, dim: int = 1, seed: int = 0) -> np.ndarray:
    """Rows of probabilities along dim (positive, summing to 1)."""
    e = np.exp(randn(*shape, seed=seed))
    return e / e.sum(axis=dim, keepdims=True)


# ---- regression losses ----

def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Input and target with a few exact ties (the kink of l1, smooth_l1 and huber) and differences across the
    smooth/linear boundary."""
    x, y = randn(*shape, seed=seed) * 2, randn(*shape, seed=seed + 1)
    x.reshape(-1)[::4] = y.reshape(-1)[::4]
    return x, y


REGRESSION = {  # name -> (fusegrad call, torch call), both f(lib_functional, x, y, reduction)
    "mse_loss": lambda f, x, y, r: f.mse_loss(x, y, reduction=r),
    "l1_loss": lambda f, x, y, r: f.l1_loss(x, y, reduction=r),
    "smooth_l1_loss": lambda f, x, y, r: f.smooth_l1_loss(x, y, reduction=r),
    "smooth_l1_loss_beta0.5": lambda f, x, y, r: f.smooth_l1_loss(x, y, reduction=r, beta=0.5),
    "smooth_l1_loss_beta0": lambda f, x, y, r: f.smooth_l1_loss(x, y, reduction=r, beta=0.0),
    "huber_loss": lambda f, x, y, r: f.huber_loss(x, y, reduction=r),
    "huber_loss_delta2": lambda f, x, y, r: f.huber_loss(x, y, reduction=r, delta=2.0),
    "huber_loss_delta0.3": lambda f, x, y, r: f.huber_loss(x, y, reduction=r, delta=0.3),
}


@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 4), (0, 3)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_losses(device: str, name: str, reduction: str, shape: tuple[int, ...]) -> None:
    fn = REGRESSION[name]
    compare(lambda x, y: fn(F, x, y, reduction), lambda x, y: fn(TF, x, y, reduction), *_pair(shape), device=device,
            **TOL)


@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_losses_float32_and_non_contiguous(device: str, name: str) -> None:
    fn = REGRESSION[name]
    x, y = _pair((4, 5), seed=3)
    compare(lambda a, b: fn(F, a.T, b.T, "mean"), lambda a, b: fn(TF, a.T, b.T, "mean"), x, y, device=device, **TOL)
    compare(lambda a, b: fn(F, a, b, "none"), lambda a, b: fn(TF, a, b, "none"), x.astype(np.float32),
            y.astype(np.float32), device=device, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("module,torch_module,kwargs", [
    ("MSELoss", "MSELoss", {}), ("L1Loss", "L1Loss", {"reduction": "sum"}),
    ("SmoothL1Loss", "SmoothL1Loss", {"beta": 0.5, "reduction": "none"}),
    ("HuberLoss", "HuberLoss", {"delta": 0.7}), ("HuberLoss", "HuberLoss", {"reduction": "sum", "delta": 2.0}),
])
def test_regression_loss_modules(device: str, module: str, torch_module: str, kwargs: dict) -> None:
    m, t = getattr(nn, module)(**kwargs), getattr(torch.nn, torch_module)(**kwargs)
    assert repr(m) == repr(t)
    compare(m, t, *_pair((3, 5), seed=2), device=device, **TOL)


def test_regression_shape_mismatch_raises() -> None:
    # deviation: torch broadcasts a differently shaped target with a UserWarning; fusegrad raises when built
    with pytest.raises(fg.ShapeError, match=r"\(3, 4\).*\(4,\)"):
        F.mse_loss(fg.ones(3, 4), fg.ones(4))


def test_bad_reduction_raises() -> None:
    with pytest.raises(ValueError, match="reduction"):
        F.l1_loss(fg.ones(2), fg.ones(2), reduction="avg")


# ---- cross_entropy and nll_loss with class indices ----

# (input shape, target shape): (N, C), unbatched (C,), (N, C, d1), (N, C, d1, d2), a single sample
INDEX_SHAPES = [((5, 4), (5,)), ((4,), ()), ((3, 4, 5), (3, 5)), ((2, 3, 4, 2), (2, 4, 2)), ((1, 3), (1,))]
WEIGHT = np.array([0.5, 2.0, 1.0, 3.0])


def _classes(shape: tuple[int, ...]) -> int:
    return shape[0] if len(shape) == 1 else shape[1]


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, -100, 1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,tshape", INDEX_SHAPES, ids=str)
def test_cross_entropy_class_indices(device: str, shape: tuple, tshape: tuple, reduction: str, ignore: int | None,
                                     weighted: bool, smoothing: float) -> None:
    c = _classes(shape)
    w = WEIGHT[:c] if weighted else None
    y = _labels(*tshape, classes=c, seed=1, ignore=ignore if tshape else None)
    opts = dict(reduction=reduction, label_smoothing=smoothing, **({} if ignore is None else {"ignore_index": ignore}))
    compare(lambda x, t: F.cross_entropy(x, t, None if w is None else fg.tensor(w, device=device), **opts),
            lambda x, t: TF.cross_entropy(x, t, None if w is None else torch.tensor(w), **opts),
            randn(*shape, seed=2) * 2, y, device=device, **TOL)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_all_ignored(device: str, reduction: str, smoothing: float, weighted: bool) -> None:
    y = np.full(4, -100, np.int64)  # 'mean' over no targets is 0 / 0 = nan, like torch
    w = WEIGHT[:3] if weighted else None
    compare(lambda x, t: F.cross_entropy(x, t, None if w is None else fg.tensor(w, device=device),
                                         reduction=reduction, label_smoothing=smoothing),
            lambda x, t: TF.cross_entropy(x, t, None if w is None else torch.tensor(w), reduction=reduction,
                                          label_smoothing=smoothing),
            randn(4, 3, seed=2), y, device=device, **TOL)


# (input shape): class probabilities as the target have the input's shape
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5, 4), (4,), (2, 4, 3), (2, 4, 1, 2)], ids=str)
def test_cross_entropy_probabilities(device: str, shape: tuple, reduction: str, weighted: bool,
                                     smoothing: float) -> None:
    dim = 0 if len(shape) == 1 else 1
    w = WEIGHT if weighted else None
    opts = dict(reduction=reduction, label_smoothing=smoothing)
    compare(lambda x, t: F.cross_entropy(x, t, None if w is None else fg.tensor(w, device=device), **opts),
            lambda x, t: TF.cross_entropy(x, t, None if w is None else torch.tensor(w), **opts),
            randn(*shape, seed=4), _probs(*shape, dim=dim, seed=5), device=device, **TOL)


def test_cross_entropy_float32_and_non_contiguous(device: str) -> None:
    x = randn(4, 6, seed=1)
    y = _labels(6, classes=4, seed=2)
    compare(lambda a, t: F.cross_entropy(a.T, t), lambda a, t: TF.cross_entropy(a.T, t), x, y, device=device, **TOL)
    compare(F.cross_entropy, TF.cross_entropy, x.T.astype(np.float32), y, device=device, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, 2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,tshape", INDEX_SHAPES, ids=str)
def test_nll_loss(device: str, shape: tuple, tshape: tuple, reduction: str, ignore: int | None,
                  weighted: bool) -> None:
    c = _classes(shape)
    w = WEIGHT[:c] if weighted else None
    y = _labels(*tshape, classes=c, seed=3, ignore=ignore if tshape else None)
    opts = dict(reduction=reduction, **({} if ignore is None else {"ignore_index": ignore}))
    compare(lambda x, t: F.nll_loss(x, t, None if w is None else fg.tensor(w, device=device), **opts),
            lambda x, t: TF.nll_loss(x, t, None if w is None else torch.tensor(w), **opts),
            randn(*shape, seed=6), y, device=device, **TOL)


def test_class_index_errors() -> None:
    with pytest.raises(fg.ShapeError, match=r"\(4,\).*\(5, 3\)"):
        F.cross_entropy(fg.ones(5, 3), fg.zeros(4, dtype=fg.int64))
    with pytest.raises(TypeError, match="int64"):
        F.nll_loss(fg.ones(5, 3), fg.zeros(5))
    with pytest.raises(fg.ShapeError):
        F.cross_entropy(fg.ones(5, 3), fg.zeros(5, 4))  # probabilities must have the input's shape


# ---- binary cross-entropy ----

@pytest.mark.parametrize("weight_shape", [None, (4,), (3, 4)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy(device: str, reduction: str, weight_shape: tuple | None) -> None:
    w = None if weight_shape is None else randn(*weight_shape, seed=9, low=0.1)
    p = 1 / (1 + np.exp(-randn(3, 4, seed=7)))
    t = np.random.default_rng(8).uniform(0, 1, (3, 4))
    t[0] = np.round(t[0])  # hard labels too
    compare(lambda a, b: F.binary_cross_entropy(a, b, None if w is None else fg.tensor(w, device=device),
                                                reduction=reduction),
            lambda a, b: TF.binary_cross_entropy(a, b, None if w is None else torch.tensor(w), reduction=reduction),
            p, t, device=device, **TOL)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_cross_entropy_saturated_probabilities(device: str, dtype: type) -> None:
    # like torch: log is clamped at -100, so p = 0 or 1 with the wrong label gives 100, not inf, and the gradient
    # (p - t) / max(p (1 - p), 1e-12) is finite (1e12 where the label is wrong). Deviation: the target's gradient
    # there is torch's log(1 - p) - log(p) = +-inf, fusegrad's uses the clamped logs (+-100), so it is not compared.
    p, t = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-30], dtype), np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.3], dtype)
    compare(lambda a: F.binary_cross_entropy(a, fg.tensor(t, device=device), reduction="none"),
            lambda a: TF.binary_cross_entropy(a, torch.tensor(t), reduction="none"), p, device=device, rtol=1e-6)


@pytest.mark.parametrize("pos_weight", [None, (4,), (3, 4)], ids=str)
@pytest.mark.parametrize("weight_shape", [None, (4,)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits(device: str, reduction: str, weight_shape: tuple | None,
                                          pos_weight: tuple | None) -> None:
    w = None if weight_shape is None else randn(*weight_shape, seed=9, low=0.1)
    pw = None if pos_weight is None else randn(*pos_weight, seed=10, low=0.2)
    x = randn(3, 4, seed=11) * 3
    x[0, :2] = [1000.0, -1000.0]  # large logits stay finite, in value and gradient
    t = np.random.default_rng(12).uniform(0, 1, (3, 4))
    t[0] = [0.0, 1.0, 1.0, 0.0]

    def fg_fn(a: fg.Tensor, b: fg.Tensor) -> fg.Tensor:
        return F.binary_cross_entropy_with_logits(a, b, None if w is None else fg.tensor(w, device=device),
                                                  reduction=reduction,
                                                  pos_weight=None if pw is None else fg.tensor(pw, device=device))

    def torch_fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return TF.binary_cross_entropy_with_logits(a, b, None if w is None else torch.tensor(w), reduction=reduction,
                                                   pos_weight=None if pw is None else torch.tensor(pw))

    compare(fg_fn, torch_fn, x, t, device=device, **TOL)
    xt = fg.tensor(x, device=device, requires_grad=True)
    fg_fn(xt, fg.tensor(t, device=device)).sum().backward()
    assert np.isfinite(fg_fn(xt, fg.tensor(t, device=device)).numpy()).all() and np.isfinite(xt.grad.numpy()).all()


def test_binary_cross_entropy_with_logits_float32_large_logits(device: str) -> None:
    x = np.array([-200.0, -30.0, 0.0, 30.0, 200.0], np.float32)
    t = np.array([1.0, 0.0, 0.5, 1.0, 0.0], np.float32)
    compare(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none"),
            lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction="none"), x, t, device=device,
            atol=1e-5, rtol=1e-5)


# ---- kl_div ----

@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("shape", [(4, 5), (5,), (2, 3, 4)], ids=str)
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_kl_div(device: str, shape: tuple, reduction: str, log_target: bool) -> None:
    dim = 0 if len(shape) == 1 else -1
    logp = np.log(_probs(*shape, dim=dim, seed=13))
    q = _probs(*shape, dim=dim, seed=14)
    target = np.log(q) if log_target else q
    compare(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
            lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target), logp, target, device=device,
            **TOL)


def test_kl_div_zero_target(device: str) -> None:
    # 0 * log 0 counts as 0 (torch's xlogy); only the input's gradient is compared (torch's d/dtarget is -inf there)
    q = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    logp = np.log(_probs(2, 3, seed=15))
    compare(lambda a: F.kl_div(a, fg.tensor(q, device=device), reduction="batchmean"),
            lambda a: TF.kl_div(a, torch.tensor(q), reduction="batchmean"), logp, device=device, **TOL)


# ---- module forms ----

LOSS_MODULES = [  # (name, kwargs built from (lib, w)), inputs (x, target)
    ("CrossEntropyLoss", lambda lib, w: {}, "logits", "labels"),
    ("CrossEntropyLoss", lambda lib, w: {"weight": w, "ignore_index": 1, "reduction": "sum"}, "logits", "labels"),
    ("CrossEntropyLoss", lambda lib, w: {"label_smoothing": 0.1, "weight": w}, "logits", "labels"),
    ("CrossEntropyLoss", lambda lib, w: {"reduction": "none"}, "logits", "probs"),
    ("NLLLoss", lambda lib, w: {"weight": w, "reduction": "mean"}, "logprobs", "labels"),
    ("BCELoss", lambda lib, w: {"weight": w}, "probs", "probs"),
    ("BCEWithLogitsLoss", lambda lib, w: {"pos_weight": w, "reduction": "sum"}, "logits", "probs"),
    ("KLDivLoss", lambda lib, w: {"reduction": "batchmean"}, "logprobs", "probs"),
    ("KLDivLoss", lambda lib, w: {"reduction": "sum", "log_target": True}, "logprobs", "logprobs"),
]


@pytest.mark.parametrize("name,kwargs,xkind,tkind", LOSS_MODULES, ids=lambda v: v if isinstance(v, str) else "")
def test_loss_modules(device: str, name: str, kwargs: object, xkind: str, tkind: str) -> None:
    data = {"logits": randn(5, 4, seed=16), "labels": _labels(5, classes=4, seed=17), "probs": _probs(5, 4, seed=18),
            "logprobs": np.log(_probs(5, 4, seed=19))}
    m = getattr(nn, name)(**kwargs(fg, fg.tensor(WEIGHT, device=device)))
    t = getattr(torch.nn, name)(**kwargs(torch, torch.tensor(WEIGHT)))
    assert list(m.state_dict()) == list(t.state_dict())
    compare(m, t, data[xkind], data[tkind], device=device, **TOL)


def test_loss_module_positional_and_weight_buffer() -> None:
    m = nn.CrossEntropyLoss(fg.tensor(WEIGHT), ignore_index=3)
    assert m.ignore_index == 3 and m.reduction == "mean"
    assert_close(m.state_dict()["weight"], torch.nn.CrossEntropyLoss(torch.tensor(WEIGHT)).state_dict()["weight"])
    assert nn.BCEWithLogitsLoss().pos_weight is None and list(nn.BCEWithLogitsLoss().state_dict()) == []
    with pytest.raises(TypeError, match="reduction"):
        nn.MSELoss(reductoin="sum")
