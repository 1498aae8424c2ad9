"""Normalization layers (BatchNorm1d/2d, LayerNorm, GroupNorm, RMSNorm) and their `nn.functional` forms, with
PyTorch's formulas, options, parameters, buffers and state_dict keys.

Training-mode batch norm updates its running statistics in place (the buffers keep their identity) and realizes
them at once, together with the batch statistics and the input: left lazy, each step's update would hold on to the
previous step's graph, and the input would be computed twice.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

import fusegrad as fg
from fusegrad import Tensor

from . import init
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm", "LayerNorm", "RMSNorm", "batch_norm", "group_norm",
           "layer_norm", "rms_norm"]


# ---- helpers ----

def _upcast(x: Tensor) -> Tensor:
    """float16 is normalized in float32, as torch's CPU kernels do (its opmath type)."""
    return x.float() if x.dtype == fg.float16 else x


def _moments(x: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, biased variance, sum of squared deviations) over dims, kept as size-1 dims; the mean is shared."""
    mean = x.mean(dims, keepdim=True)
    centered = x - mean
    sq = (centered * centered).sum(dims, keepdim=True)
    return mean, sq * (1 / math.prod(x.shape[d] for d in dims)), sq


def _verify_batch_size(size: Sequence[int]) -> None:
    """torch's check: batch statistics need more than one value per channel."""
    if math.prod(size[:1]) * math.prod(size[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(size)}")


def _as_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


def _check_trailing(name: str, input: Tensor, shape: tuple[int, ...], *params: Tensor | None) -> None:
    if not shape:
        raise fg.ShapeError(f"{name}: normalized_shape must have at least one element, got {shape}")
    if input.shape[input.ndim - len(shape):] != shape or input.ndim < len(shape):
        raise fg.ShapeError(f"{name}: given normalized_shape={list(shape)}, expected input with shape "
                            f"[*, {', '.join(map(str, shape))}], but got input of size {input.shape}")
    for p in params:
        if p is not None and p.shape != shape:
            raise fg.ShapeError(f"{name}: weight/bias shape {p.shape} must equal normalized_shape {shape}")


def _per_channel(p: Tensor | None, c: int, ndim: int, name: str, what: str) -> Tensor | None:
    """A (C,) parameter or statistic shaped (1, C, 1, ...) to broadcast over an (N, C, *) input."""
    if p is None:
        return None
    if p.shape != (c,):
        raise fg.ShapeError(f"{name}: {what} must have shape ({c},) for an input with {c} channels, got {p.shape}")
    return p.reshape((1, c) + (1,) * (ndim - 2))


def _affine(out: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


# ---- functional forms ----

def _batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None,
                bias: Tensor | None, training: bool, momentum: float | Tensor, eps: float,
                realize_also: tuple[Tensor, ...] = ()) -> Tensor:
    """batch_norm, where momentum may be a 0-d tensor (the cumulative average's 1 / num_batches_tracked) and
    `realize_also` are computed together with the running statistics (the module's num_batches_tracked)."""
    if input.ndim < 2:
        raise fg.ShapeError(f"batch_norm: input must have shape (N, C, *), got {input.shape}")
    if training:
        _verify_batch_size(input.shape)
    if training and eps <= 0.0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    if eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    c, nd = input.shape[1], input.ndim
    w = _per_channel(weight, c, nd, "batch_norm", "weight")
    b = _per_channel(bias, c, nd, "batch_norm", "bias")
    rm = _per_channel(running_mean, c, nd, "batch_norm", "running_mean")
    rv = _per_channel(running_var, c, nd, "batch_norm", "running_var")
    x = _upcast(input)
    if training:
        dims = (0,) + tuple(range(2, nd))
        mean, var, sq = _moments(x, dims)
        if running_mean is not None or running_var is not None:
            n = input.numel() // c
            with fg.no_grad():
                if running_mean is not None:
                    m = momentum.to(running_mean.dtype) if isinstance(momentum, Tensor) else momentum
                    running_mean.copy_(running_mean * (1 - m) + mean.detach().reshape(c) * m)
                if running_var is not None:
                    m = momentum.to(running_var.dtype) if isinstance(momentum, Tensor) else momentum
                    running_var.copy_(running_var * (1 - m) + (sq.detach().reshape(c) * (1 / (n - 1))) * m)
            state = [t for t in (running_mean, running_var) if t is not None]
            fg.realize(input, mean, var, *state, *realize_also)
    else:
        if rm is None or rv is None:
            raise ValueError("batch_norm: running_mean and running_var must be given in evaluation mode "
                             "(training=False)")
        mean, var = rm.to(x.dtype), rv.to(x.dtype)
    out = _affine((x - mean) * (var + eps).rsqrt(), w, b)
    return out.to(input.dtype)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Normalize each channel of an (N, C, *) input: by the batch's statistics when training (updating the running
    ones in place with `momentum`, the variance unbiased, as torch), else by running_mean/running_var."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing dims `normalized_shape` (biased variance), then scale and shift elementwise."""
    shape = _as_shape(normalized_shape)
    _check_trailing("layer_norm", input, shape, weight, bias)
    x = _upcast(input)
    mean, var, _ = _moments(x, tuple(range(input.ndim - len(shape), input.ndim)))
    return _affine((x - mean) * (var + eps).rsqrt(), weight, bias).to(input.dtype)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize each group of C / num_groups channels of an (N, C, *) input per sample, then scale and shift per
    channel."""
    if input.ndim < 2:
        raise fg.ShapeError(f"group_norm: expected at least 2 dimensions for input tensor but received {input.ndim}")
    n, c = input.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise fg.ShapeError(f"group_norm: expected number of channels in input to be divisible by num_groups, but "
                            f"got input of shape {input.shape} and num_groups={num_groups}")
    _verify_batch_size([n * c // num_groups, num_groups, *input.shape[2:]])
    w = _per_channel(weight, c, input.ndim, "group_norm", "weight")
    b = _per_channel(bias, c, input.ndim, "group_norm", "bias")
    x = _upcast(input).reshape(n, num_groups, -1)
    mean, var, _ = _moments(x, (2,))
    out = ((x - mean) * (var + eps).rsqrt()).reshape(input.shape)
    return _affine(out, w, b).to(input.dtype)


def rms_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2 over the trailing dims) + eps) * weight; eps None is the machine epsilon of the computing
    dtype (float32's for float16 inputs, as torch)."""
    shape = _as_shape(normalized_shape)
    _check_trailing("rms_norm", input, shape, weight)
    x = _upcast(input)
    eps = float(np.finfo(x.dtype.np).eps) if eps is None else eps
    ms = (x * x).mean(tuple(range(input.ndim - len(shape), input.ndim)), keepdim=True)
    out = (x * (ms + eps).rsqrt()).to(input.dtype)
    return out if weight is None else out * weight


