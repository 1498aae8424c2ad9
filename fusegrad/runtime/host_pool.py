"""Reused host memory for the `cpu` device's large buffers.

A fresh large NumPy array is fresh pages from the kernel: the first write to each page faults and zeroes it, which
costs about as much as writing the array twice (an im2col matrix of 100 MB takes 10 ms to fill fresh, 3.5 ms when
reused). A training step frees and allocates the same sizes every iteration, so freed blocks are kept, by size
class, and handed out again. A block goes back to the pool when the last array over it (views included) dies.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

MIN_POOLED_BYTES = 1 << 20  # smaller arrays come from malloc, which reuses its own memory without faults
MAX_CACHED_BYTES = 1 << 30  # freed blocks beyond this are given back to the system
ALIGNMENT = 64  # a cache line (malloc gives 16): vector loads and stores that straddle two lines are slower


def aligned_empty(nbytes: int) -> np.ndarray:
    """`nbytes` uninitialized bytes starting on a cache line."""
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes]


def size_class(nbytes: int) -> int:
    """Round a request up so that near sizes share blocks: at most 1/8 wasted."""
    step = 1 << max(nbytes.bit_length() - 4, 0)
    return -(-nbytes // step) * step


class _Block:
    """Owner of a pooled array's memory: NumPy keeps it as the `base` of every array over the block."""

    __slots__ = ("raw", "__array_interface__", "__weakref__")

    def __init__(self, raw: np.ndarray, shape: tuple[int, ...], dtype: np.dtype):
        self.raw = raw
        self.__array_interface__ = {"data": (raw.ctypes.data, False), "shape": shape, "typestr": dtype.str,
                                    "version": 3}


class HostPool:
    """Hands out C-contiguous arrays, reusing the memory of freed ones of the same size class."""

    def __init__(self, max_cached_bytes: int = MAX_CACHED_BYTES):
        self.max_cached_bytes = max_cached_bytes
        self.cached_bytes = 0
        self._free: dict[int, list[np.ndarray]] = {}

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialized array (from a freed block of its size class when there is one)."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_POOLED_BYTES:
            return np.empty(shape, dtype)
        size = size_class(nbytes)
        blocks = self._free.get(size)
        if blocks:
            raw = blocks.pop()
            self.cached_bytes -= size
        else:
            raw = aligned_empty(size)
        block = _Block(raw, tuple(shape), dtype)
        weakref.finalize(block, self._give_back, size, raw)
        return np.asarray(block)

    def _give_back(self, size: int, raw: np.ndarray) -> None:
        if self.cached_bytes + size <= self.max_cached_bytes:
            self._free.setdefault(size, []).append(raw)
            self.cached_bytes += size

    def clear(self) -> None:
        """Give every cached block back to the system."""
        self._free.clear()
        self.cached_bytes = 0
