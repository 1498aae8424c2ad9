"""Loss functions with PyTorch's formulas and `reduction` modes ('mean', 'sum', 'none')."""
from __future__ import annotations

import fusegrad as fg
from fusegrad import Tensor


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(name: str, input: Tensor, target: Tensor) -> None:
    if input.shape != target.shape:
        raise fg.ShapeError(f"{name}: input shape {input.shape} and target shape {target.shape} differ")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error."""
    _same_shape("mse_loss", input, target)
    return _reduce((input - target).square(), reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Absolute error."""
    _same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta."""
    _same_shape("smooth_l1_loss", input, target)
    d = (input - target).abs()
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce((d < beta)._select(0.5 * d.square() / beta, d - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta)."""
    _same_shape("huber_loss", input, target)
    d = (input - target).abs()
    return _reduce((d < delta)._select(0.5 * d.square(), delta * (d - 0.5 * delta)), reduction)


def _weighted_mean(total: Tensor, denom: Tensor) -> Tensor:
    """total / denom, but with a zero (not NaN) gradient when denom is 0 (every target ignored): torch's value is
    NaN there and its gradient 0."""
    empty = denom == 0
    return total / empty._select(1.0, denom) + empty._select(float("nan"), 0.0).to(total.dtype)


def _class_weights(weight: Tensor | None, ndim: int, class_dim: int) -> Tensor | None:
    """Class weights shaped to broadcast along the class dim."""
    return None if weight is None else weight.reshape([-1 if d == class_dim else 1 for d in range(ndim)])


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices: input is (N, C, ...) log-probabilities, target (N, ...)."""
    class_dim = 0 if input.ndim == 1 else 1
    expected = input.shape[:class_dim] + input.shape[class_dim + 1:]
    if target.shape != expected:
        raise fg.ShapeError(f"nll_loss: target shape {target.shape} does not fit input shape {input.shape} "
                            f"(expected {expected})")
    if target.is_floating_point():
        raise TypeError(f"nll_loss: target must hold class indices (int64), got {target.dtype.name}")
    keep = target != ignore_index
    safe = keep._select(target, 0).long()
    picked = -input.gather(class_dim, safe.unsqueeze(class_dim)).squeeze(class_dim)
    w = keep.float().to(input.dtype)
    if weight is not None:
        w = w * weight[safe]
    loss = picked * w
    if reduction == "mean":
        return _weighted_mean(loss.sum(), w.sum())
    return _reduce(loss, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """log_softmax + nll_loss for class indices, or the soft-label form when target has input's shape."""
    class_dim = 0 if input.ndim == 1 else 1
    n_classes = input.shape[class_dim]
    logp = input.log_softmax(class_dim)
    if target.is_floating_point():  # class probabilities
        _same_shape("cross_entropy", input, target)
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / n_classes
        w = _class_weights(weight, input.ndim, class_dim)
        loss = -(logp * target * (w if w is not None else 1)).sum(class_dim)
        if reduction == "mean":
            return loss.sum() / max(input.numel() // max(n_classes, 1), 1)
        return _reduce(loss, reduction)
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    keep = target != ignore_index
    w = _class_weights(weight, input.ndim, class_dim)
    smooth = keep._select(-(logp * (w if w is not None else 1)).sum(class_dim), 0.0)
    if reduction == "mean":
        denom = weight[keep._select(target, 0).long()].mul(keep.float()).sum() if weight is not None \
            else keep.float().sum()
        smooth = _weighted_mean(smooth.sum(), denom)
    else:
        smooth = _reduce(smooth, reduction)
    return (1 - label_smoothing) * nll + smooth * (label_smoothing / n_classes)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)), logs clamped at -100 like PyTorch.

    The gradient in p is torch's (p - t) / max(p (1 - p), 1e-12), finite where p is exactly 0 or 1 (a float32
    sigmoid saturates there), which differentiating the logs would make 0 * inf = NaN. (First order only.)
    """
    _same_shape("binary_cross_entropy", input, target)
    p = input.detach()
    loss = -(target * p.log().clamp(min=-100) + (1 - target) * (1 - p).log().clamp(min=-100))
    if input.requires_grad:  # value unchanged (input - p is 0); slope in input is the detached factor
        loss = loss + ((p - target) / (p * (1 - p)).clamp(min=1e-12)).detach() * (input - p)
    return _reduce(loss if weight is None else loss * weight, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """Sigmoid + binary cross-entropy in one numerically stable formula."""
    _same_shape("binary_cross_entropy_with_logits", input, target)
    # -log(sigmoid(x)) = log(1 + e^-|x|) + max(-x, 0); -|x| is written with slope -1 at 0 (abs has 0 there) so that
    # the gradient at x = 0 is sigmoid(0) - 1
    neg_abs = (input < 0)._select(input, -input)
    log_sig_neg = neg_abs.exp().log1p() + (-input).relu()
    coeff = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    loss = (1 - target) * input + coeff * log_sig_neg
    return _reduce(loss if weight is None else loss * weight, reduction)


def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL divergence with input as log-probabilities; reduction 'batchmean' divides the sum by the batch size."""
    if log_target:
        loss = target.exp() * (target - input)
    else:
        loss = (target > 0)._select(target * (target > 0)._select(target, 1.0).log(), 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)
