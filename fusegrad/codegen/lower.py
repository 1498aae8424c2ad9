"""Lower a scheduled kernel to the loop IR: index arithmetic flows from the output down to every buffer read."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from ..dtype import DType, bool_, float32, float64, int64, uint8
from ..graph import ELEMENTWISE, REDUCE, Node, Op, prod
from ..schedule import MAX_FUSED_DEPTH, ScheduleItem
from . import ir
from .symbolic import Cond, Index, Var, const, var

Idx = tuple[Index, ...]
PARALLEL_MIN_WORK = 1 << 17  # elements below which waking threads costs more than they save (2 cores: a batch-1 SGD
# update of 100K weights is faster on one thread, a GPT's 128K-element layer norms on two)


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


class _Lowerer:
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
        return ir.Ref(name, _dtype_of(value))

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


def _dtype_of(v: ir.Value):  # noqa: ANN202 - DType
    return float32 if isinstance(v, ir.Rand) else v.dtype if not isinstance(v, ir.Valid) else None


def _loop_root(out: Node, inputs: dict[int, str]) -> Node:
    """The node whose shape the loops run over: a reshape stores the same row-major order as its source, so loops
    over the source's dims write the same memory with no division or modulo to map the index (im2col, flatten)."""
    while out.op is Op.RESHAPE and id(out.srcs[0]) not in inputs and out.srcs[0].op not in REDUCE:
        out = out.srcs[0]
    return out


# ---- the structure of a kernel: what its code depends on, with constants as launch argument slots ----

def kernel_signature(item: ScheduleItem) -> tuple[tuple, list[Node]]:
    """(key, leaves): the kernel's structure as a hashable key (ops, args, shapes, dtypes, inputs by position), and
    its CONST and RAND nodes in a fixed order. Items with equal keys lower to the same code: only the leaves' values,
    the launch arguments, differ (`launch_args`)."""
    inputs = {id(n): i for i, n in enumerate(item.inputs)}
    number: dict[int, int] = {}
    key: list[tuple] = []
    leaves: list[Node] = []
    stack: list[tuple[Node, bool]] = [(item.out, False)]
    while stack:
        n, ready = stack.pop()
        if id(n) in number:
            continue
        if id(n) in inputs:
            number[id(n)] = len(key)
            key.append((inputs[id(n)], n.shape, n.dtype))
        elif not ready:
            stack.append((n, True))
            stack.extend((s, False) for s in reversed(n.srcs) if id(s) not in number)
        else:
            is_leaf = n.op is Op.CONST or n.op is Op.RAND
            if is_leaf:
                leaves.append(n)
            number[id(n)] = len(key)
            key.append((n.op, None if is_leaf else n.arg, n.shape, n.dtype, tuple([number[id(s)] for s in n.srcs])))
    return tuple(key), leaves


def _slots(leaves: list[Node]) -> dict[int, int]:
    """The first launch argument slot of each leaf: one per CONST, two (seed, offset) per RAND."""
    out, slot = {}, 0
    for n in leaves:
        out[id(n)] = slot
        slot += 2 if n.op is Op.RAND else 1
    return out


def launch_args(leaves: list[Node]) -> list[bool | int | float]:
    """The launch arguments of a kernel with these leaves, in slot order (floats for float constants, else ints)."""
    out: list[bool | int | float] = []
    for n in leaves:
        if n.op is Op.RAND:
            out += [int(n.arg[0]), int(n.arg[1])]
        else:
            out.append(float(n.arg) if n.dtype.is_floating_point else int(n.arg))
    return out


# ---- loop nests ----

@dataclass(frozen=True)
class Options:
    """What `lower` may build beyond one perfect loop nest with one store (which every renderer handles; GPU
    renderers map that nest onto threads). The C renderer takes both."""

    split_loops: bool = False  # cut loops where padding conditions change (several loops and stores per kernel)
    row_accumulators: bool = False  # reductions keeping the contiguous axis accumulate a row in an `ir.Local`


PORTABLE = Options()
CPU = Options(split_loops=True, row_accumulators=True)
MAX_PIECES = 32  # a loop cut into more pieces than this keeps its conditions (a cat of many tensors)
MAX_BODIES = 256  # bounds the code one kernel may grow into by cutting
PER_VALUE_CUT = 7  # a loop this short whose variable is tested together with an inner one is cut at every value


@dataclass(frozen=True)
class _Dim:
    axis: int
    size: int
    prefix: str  # "i": an output loop, "r": a reduction loop

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.axis}"


