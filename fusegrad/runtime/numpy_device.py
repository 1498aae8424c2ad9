"""The `numpy` reference device: interprets the graph node by node with NumPy. The oracle other devices match."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..dtype import DType
from ..graph import Node, Op, toposort
from .device import Buffer, Device
from .exact_fma import fma


def _hash32(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer finalizer (lowbias32); uint32 arithmetic wraps, as it will in C."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def random_uniform(seed: int, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """Counter-based uniform floats in [0, 1): element i depends only on (seed, offset + i), so any device agrees."""
    counter = np.arange(offset, offset + int(np.prod(shape)), dtype=np.uint64)
    key = _hash32(np.array([seed & 0xFFFFFFFF], np.uint32) ^ _hash32(np.array([seed >> 32], np.uint32)))
    lo, hi = (counter & np.uint64(0xFFFFFFFF)).astype(np.uint32), (counter >> np.uint64(32)).astype(np.uint32)
    bits = _hash32(_hash32(lo ^ key) ^ (hi * np.uint32(0x9E3779B9)))
    return ((bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)).reshape(shape)


def _idiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero, 0 where b == 0 (compiled kernels must not trap either)."""
    safe = np.where(b == 0, 1, b)
    q = a // safe
    q = q + ((a % safe != 0) & ((a < 0) != (safe < 0)))
    return np.where(b == 0, 0, q).astype(a.dtype)


def _mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C's remainder: the sign of the dividend (fmod); integer x % 0 gives 0."""
    if a.dtype.kind == "f":
        return np.fmod(a, b)
    return np.where(b == 0, 0, np.fmod(a, np.where(b == 0, 1, b))).astype(a.dtype)


def _accumulate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Run a float16 op in float32 and round once at the end, as PyTorch does for sums and matmuls."""
    def run(*xs: np.ndarray, **kw: Any) -> np.ndarray:
        if xs[0].dtype == np.float16:
            return fn(*(x.astype(np.float32) for x in xs), **kw).astype(np.float16)
        return fn(*xs, **kw)
    return run


def _gather(x: np.ndarray, idx: np.ndarray, dim: int) -> np.ndarray:
    n = x.shape[dim]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].flat[0]
        raise IndexError(f"index {bad} is out of bounds for dim {dim} with size {n}")
    window = tuple(slice(0, s) if d != dim else slice(None) for d, s in enumerate(idx.shape))
    return np.take_along_axis(x[window], idx.astype(np.int64), axis=dim)


def _sum(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=True, dtype=x.dtype)


# one entry per primitive: (node, source arrays) -> array
KERNELS: dict[Op, Callable[[Node, list[np.ndarray]], np.ndarray]] = {
    Op.NEG: lambda n, s: np.negative(s[0]),
    Op.EXP2: lambda n, s: np.exp2(s[0]),
    Op.LOG2: lambda n, s: np.log2(s[0]),
    Op.SIN: lambda n, s: np.sin(s[0]),
    Op.SQRT: lambda n, s: np.sqrt(s[0]),
    Op.RECIP: lambda n, s: np.reciprocal(s[0]),
    Op.CAST: lambda n, s: s[0].astype(n.dtype.np),
    Op.ADD: lambda n, s: np.logical_or(*s) if n.dtype.category == 0 else np.add(*s),
    Op.MUL: lambda n, s: np.logical_and(*s) if n.dtype.category == 0 else np.multiply(*s),
    Op.MAX: lambda n, s: np.maximum(*s),
    Op.CMPLT: lambda n, s: np.less(*s),
    Op.CMPEQ: lambda n, s: np.equal(*s),
    Op.IDIV: lambda n, s: _idiv(*s),
    Op.MOD: lambda n, s: _mod(*s),
    Op.WHERE: lambda n, s: np.where(*s),
    Op.MULADD: lambda n, s: fma(*s),
    Op.SUM: lambda n, s: _accumulate(_sum)(s[0], axes=n.arg),
    Op.REDUCE_MAX: lambda n, s: np.max(s[0], axis=n.arg, keepdims=True),
    Op.RESHAPE: lambda n, s: s[0].reshape(n.arg),
    Op.PERMUTE: lambda n, s: s[0].transpose(n.arg),
    Op.EXPAND: lambda n, s: np.broadcast_to(s[0], n.arg),
    Op.PAD: lambda n, s: np.pad(s[0], n.arg),
    Op.SHRINK: lambda n, s: s[0][tuple(slice(b, e) for b, e in n.arg)],
    Op.FLIP: lambda n, s: np.flip(s[0], n.arg),
    Op.STRIDE: lambda n, s: s[0][tuple(slice(None, None, st) for st in n.arg)],
    Op.UNFOLD: lambda n, s: np.lib.stride_tricks.sliding_window_view(s[0], n.arg[1], axis=n.arg[0])[
        (slice(None),) * n.arg[0] + (slice(None, None, n.arg[2]),)],
    Op.MATMUL: lambda n, s: _accumulate(np.matmul)(*s),
    Op.CONST: lambda n, s: np.full(n.shape, n.arg, n.dtype.np),
    Op.RAND: lambda n, s: random_uniform(*n.arg, n.shape).astype(n.dtype.np),
    Op.GATHER: lambda n, s: _gather(s[0], s[1], n.arg),
}


class NumpyDevice(Device):
    """Reference interpreter: exact NumPy semantics, float16 accumulated in float32."""

    name = "numpy"

    def from_numpy(self, array: np.ndarray, dtype: DType) -> Buffer:
        """Copy host data into an owned, contiguous array."""
        return Buffer(self.name, array.shape, dtype, np.array(array, dtype=dtype.np, order="C", copy=True))

    def to_numpy(self, buffer: Buffer) -> np.ndarray:
        """A copy of the buffer's array."""
        return buffer.handle.copy()

    def realize(self, nodes: list[Node], order: list[Node] | None = None) -> None:
        """Interpret the graph under `nodes` once, keeping intermediates only until the roots are done."""
        values: dict[int, np.ndarray] = {}
        with np.errstate(all="ignore"):  # inf/nan are values here, not errors, as in PyTorch
            for n in toposort(nodes):
                if n.realized:
                    values[id(n)] = n.buffer.handle
                elif n.op is Op.ASSIGN:
                    target, value = n.srcs
                    np.copyto(target.buffer.handle, values[id(value)])
                    n.buffer = target.buffer
                    values[id(n)] = target.buffer.handle
                else:
                    values[id(n)] = KERNELS[n.op](n, [values[id(s)] for s in n.srcs])
        for n in nodes:
            if not n.realized:
                n.buffer = self.from_numpy(values[id(n)], n.dtype)

