"""Convolutions (`conv1d conv2d conv_transpose1d conv_transpose2d` and their modules) as im2col views + one MATMUL.

A convolution never loops over output pixels: the padded input is cut into sliding windows with `unfold` (one
strided slice per kernel tap), the windows of each group are laid out as a patch matrix with one row per tap and one
column per output pixel (im2col), and `matmul` with the flattened weight computes every output: one product per
image for large images (its output is already (n, c, h, w)), one over the whole batch for small ones. Gradients
come from autograd through the same ops: the weight's reads the same patch matrix, the input's (col2im) is a sum
of shifted slices. A transposed convolution is a stride-1 convolution of the stride-dilated input with the
flipped, transposed kernel.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import fusegrad as fg
from fusegrad import Tensor

from . import init
from .module import Module, Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "conv1d", "conv2d", "conv_transpose1d",
           "conv_transpose2d"]

IntOrTuple = int | Sequence[int]
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(value: IntOrTuple, n: int, name: str) -> tuple[int, ...]:
    """An int repeated n times, or a sequence of n ints (one element is repeated, as torch allows)."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f"{name} must be an int or {n} ints, got {value}")
    return value


def _pad_spatial(x: Tensor, pairs: Sequence[tuple[int, int]], value: float = 0.0) -> Tensor:
    """Pad (or, for negative amounts, crop) the last len(pairs) dims by (before, after) each."""
    if all(p == (0, 0) for p in pairs):
        return x
    return x.pad(tuple(v for pair in reversed(pairs) for v in pair), value=value)


def _pad_mode(x: Tensor, pairs: Sequence[tuple[int, int]], mode: str) -> Tensor:
    """torch's non-constant padding ('reflect', 'replicate', 'circular') of the last dims, from slices and cat."""
    for i, (lo, hi) in enumerate(pairs):
        d = x.ndim - len(pairs) + i
        n = x.shape[d]
        if mode == "circular":
            if lo > n or hi > n:
                raise ValueError(f"circular padding ({lo}, {hi}) is larger than dim {d} of size {n}")
            parts = [x.narrow(d, n - lo, lo), x, x.narrow(d, 0, hi)]
        elif mode == "reflect":
            if lo >= n or hi >= n:
                raise ValueError(f"reflect padding ({lo}, {hi}) must be smaller than dim {d} of size {n}")
            parts = [x.narrow(d, 1, lo).flip(d), x, x.narrow(d, n - 1 - hi, hi).flip(d)]
        elif mode == "replicate":
            edge = list(x.shape)
            parts = [x.narrow(d, 0, 1).expand(edge[:d] + [lo] + edge[d + 1:]), x,
                     x.narrow(d, n - 1, 1).expand(edge[:d] + [hi] + edge[d + 1:])]
        else:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {mode!r}")
        x = fg.cat([p for p in parts if p.shape[d]], d)
    return x


def _same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """padding='same': d * (k - 1) in total per dim, the odd one extra on the right (as torch does)."""
    return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]