def _cuts(facts: list[tuple[Index, int, int]], name: str, size: int) -> list[int]:
    """Where, in [0, size), facts about loop variable `name` alone (lo <= c * name + k < hi) start or stop holding."""
    points: set[int] = set()
    for e, lo, hi in facts:
        if len(e.terms) != 1 or not isinstance(e.terms[0][0], Var) or e.terms[0][0].name != name:
            continue
        c, k = e.terms[0][1], e.const
        if c > 0:  # ceil((lo - k) / c), ceil((hi - k) / c)
            a, b = -((k - lo) // c), -((k - hi) // c)
        else:
            a, b = (k - hi) // -c + 1, (k - lo) // -c + 1
        points.update(p for p in (a, b) if 0 < p < size)
    return sorted(points)


def _pairs_with_inner(facts: list[tuple[Index, int, int]], name: str, inner: set[str]) -> bool:
    """Whether some fact tests loop variable `name` plus one inner loop's variable (a window's tap and position)."""
    for e, _, _ in facts:
        names = {t[0].name for t in e.terms if isinstance(t[0], Var)}
        if len(e.terms) == 2 and len(names) == 2 and name in names and names - {name} <= inner:
            return True
    return False


Leaf = Callable[[dict[int, Index], bool], list[ir.Stmt]]


class _Nest:
    """Builds loops over dims; with `split`, a loop is cut where its body's padding conditions change, and each piece
    is lowered with them decided (the bulk of a padded conv window or a cat then runs without tests)."""

    def __init__(self, low: _Lowerer, node: Node, split: bool):
        self.low, self.node, self.split = low, node, split
        self.bodies = 0

    def full(self, idx: dict[int, Index]) -> Idx:
        """The index of every axis of the node (size-1 axes are 0)."""
        return tuple(idx.get(d, const(0)) for d in range(len(self.node.shape)))

    def build(self, dims: list[_Dim], later: list[_Dim], idx: dict[int, Index], leaf: Leaf, reduction: bool,
              split: bool | None = None) -> list[ir.Stmt]:
        """Loops over `dims` (outermost first) around `leaf(idx, split)`; `later` are the dims the leaf loops over.
        `split` is False once no condition is left to decide in this part of the nest."""
        split = self.split if split is None else split
        if not dims:
            self.bodies += 1
            return leaf(idx, split)
        dim, rest = dims[0], dims[1:]
        cuts, split = self._cuts(dims, later, idx) if split and self.bodies < MAX_BODIES else ([], False)
        out: list[ir.Stmt] = []
        for a, b in zip([0, *cuts], [*cuts, dim.size]):
            name = dim.name if not cuts else f"{dim.name}_{a}"
            inner_idx = {**idx, dim.axis: const(a) if b - a == 1 else var(name, b - a) + a}
            body = self.build(rest, later, inner_idx, leaf, reduction, split)
            out += body if b - a == 1 else [ir.Loop(name, b - a, body, reduction=reduction)]
        return out

    def _cuts(self, dims: list[_Dim], later: list[_Dim], idx: dict[int, Index]) -> tuple[list[int], bool]:
        """Where to cut the loop over dims[0], and whether conditions on other loops remain."""
        trial = {**idx, **{d.axis: var(d.name, d.size) for d in dims + later}}
        facts = self.low.facts(self.node, self.full(trial))
        cuts = _cuts(facts, dims[0].name, dims[0].size)
        if dims[0].size <= PER_VALUE_CUT and _pairs_with_inner(facts, dims[0].name, {d.name for d in dims[1:] + later}):
            cuts = list(range(1, dims[0].size))  # one piece per tap: the inner loop's test then has one variable
        others = any(len(e.terms) != 1 or getattr(e.terms[0][0], "name", None) != dims[0].name for e, _, _ in facts)
        return (cuts if len(cuts) < MAX_PIECES else []), others


def _acc_dtype(op: Op, dtype: DType) -> DType:
    """What a row accumulator holds (as `ir.DeclareAcc` in C: float sums in double, float16 max in float)."""
    if dtype.is_floating_point and dtype != float64:
        return float64 if op is Op.SUM else float32
    return dtype


def _identity(op: Op, dtype: DType) -> ir.Const:
    if op is Op.SUM or dtype == bool_ or dtype == uint8:
        return ir.Const(0, dtype)
    if dtype.is_floating_point:
        return ir.Const(float("-inf"), dtype)
    return ir.Const(-(2 ** (8 * dtype.itemsize - 1)), dtype)


def _cast(v: ir.Value, dtype: DType) -> ir.Value:
    return v if _dtype_of(v) == dtype else ir.Apply(Op.CAST, (v,), dtype)


ROW_CHUNK = 1024  # accumulators per row piece (8 KiB of doubles on the stack)


def _row_reduction(low: _Lowerer, out: Node, parallel: bool) -> list[ir.Stmt] | None:
    """A reduction whose last (contiguous) axis is kept, as loops that add whole rows into a local array of
    accumulators: the inner loop walks memory in order and vectorizes (sum over axis 0, bias gradients).
    None where this does not apply."""
    src = out.srcs[0]
    shape, axes = src.shape, set(out.arg)
    kept = [d for d, s in enumerate(shape) if s > 1 and d not in axes]
    reduced = [d for d, s in enumerate(shape) if s > 1 and d in axes]
    if 0 in shape or not kept or not reduced or kept[-1] < reduced[-1] or shape[kept[-1]] < 8:
        return None
    row, outer = kept[-1], kept[:-1]
    n = shape[row]
    pieces = -(-n // ROW_CHUNK)
    if parallel and prod(tuple(shape[d] for d in outer)) < 2 and n >= 64:  # at least two pieces: both threads work
        pieces = max(pieces, 2)
    width = n // pieces
    acc_dtype = _acc_dtype(out.op, out.dtype)
    combine = Op.ADD if out.op is Op.SUM else Op.MAX

    def piece(base: Index, size: int, acc: str, idx: dict[int, Index]) -> list[ir.Stmt]:
        j = var("j", size)
        row_idx = {**idx, row: base + j}
        full = tuple(row_idx.get(d, const(0)) if d not in axes else var(f"r{d}", shape[d]) for d in range(len(shape)))
        stmts, v = low.body(src, full)
        acc_j = ir.Load(acc, j, Cond(), acc_dtype)
        add: list[ir.Stmt] = [*stmts, ir.Store(acc, j, ir.Apply(combine, (acc_j, _cast(v, acc_dtype)), acc_dtype))]
        loops: list[ir.Stmt] = [ir.Loop("j", size, add)]
        for d in reversed(reduced):
            loops = [ir.Loop(f"r{d}", shape[d], loops, reduction=True)]
        out_idx = tuple(const(0) if d in axes else row_idx.get(d, const(0)) for d in range(len(shape)))
        return [ir.Local(acc, acc_dtype, size), ir.Loop("j", size, [ir.Store(acc, j, _identity(out.op, acc_dtype))]),
                *loops, ir.Loop("j", size, [ir.Store("out", linearize(out_idx, out.shape), _cast(acc_j, out.dtype))])]

    def chunks(idx: dict[int, Index]) -> list[ir.Stmt]:
        full, rest = divmod(n, width)
        stmts: list[ir.Stmt] = []
        if full == 1:
            stmts += piece(const(0), width, "acc", idx)
        elif full > 1:
            stmts.append(ir.Loop("c", full, piece(var("c", full) * width, width, "acc", idx)))
        if rest:
            stmts += piece(const(full * width), rest, "acc_rest", idx)
        return stmts

    body = chunks({d: var(f"i{d}", shape[d]) for d in outer})
    for d in reversed(outer):
        body = [ir.Loop(f"i{d}", shape[d], body)]
    return body


def _kept_operand(low: _Lowerer, root: Node, rows: list[Node], full: Idx) -> Node | None:
    """The last row reduction's operand, if the output pass reads it only at the element it writes: the reduction's
    pass then stores it into `out` and the output pass reads it back instead of recomputing it (softmax's exps)."""
    operand = rows[-1].srcs[0]
    if root.op in REDUCE or operand.shape != root.shape or operand.dtype != root.dtype or operand.op not in ELEMENTWISE:
        return None
    low.rows = {id(r): ir.Const(0, r.dtype) for r in rows}  # stand-ins: the reductions are not computed yet
    found = low.reads(root, full, operand)
    low.rows = {}
    return operand if found == {(full, Cond())} else None


def _row_kernel(low: _Lowerer, out: Node, rows: list[Node]) -> list[ir.Stmt]:
    """Loops over the rows; in each, one pass per reduction of `rows` into an accumulator, rounded to the
    reduction's dtype as its buffer would be, then the pass computing the row's outputs (or its own reduction)."""
    root = out.srcs[0] if out.op in REDUCE else out
    axes = set(rows[0].arg)
    nest = _Nest(low, root, False)
    outer = [_Dim(d, s, "i") for d, s in enumerate(root.shape) if s != 1 and d not in axes]
    inner = [_Dim(d, s, "r") for d, s in enumerate(root.shape) if s != 1 and d in axes]

    def passes(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
        stmts: list[ir.Stmt] = []
        keep = _kept_operand(low, root, rows, nest.full({**idx, **{d.axis: var(d.name, d.size) for d in inner}}))
        for k, r in enumerate([*rows, out] if out.op in REDUCE else rows):
            acc = ir.Ref(f"row{k}", r.dtype)

            def accumulate(idx: dict[int, Index], split: bool, r: Node = r, acc: ir.Ref = acc) -> list[ir.Stmt]:
                body, v = low.body(r.srcs[0], nest.full(idx))
                kept = [ir.Store("out", linearize(nest.full(idx), root.shape), v)] if r.srcs[0] is keep else []
                return [*body, ir.Accumulate(acc, r.op, v), *kept]

            stmts += [ir.DeclareAcc(acc, r.op), *nest.build(inner, [], idx, accumulate, True, False),
                      ir.FinishAcc(acc, r.op)]
            if r is out:
                at = tuple(const(0) if d in axes else i for d, i in enumerate(nest.full(idx)))
                return [*stmts, ir.Store("out", linearize(at, out.shape), acc)]
            low.rows[id(r)] = ir.Ref(f"row{k}_v", r.dtype)
            stmts.append(ir.Let(f"row{k}_v", ir.Apply(Op.CAST, (acc,), r.dtype)))

        def store(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
            body, v = low.body(root, nest.full(idx))
            return [*body, ir.Store("out", linearize(nest.full(idx), root.shape), v)]

        if keep is not None:
            low.stored.add(id(keep))
        return stmts + nest.build(inner, [], idx, store, False, False)

    return nest.build(outer, inner, {}, passes, False, False)


def lower(item: ScheduleItem, name: str, options: Options = PORTABLE) -> ir.Kernel:
    """The loop IR of a kernel item: loops over the output, inner loops for a reduction, a store per element.

    Constants and random seeds become launch argument slots in `kernel_signature` order, so the code depends only
    on the kernel's structure. `options` (e.g. `CPU`) allows nests that only some renderers print."""
    out = item.out
    inputs = {id(n): f"in{i}" for i, n in enumerate(item.inputs)}
    params = [ir.Param("out", out.dtype, writable=True)] + [ir.Param(f"in{i}", n.dtype) for i, n in
                                                              enumerate(item.inputs)]
    _, leaves = kernel_signature(item)
    low = _Lowerer(inputs, _slots(leaves))
    # fused chains are at most MAX_FUSED_DEPTH deep; each level costs a few Python frames while lowering
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 8 * MAX_FUSED_DEPTH + 1000))
    reduce = out.op in REDUCE
    root = out.srcs[0] if reduce else _loop_root(out, inputs)
    parallel = prod(root.shape) >= PARALLEL_MIN_WORK
    nest = _Nest(low, root, options.split_loops)
    body = _row_reduction(low, out, parallel) if reduce and options.row_accumulators and not item.rows else None
    if item.rows:
        body = _row_kernel(low, out, item.rows)
    elif body is None and reduce:
        axes = set(out.arg)
        dims = [_Dim(d, s, "i") for d, s in enumerate(root.shape) if s != 1 and d not in axes]
        reduced = [_Dim(d, s, "r") for d, s in enumerate(root.shape) if s != 1 and d in axes]
        count = iter(range(1 << 30))

        def reduction(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
            k = next(count)  # one accumulator per body: cut loops may put several in one C block
            acc = ir.Ref("acc" if k == 0 else f"acc{k}", out.dtype)

            def accumulate(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
                stmts, v = low.body(root, nest.full(idx))
                return [*stmts, ir.Accumulate(acc, out.op, v)]

            inner = nest.build(reduced, [], idx, accumulate, True, split)
            out_idx = tuple(const(0) if d in axes else i for d, i in enumerate(nest.full(idx)))
            return [ir.DeclareAcc(acc, out.op), *inner, ir.FinishAcc(acc, out.op),
                    ir.Store("out", linearize(out_idx, out.shape), acc)]

        body = nest.build(dims, reduced, {}, reduction, reduction=False)
    elif body is None:
        def store(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
            full = nest.full(idx)
            stmts, v = low.body(root, full)
            return [*stmts, ir.Store("out", linearize(full, root.shape), v)]

        body = nest.build([_Dim(d, s, "i") for d, s in enumerate(root.shape) if s != 1], [], {}, store,
                          reduction=False)
    for s in body:
        if isinstance(s, ir.Loop) and not s.reduction:
            s.parallel = parallel
    if low.uses_error_flag:
        params.append(ir.Param("err", float32, writable=True))
    return ir.Kernel(name, params, body, low.uses_error_flag, launch_args(leaves), low.gathers)
