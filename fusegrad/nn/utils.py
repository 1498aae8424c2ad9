"""`nn.utils`: gradient clipping, written against the public Tensor API."""
from __future__ import annotations

import math
from collections.abc import Iterable

import fusegrad as fg
from fusegrad import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Scale the gradients in place so that their joint norm is at most max_norm; returns the norm before clipping.

    Like torch: the norm is that of all gradients concatenated, the scale is min(1, max_norm / (norm + 1e-6)), and
    parameters without a gradient are skipped.
    """
    grads = _grads(parameters)
    if not grads:
        return fg.tensor(0.0)
    norm_type = float(norm_type)
    with fg.no_grad():
        if math.isinf(norm_type):
            per = [g.abs().amax() if g.numel() else fg.zeros((), dtype=g.dtype, device=g.device) for g in grads]
            total = fg.stack([n.to(grads[0].device) for n in per]).amax()
        elif norm_type == 0:
            total = sum((g != 0).sum().to(grads[0].dtype) for g in grads)
        else:
            powered = [(g.abs() ** norm_type).sum().to(grads[0].device) for g in grads]
            total = fg.stack(powered).sum() ** (1.0 / norm_type)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                               "so it cannot be clipped. To disable this error and scale the gradients by the "
                               "non-finite norm anyway, set `error_if_nonfinite=False`")
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:  # in place, like torch: references to the gradients see the clipped values
            g.mul_(coef.to(g.device).to(g.dtype))
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient to [-clip_value, clip_value] in place."""
    with fg.no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)
