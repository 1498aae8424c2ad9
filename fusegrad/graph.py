"""The lazy graph: immutable nodes of primitive ops, with shape and dtype inferred (and checked) at construction."""
from __future__ import annotations

import gc
import itertools
import math
import os
import sys
from collections.abc import Callable
from enum import Enum, auto
from typing import Any

from .dtype import DType, bool_, int32, int64

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A shape or dtype rule failed while building the graph; raised before anything is computed."""

    def __init__(self, msg: str = "") -> None:
        if msg and " (at " not in msg:  # raised directly (e.g. by nn): still point at the user's line
            msg = f"{msg} (at {user_frame()})"
        super().__init__(msg)


ShapeError.__module__ = "fusegrad"  # users see fusegrad.ShapeError in tracebacks


class Op(Enum):
    """The primitive ops. Every Tensor method lowers to these; only these have gradient rules and kernels."""

    # elementwise unary
    NEG = auto(); EXP2 = auto(); LOG2 = auto(); SIN = auto(); SQRT = auto(); RECIP = auto(); CAST = auto()  # noqa: E702
    # elementwise binary / ternary (IDIV truncates and MOD takes the dividend's sign, as in C)
    ADD = auto(); MUL = auto(); MAX = auto(); CMPLT = auto(); CMPEQ = auto()  # noqa: E702
    IDIV = auto(); MOD = auto(); WHERE = auto()  # noqa: E702
    MULADD = auto()  # a * b + c rounded once (a fused multiply-add: polynomials take half the instructions)
    # reductions over axes (reduced axes keep size 1)
    SUM = auto(); REDUCE_MAX = auto()  # noqa: E702
    # movement: no compute, only a new view of the source
    RESHAPE = auto(); PERMUTE = auto(); EXPAND = auto(); PAD = auto(); SHRINK = auto(); FLIP = auto()  # noqa: E702
    STRIDE = auto()  # x[::s] per dim; how strided slices are made without copies
    UNFOLD = auto()  # arg (dim, size, step): sliding windows as a new last dim, like Tensor.unfold (conv's im2col)
    # contraction
    MATMUL = auto()
    # data
    CONST = auto(); LOAD = auto(); RAND = auto(); GATHER = auto(); ASSIGN = auto(); COPY = auto()  # noqa: E702

    __hash__ = object.__hash__  # members are singletons; Enum's own hash runs Python code on every table lookup


UNARY = {Op.NEG, Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP}
BINARY = {Op.ADD, Op.MUL, Op.MAX, Op.CMPLT, Op.CMPEQ, Op.IDIV, Op.MOD}
ELEMENTWISE = UNARY | BINARY | {Op.WHERE, Op.CAST, Op.MULADD}
REDUCE = {Op.SUM, Op.REDUCE_MAX}
MOVEMENT = {Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.PAD, Op.SHRINK, Op.FLIP, Op.STRIDE, Op.UNFOLD}
FLOAT_ONLY = {Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.MULADD}
INT_ONLY = {Op.IDIV}

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def user_frame() -> str:
    """`file:line` of the innermost caller outside fusegrad, so errors point at the user's line."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PKG_DIR):
        f = f.f_back
    return f"{f.f_code.co_filename}:{f.f_lineno}" if f is not None else "<unknown>"


def shape_error(msg: str) -> ShapeError:
    """A ShapeError whose message ends with the user's source line."""
    return ShapeError(f"{msg} (at {user_frame()})")


def prod(xs: Shape) -> int:
    """Product of a shape's sizes (1 for a 0-d shape)."""
    return math.prod(xs)


_SERIALS = itertools.count()

# a training step's graph is tens of thousands of objects alive at once: at Python's default first-generation
# threshold (700) the collector scans them again and again (15% of an eager GPT step); a user's own setting is kept
if gc.get_threshold()[0] == 700:
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


class Node:
    """One immutable graph node. `buffer` is a memo: the realized result, filled in once by a device."""

    __slots__ = ("op", "srcs", "arg", "shape", "dtype", "device", "buffer", "serial", "__weakref__")

    def __init__(self, op: Op, srcs: tuple[Node, ...], arg: Any, shape: Shape, dtype: DType, device: str):
        self.op, self.srcs, self.arg, self.shape, self.dtype, self.device = op, srcs, arg, shape, dtype, device
        self.buffer: Any = None
        self.serial = next(_SERIALS)  # creation order: fg.jit tells nodes made before a traced call from its own

    def __repr__(self) -> str:
        return f"<Node {self.op.name} {self.shape} {self.dtype.name} {self.device}>"

    @property
    def realized(self) -> bool:
        """True once a device has computed this node (or it is a LOAD of an existing buffer)."""
        return self.buffer is not None


# ---- shape/dtype inference: one rule per op, each returns (shape, dtype) or raises ShapeError ----

def _same_shapes(op: Op, srcs: tuple[Node, ...]) -> Shape:
    if any(s.shape != srcs[0].shape for s in srcs):
        raise shape_error(f"{op.name}: operand shapes {[s.shape for s in srcs]} differ; primitive elementwise "
                          "ops need equal shapes (the Tensor frontend broadcasts before calling them)")
    return srcs[0].shape


