"""The loop IR: what a kernel does, independent of the language it is printed in (C, CUDA, OpenCL).

A kernel is loops over its output shape (and, for a reduction, inner loops over the reduced axes), `Let`s that
compute values once, and one `Store`. Values are small trees over loads, constants and primitive ops.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..dtype import DType
from ..graph import Op
from .symbolic import Cond, Index


@dataclass(frozen=True)
class Param:
    """A kernel argument: a buffer (read or written) or the error flag."""

    name: str
    dtype: DType
    writable: bool = False


@dataclass(frozen=True)
class Const:
    value: bool | int | float
    dtype: DType


@dataclass(frozen=True)
class Arg:
    """A scalar passed at launch (constants, random seeds): the source stays the same when only values change."""

    slot: int
    dtype: DType


@dataclass(frozen=True)
class Ref:
    """A value computed earlier by a `Let` (or an accumulator)."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Load:
    """buf[index] where cond holds, else 0 (padding)."""

    buf: str
    index: Index
    cond: Cond
    dtype: DType


@dataclass(frozen=True)
class GatherLoad:
    """buf[base + position * stride] for a data-dependent position in [0, size); outside: 0 and the error flag."""

    buf: str
    base: Index
    position: Value
    stride: int
    size: int
    cond: Cond
    dtype: DType
    flag: int  # written to the error flag when out of range: 1 + this gather's place in Kernel.gathers


@dataclass(frozen=True)
class Valid:
    """True where a padded view holds real data."""

    cond: Cond


@dataclass(frozen=True)
class Rand:
    """Counter-based uniform float in [0, 1): hash of (seed, offset + counter); seed and offset are launch args."""

    seed: Arg
    offset: Arg
    counter: Index


@dataclass(frozen=True)
class Apply:
    """A primitive elementwise op (NEG ... WHERE, CAST to `dtype`)."""

    op: Op
    srcs: tuple[Value, ...]
    dtype: DType


Value = Const | Arg | Ref | Load | GatherLoad | Valid | Rand | Apply


@dataclass
class Let:
    name: str
    value: Value


@dataclass
class Accumulate:
    """acc = acc (+ or max) value."""

    acc: Ref
    op: Op
    value: Value


@dataclass
class Store:
    buf: str
    index: Index
    value: Value


@dataclass
class Loop:
    var: str
    size: int
    body: list[Stmt] = field(default_factory=list)
    parallel: bool = False
    reduction: bool = False  # a loop over reduced axes (it may reassociate its accumulation)


@dataclass
class DeclareAcc:
    """Start an accumulator at the reduction's identity."""

    acc: Ref
    op: Op


@dataclass
class FinishAcc:
    """After the reduction loops: fix up the accumulator (a max that saw a NaN becomes NaN)."""

    acc: Ref
    op: Op


@dataclass
class Local:
    """A kernel-local array of `size` elements (uninitialized), read by `Load` and written by `Store` by name: the
    row of accumulators of a reduction that keeps the contiguous axis (only with `lower.Options.row_accumulators`)."""

    name: str
    dtype: DType
    size: int


Stmt = Let | Accumulate | Store | Loop | DeclareAcc | FinishAcc | Local


@dataclass
class Kernel:
    name: str
    params: list[Param]
    body: list[Stmt]
    uses_error_flag: bool = False
    args: list[bool | int | float] = field(default_factory=list)  # the values of the Arg slots, in slot order
    gathers: list[tuple[int, int]] = field(default_factory=list)  # (dim, size) of each gather, for error messages


def walk_values(stmts: list[Stmt]) -> Iterator[Value]:
    """Every value in a kernel body, nested ones included."""
    stack: list = []
    for s in stmts:
        if isinstance(s, Loop):
            yield from walk_values(s.body)
        elif hasattr(s, "value"):
            stack.append(s.value)
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, Apply):
            stack.extend(v.srcs)
        elif isinstance(v, GatherLoad):
            stack.append(v.position)


def _stores(stmts: list[Stmt]) -> list[Store]:
    out = []
    for s in stmts:
        if isinstance(s, Loop):
            out += _stores(s.body)
        elif isinstance(s, Store):
            out.append(s)
    return out


def reads_only_where_stored(kernel: Kernel, bufs: set[str]) -> bool:
    """True if the kernel stores its output once and reads the buffers `bufs` only at the element that store writes,
    unconditionally: then the output may be written over them (a state updated in place). Cut loops store per
    piece: not worth proving each piece safe."""
    stores = [s for s in _stores(kernel.body) if s.buf == "out"]
    if len(stores) != 1:
        return False
    store = stores[0]
    for v in walk_values(kernel.body):
        if isinstance(v, GatherLoad) and v.buf in bufs:
            return False
        if isinstance(v, Load) and v.buf in bufs and (v.index != store.index or not v.cond.always):
            return False
    return True
