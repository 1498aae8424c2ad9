"""Reverse-mode autodiff: one table from primitive op to its gradient rule, and the backward pass over the tape.

Rules are written in primitives applied to tensor-like values (anything with `_apply`, `_const`, `_wrap`), so the
gradient of a gradient is just another graph: second-order derivatives need nothing extra.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from .graph import Node, Op, prod


class Value(Protocol):
    """What a gradient rule needs of a tensor: shape/dtype/device and primitive application."""

    shape: tuple[int, ...]
    requires_grad: bool
    _ctx: Context | None
    _node: Node

    def _apply(self, op: Op, *srcs: Value, arg: Any = None) -> Value: ...
    def _const(self, value: float, shape: tuple[int, ...] | None = None) -> Value: ...
    def _wrap(self, node: Node) -> Value: ...


class Context:
    """How a tensor was made: the primitive, its operand tensors, its argument and the resulting node.

    `saved` remembers each operand's node, context and requires_grad as they were when the op ran: an in-place
    update later rebinds the operand *object*, and the tape must still see the value that was read.
    """

    __slots__ = ("op", "srcs", "arg", "out", "saved")

    def __init__(self, op: Op | Composite, srcs: tuple[Value, ...], arg: Any, out: Node):
        self.op, self.srcs, self.arg, self.out = op, srcs, arg, out
        self.saved = tuple((s._node, s._ctx, s.requires_grad) for s in srcs)


class Composite:
    """A tape entry for a composition of primitives that carries its own gradient rule (torch.autograd.Function's
    role): `rule(ctx, g)` returns one gradient per operand, written with differentiable ops, so second order holds.
    For formulas whose derivative is far shorter than differentiating their steps (erf's polynomial)."""

    __slots__ = ("name", "rule")

    def __init__(self, name: str, rule: Callable[[Context, Value], tuple[Value | None, ...]]):
        self.name, self.rule = name, rule

    def __repr__(self) -> str:
        return f"Composite({self.name})"


def gradient_rule(op: Op | Composite) -> Callable[[Context, Value], tuple[Value | None, ...]]:
    """The rule giving an entry's operand gradients: the primitive's row of GRADIENTS, or a composite's own."""
    return op.rule if isinstance(op, Composite) else GRADIENTS[op]


def _p(op: Op, *srcs: Value, arg: Any = None) -> Value:
    return srcs[0]._apply(op, *srcs, arg=arg)


def _mul_const(x: Value, c: float) -> Value:
    return _p(Op.MUL, x, x._const(c))


def _where(cond: Value, a: Value, b: Value) -> Value:
    return _p(Op.WHERE, cond, a, b)


def _zeros(x: Value) -> Value:
    return x._const(0)


def _swap_last(x: Value) -> Value:
    n = len(x.shape)
    return _p(Op.PERMUTE, x, arg=tuple(range(n - 2)) + (n - 1, n - 2))


def _grad_max(ctx: Context, g: Value) -> tuple[Value, Value]:
    a, b = ctx.srcs
    ga = _where(_p(Op.CMPLT, b, a), g, _where(_p(Op.CMPEQ, a, b), _mul_const(g, 0.5), _zeros(g)))
    return ga, _p(Op.ADD, g, _p(Op.NEG, ga))


def _grad_mod(ctx: Context, g: Value) -> tuple[Value | None, Value | None]:
    a, b = ctx.srcs
    if not a.dtype.is_floating_point:
        return None, None
    trunc_quot = _p(Op.MUL, _p(Op.ADD, a, _p(Op.NEG, _p(Op.MOD, a, b))), _p(Op.RECIP, b))  # exact-ish trunc(a/b)
    return g, _p(Op.NEG, _p(Op.MUL, g, trunc_quot))


def _grad_reduce_max(ctx: Context, g: Value) -> tuple[Value]:
    (x,) = ctx.srcs
    out = x._wrap(ctx.out)
    mask = _p(Op.CAST, _p(Op.CMPEQ, x, _p(Op.EXPAND, out, arg=x.shape)), arg=x.dtype)
    count = _p(Op.SUM, mask, arg=ctx.arg)  # ties share the gradient evenly, like torch.amax
    return (_p(Op.MUL, mask, _p(Op.EXPAND, _p(Op.MUL, g, _p(Op.RECIP, count)), arg=x.shape)),)


def _grad_expand(ctx: Context, g: Value) -> tuple[Value]:
    (x,) = ctx.srcs
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, g.shape)) if a != b)
    return (_p(Op.SUM, g, arg=axes) if axes else g,)