# ---- modules ----

class _NormBase(Module):
    """Parameters, buffers, reset and repr shared by the batch norms (torch's _NormBase)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device: str | None = None, dtype: Any = None, *,
                 bias: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(fg.empty(num_features, device=device, dtype=dtype))
            self.register_parameter("bias", Parameter(fg.empty(num_features, device=device, dtype=dtype))
                                    if bias else None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", fg.zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", fg.ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", fg.tensor(0, dtype=fg.int64, device=device))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches seen (in place: the buffers keep their identity)."""
        if self.track_running_stats:
            with fg.no_grad():
                self.running_mean.zero_().realize()
                self.running_var.fill_(1).realize()
                self.num_batches_tracked.zero_().realize()

    def reset_parameters(self) -> None:
        """Running statistics reset; weight 1, bias 0."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        raise NotImplementedError

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor: float | Tensor = 0.0 if self.momentum is None else self.momentum
        tracked: tuple[Tensor, ...] = ()
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            with fg.no_grad():
                self.num_batches_tracked.add_(1)
            tracked = (self.num_batches_tracked,)
            if self.momentum is None:  # cumulative average; a tensor, so no host read (and a jit can replay it)
                factor = 1.0 / self.num_batches_tracked.double()
        # batch statistics in training, and in eval when there are no running ones; running ones updated only
        # when tracked and training
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        update = not self.training or self.track_running_stats
        return _batch_norm(input, self.running_mean if update else None, self.running_var if update else None,
                           self.weight, self.bias, use_batch, factor, self.eps, tracked)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_NormBase):
    """Batch normalization over a (N, C) or (N, C, L) input."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.ndim}D input)")


class BatchNorm2d(_NormBase):
    """Batch normalization over a (N, C, H, W) input."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim != 4:
            raise ValueError(f"expected 4D input (got {input.ndim}D input)")


def _affine_parameters(module: Module, shape: tuple[int, ...], enabled: bool, bias: bool, device: str | None,
                       dtype: Any) -> None:
    """Register `weight` (and `bias` when asked) of `shape`, or None for both when the norm has no affine part."""
    module.register_parameter("weight", Parameter(fg.empty(*shape, device=device, dtype=dtype)) if enabled else None)
    module.register_parameter("bias", Parameter(fg.empty(*shape, device=device, dtype=dtype))
                              if enabled and bias else None)
    _reset_affine(module)


def _reset_affine(module: Module) -> None:
    """Weight 1, bias 0, for the parameters that exist."""
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


class LayerNorm(Module):
    """Normalization over the trailing `normalized_shape` dims, with an elementwise weight (1) and bias (0)."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: str | None = None, dtype: Any = None):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        _affine_parameters(self, self.normalized_shape, elementwise_affine, bias, device, dtype)

    def reset_parameters(self) -> None:
        """Weight 1, bias 0."""
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(Module):
    """Normalization over groups of channels of an (N, C, *) input, with a per-channel weight (1) and bias (0)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: str | None = None, dtype: Any = None, *, bias: bool = True):
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        _affine_parameters(self, (num_channels,), affine, bias, device, dtype)

    def reset_parameters(self) -> None:
        """Weight 1, bias 0."""
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, " \
               f"bias={self.bias is not None}"


class RMSNorm(Module):
    """Root-mean-square normalization over the trailing `normalized_shape` dims, with an elementwise weight (1)."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, device: str | None = None, dtype: Any = None):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(fg.empty(*self.normalized_shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weight 1."""
        if self.elementwise_affine:
            init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
