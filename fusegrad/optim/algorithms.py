"""The update rules: SGD, Adam, AdamW, RMSprop, Adagrad, each exactly PyTorch's formulas (default options)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fusegrad as fg
from fusegrad import Tensor

from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        h = self._hyper(group, p)
        g = grad + h("weight_decay") * p if group["weight_decay"] else grad
        if group["momentum"]:
            mu, buf = h("momentum"), state.get("momentum_buffer")
            buf = self._store(state, "momentum_buffer", g if buf is None else mu * buf + (1 - h("dampening")) * g)
            g = g + mu * buf if group["nesterov"] else buf
        return p - h("lr") * g


class Adam(Optimizer):
    """Adam (and AMSGrad); weight decay is added to the gradient (L2), unlike AdamW."""

    decoupled = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False):
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:  # as torch: the bias corrections 1 - beta ** step need it
                raise ValueError(f"Invalid beta parameter at index {i}: {beta} (betas must be in [0, 1))")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        h = self._hyper(group, p)
        lr, (b1, b2), eps, wd = h("lr"), h("betas"), h("eps"), h("weight_decay")
        if group["weight_decay"] and self.decoupled:
            p = p * (1 - lr * wd)
        elif group["weight_decay"]:
            grad = grad + wd * p
        step = self._step_count(state, p)
        m = self._store(state, "exp_avg", b1 * state.get("exp_avg", fg.zeros_like(p)) + (1 - b1) * grad)
        v = self._store(state, "exp_avg_sq",
                        b2 * state.get("exp_avg_sq", fg.zeros_like(p)) + (1 - b2) * grad * grad)
        if group["amsgrad"]:
            v = self._store(state, "max_exp_avg_sq", state.get("max_exp_avg_sq", fg.zeros_like(p)).maximum(v))
        denom = v.sqrt() / (1 - _decayed(b2, step)).sqrt() + eps
        return p - (lr / (1 - _decayed(b1, step))) * m / denom


def _decayed(beta: Tensor, step: Tensor) -> Tensor:
    """beta ** step for a beta in [0, 1): exp2(step * log2(beta)), what `**` computes there, without the branches a
    general power takes for negative, zero and infinite bases (about 60 graph nodes per parameter and step)."""
    return (step * beta.log2()).exp2()


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01)."""

    decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


class RMSprop(Optimizer):
    """RMSprop with optional momentum and centering."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, maximize: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        h = self._hyper(group, p)
        alpha, eps = h("alpha"), h("eps")
        g = grad + h("weight_decay") * p if group["weight_decay"] else grad
        sq = self._store(state, "square_avg", alpha * state.get("square_avg", fg.zeros_like(p)) + (1 - alpha) * g * g)
        if group["centered"]:
            ga = self._store(state, "grad_avg", alpha * state.get("grad_avg", fg.zeros_like(p)) + (1 - alpha) * g)
            avg = (sq - ga * ga).sqrt() + eps
        else:
            avg = sq.sqrt() + eps
        if group["momentum"]:
            buf = self._store(state, "momentum_buffer",
                              h("momentum") * state.get("momentum_buffer", fg.zeros_like(p)) + g / avg)
            return p - h("lr") * buf
        return p - h("lr") * g / avg


class Adagrad(Optimizer):
    """Adagrad with optional learning-rate decay."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, maximize: bool = False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        h = self._hyper(group, p)
        g = grad + h("weight_decay") * p if group["weight_decay"] else grad
        step = self._step_count(state, p)
        clr = h("lr") / (1 + (step - 1) * h("lr_decay"))
        acc = state.get("sum", fg.full_like(p, group["initial_accumulator_value"]))
        acc = self._store(state, "sum", acc + g * g)
        return p - clr * g / (acc.sqrt() + h("eps"))