def _grad_permute(ctx: Context, g: Value) -> tuple[Value]:
    inverse = tuple(sorted(range(len(ctx.arg)), key=lambda i: ctx.arg[i]))
    n = len(inverse)
    node = g._node
    if (n >= 2 and inverse == tuple(range(n - 2)) + (n - 1, n - 2) and node.op is Op.MATMUL and not node.realized
            and not g.requires_grad):
        # (a @ b)^T as b^T @ a^T: a weight's gradient leaves the matmul in its own layout, no transposing copy
        a, b = (g._wrap(s) for s in node.srcs)
        return (_p(Op.MATMUL, _swap_last(b), _swap_last(a)),)
    return (_p(Op.PERMUTE, g, arg=inverse),)


UNFOLD_TAP_SUM = 16  # windows up to this size: the gradient sums shifted slices; larger: one SUM over the taps


def _fit(g: Value, d: int, before: int, length: int) -> Value:
    """Pad `before` zeros in front of dim d, then pad or crop its end so that it holds `length` elements."""
    total = before + g.shape[d]
    pads = tuple((before, max(0, length - total)) if i == d else (0, 0) for i in range(len(g.shape)))
    g = _p(Op.PAD, g, arg=pads) if any(b or a for b, a in pads) else g
    if total > length:  # only zeros lie past `length`
        g = _p(Op.SHRINK, g, arg=tuple((0, length) if i == d else (0, n) for i, n in enumerate(g.shape)))
    return g


def _spread(g: Value, d: int, step: int) -> Value:
    """Element j of dim d goes to j * step, zeros between (the adjoint of taking every step-th element)."""
    if step == 1:
        return g
    s = g.shape
    g = _p(Op.RESHAPE, g, arg=s[:d + 1] + (1,) + s[d + 1:])
    g = _p(Op.PAD, g, arg=tuple((0, step - 1) if i == d + 1 else (0, 0) for i in range(len(s) + 1)))
    return _p(Op.RESHAPE, g, arg=s[:d] + (s[d] * step,) + s[d + 1:])


def _grad_stride(ctx: Context, g: Value) -> tuple[Value]:
    (x,) = ctx.srcs
    for d, step in enumerate(ctx.arg):  # put each kept element back at every step-th place, zeros between
        if step > 1:
            g = _fit(_spread(g, d, step), d, 0, x.shape[d])
    return (g,)


def _grad_unfold(ctx: Context, g: Value) -> tuple[Value]:
    """Every window's tap k of window j adds into element j * step + k."""
    (x,), (d, size, step) = ctx.srcs, ctx.arg
    n, last = x.shape[d], len(g.shape) - 1
    if size <= UNFOLD_TAP_SUM:  # a sum of shifted, spread slices: no reduction, so it fuses into its consumer
        total = None
        for k in range(size):
            tap = _p(Op.SHRINK, g, arg=tuple((k, k + 1) if i == last else (0, m) for i, m in enumerate(g.shape)))
            tap = _fit(_spread(_p(Op.RESHAPE, tap, arg=g.shape[:-1]), d, step), d, k, n)
            total = tap if total is None else _p(Op.ADD, total, tap)
        return (total,)
    # long windows: tap k's row shifted right by k (a (size, n + 1) row-major trick), then one SUM over the taps
    order = tuple(i for i in range(last) if i != d) + (last, d)  # (..., size, count)
    g = _spread(_p(Op.PERMUTE, g, arg=order), last, step)
    g = _fit(g, last, 0, n + 1)  # (..., size, n + 1): columns past n - size hold zeros
    lead = g.shape[:-2]
    g = _p(Op.RESHAPE, g, arg=lead + (size * (n + 1),))
    g = _p(Op.SHRINK, g, arg=tuple((0, m) for m in lead) + ((0, size * n),))
    g = _p(Op.SUM, _p(Op.RESHAPE, g, arg=lead + (size, n)), arg=(len(lead),))  # (..., 1, n)
    g = _p(Op.RESHAPE, g, arg=lead + (n,))
    back = list(range(len(lead)))
    back.insert(d, len(lead))
    return (_p(Op.PERMUTE, g, arg=tuple(back)),)


def _selected(idx: Value, dim: int) -> Node | None:
    """The 1-D index vector when a gather index is that vector along `dim`, the same for every position of the other
    dims (what index_select, embedding and x[i] build: a reshape to size 1 elsewhere, then an expand), else None."""
    node = idx._node
    if node.op is not Op.EXPAND or node.srcs[0].op is not Op.RESHAPE:
        return None
    vec = node.srcs[0].srcs[0]
    count = node.shape[dim]
    if vec.shape != (count,) or node.srcs[0].shape != tuple(count if i == dim else 1 for i in range(len(node.shape))):
        return None
    return vec


