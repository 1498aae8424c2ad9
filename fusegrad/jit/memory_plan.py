"""The static memory plan: intermediate buffers whose lifetimes do not overlap share one arena."""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 64  # bytes: a cache line, and enough for any SIMD load


@dataclass(frozen=True)
class Lifetime:
    """A buffer of `nbytes` written by step `first` and last read by step `last` (both inclusive)."""

    key: int
    nbytes: int
    first: int
    last: int


@dataclass
class MemoryPlan:
    """Where each planned buffer lives in the arena (byte offsets), and what sharing saved."""

    offsets: dict[int, int] = field(default_factory=dict)
    arena_bytes: int = 0
    total_bytes: int = 0  # the sum of all planned buffers: what one allocation per buffer would cost
    state_bytes: int = 0  # persistent buffers outside the arena (parameters, optimizer state, gradients)

    def __repr__(self) -> str:
        saved = 1 - self.arena_bytes / self.total_bytes if self.total_bytes else 0.0
        return (f"MemoryPlan(arena {self.arena_bytes:,} bytes for {len(self.offsets)} intermediate buffers of "
                f"{self.total_bytes:,} bytes in all ({saved:.0%} saved by sharing); state {self.state_bytes:,} bytes)")


def plan_arena(buffers: list[Lifetime], align: int = ALIGN) -> MemoryPlan:
    """Place every buffer at the lowest offset (a multiple of `align` bytes) free of all buffers alive at the same
    time (largest first)."""
    def aligned(n: int) -> int:
        return (n + align - 1) // align * align

    plan = MemoryPlan(total_bytes=sum(aligned(b.nbytes) for b in buffers))
    placed: list[tuple[Lifetime, int]] = []
    for b in sorted(buffers, key=lambda b: (-b.nbytes, b.first)):
        busy = sorted((off, off + aligned(o.nbytes)) for o, off in placed if o.first <= b.last and b.first <= o.last)
        offset = 0
        for start, end in busy:
            if offset + aligned(b.nbytes) <= start:
                break
            offset = max(offset, end)
        placed.append((b, offset))
        plan.offsets[b.key] = offset
        plan.arena_bytes = max(plan.arena_bytes, offset + aligned(b.nbytes))
    return plan
