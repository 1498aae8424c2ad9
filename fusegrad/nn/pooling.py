"""Pooling (`max_pool1d/2d avg_pool1d/2d adaptive_avg_pool1d/2d` and their modules) over sliding-window views.

The padded input is cut into windows with `unfold` (a view) and reduced over the window dims: no loop over output
pixels. Max pooling sends the gradient to the first maximum of each window (as torch does) by selecting it with
its argmax, not to every tied element as `amax` would. Adaptive average pooling is a reshape + mean where the
sizes divide and a matmul with a fixed averaging matrix where they do not.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import fusegrad as fg
from fusegrad import Tensor

from .conv import IntOrTuple, _ntuple, _pad_spatial, _windows
from .module import Module

__all__ = ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "MaxPool1d", "MaxPool2d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d", "max_pool1d", "max_pool2d"]


_INT_MIN = {"int8": -2**7, "int16": -2**15, "int32": -2**31, "int64": -2**63}


def _out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: a ceil-mode window must start inside the input or its left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


class _Geometry:
    """Kernel, stride, padding, dilation and output size per spatial dim of one pooling call, checked like torch."""

    def __init__(self, x: Tensor, nd: int, kernel_size: IntOrTuple, stride: IntOrTuple | None, padding: IntOrTuple,
                 dilation: IntOrTuple, ceil_mode: bool, name: str):
        if x.ndim not in (nd + 1, nd + 2):
            raise fg.ShapeError(f"{name}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got shape "
                                f"{x.shape}")
        self.kernel = _ntuple(kernel_size, nd, "kernel_size")
        self.stride = self.kernel if stride is None or stride == [] else _ntuple(stride, nd, "stride")
        self.padding, self.dilation = _ntuple(padding, nd, "padding"), _ntuple(dilation, nd, "dilation")
        if any(v <= 0 for v in self.kernel + self.stride + self.dilation) or any(p < 0 for p in self.padding):
            raise ValueError(f"{name}: kernel_size, stride and dilation must be positive and padding non-negative, got "
                             f"{self.kernel}, {self.stride}, {self.dilation}, {self.padding}")
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel)):
            raise ValueError(f"{name}: pad should be at most half of effective kernel size, but got pad={self.padding}"
                             f", kernel_size={self.kernel} and dilation={self.dilation}")
        self.size = x.shape[-nd:]
        self.out = tuple(_out_size(*a, ceil_mode) for a in zip(self.size, self.kernel, self.stride, self.padding,
                                                                self.dilation))
        if any(o < 1 for o in self.out):
            raise fg.ShapeError(f"{name}: output size {self.out} is too small for input {x.shape} (kernel "
                                f"{self.kernel}, stride {self.stride}, padding {self.padding}, dilation "
                                f"{self.dilation})")

    def windows(self, x: Tensor, value: float) -> Tensor:
        """(..., *size) -> (..., *out, *kernel); `value` fills the padding and the ceil-mode overhang."""
        pairs = [(p, (o - 1) * s + d * (k - 1) + 1 - n - p)  # the right side may crop what no window reaches
                 for n, k, s, p, d, o in zip(self.size, self.kernel, self.stride, self.padding, self.dilation,
                                             self.out)]
        return _windows(_pad_spatial(x, pairs, value), self.kernel, self.stride, self.dilation)


def _max_pool(input: Tensor, nd: int, kernel_size: IntOrTuple, stride: IntOrTuple | None, padding: IntOrTuple,
              dilation: IntOrTuple, ceil_mode: bool, return_indices: bool, name: str) -> Any:
    g = _Geometry(input, nd, kernel_size, stride, padding, dilation, ceil_mode, name)
    # padding is the lowest value of the dtype, so it never wins
    low = float("-inf") if input.dtype.is_floating_point else _INT_MIN.get(input.dtype.name, 0)
    win = g.windows(input, low).flatten(-nd)
    values, pick = win.max(-1)  # the first maximum per window, which alone gets the gradient (like torch)
    if not return_indices:
        return values
    # the chosen tap's position in the flattened (unpadded) input plane, as torch reports it
    index = fg.zeros(pick.shape, dtype=fg.int64, device=input.device)
    rest = pick
    for i in reversed(range(nd)):
        tap = rest % g.kernel[i]
        rest = rest // g.kernel[i]
        start = fg.arange(g.out[i], device=input.device) * g.stride[i] - g.padding[i]
        pos = start.reshape((-1,) + (1,) * (nd - 1 - i)) + tap * g.dilation[i]
        index = index + pos * math.prod(g.size[i + 1:])
    return values, index


def _avg_pool(input: Tensor, nd: int, kernel_size: IntOrTuple, stride: IntOrTuple | None, padding: IntOrTuple,
              ceil_mode: bool, count_include_pad: bool, divisor_override: int | None, name: str) -> Tensor:
    if not input.dtype.is_floating_point:
        raise TypeError(f"{name}: needs a floating-point input, got {input.dtype.name}")
    g = _Geometry(input, nd, kernel_size, stride, padding, 1, ceil_mode, name)
    total = g.windows(input, 0.0).sum(tuple(range(-nd, 0)))
    if divisor_override:
        return total / divisor_override
    # torch's divisor: the window clipped to the padded input (include pad) or to the input itself (exclude pad)
    counts = []
    for n, k, s, p, o in zip(g.size, g.kernel, g.stride, g.padding, g.out):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        counts.append(end - start if count_include_pad else np.minimum(end, n) - np.maximum(start, 0))
    divisor = counts[0]
    for c in counts[1:]:
        divisor = np.multiply.outer(divisor, c)
    return total / fg.tensor(np.maximum(divisor, 1), dtype=input.dtype, device=input.device)


def _adaptive_avg_pool(input: Tensor, nd: int, output_size: Any, name: str) -> Tensor:
    if input.ndim not in (nd + 1, nd + 2):
        raise fg.ShapeError(f"{name}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got shape "
                            f"{input.shape}")
    sizes = (output_size,) * nd if output_size is None or isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != nd:
        raise ValueError(f"{name}: output_size must be an int or {nd} values, got {output_size}")
    x = input
    for i, out in enumerate(sizes):
        d = x.ndim - nd + i
        n = x.shape[d]
        out = n if out is None else int(out)
        if out < 1 or n < 1:
            raise fg.ShapeError(f"{name}: cannot pool dim of size {n} of input {input.shape} to size {out}")
        if n % out == 0:  # equal windows: a reshape and a mean
            x = x.reshape(x.shape[:d] + (out, n // out) + x.shape[d + 1:]).mean(d + 1)
            continue
        # window i is [floor(i n / out), ceil((i + 1) n / out)): average with a fixed (n, out) matrix
        start = np.arange(out) * n // out
        end = -(-(np.arange(out) + 1) * n // out)
        cols = np.arange(n)[:, None]
        avg = ((cols >= start) & (cols < end)) / (end - start)
        x = x.movedim(d, -1).matmul(fg.tensor(avg, dtype=x.dtype, device=x.device)).movedim(-1, d)
    return x


def max_pool1d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
               dilation: IntOrTuple = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Max over windows of (n, c, l); padding is -inf. With return_indices, also each maximum's index in l."""
    return _max_pool(input, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool1d")


def max_pool2d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
               dilation: IntOrTuple = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Max over windows of (n, c, h, w); padding is -inf. With return_indices, also each maximum's index in h * w."""
    return _max_pool(input, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool2d")


def avg_pool1d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """Mean over windows of (n, c, l)."""
    return _avg_pool(input, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None, "avg_pool1d")


def avg_pool2d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over windows of (n, c, h, w); divisor_override replaces the window size as the divisor."""
    return _avg_pool(input, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                     "avg_pool2d")


def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int]) -> Tensor:
    """Average (n, c, l) over output_size windows [floor(i l / out), ceil((i + 1) l / out))."""
    return _adaptive_avg_pool(input, 1, output_size, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input: Tensor, output_size: int | Sequence[int | None]) -> Tensor:
    """Average (n, c, h, w) to output_size (None keeps a dim) with torch's floor/ceil windows."""
    return _adaptive_avg_pool(input, 2, output_size, "adaptive_avg_pool2d")


class _MaxPoolNd(Module):
    """torch's _MaxPoolNd: arguments kept as given (stride defaults to kernel_size)."""

    _fn: Any = None

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 dilation: IntOrTuple = 1, return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input: Tensor) -> Any:
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                              self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """Max over sliding windows of (n, c, l)."""

    _fn = staticmethod(max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """Max over sliding windows of (n, c, h, w)."""

    _fn = staticmethod(max_pool2d)


class AvgPool1d(Module):
    """Mean over sliding windows of (n, c, l); like torch, stores its sizes as 1-tuples."""

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, 1, "kernel_size")
        self.stride = _ntuple(stride if stride is not None else kernel_size, 1, "stride")
        self.padding = _ntuple(padding, 1, "padding")
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input: Tensor) -> Tensor:
        return avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Mean over sliding windows of (n, c, h, w)."""

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                          self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptiveAvgPoolNd(Module):
    """Average to a fixed output size whatever the input size."""

    _fn: Any = None

    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average (n, c, l) to (n, c, output_size)."""

    _fn = staticmethod(adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average (n, c, h, w) to (n, c, *output_size); None in output_size keeps that dim."""

    _fn = staticmethod(adaptive_avg_pool2d)
