"""Loop nests of a kernel: loops cut where padding conditions change, and the shapes of reductions (a row of
accumulators, pieces in parallel, row kernels that compute their rows' reductions before their elements)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..dtype import DType, bool_, float32, float64, uint8
from ..graph import ELEMENTWISE, REDUCE, Node, Op, prod
from . import ir
from .symbolic import Cond, Index, Var, const, var
from .values import Idx, Lowerer, dtype_of, linearize

PARALLEL_MIN_WORK = 1 << 17  # elements below which waking threads costs more than they save (2 cores: a batch-1 SGD
# update of 100K weights is faster on one thread, a GPT's 128K-element layer norms on two)
MAX_PIECES = 32  # a loop cut into more pieces than this keeps its conditions (a cat of many tensors)
MAX_BODIES = 256  # bounds the code one kernel may grow into by cutting
PER_VALUE_CUT = 7  # a loop this short whose variable is tested together with an inner one is cut at every value


@dataclass(frozen=True)
class Dim:
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


class Nest:
    """Builds loops over dims; with `split`, a loop is cut where its body's padding conditions change, and each piece
    is lowered with them decided (the bulk of a padded conv window or a cat then runs without tests)."""

    def __init__(self, low: Lowerer, node: Node, split: bool):
        self.low, self.node, self.split = low, node, split
        self.bodies = 0

    def full(self, idx: dict[int, Index]) -> Idx:
        """The index of every axis of the node (size-1 axes are 0)."""
        return tuple(idx.get(d, const(0)) for d in range(len(self.node.shape)))

    def build(self, dims: list[Dim], later: list[Dim], idx: dict[int, Index], leaf: Leaf, reduction: bool,
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

    def _cuts(self, dims: list[Dim], later: list[Dim], idx: dict[int, Index]) -> tuple[list[int], bool]:
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
    return v if dtype_of(v) == dtype else ir.Apply(Op.CAST, (v,), dtype)


ROW_CHUNK = 1024  # accumulators per row piece (8 KiB of doubles on the stack)


def row_reduction(low: Lowerer, out: Node, parallel: bool) -> list[ir.Stmt] | None:
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
    if parallel and not outer:
        split = _split_rows(low, out, row, reduced)
        if split is not None:
            return split
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


SPLIT_PIECES = 16  # a reduction to one value adds this many parts in parallel (fixed: the same sum on any machine)
SPLIT_ROWS_BYTES = 1 << 18  # at most this many bytes of partial rows (on the calling thread's stack)
SPLIT_ROWS_AT_ONCE = 4  # rows added to a partial row per pass over it: a quarter of its loads and stores


def _split_rows(low: Lowerer, out: Node, row: int, reduced: list[int]) -> list[ir.Stmt] | None:
    """One row kept (a sum over axis 0 of a matrix): pieces of the first reduced dim each add their rows into their
    own full-width partial row, in parallel, and the partial rows are combined in order. Each piece reads whole
    rows in memory order (cutting the row instead between threads reads half of every 4 KiB page, which the
    prefetcher follows worse). None where no piece count divides the dim within SPLIT_ROWS_BYTES."""
    src = out.srcs[0]
    shape, n, first = src.shape, src.shape[row], reduced[0]
    acc_dtype = _acc_dtype(out.op, out.dtype)
    pieces = next((p for p in range(SPLIT_PIECES, 1, -1)
                   if shape[first] % p == 0 and p * n * acc_dtype.itemsize <= SPLIT_ROWS_BYTES), None)
    if pieces is None:
        return None
    width, c, j = shape[first] // pieces, var("c", pieces), var("j", n)
    step = SPLIT_ROWS_AT_ONCE if width % SPLIT_ROWS_AT_ONCE == 0 else 1
    combine = Op.ADD if out.op is Op.SUM else Op.MAX

    def row_value(k: int) -> tuple[list[ir.Stmt], ir.Value]:
        """The k-th of the `step` rows the loop over `first` takes per iteration."""
        def at(d: int) -> Index:
            if d == first:
                return c * width + var(f"r{d}", width // step) * step + k
            return j if d == row else var(f"r{d}", shape[d]) if d in reduced else const(0)

        stmts, v = low.body(src, tuple(at(d) for d in range(len(shape))))
        return stmts, _cast(v, acc_dtype)

    rows = [row_value(k) for k in range(step)]
    while len(rows) > 1:  # pairwise: ((r0 + r1) + (r2 + r3))
        rows = [(a[0] + b[0], ir.Apply(combine, (a[1], b[1]), acc_dtype)) for a, b in zip(rows[::2], rows[1::2])]
    stmts, v = rows[0]
    mine = ir.Load("parts", c * n + j, Cond(), acc_dtype)
    loops: list[ir.Stmt] = [ir.Loop("j", n, [*stmts, ir.Store("parts", c * n + j,
                                                              ir.Apply(combine, (mine, v), acc_dtype))])]
    for d in reversed(reduced):
        loops = [ir.Loop(f"r{d}", width // step if d == first else shape[d], loops, reduction=True)]
    total: ir.Value = ir.Load("parts", j, Cond(), acc_dtype)
    for p in range(1, pieces):
        total = ir.Apply(combine, (total, ir.Load("parts", const(p * n) + j, Cond(), acc_dtype)), acc_dtype)
    out_idx = tuple(j if d == row else const(0) for d in range(len(shape)))
    return [ir.Local("parts", acc_dtype, pieces * n),
            ir.Loop("c", pieces, [ir.Loop("j", n, [ir.Store("parts", c * n + j, _identity(out.op, acc_dtype))]),
                                  *loops]),
            ir.Loop("j", n, [ir.Store("out", linearize(out_idx, out.shape), _cast(total, out.dtype))])]


def split_reduction(low: Lowerer, out: Node) -> list[ir.Stmt] | None:
    """A large reduction to a single value, as equal pieces of its outermost dim reduced in parallel into a local
    array of partial results, then combined in order. None where this does not apply."""
    src = out.srcs[0]
    shape = src.shape
    dims = [d for d, n in enumerate(shape) if n != 1]
    if prod(out.shape) != 1 or prod(shape) < PARALLEL_MIN_WORK or not dims:
        return None
    first = dims[0]
    pieces = next((p for p in range(SPLIT_PIECES, 1, -1) if shape[first] % p == 0), None)
    if pieces is None:
        return None
    width = shape[first] // pieces
    c = var("c", pieces)
    idx = {first: c * width + var(f"r{first}", width), **{d: var(f"r{d}", shape[d]) for d in dims[1:]}}
    stmts, v = low.body(src, tuple(idx.get(d, const(0)) for d in range(len(shape))))
    part, total = ir.Ref("acc", out.dtype), ir.Ref("total", out.dtype)
    loops: list[ir.Stmt] = [*stmts, ir.Accumulate(part, out.op, v)]
    for d in reversed(dims):
        loops = [ir.Loop(f"r{d}", width if d == first else shape[d], loops, reduction=True)]
    parts = ir.Load("parts", c, Cond(), _acc_dtype(out.op, out.dtype))
    return [ir.Local("parts", parts.dtype, pieces),
            ir.Loop("c", pieces, [ir.DeclareAcc(part, out.op), *loops, ir.FinishAcc(part, out.op),
                                  ir.Store("parts", c, part)]),
            ir.DeclareAcc(total, out.op),
            ir.Loop("c", pieces, [ir.Accumulate(total, out.op, parts)], reduction=True),
            ir.FinishAcc(total, out.op), ir.Store("out", const(0), total)]


def _kept_operand(low: Lowerer, root: Node, rows: list[Node], full: Idx) -> Node | None:
    """The last row reduction's operand, if the output pass reads it only at the element it writes: the reduction's
    pass then stores it into `out` and the output pass reads it back instead of recomputing it (softmax's exps)."""
    operand = rows[-1].srcs[0]
    if root.op in REDUCE or operand.shape != root.shape or operand.dtype != root.dtype or operand.op not in ELEMENTWISE:
        return None
    low.rows = {id(r): ir.Const(0, r.dtype) for r in rows}  # stand-ins: the reductions are not computed yet
    found = low.reads(root, full, operand)
    low.rows = {}
    return operand if found == {(full, Cond())} else None


def row_kernel(low: Lowerer, out: Node, rows: list[Node]) -> list[ir.Stmt]:
    """Loops over the rows; in each, one pass per reduction of `rows` into an accumulator, rounded to the
    reduction's dtype as its buffer would be, then the pass computing the row's outputs (or its own reduction)."""
    root = out.srcs[0] if out.op in REDUCE else out
    axes = set(rows[0].arg)
    nest = Nest(low, root, False)
    outer = [Dim(d, s, "i") for d, s in enumerate(root.shape) if s != 1 and d not in axes]
    inner = [Dim(d, s, "r") for d, s in enumerate(root.shape) if s != 1 and d in axes]

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