def _windows(x: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """(..., *spatial) -> (..., *out, *kernel): every dilated window as a view (no copy, no loop over outputs)."""
    lead = x.ndim - len(kernel)
    for i, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
        x = x.unfold(lead + i, d * (k - 1) + 1, s)  # the window dim goes last, the window count stays in place
        if d > 1:
            x = x[(slice(None),) * (x.ndim - 1) + (slice(None, None, d),)]
    return x


BATCHED_GEMM_MIN = 1 << 22  # multiply-adds per image and group from which one product per image beats one per batch


def _correlate(x: Tensor, weight: Tensor, stride: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    """Cross-correlate an already padded batch (n, c, *spatial) with weight (o, c // groups, *kernel)."""
    nd = weight.ndim - 2
    n, c = x.shape[:2]
    o, kernel = weight.shape[0], weight.shape[2:]
    cg, og, ksize = c // groups, o // groups, math.prod(kernel)
    win = _windows(x, kernel, stride, dilation)  # (n, c, *out, *kernel)
    out = win.shape[2:2 + nd]
    pixels = math.prod(out)
    win = win.reshape((n, groups, cg) + out + kernel)
    taps, places = tuple(range(3 + nd, 3 + 2 * nd)), tuple(range(3, 3 + nd))
    w = weight.reshape(groups, og, cg * ksize)
    if og * cg * ksize * pixels >= BATCHED_GEMM_MIN:
        # per image and group a patch matrix, one row per tap and one column per output pixel: the product with the
        # weight comes out as (n, o, *out), with no transposing copy
        cols = win.permute((0, 1, 2) + taps + places).reshape(n, groups, cg * ksize, pixels)
        return w.matmul(cols).reshape((n, o) + out)
    # small images: one product over the whole batch (a column per pixel of every image), then (n, o, *out)
    cols = win.permute((1, 2) + taps + (0,) + places).reshape(groups, cg * ksize, n * pixels)
    y = w.matmul(cols).reshape((groups, og, n) + out)
    return y.permute((2, 0, 1) + tuple(range(3, 3 + nd))).reshape((n, o) + out)


def _batch(input: Tensor, nd: int, name: str) -> tuple[Tensor, bool]:
    """The input as a batch (unbatched (c, *spatial) inputs get a batch dim of 1, as in torch)."""
    if input.ndim not in (nd + 1, nd + 2):
        raise fg.ShapeError(f"{name}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got shape "
                            f"{input.shape}")
    return (input, True) if input.ndim == nd + 2 else (input.unsqueeze(0), False)


def _add_bias(y: Tensor, bias: Tensor | None, name: str) -> Tensor:
    if bias is None:
        return y
    if bias.shape != (y.shape[1],):
        raise fg.ShapeError(f"{name}: bias of shape {bias.shape} does not match {y.shape[1]} output channels")
    return y + bias.reshape((-1,) + (1,) * (y.ndim - 2))


def _convnd(input: Tensor, weight: Tensor, bias: Tensor | None, stride: IntOrTuple, padding: IntOrTuple | str,
            dilation: IntOrTuple, groups: int, nd: int, name: str) -> Tensor:
    x, batched = _batch(input, nd, name)
    if weight.ndim != nd + 2:
        raise fg.ShapeError(f"{name}: weight must be {nd + 2}-D (out, in // groups, *kernel), got {weight.shape}")
    stride, dilation = _ntuple(stride, nd, "stride"), _ntuple(dilation, nd, "dilation")
    kernel = weight.shape[2:]
    if groups < 1 or x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
        raise fg.ShapeError(f"{name}: input {input.shape} and weight {weight.shape} with groups={groups}: expected "
                            f"{weight.shape[1] * groups} input channels and out channels divisible by groups")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{name}: invalid padding string {padding!r}, should be 'same' or 'valid'")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
        pairs = _same_padding(kernel, dilation) if padding == "same" else [(0, 0)] * nd
    else:
        pairs = [(p, p) for p in _ntuple(padding, nd, "padding")]
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pairs))
    if any(p < d * (k - 1) + 1 for p, k, d in zip(padded, kernel, dilation)):
        raise fg.ShapeError(f"{name}: padded input size per channel {padded} is smaller than the dilated kernel "
                            f"{tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))} (input {input.shape})")
    y = _add_bias(_correlate(_pad_spatial(x, pairs), weight, stride, dilation, groups), bias, name)
    return y if batched else y.squeeze(0)


def _dilate(x: Tensor, dim: int, step: int) -> Tensor:
    """Insert step - 1 zeros between neighbours along dim (length n -> (n - 1) * step + 1), as views."""
    if step == 1:
        return x
    n, after = x.shape[dim], x.ndim - dim - 1
    spread = x.unsqueeze(dim + 1).pad((0, 0) * after + (0, step - 1))  # (..., n, step, ...): zeros after each
    return spread.reshape(x.shape[:dim] + (n * step,) + x.shape[dim + 1:]).narrow(dim, 0, (n - 1) * step + 1)


