"""Tensor factories with PyTorch's names: tensor, zeros, ones, full, arange, linspace, eye, rand*, *_like."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import dtype as dt
from ..dtype import DType
from ..graph import Op, shape_error, source_node
from ..runtime.device import canonical_device
from .tensor import Tensor

_rng = {"seed": 0, "counter": 0}


def _shape(size: tuple[Any, ...]) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if any(not isinstance(s, (int, np.integer)) or s < 0 for s in size):
        raise shape_error(f"invalid size {size}: sizes must be non-negative integers")
    return tuple(int(s) for s in size)


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    return t.requires_grad_() if requires_grad else t


def tensor(data: Any, dtype: DType | str | None = None, device: str | None = None,
           requires_grad: bool = False) -> Tensor:
    """A tensor holding a copy of `data` (nested lists, scalars, NumPy arrays or a Tensor)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor with the array's values and dtype (a copy: fusegrad buffers belong to their device)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array, dtype=dt.to_dtype(array.dtype))


def full(size: Sequence[int], fill_value: bool | int | float, dtype: DType | str | None = None,
         device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of `size` filled with `fill_value` (dtype inferred from it, like torch.full)."""
    dtype = dt.to_dtype(dtype) or dt.scalar_dtype(fill_value)
    node = source_node(Op.CONST, fill_value, _shape((size,)), dtype, canonical_device(device))
    return _finish(Tensor(node), requires_grad)


def zeros(*size: Any, dtype: DType | str | None = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros (float32 unless dtype says otherwise)."""
    return full(_shape(size), 0, dtype or dt.default_float, device, requires_grad)


def ones(*size: Any, dtype: DType | str | None = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones (float32 unless dtype says otherwise)."""
    return full(_shape(size), 1, dtype or dt.default_float, device, requires_grad)


empty = zeros


def arange(start: float, end: float | None = None, step: float = 1, dtype: DType | str | None = None,
           device: str | None = None, requires_grad: bool = False) -> Tensor:
    """start, start + step, ... below end (int64 when every argument is an integer, else float32)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        dtype = dt.default_int if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) \
            else dt.default_float
    if (end - start) * step < 0:
        raise ValueError(f"arange: the range from {start} to {end} is inconsistent with the sign of step {step}")
    n = math.ceil((end - start) / step)
    values = start + np.arange(n, dtype=np.float64 if dt.to_dtype(dtype).is_floating_point else np.int64) * step
    return _finish(Tensor(values, dtype=dtype, device=device), requires_grad)


def linspace(start: float, end: float, steps: int, dtype: DType | str | None = None, device: str | None = None,
             requires_grad: bool = False) -> Tensor:
    """`steps` evenly spaced values from start to end inclusive."""
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    return _finish(Tensor(np.linspace(start, end, steps), dtype=dtype or dt.default_float, device=device),
                   requires_grad)


def eye(n: int, m: int | None = None, dtype: DType | str | None = None, device: str | None = None,
        requires_grad: bool = False) -> Tensor:
    """The n x m identity matrix."""
    return _finish(Tensor(np.eye(n, n if m is None else m), dtype=dtype or dt.default_float, device=device),
                   requires_grad)


def manual_seed(seed: int) -> None:
    """Reset the random stream: the same seed gives the same random numbers on every device."""
    _rng["seed"], _rng["counter"] = int(seed) & (2**64 - 1), 0


def _uniform(shape: tuple[int, ...], dtype: DType, device: str | None) -> Tensor:
    """Counter-based uniform [0, 1): the RAND node names its slice of the stream, so devices agree."""
    arg = (_rng["seed"], _rng["counter"])
    _rng["counter"] += math.prod(shape)
    t = Tensor(source_node(Op.RAND, arg, shape, dt.float32, canonical_device(device)))
    return t.cast(dtype)


def rand(*size: Any, dtype: DType | str | None = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform random numbers in [0, 1)."""
    return _finish(_uniform(_shape(size), dt.to_dtype(dtype) or dt.default_float, device), requires_grad)


def randn(*size: Any, dtype: DType | str | None = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal random numbers (Box-Muller over two uniform streams)."""
    shape = _shape(size)
    u1, u2 = _uniform(shape, dt.float32, device), _uniform(shape, dt.float32, device)
    z = (-2 * (1 - u1).log()).sqrt() * (2 * math.pi * u2).cos()
    return _finish(z.cast(dt.to_dtype(dtype) or dt.default_float).detach(), requires_grad)


def randint(low: int, high: int | Sequence[int] | None = None, size: Sequence[int] | None = None,
            dtype: DType | str | None = None, device: str | None = None) -> Tensor:
    """Uniform random integers in [low, high) (int64): randint(high, size) or randint(low, high, size), like torch."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high  # torch.randint(high, size)
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: size is required")
    if high <= low:
        raise ValueError(f"randint: empty range [{low}, {high})")
    u = _uniform(_shape((size,)), dt.float64, device)
    return ((u * (high - low)).floor() + low).cast(dt.to_dtype(dtype) or dt.int64).detach()


def normal(mean: float = 0.0, std: float = 1.0, size: Sequence[int] = (), dtype: DType | str | None = None,
           device: str | None = None, requires_grad: bool = False) -> Tensor:
    """Normal random numbers with the given mean and standard deviation."""
    if std < 0:
        raise ValueError(f"normal: std must be non-negative, got {std}")
    out = (randn(_shape((size,)), dtype=dtype, device=device) * std + mean).detach()
    return _finish(out, requires_grad)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p); identity when not training."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    keep = _uniform(x.shape, dt.float32, x.device) >= p
    return keep._select(x * (1 / (1 - p)), 0.0)


def _like(fn: Any, name: str) -> Any:
    def like(x: Tensor, *args: Any, dtype: DType | str | None = None, device: str | None = None, **kw: Any) -> Tensor:
        return fn(*args, x.shape, dtype=dtype or x.dtype, device=device or x.device, **kw) if args else \
            fn(x.shape, dtype=dtype or x.dtype, device=device or x.device, **kw)
    like.__name__ = name
    like.__doc__ = f"{fn.__name__} with the shape, dtype and device of `x`."
    return like


zeros_like = _like(zeros, "zeros_like")
ones_like = _like(ones, "ones_like")
empty_like = _like(empty, "empty_like")
rand_like = _like(rand, "rand_like")
randn_like = _like(randn, "randn_like")


def full_like(x: Tensor, fill_value: bool | int | float, dtype: DType | str | None = None,
              device: str | None = None, requires_grad: bool = False) -> Tensor:
    """full with the shape, dtype and device of `x`."""
    return full(x.shape, fill_value, dtype or x.dtype, device or x.device, requires_grad)


def randint_like(x: Tensor, low: int, high: int | None = None, dtype: DType | str | None = None,
                 device: str | None = None) -> Tensor:
    """randint with the shape of `x`."""
    return randint(low, high, x.shape, dtype or x.dtype, device or x.device)
