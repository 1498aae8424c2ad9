"""Lower a scheduled kernel to the loop IR: index arithmetic flows from the output down to every buffer read."""
from __future__ import annotations

import sys

from ..dtype import float32, int64
from ..graph import ELEMENTWISE, REDUCE, Node, Op, prod
from ..schedule import MAX_FUSED_DEPTH, ScheduleItem
from . import ir
from .symbolic import Cond, Index, const, var

Idx = tuple[Index, ...]
PARALLEL_MIN_WORK = 1 << 18  # elements of work below which threads cost more than they save


def linearize(idx: Idx, shape: tuple[int, ...]) -> Index:
    """Row-major offset of a multi-index."""
    out, stride = const(0), 1
    for i, n in zip(reversed(idx), reversed(shape)):
        out = out + i * stride if n != 1 else out
        stride *= n
    return out


def delinearize(flat: Index, shape: tuple[int, ...]) -> Idx:
    """The multi-index of a row-major offset."""
    if 0 in shape:  # an empty tensor's code never runs
        return tuple(const(0) for _ in shape)
    out, stride = [], 1
    for n in reversed(shape):
        out.append(const(0) if n == 1 else (flat // stride) % n)
        stride *= n
    return tuple(reversed(out))


def _move(n: Node, idx: Idx, cond: Cond) -> tuple[Idx, Cond]:
    """Map an index into a movement node's output to an index into its source."""
    src = n.srcs[0].shape
    if n.op is Op.RESHAPE:
        return delinearize(linearize(idx, n.shape), src), cond
    if n.op is Op.PERMUTE:
        out: list[Index] = [const(0)] * len(src)
        for j, d in enumerate(n.arg):
            out[d] = idx[j]
        return tuple(out), cond
    if n.op is Op.EXPAND:
        return tuple(const(0) if s == 1 else i for i, s in zip(idx, src)), cond
    if n.op is Op.PAD:
        moved = tuple(i - b for i, (b, _) in zip(idx, n.arg))
        for m, s in zip(moved, src):
            cond = cond.add(m, 0, s)
        return moved, cond
    if n.op is Op.SHRINK:
        return tuple(i + b for i, (b, _) in zip(idx, n.arg)), cond
    if n.op is Op.FLIP:
        return tuple((s - 1) - i if d in n.arg else i for d, (i, s) in enumerate(zip(idx, src))), cond
    return tuple(i * st for i, st in zip(idx, n.arg)), cond  # STRIDE


class _Lowerer:
    """Builds the statements of one kernel body, computing each (node, index) once."""

    def __init__(self, inputs: dict[int, str]):
        self.inputs = inputs
        self.stmts: list[ir.Stmt] = []
        self.memo: dict[tuple, ir.Value] = {}
        self.count = 0
        self.uses_error_flag = False
        self.args: list[bool | int | float] = []
        self.gathers: list[tuple[int, int]] = []

    def arg(self, value: bool | int | float, dtype) -> ir.Arg:  # noqa: ANN001 - DType
        """A launch argument slot holding `value` (as a float or an int, as the C side will read it)."""
        self.args.append(float(value) if dtype.is_floating_point else int(value))
        return ir.Arg(len(self.args) - 1, dtype)

    def let(self, value: ir.Value) -> ir.Value:
        if isinstance(value, ir.Ref):
            return value
        name = f"v{self.count}"
        self.count += 1
        self.stmts.append(ir.Let(name, value))
        return ir.Ref(name, _dtype_of(value))

    def value(self, n: Node, idx: Idx, cond: Cond) -> ir.Value:
        key = (id(n), idx, cond)
        if key not in self.memo:
            self.memo[key] = self._value(n, idx, cond)
        return self.memo[key]

    def _value(self, n: Node, idx: Idx, cond: Cond) -> ir.Value:
        if cond.never:
            return ir.Const(0, n.dtype)
        if id(n) in self.inputs:
            return self.let(ir.Load(self.inputs[id(n)], linearize(idx, n.shape), cond, n.dtype))
        if n.op is Op.CONST:
            return self.let(self.arg(n.arg, n.dtype))
        if n.op is Op.RAND:
            seed, offset = n.arg
            return self.let(ir.Rand(self.arg(seed, int64), self.arg(offset, int64), linearize(idx, n.shape)))
        if n.op in (Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.SHRINK, Op.FLIP, Op.STRIDE):
            return self.value(n.srcs[0], *_move(n, idx, cond))
        if n.op is Op.PAD:
            inner_idx, inner_cond = _move(n, idx, cond)
            v = self.value(n.srcs[0], inner_idx, inner_cond)
            if inner_cond == cond or _is_guarded_load(v, self.stmts):
                return v
            pad_only = Cond() if cond.never else _difference(inner_cond, cond)
            return self.let(ir.Apply(Op.WHERE, (ir.Valid(pad_only), v, ir.Const(0, n.dtype)), n.dtype))
        if n.op is Op.GATHER:
            src, index = n.srcs
            dim = n.arg
            strides = [prod(src.shape[d + 1:]) for d in range(len(src.shape))]
            base = const(0)
            for d, (i, st) in enumerate(zip(idx, strides)):
                if d != dim:
                    base = base + i * st
            self.uses_error_flag = True
            self.gathers.append((dim, src.shape[dim]))
            pos = self.value(index, idx, cond)
            return self.let(ir.GatherLoad(self.inputs[id(src)], base, pos, strides[dim], src.shape[dim], cond, n.dtype,
                                          len(self.gathers)))
        if n.op in ELEMENTWISE:
            srcs = tuple([self.value(s, idx, cond) for s in n.srcs])  # a list, not a generator: no C recursion
            return self.let(ir.Apply(n.op, srcs, n.dtype))
        raise NotImplementedError(f"cannot inline {n.op.name} into a kernel")


def _difference(inner: Cond, outer: Cond) -> Cond:
    """The facts `inner` adds to `outer` (a PAD's own bounds)."""
    return Cond(tuple(r for r in inner.ranges if r not in outer.ranges))


def _is_guarded_load(v: ir.Value, stmts: list[ir.Stmt]) -> bool:
    """A Ref to a Load already reads 0 outside its condition, so a PAD over it needs no extra select."""
    if not isinstance(v, ir.Ref):
        return False
    for s in reversed(stmts):
        if isinstance(s, ir.Let) and s.name == v.name:
            return isinstance(s.value, ir.Load)
    return False


def _dtype_of(v: ir.Value):  # noqa: ANN202 - DType
    return float32 if isinstance(v, ir.Rand) else v.dtype if not isinstance(v, ir.Valid) else None


def lower(item: ScheduleItem, name: str) -> ir.Kernel:
    """The loop IR of a kernel item: loops over the output, inner loops for a reduction, one store per element."""
    out = item.out
    inputs = {id(n): f"in{i}" for i, n in enumerate(item.inputs)}
    params = [ir.Param("out", out.dtype, writable=True)] + [ir.Param(f"in{i}", n.dtype) for i, n in
                                                              enumerate(item.inputs)]
    low = _Lowerer(inputs)
    # fused chains are at most MAX_FUSED_DEPTH deep; each level costs a few Python frames while lowering
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 8 * MAX_FUSED_DEPTH + 1000))
    work = prod(out.srcs[0].shape) if out.op in REDUCE else prod(out.shape)
    parallel = work >= PARALLEL_MIN_WORK
    if out.op in REDUCE:
        src = out.srcs[0]
        axes = out.arg
        idx = tuple(var(f"r{d}", s) if d in axes else var(f"i{d}", s) for d, s in enumerate(src.shape))
        acc = ir.Ref("acc", out.dtype)
        value = low.value(src, idx, Cond())
        inner: list[ir.Stmt] = low.stmts + [ir.Accumulate(acc, out.op, value)]
        for d in reversed(axes):
            inner = [ir.Loop(f"r{d}", src.shape[d], inner, reduction=True)] if src.shape[d] != 1 else inner
        out_idx = tuple(const(0) if d in axes else idx[d] for d in range(len(src.shape)))
        body: list[ir.Stmt] = [ir.DeclareAcc(acc, out.op), *inner, ir.FinishAcc(acc, out.op),
                               ir.Store("out", linearize(out_idx, out.shape), acc)]
        loop_dims = [(d, s) for d, s in enumerate(src.shape) if d not in axes]
    else:
        idx = tuple(var(f"i{d}", s) for d, s in enumerate(out.shape))
        value = low.value(out, idx, Cond())
        body = low.stmts + [ir.Store("out", linearize(idx, out.shape), value)]
        loop_dims = list(enumerate(out.shape))
    for d, s in reversed(loop_dims):
        if s != 1:
            body = [ir.Loop(f"i{d}", s, body)]
    if parallel and body and isinstance(body[0], ir.Loop):
        body[0].parallel = True
    if low.uses_error_flag:
        params.append(ir.Param("err", float32, writable=True))
    return ir.Kernel(name, params, body, low.uses_error_flag, low.args, low.gathers)