def _conv_transposend(input: Tensor, weight: Tensor, bias: Tensor | None, stride: IntOrTuple, padding: IntOrTuple,
                      output_padding: IntOrTuple, groups: int, dilation: IntOrTuple, nd: int, name: str) -> Tensor:
    x, batched = _batch(input, nd, name)
    if weight.ndim != nd + 2:
        raise fg.ShapeError(f"{name}: weight must be {nd + 2}-D (in, out // groups, *kernel), got {weight.shape}")
    stride, padding = _ntuple(stride, nd, "stride"), _ntuple(padding, nd, "padding")
    output_padding, dilation = _ntuple(output_padding, nd, "output_padding"), _ntuple(dilation, nd, "dilation")
    cin, og, kernel = weight.shape[0], weight.shape[1], weight.shape[2:]
    if groups < 1 or x.shape[1] != cin or cin % groups:
        raise fg.ShapeError(f"{name}: input {input.shape} and weight {weight.shape} with groups={groups}: expected "
                            f"{cin} input channels, divisible by groups")
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{name}: output padding {output_padding} must be smaller than either stride {stride} or "
                         f"dilation {dilation}")
    out = tuple((i - 1) * s - 2 * p + d * (k - 1) + op + 1
                for i, s, p, d, k, op in zip(x.shape[2:], stride, padding, dilation, kernel, output_padding))
    if any(o < 1 for o in out):
        raise fg.ShapeError(f"{name}: the output size {out} for input {input.shape} is too small")
    for i, s in enumerate(stride):
        x = _dilate(x, 2 + i, s)
    x = _pad_spatial(x, [(d * (k - 1) - p, d * (k - 1) - p + op)
                         for k, p, d, op in zip(kernel, padding, dilation, output_padding)])
    # (in, out // g, *k) -> (out, in // g, *k), mirrored: the correlation that scatters like the transpose
    cg = cin // groups
    w = weight.reshape((groups, cg, og) + kernel).transpose(1, 2).reshape((groups * og, cg) + kernel)
    w = w.flip(tuple(range(2, 2 + nd)))
    y = _add_bias(_correlate(x, w, (1,) * nd, dilation, groups), bias, name)
    return y if batched else y.squeeze(0)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    """1-D cross-correlation of (n, c_in, l) with weight (c_out, c_in // groups, k)."""
    return _convnd(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation of (n, c_in, h, w) with weight (c_out, c_in // groups, kh, kw)."""
    return _convnd(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    """1-D transposed convolution of (n, c_in, l) with weight (c_in, c_out // groups, k)."""
    return _conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                             "conv_transpose1d")


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    """2-D transposed convolution of (n, c_in, h, w) with weight (c_in, c_out // groups, kh, kw)."""
    return _conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                             "conv_transpose2d")


class _ConvNd(Module):
    """torch's _ConvNd: attributes, weight layout, default initialisation and repr shared by every convolution."""

    _nd = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple,
                 padding: IntOrTuple | str, dilation: IntOrTuple, transposed: bool, output_padding: IntOrTuple,
                 groups: int, bias: bool, padding_mode: str, device: str | None = None, dtype: Any = None):
        super().__init__()
        nd = self._nd
        stride = _ntuple(stride, nd, "stride")
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode='{padding_mode}'")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _ntuple(kernel_size, nd, "kernel_size")
        self.stride = stride
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, nd, "padding")
        self.dilation = _ntuple(dilation, nd, "dilation")
        self.transposed, self.output_padding = transposed, _ntuple(output_padding, nd, "output_padding")
        self.groups, self.padding_mode = groups, padding_mode
        shape = ((in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups))
        self.weight = Parameter(fg.empty(shape + self.kernel_size, device=device, dtype=dtype))
        self.register_parameter("bias", Parameter(fg.empty(out_channels, device=device, dtype=dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform(a=sqrt(5)) weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * math.prod(self.weight.shape[2:])
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _pairs(self) -> list[tuple[int, int]]:
        """The (before, after) padding per spatial dim, for padding modes other than zeros."""
        if self.padding == "same":
            return _same_padding(self.kernel_size, self.dilation)
        if self.padding == "valid":
            return [(0, 0)] * self._nd
        return [(p, p) for p in self.padding]

    def _conv_forward(self, input: Tensor, fn: Any) -> Tensor:
        if self.padding_mode != "zeros":
            padded = _pad_mode(input, self._pairs(), self.padding_mode)
            return fn(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return fn(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    """A forward convolution: PyTorch's Conv1d/Conv2d constructor, computed by the subclass's `functional`."""

    functional: Any = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: str | None = None, dtype: Any = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, type(self).functional)


class Conv1d(_Conv):
    """1-D convolution over (n, c_in, l) inputs; weight (out_channels, in_channels // groups, k)."""

    _nd = 1
    functional = staticmethod(conv1d)


class Conv2d(_Conv):
    """2-D convolution over (n, c_in, h, w) inputs; weight (out_channels, in_channels // groups, kh, kw)."""

    _nd = 2
    functional = staticmethod(conv2d)


class _ConvTransposeNd(_ConvNd):
    """torch's _ConvTransposeNd: zero padding only, and an optional output_size choosing output_padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple,
                 padding: IntOrTuple, output_padding: IntOrTuple, groups: int, bias: bool, dilation: IntOrTuple,
                 padding_mode: str, device: str | None, dtype: Any):
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True, output_padding,
                         groups, bias, padding_mode, device, dtype)

    def _output_padding(self, input: Tensor, output_size: Sequence[int] | None) -> tuple[int, ...]:
        """output_padding, or the one that makes the output `output_size` (torch's rule and error)."""
        nd = self._nd
        if output_size is None:
            return self.output_padding
        lead = 2 if input.ndim == nd + 2 else 1
        size = list(output_size)
        if len(size) == lead + nd:
            size = size[lead:]
        if len(size) != nd:
            raise ValueError(f"ConvTranspose{nd}D: for {input.ndim}D input, output_size must have {nd} or "
                             f"{lead + nd} elements (got {len(size)})")
        lo = [(input.shape[lead + i] - 1) * self.stride[i] - 2 * self.padding[i]
              + self.dilation[i] * (self.kernel_size[i] - 1) + 1 for i in range(nd)]
        hi = [m + s - 1 for m, s in zip(lo, self.stride)]
        if any(not a <= s <= b for s, a, b in zip(size, lo, hi)):
            raise ValueError(f"requested an output size of {size}, but valid sizes range from {lo} to {hi} (for an "
                             f"input of {input.shape[lead:]})")
        return tuple(s - a for s, a in zip(size, lo))

    def _transpose_forward(self, input: Tensor, output_size: Sequence[int] | None, fn: Any) -> Tensor:
        return fn(input, self.weight, self.bias, self.stride, self.padding, self._output_padding(input, output_size),
                  self.groups, self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution; weight (in_channels, out_channels // groups, k)."""

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1, bias: bool = True,
                 dilation: IntOrTuple = 1, padding_mode: str = "zeros", device: str | None = None, dtype: Any = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, padding_mode, device, dtype)

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return self._transpose_forward(input, output_size, conv_transpose1d)


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution (the gradient of Conv2d w.r.t. its input); weight (in, out // groups, kh, kw)."""

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1, bias: bool = True,
                 dilation: IntOrTuple = 1, padding_mode: str = "zeros", device: str | None = None, dtype: Any = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, padding_mode, device, dtype)

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return self._transpose_forward(input, output_size, conv_transpose2d)
