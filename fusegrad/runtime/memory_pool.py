"""A caching allocator for device memory: freed blocks are kept by size class and handed out again.

Device allocation (cuMemAlloc, clCreateBuffer) is slow and often synchronizes; a training step frees and allocates
the same sizes every iteration, so reusing blocks makes the steady state allocation-free. A block returns to the
pool when the last Python reference to its `Allocation` dies. Reuse is safe because each device runs its work in
one in-order queue (stream): a later kernel writing the block runs after every earlier kernel that read it.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any


class Allocation:
    """One block of device memory (`raw` is the device's handle: a pointer or a buffer object); a region of another
    block names it as `parent`, which it keeps alive."""

    __slots__ = ("raw", "nbytes", "parent", "__weakref__")

    def __init__(self, raw: Any, nbytes: int, parent: Allocation | None = None):
        self.raw, self.nbytes, self.parent = raw, nbytes, parent

    def __repr__(self) -> str:
        return f"<Allocation {self.nbytes} bytes>"


def size_class(nbytes: int) -> int:
    """Round a request up so that near sizes share blocks: at most 1/8 wasted, at least 256 bytes."""
    n = max(int(nbytes), 256)
    step = max(256, 1 << max(n.bit_length() - 4, 0))
    return -(-n // step) * step


class MemoryPool:
    """Hands out `Allocation`s, reusing freed blocks of the same size class before asking the device for more."""

    def __init__(self, allocate: Callable[[int], Any], free: Callable[[Any], None]):
        self._allocate, self._free = allocate, free
        self._cached: dict[int, list[Any]] = {}
        self.cached_bytes = 0
        self.allocated_bytes = 0  # everything obtained from the device and not returned to it

    def alloc(self, nbytes: int) -> Allocation:
        """A block of at least `nbytes` (a cached one when a block of its size class is free)."""
        size = size_class(nbytes)
        blocks = self._cached.get(size)
        if blocks:
            raw = blocks.pop()
            self.cached_bytes -= size
        else:
            try:
                raw = self._allocate(size)
            except MemoryError:  # the cache may hold enough: give it back to the device and try once more
                self.empty_cache()
                raw = self._allocate(size)
            self.allocated_bytes += size
        block = Allocation(raw, size)
        weakref.finalize(block, self._return, size, raw)
        return block

    def _return(self, size: int, raw: Any) -> None:
        self._cached.setdefault(size, []).append(raw)
        self.cached_bytes += size

    def empty_cache(self) -> None:
        """Give every cached block back to the device."""
        for size, blocks in self._cached.items():
            for raw in blocks:
                self._free(raw)
                self.allocated_bytes -= size
        self._cached.clear()
        self.cached_bytes = 0