def _same_dtypes(op: Op, srcs: tuple[Node, ...]) -> DType:
    if any(s.dtype != srcs[0].dtype for s in srcs):
        raise shape_error(f"{op.name}: operand dtypes {[s.dtype.name for s in srcs]} differ")
    return srcs[0].dtype


def _infer_elementwise(op: Op, srcs: tuple[Node, ...], arg: Any) -> tuple[Shape, DType]:
    shape = _same_shapes(op, srcs)
    if op is Op.CAST:
        return shape, arg
    if op is Op.WHERE:
        if srcs[0].dtype != bool_:
            raise shape_error(f"WHERE: condition must be bool, got {srcs[0].dtype.name}")
        return shape, _same_dtypes(op, srcs[1:])
    dtype = _same_dtypes(op, srcs)
    if op in FLOAT_ONLY and not dtype.is_floating_point:
        raise shape_error(f"{op.name}: needs a floating-point operand, got {dtype.name}")
    if op in INT_ONLY and dtype.is_floating_point:
        raise shape_error(f"{op.name}: needs integer operands, got {dtype.name}")
    return shape, (bool_ if op in (Op.CMPLT, Op.CMPEQ) else dtype)


def _check_axes(op: Op, shape: Shape, axes: tuple[int, ...]) -> None:
    if len(set(axes)) != len(axes) or any(not 0 <= a < len(shape) for a in axes):
        raise shape_error(f"{op.name}: axes {axes} are invalid for shape {shape}")


def _infer_reduce(op: Op, srcs: tuple[Node, ...], axes: tuple[int, ...]) -> tuple[Shape, DType]:
    (x,) = srcs
    _check_axes(op, x.shape, axes)
    if op is Op.REDUCE_MAX and any(x.shape[a] == 0 for a in axes):
        raise shape_error(f"max: cannot reduce an empty dim of shape {x.shape} over axes {axes} (no identity)")
    return tuple(1 if i in axes else s for i, s in enumerate(x.shape)), x.dtype


def _infer_reshape(op: Op, srcs: tuple[Node, ...], shape: Shape) -> tuple[Shape, DType]:
    if any(s < 0 for s in shape) or prod(shape) != prod(srcs[0].shape):
        raise shape_error(f"reshape: cannot reshape {srcs[0].shape} ({prod(srcs[0].shape)} elements) to {shape}")
    return shape, srcs[0].dtype


def _infer_permute(op: Op, srcs: tuple[Node, ...], order: tuple[int, ...]) -> tuple[Shape, DType]:
    x = srcs[0].shape
    if sorted(order) != list(range(len(x))):
        raise shape_error(f"permute: {order} is not a permutation of the {len(x)} dims of shape {x}")
    return tuple(x[i] for i in order), srcs[0].dtype


def _infer_expand(op: Op, srcs: tuple[Node, ...], shape: Shape) -> tuple[Shape, DType]:
    x = srcs[0].shape
    if len(x) != len(shape) or any(a != b and a != 1 for a, b in zip(x, shape)):
        raise shape_error(f"expand: cannot expand shape {x} to {shape}; only size-1 dims can grow and the ranks "
                          "must match")
    return shape, srcs[0].dtype


def _infer_pad(op: Op, srcs: tuple[Node, ...], pads: tuple[tuple[int, int], ...]) -> tuple[Shape, DType]:
    x = srcs[0].shape
    if len(pads) != len(x) or any(b < 0 or a < 0 for b, a in pads):
        raise shape_error(f"pad: padding {pads} does not fit shape {x} (one non-negative (before, after) per dim)")
    return tuple(s + b + a for s, (b, a) in zip(x, pads)), srcs[0].dtype


def _infer_shrink(op: Op, srcs: tuple[Node, ...], bounds: tuple[tuple[int, int], ...]) -> tuple[Shape, DType]:
    x = srcs[0].shape
    if len(bounds) != len(x) or any(not 0 <= b <= e <= s for (b, e), s in zip(bounds, x)):
        raise shape_error(f"shrink: bounds {bounds} do not fit shape {x}")
    return tuple(e - b for b, e in bounds), srcs[0].dtype


def _infer_flip(op: Op, srcs: tuple[Node, ...], axes: tuple[int, ...]) -> tuple[Shape, DType]:
    _check_axes(op, srcs[0].shape, axes)
    return srcs[0].shape, srcs[0].dtype


