"""Reused host memory for the `cpu` device's buffers.

A fresh large NumPy array is fresh pages from the kernel: the first write to each page faults and zeroes it, which
costs about as much as writing the array twice (an im2col matrix of 100 MB takes 10 ms to fill fresh, 3.5 ms when
reused). A training step frees and allocates the same sizes every iteration, so freed blocks are kept, by size
class, and handed out again, with their address: asking NumPy for an array's address runs a page of Python, which
after a kernel that streamed through the caches costs 20-30 us. A block goes back to the pool when the last array
over it (views included) dies.
"""
from __future__ import annotations

import math

import numpy as np

MAX_CACHED_BYTES = 1 << 30  # freed blocks beyond this are given back to the system
BLOCK_OVERHEAD = 256  # bytes a cached block costs beyond its data (alignment, the array objects), counted in the cap
ALIGNMENT = 64  # a cache line (malloc gives 16): vector loads and stores that straddle two lines are slower


def aligned_empty(nbytes: int) -> tuple[np.ndarray, int]:
    """`nbytes` uninitialized bytes starting on a cache line, and their address."""
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    address = raw.ctypes.data
    start = -address % ALIGNMENT
    return raw[start:start + nbytes], address + start


def size_class(nbytes: int) -> int:
    """Round a request up so that near sizes share blocks: at most 1/8 wasted."""
    step = 1 << max(nbytes.bit_length() - 4, 0)
    return -(-nbytes // step) * step


class _Block:
    """Owner of a pooled array's memory: NumPy keeps it as the `base` of every array over the block, and when the last
    of them dies the block goes back to its pool."""

    __slots__ = ("pool", "size", "raw", "address", "__array_interface__")

    def __init__(self, pool: HostPool, size: int, raw: np.ndarray, address: int, shape: tuple[int, ...],
                 dtype: np.dtype):
        self.pool, self.size, self.raw, self.address = pool, size, raw, address
        self.__array_interface__ = {"data": (address, False), "shape": shape, "typestr": dtype.str, "version": 3}

    def __del__(self) -> None:
        self.pool.give_back(self.size, self.raw, self.address)


class HostPool:
    """Hands out C-contiguous arrays, reusing the memory of freed ones of the same size class."""

    def __init__(self, max_cached_bytes: int = MAX_CACHED_BYTES):
        self.max_cached_bytes = max_cached_bytes
        self.cached_bytes = 0
        self._free: dict[int, list[tuple[np.ndarray, int]]] = {}

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        """An uninitialized array (from a freed block of its size class when there is one) and its address."""
        dtype = np.dtype(dtype)
        size = size_class(math.prod(shape) * dtype.itemsize)
        blocks = self._free.get(size)
        if blocks:
            raw, address = blocks.pop()
            self.cached_bytes -= size + BLOCK_OVERHEAD
        else:
            raw, address = aligned_empty(size)
        return np.asarray(_Block(self, size, raw, address, tuple(shape), dtype)), address

    def give_back(self, size: int, raw: np.ndarray, address: int) -> None:
        """Keep a freed block for reuse, within the cap."""
        if self.cached_bytes + size + BLOCK_OVERHEAD <= self.max_cached_bytes:
            self._free.setdefault(size, []).append((raw, address))
            self.cached_bytes += size + BLOCK_OVERHEAD

    def clear(self) -> None:
        """Give every cached block back to the system."""
        self._free.clear()
        self.cached_bytes = 0