def _grad_select(x: Value, vec: Node, g: Value, dim: int) -> Value:
    """A row selection's gradient as one product: one_hot(vec)^T @ g, with `dim` moved first and the rest flat."""
    n, count = x.shape[dim], vec.shape[0]
    order = (dim,) + tuple(i for i in range(len(x.shape)) if i != dim)
    rest = prod(x.shape[:dim] + x.shape[dim + 1:])
    rows = _p(Op.RESHAPE, _p(Op.PERMUTE, g, arg=order), arg=(count, rest))
    idx = g._wrap(vec)
    positions = idx._wrap(idx._arange_node(n, vec.dtype))
    hit = _p(Op.CMPEQ, _p(Op.EXPAND, _p(Op.RESHAPE, positions, arg=(n, 1)), arg=(n, count)),
             _p(Op.EXPAND, _p(Op.RESHAPE, idx, arg=(1, count)), arg=(n, count)))
    summed = _p(Op.MATMUL, _p(Op.CAST, hit, arg=g.dtype), rows)  # (n, rest): each row's gradients added up
    moved = _p(Op.RESHAPE, summed, arg=tuple(x.shape[i] for i in order))
    return _p(Op.PERMUTE, moved, arg=tuple(order.index(i) for i in range(len(order))))


def _grad_gather(ctx: Context, g: Value) -> tuple[Value, None]:
    """Scatter-add written in primitives: a row selection is a product with a one-hot matrix; any other gather
    compares the index with every source position, weights and sums."""
    x, idx = ctx.srcs
    dim, n = ctx.arg, x.shape[ctx.arg]
    vec = _selected(idx, dim)
    if vec is not None and x.shape[:dim] + x.shape[dim + 1:] == g.shape[:dim] + g.shape[dim + 1:]:
        return _grad_select(x, vec, g, dim), None
    shape = idx.shape + (n,)
    positions = idx._wrap(idx._arange_node(n, idx.dtype))
    positions = _p(Op.EXPAND, _p(Op.RESHAPE, positions, arg=(1,) * len(idx.shape) + (n,)), arg=shape)
    hit = _p(Op.CMPEQ, _p(Op.EXPAND, _p(Op.RESHAPE, idx, arg=idx.shape + (1,)), arg=shape), positions)
    spread = _where(hit, _p(Op.EXPAND, _p(Op.RESHAPE, g, arg=g.shape + (1,)), arg=shape), g._const(0, shape))
    summed = _p(Op.SUM, spread, arg=(dim,))  # shape: idx.shape with dim -> 1, then n
    order = tuple(range(dim)) + (len(shape) - 1,) + tuple(range(dim + 1, len(shape) - 1)) + (dim,)
    placed = _p(Op.RESHAPE, _p(Op.PERMUTE, summed, arg=order), arg=idx.shape[:dim] + (n,) + idx.shape[dim + 1:])
    pads = tuple((0, xs - ps) for xs, ps in zip(x.shape, placed.shape))
    return (_p(Op.PAD, placed, arg=pads) if any(p for _, p in pads) else placed), None


LN2 = math.log(2)
Rule = Callable[[Context, Any], tuple[Any, ...]]