def _infer_stride(op: Op, srcs: tuple[Node, ...], steps: tuple[int, ...]) -> tuple[Shape, DType]:
    x = srcs[0].shape
    if len(steps) != len(x) or any(s < 1 for s in steps):
        raise shape_error(f"stride: steps {steps} do not fit shape {x} (one positive step per dim)")
    return tuple((n + s - 1) // s for n, s in zip(x, steps)), srcs[0].dtype


def _infer_unfold(op: Op, srcs: tuple[Node, ...], arg: tuple[int, int, int]) -> tuple[Shape, DType]:
    x, (d, size, step) = srcs[0].shape, arg
    if not 0 <= d < len(x) or size < 1 or step < 1 or size > x[d]:
        raise shape_error(f"unfold: windows of size {size} and step {step} along dim {d} do not fit shape {x}")
    return x[:d] + ((x[d] - size) // step + 1,) + x[d + 1:] + (size,), srcs[0].dtype


def _infer_matmul(op: Op, srcs: tuple[Node, ...], arg: Any) -> tuple[Shape, DType]:
    a, b = srcs
    if len(a.shape) < 2 or len(a.shape) != len(b.shape) or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise shape_error(f"matmul: shapes {a.shape} and {b.shape} do not contract: need (..., m, k) @ (..., k, n) "
                          "with equal batch dims")
    return a.shape[:-1] + b.shape[-1:], _same_dtypes(op, srcs)


def _infer_gather(op: Op, srcs: tuple[Node, ...], dim: int) -> tuple[Shape, DType]:
    x, idx = srcs
    if idx.dtype not in (int32, int64):
        raise shape_error(f"gather: index must be int32/int64, got {idx.dtype.name}")
    if len(idx.shape) != len(x.shape) or not 0 <= dim < len(x.shape) or any(
            i > s for d, (i, s) in enumerate(zip(idx.shape, x.shape)) if d != dim):
        raise shape_error(f"gather: index shape {idx.shape} does not fit source {x.shape} along dim {dim}: same rank, "
                          "and no larger than the source outside dim")
    return idx.shape, x.dtype


def _infer_assign(op: Op, srcs: tuple[Node, ...], arg: Any) -> tuple[Shape, DType]:
    target, value = srcs
    if target.op is not Op.LOAD:
        raise shape_error("assign: the target must be a realized buffer")
    if target.shape != value.shape or target.dtype != value.dtype:
        raise shape_error(f"assign: value {value.shape} {value.dtype.name} does not match target {target.shape} "
                          f"{target.dtype.name}")
    return target.shape, target.dtype


def _infer_source(op: Op, srcs: tuple[Node, ...], arg: Any) -> tuple[Shape, DType]:
    raise AssertionError("source nodes carry their own shape")


INFER: dict[Op, Callable[[Op, tuple[Node, ...], Any], tuple[Shape, DType]]] = {
    **{op: _infer_elementwise for op in ELEMENTWISE},
    Op.SUM: _infer_reduce, Op.REDUCE_MAX: _infer_reduce,
    Op.RESHAPE: _infer_reshape, Op.PERMUTE: _infer_permute, Op.EXPAND: _infer_expand, Op.PAD: _infer_pad,
    Op.SHRINK: _infer_shrink, Op.FLIP: _infer_flip, Op.STRIDE: _infer_stride, Op.UNFOLD: _infer_unfold,
    Op.MATMUL: _infer_matmul, Op.GATHER: _infer_gather, Op.ASSIGN: _infer_assign,
}
ARITY = {**{op: 1 for op in UNARY | REDUCE | MOVEMENT | {Op.CAST, Op.COPY}},
         **{op: 2 for op in BINARY | {Op.MATMUL, Op.GATHER, Op.ASSIGN}}, Op.WHERE: 3, Op.MULADD: 3}


def make_node(op: Op, srcs: tuple[Node, ...], arg: Any = None) -> Node:
    """Build a node of a computing op: check its operands and infer its shape and dtype."""
    if len(srcs) != ARITY[op]:
        raise TypeError(f"{op.name} takes {ARITY[op]} operands, got {len(srcs)}")
    if len(srcs) > 1 and any(s.device != srcs[0].device for s in srcs):
        raise shape_error(f"{op.name}: operands are on different devices {sorted({s.device for s in srcs})}; move "
                          "them with .to()")
    if op is Op.COPY:
        return Node(op, srcs, arg, srcs[0].shape, srcs[0].dtype, arg)
    shape, dtype = INFER[op](op, srcs, arg)
    return Node(op, srcs, arg, shape, dtype, srcs[0].device)


def source_node(op: Op, arg: Any, shape: Shape, dtype: DType, device: str) -> Node:
    """Build a node with no operands: CONST (arg = value), LOAD (arg = buffer or None for shape-only), RAND."""
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise shape_error(f"{op.name}: invalid shape {shape}; sizes must be non-negative ints")
    return Node(op, (), arg, tuple(shape), dtype, device)


def toposort(roots: list[Node]) -> list[Node]:
    """Nodes reachable from roots, every node after its sources (depth first, sources in order, so the order follows
    the graph's structure: fg.jit and the eager plan cache compare graphs by it); realized nodes are leaves."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root.srcs if root.buffer is None else ()))]
        while stack:
            for s in stack[-1][1]:  # the next unseen source of the node on top, else the node is done
                if id(s) not in seen:
                    seen.add(id(s))
                    stack.append((s, iter(s.srcs if s.buffer is None else ())))
                    break
            else:
                order.append(stack.pop()[0])
    return order
