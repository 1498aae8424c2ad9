"""The values of one loop body: index arithmetic flows from an output element down to every buffer read, through
movement ops (views), padding (guarded loads) and fused elementwise ops, each (node, index) computed once."""
from __future__ import annotations

from ..dtype import DType, bool_, float32, int64
from ..graph import ELEMENTWISE, Node, Op, prod
from . import ir
from .symbolic import Cond, Index, const

Idx = tuple[Index, ...]


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
    out, rest = [], flat
    for n in reversed(shape):  # divide step by step: (i*288 + j) // 288 // 56 simplifies where // 16128 cannot
        out.append(const(0) if n == 1 else rest % n)
        rest = rest if n == 1 else rest // n
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
    if n.op is Op.UNFOLD:  # window j, tap k of dim d reads element j * step + k
        d, _, step = n.arg
        return idx[:d] + (idx[d] * step + idx[-1],) + idx[d + 1:-1], cond
    return tuple(i * st for i, st in zip(idx, n.arg)), cond  # STRIDE


class Lowerer:
    """Builds the statements of one loop body, computing each (node, index) once; shared by a kernel's bodies."""

    def __init__(self, inputs: dict[int, str], slots: dict[int, int]):
        self.inputs, self.slots = inputs, slots
        self.stmts: list[ir.Stmt] = []
        self.memo: dict[tuple, ir.Value] = {}
        self.rows: dict[int, ir.Value] = {}  # a row kernel's reductions, computed before the loops that read them
        self.stored: set[int] = set()  # nodes a row kernel's earlier pass stored into `out` at the index they take
        self.count = 0
        self.uses_error_flag = False
        self.gathers: list[tuple[int, int]] = []

    def body(self, n: Node, idx: Idx) -> tuple[list[ir.Stmt], ir.Value]:
        """The statements computing `n` at `idx` (a fresh body: values are not shared with other bodies)."""
        self.stmts, self.memo = [], {}
        v = self.value(n, idx, Cond())
        return self.stmts, v

    def facts(self, n: Node, idx: Idx) -> list[tuple[Index, int, int]]:
        """Every padding fact (`lo <= e < hi`) that computing `n` at `idx` tests, without keeping the statements."""
        state = self.count, self.uses_error_flag, len(self.gathers)
        stmts, v = self.body(n, idx)
        self.count, self.uses_error_flag = state[0], state[1]
        del self.gathers[state[2]:]
        found: list[tuple[Index, int, int]] = []
        stack = [s.value for s in stmts if isinstance(s, ir.Let)] + [v]
        while stack:
            x = stack.pop()
            if isinstance(x, (ir.Load, ir.Valid, ir.GatherLoad)):
                found.extend(r for r in x.cond.ranges if r not in found)
            if isinstance(x, ir.Apply):
                stack.extend(x.srcs)
            elif isinstance(x, ir.GatherLoad):
                stack.append(x.position)
        return found

    def reads(self, n: Node, idx: Idx, target: Node) -> set[tuple[Idx, Cond]]:
        """The (index, condition) pairs at which computing `n` at `idx` reads `target`, keeping no statements."""
        state = self.count, self.uses_error_flag, len(self.gathers)
        self.body(n, idx)
        self.count, self.uses_error_flag = state[0], state[1]
        del self.gathers[state[2]:]
        return {(k[1], k[2]) for k in self.memo if k[0] == id(target)}

    def let(self, value: ir.Value) -> ir.Value:
        if isinstance(value, (ir.Ref, ir.Const)):
            return value
        name = f"v{self.count}"
        self.count += 1
        self.stmts.append(ir.Let(name, value))
        return ir.Ref(name, dtype_of(value))

    def value(self, n: Node, idx: Idx, cond: Cond) -> ir.Value:
        key = (id(n), idx, cond)
        if key not in self.memo:
            self.memo[key] = self._value(n, idx, cond)
        return self.memo[key]

    def _value(self, n: Node, idx: Idx, cond: Cond) -> ir.Value:
        if cond.never:
            return ir.Const(0, n.dtype)
        if id(n) in self.rows:  # the schedule checked that every read is at the row being computed
            return self.rows[id(n)]
        if id(n) in self.stored:
            return self.let(ir.Load("out", linearize(idx, n.shape), cond, n.dtype))
        if id(n) in self.inputs:
            return self.let(ir.Load(self.inputs[id(n)], linearize(idx, n.shape), cond, n.dtype))
        if n.op is Op.CONST:
            return self.let(ir.Arg(self.slots[id(n)], n.dtype))
        if n.op is Op.RAND:
            slot = self.slots[id(n)]
            return self.let(ir.Rand(ir.Arg(slot, int64), ir.Arg(slot + 1, int64), linearize(idx, n.shape)))
        if n.op in (Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.SHRINK, Op.FLIP, Op.STRIDE, Op.UNFOLD):
            return self.value(n.srcs[0], *_move(n, idx, cond))
        if n.op is Op.PAD:
            inner_idx, inner_cond = _move(n, idx, cond)
            v = self.value(n.srcs[0], inner_idx, inner_cond)
            if inner_cond == cond or _is_zero(v) or _is_guarded_load(v, self.stmts):
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
            return self.let(_fold(n.op, srcs, n.dtype))
        raise NotImplementedError(f"cannot inline {n.op.name} into a kernel")


def _is_zero(v: ir.Value) -> bool:
    return isinstance(v, ir.Const) and v.value == 0


def _fold(op: Op, srcs: tuple[ir.Value, ...], dtype: DType) -> ir.Value:
    """The op, or its result where padding made an operand a known constant (the other pieces of a cat, a decided
    select): x + 0 is x (it keeps -0.0, as torch.cat does), a cast of a literal is a literal."""
    if op is Op.ADD:
        if _is_zero(srcs[0]):
            return srcs[1]
        if _is_zero(srcs[1]):
            return srcs[0]
    if op is Op.WHERE and isinstance(srcs[0], ir.Const):
        return srcs[1] if srcs[0].value else srcs[2]
    if op is Op.CAST and isinstance(srcs[0], ir.Const):
        v = srcs[0].value
        return ir.Const(float(v) if dtype.is_floating_point else bool(v) if dtype == bool_ else int(v), dtype)
    return ir.Apply(op, srcs, dtype)


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


def dtype_of(v: ir.Value):  # noqa: ANN202 - DType
    return float32 if isinstance(v, ir.Rand) else v.dtype if not isinstance(v, ir.Valid) else None