# primitive op -> gradient of each operand, given the output gradient g (None: no gradient flows there)
GRADIENTS: dict[Op, Rule] = {
    Op.NEG: lambda ctx, g: (_p(Op.NEG, g),),
    Op.EXP2: lambda ctx, g: (_mul_const(_p(Op.MUL, g, _p(Op.EXP2, ctx.srcs[0])), LN2),),
    Op.LOG2: lambda ctx, g: (_mul_const(_p(Op.MUL, g, _p(Op.RECIP, ctx.srcs[0])), 1 / LN2),),
    Op.SIN: lambda ctx, g: (_p(Op.MUL, g, _p(Op.SIN, _p(Op.ADD, _p(Op.NEG, ctx.srcs[0]), g._const(math.pi / 2)))),),
    Op.SQRT: lambda ctx, g: (_mul_const(_p(Op.MUL, g, _p(Op.RECIP, _p(Op.SQRT, ctx.srcs[0]))), 0.5),),
    Op.RECIP: lambda ctx, g: (_p(Op.NEG, _p(Op.MUL, g, _p(Op.MUL, *[_p(Op.RECIP, ctx.srcs[0])] * 2))),),
    Op.CAST: lambda ctx, g: (_p(Op.CAST, g, arg=ctx.srcs[0].dtype) if ctx.srcs[0].dtype.is_floating_point else None,),
    Op.ADD: lambda ctx, g: (g, g),
    Op.MUL: lambda ctx, g: (_p(Op.MUL, g, ctx.srcs[1]), _p(Op.MUL, g, ctx.srcs[0])),
    Op.MAX: _grad_max,
    Op.CMPLT: lambda ctx, g: (None, None),
    Op.CMPEQ: lambda ctx, g: (None, None),
    Op.IDIV: lambda ctx, g: (None, None),
    Op.MOD: _grad_mod,
    Op.MULADD: lambda ctx, g: (_p(Op.MUL, g, ctx.srcs[1]), _p(Op.MUL, g, ctx.srcs[0]), g),
    Op.WHERE: lambda ctx, g: (None, _where(ctx.srcs[0], g, _zeros(g)), _where(ctx.srcs[0], _zeros(g), g)),
    Op.SUM: lambda ctx, g: (_p(Op.EXPAND, g, arg=ctx.srcs[0].shape),),
    Op.REDUCE_MAX: _grad_reduce_max,
    Op.RESHAPE: lambda ctx, g: (_p(Op.RESHAPE, g, arg=ctx.srcs[0].shape),),
    Op.PERMUTE: _grad_permute,
    Op.EXPAND: _grad_expand,
    Op.PAD: lambda ctx, g: (_p(Op.SHRINK, g, arg=tuple((b, b + s) for (b, _), s in zip(ctx.arg, ctx.srcs[0].shape))),),
    Op.SHRINK: lambda ctx, g: (_p(Op.PAD, g, arg=tuple((b, s - e) for (b, e), s in zip(ctx.arg, ctx.srcs[0].shape))),),
    Op.FLIP: lambda ctx, g: (_p(Op.FLIP, g, arg=ctx.arg),),
    Op.STRIDE: _grad_stride,
    Op.UNFOLD: _grad_unfold,
    Op.MATMUL: lambda ctx, g: (_p(Op.MATMUL, g, _swap_last(ctx.srcs[1])), _p(Op.MATMUL, _swap_last(ctx.srcs[0]), g)),
    Op.GATHER: _grad_gather,
    Op.COPY: lambda ctx, g: (_p(Op.COPY, g, arg=ctx.srcs[0].device),),
}


def _key(t: Value) -> int:
    """Tape identity: a leaf is its tensor object; a computed value is the op that made it (shared by the temporary
    an in-place op produced and the tensor it rebound, and by snapshots of an operand taken before a rebinding)."""
    return id(t) if t._ctx is None else id(t._ctx)


def _snapshot(t: Value, node: Node, ctx: Context | None, requires_grad: bool) -> Value:
    """`t` as it was when an op read it: its old node, on the tape where it was then."""
    s = t._wrap(node)
    s.requires_grad = requires_grad
    if requires_grad:  # a rebound leaf: the old value passes its gradient on to the leaf unchanged
        s._ctx = ctx if ctx is not None else Context(Op.RESHAPE, (t,), t.shape, node)
    return s


def operands(ctx: Context) -> tuple[Value, ...]:
    """The operands of `ctx` as they were read; the ones rebound since (in-place ops, realize) are replaced, once."""
    if all(s._node is n and s._ctx is c and s.requires_grad == r for s, (n, c, r) in zip(ctx.srcs, ctx.saved)):
        return ctx.srcs
    ctx.srcs = tuple(s if s._node is n and s._ctx is c and s.requires_grad == r else _snapshot(s, n, c, r)
                     for s, (n, c, r) in zip(ctx.srcs, ctx.saved))
    ctx.saved = tuple((s._node, s._ctx, s.requires_grad) for s in ctx.srcs)
    return ctx.srcs


def backprop(roots: list[Value], root_grads: list[Value]) -> dict[int, tuple[Value, Value]]:
    """Propagate gradients from roots through the tape; returns id(tensor) -> (tensor, its gradient) for every
    tensor object met on the way (leaves, roots and the recorded operands)."""
    order: list[Value] = []
    seen: set[int] = set()
    met: list[Value] = []
    stack: list[tuple[Value, bool]] = [(r, False) for r in roots]
    while stack:  # iterative DFS so deep graphs (long RNN unrolls) do not hit Python's recursion limit
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        met.append(t)
        if _key(t) in seen:
            continue
        seen.add(_key(t))
        stack.append((t, True))
        if t._ctx is not None:
            stack.extend((s, False) for s in operands(t._ctx) if s.requires_grad and _key(s) not in seen)
    grads: dict[int, Value] = {}
    for r, g in zip(roots, root_grads):
        k = _key(r)
        grads[k] = _p(Op.ADD, grads[k], g) if k in grads else g
    for t in reversed(order):
        if t._ctx is None or _key(t) not in grads:
            continue
        g = grads[_key(t)]
        for src, sg in zip(t._ctx.srcs, gradient_rule(t._ctx.op)(t._ctx, g)):
            if sg is None or not src.requires_grad:
                continue
            k = _key(src)
            grads[k] = _p(Op.ADD, grads[k], sg) if k in grads else sg
    return {id(t): (t, grads[_key(t)]) for t in met if _key(t) in grads}
