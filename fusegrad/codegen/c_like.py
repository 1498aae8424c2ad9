"""Print loop IR in the C-like GPU languages (OpenCL C, CUDA C++): one printer, a `Dialect` table per language.

Values and statements print the same way in both; what differs (type names, how float16 is loaded and stored, math
function names, how a gather writes the error flag) is data in the dialect. `thread_plan` decides how a kernel's
output loops map onto threads; the renderers in `opencl.py` and `cuda.py` wrap the printed body accordingly.

float16 never lives in a register: it is loaded into a float, every float16 result is rounded to half precision
(`fg_rh`), and it is stored as half bits. So the arithmetic equals the C renderer's `_Float16` and NumPy's.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..dtype import DType, bool_, float16, float32, float64, int32, int64
from ..graph import Op
from . import ir
from .symbolic import Cond, DivMod, Index

INT32_SAFE = 1 << 30  # index arithmetic (and the grid-stride step past the end) stays below 2^31 in int32


@dataclass(frozen=True)
class Dialect:
    """What one GPU language calls things."""

    local_types: dict[DType, str]  # registers (float16 computes in float)
    buffer_types: dict[DType, str]  # element types of buffers (bool as a byte, float16 as half bits)
    unsigned: dict[DType, str]  # unsigned twins of the signed integers, for wrapping negation
    math: dict[tuple[str, DType], str]  # (op name, operand dtype) -> function name
    min_values: dict[DType, str]
    int64_suffix: str
    load_half: str  # format with {buf} {i}
    store_half: str  # format with {buf} {i} {v}
    error_write: str  # format with {flag}: an expression that sets the error flag
    index_types: tuple[str, str]  # (32-bit, 64-bit) signed integer type names
    rand_types: tuple[str, str]  # (uint32, uint64) type names
    fp64: bool = True  # float64 exists (else float arguments and accumulators are float)


def math_table(float_suffix: str) -> dict[tuple[str, DType], str]:
    """C math names per operand dtype: `exp2f` for float (and float16), `exp2` for double."""
    names = ("exp2", "log2", "sin", "sqrt", "fmod", "fma")
    out = {}
    for name in names:
        out[(name, float16)] = out[(name, float32)] = name + float_suffix
        out[(name, float64)] = name
    return out


def dtype_of(v: ir.Value) -> DType:
    """The dtype a value computes in the IR."""
    if isinstance(v, ir.Rand):
        return float32
    if isinstance(v, ir.Valid):
        return bool_
    return v.dtype


# ---- index width: int32 where every index expression provably fits ----

def _index_magnitude(e: Index) -> int:
    """An upper bound of |partial sums| while evaluating `e` term by term."""
    total = abs(e.const)
    for atom, c in e.terms:
        lo, hi = atom.bounds
        total += max(abs(lo * c), abs(hi * c))
        if isinstance(atom, DivMod):
            total = max(total, _index_magnitude(atom.expr))
    return total


def _cond_indices(c: Cond) -> Iterator[Index]:
    for e, _, _ in c.ranges:
        yield e


def _value_indices(v: ir.Value) -> Iterator[Index]:
    if isinstance(v, ir.Load):
        yield v.index
        yield from _cond_indices(v.cond)
    elif isinstance(v, ir.GatherLoad):
        yield v.base
        yield from _cond_indices(v.cond)
        yield from _value_indices(v.position)
    elif isinstance(v, ir.Valid):
        yield from _cond_indices(v.cond)
    elif isinstance(v, ir.Rand):
        yield v.counter
    elif isinstance(v, ir.Apply):
        for s in v.srcs:
            yield from _value_indices(s)


def _stmt_bounds(stmts: list[ir.Stmt]) -> Iterator[int]:
    for s in stmts:
        if isinstance(s, ir.Loop):
            yield s.size
            yield from _stmt_bounds(s.body)
        elif isinstance(s, (ir.Let, ir.Accumulate)):
            yield from (_index_magnitude(e) for e in _value_indices(s.value))
            if isinstance(s.value, ir.GatherLoad):
                yield _index_magnitude(s.value.base) + s.value.size * s.value.stride
        elif isinstance(s, ir.Store):
            yield _index_magnitude(s.index)
            yield from (_index_magnitude(e) for e in _value_indices(s.value))


def fits_int32(kernel: ir.Kernel, work_items: int) -> bool:
    """True when 32-bit indices cannot overflow in this kernel."""
    return max([work_items, *_stmt_bounds(kernel.body)]) < INT32_SAFE


# ---- mapping loops to threads ----

@dataclass
class ThreadPlan:
    """Output loops flattened onto a global index; what each thread (or, for a block reduction, each block) runs.

    `outer` are the peeled output loops (var, size), outermost first; `work` their product (the number of
    independent outputs). For a block reduction, `pre` runs on every thread, `reduce_loops` (var, size) are
    flattened over the block's threads with `inner` as their body, and `post` runs on thread 0 after the combine.
    Otherwise `body` is the whole per-thread body.
    """

    outer: list[tuple[str, int]]
    work: int
    body: list[ir.Stmt]
    declare: ir.DeclareAcc | None = None
    pre: list[ir.Stmt] = field(default_factory=list)
    reduce_loops: list[tuple[str, int]] = field(default_factory=list)
    inner: list[ir.Stmt] = field(default_factory=list)
    post: list[ir.Stmt] = field(default_factory=list)

    @property
    def block_reduce(self) -> bool:
        return self.declare is not None

    @property
    def reduce_size(self) -> int:
        return _prod(s for _, s in self.reduce_loops)


def _prod(xs: Iterator[int] | list[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _peel(body: list[ir.Stmt]) -> tuple[list[tuple[str, int]], list[ir.Stmt]]:
    """Strip the perfect nest of output (non-reduction) loops around the body."""
    outer = []
    while len(body) == 1 and isinstance(body[0], ir.Loop) and not body[0].reduction:
        outer.append((body[0].var, body[0].size))
        body = body[0].body
    return outer, body


def _reduction_nest(loop: ir.Loop) -> tuple[list[tuple[str, int]], list[ir.Stmt]] | None:
    """A perfect nest of reduction loops whose innermost body has no loops: its (var, size)s and that body."""
    loops = []
    body: list[ir.Stmt] = [loop]
    while len(body) == 1 and isinstance(body[0], ir.Loop):
        if not body[0].reduction:
            return None
        loops.append((body[0].var, body[0].size))
        body = body[0].body
    if any(isinstance(s, ir.Loop) for s in body):
        return None
    return loops, body


def thread_plan(kernel: ir.Kernel, block_reduce_min: int | None = None, max_outputs: int = 1 << 16) -> ThreadPlan:
    """How the kernel maps onto threads. With `block_reduce_min`, a reduction over at least that many elements (with
    at most `max_outputs` outputs) is split over a block's threads; otherwise each thread runs its reduction loop."""
    outer, body = _peel(kernel.body)
    work = _prod(s for _, s in outer)
    plan = ThreadPlan(outer, work, body)
    if block_reduce_min is None:
        return plan
    starts = [i for i, s in enumerate(body) if isinstance(s, ir.DeclareAcc)]
    if len(starts) != 1 or starts[0] + 1 >= len(body) or not isinstance(body[starts[0] + 1], ir.Loop):
        return plan
    k = starts[0]
    nest = _reduction_nest(body[k + 1])
    pre, post = body[:k], body[k + 2:]
    if nest is None or any(not isinstance(s, ir.Let) for s in pre) or any(
            isinstance(s, (ir.Loop, ir.Accumulate, ir.DeclareAcc)) for s in post):
        return plan
    loops, inner = nest
    size = _prod(s for _, s in loops)
    if size < block_reduce_min or (work > max_outputs and size < 16 * block_reduce_min):
        return plan
    return ThreadPlan(outer, work, body, body[k], pre, loops, inner, post)


def decompose(flat: str, dims: list[tuple[str, int]], index_type: str, pad: str) -> list[str]:
    """Declarations of loop variables from a flat row-major index over `dims`."""
    strides, stride = [], 1
    for _, size in reversed(dims):
        strides.append(stride)
        stride *= size
    lines = []
    for d, ((name, size), stride) in enumerate(zip(dims, reversed(strides))):
        q = flat if stride == 1 else f"{flat}/{stride}"
        lines.append(f"{pad}{index_type} {name} = {q if d == 0 else f'({q})%{size}'};")
    return lines


# ---- values and statements ----

class Printer:
    """Prints values and statements of one kernel in a dialect, with a chosen index type."""

    def __init__(self, dialect: Dialect, kernel: ir.Kernel, index_type: str):
        self.d, self.index_type = dialect, index_type
        self.buffers = {p.name: p.dtype for p in kernel.params}

    def local(self, dtype: DType) -> str:
        return self.d.local_types[dtype]

    def acc_type(self, acc: ir.Ref, op: Op) -> str:
        """Accumulator type: float16/float32 sums accumulate in double (as the C renderer does) where it exists."""
        if op is Op.SUM and acc.dtype in (float16, float32) and self.d.fp64:
            return "double"
        return self.local(acc.dtype)

    def literal(self, value: bool | int | float, dtype: DType) -> str:
        if dtype.is_floating_point:
            v = float(value)
            if v != v:
                return "NAN"
            if v in (float("inf"), float("-inf")):
                return "INFINITY" if v > 0 else "(-INFINITY)"
            return repr(v) + ("" if dtype == float64 and self.d.fp64 else "f")
        if dtype == bool_:
            return "1" if value else "0"
        v = int(value)
        if dtype == int64:
            return self.d.min_values[int64] if v == -(2**63) else f"{v}{self.d.int64_suffix}"
        return self.d.min_values[int32] if dtype == int32 and v == -(2**31) else str(v)

    def load(self, buf: str, index: str, dtype: DType) -> str:
        return self.d.load_half.format(buf=buf, i=index) if dtype == float16 else f"{buf}[{index}]"

    def store(self, buf: str, index: str, value: str, dtype: DType) -> str:
        if dtype == float16:
            return self.d.store_half.format(buf=buf, i=index, v=value) + ";"
        return f"{buf}[{index}] = {value};"

    def value(self, v: ir.Value) -> str:
        """The expression for a value."""
        if isinstance(v, ir.Const):
            return self.literal(v.value, v.dtype)
        if isinstance(v, ir.Ref):
            return v.name
        if isinstance(v, ir.Valid):
            return f"({v.cond.render()})"
        if isinstance(v, ir.Arg):  # a float16 constant is rounded here, so the host need not know slot dtypes
            if v.dtype == float16:
                return f"fg_rhd(a{v.slot})" if self.d.fp64 else f"fg_rh(a{v.slot})"
            return f"(({self.local(v.dtype)})a{v.slot})"
        if isinstance(v, ir.Rand):
            u64 = self.d.rand_types[1]
            return (f"fg_rand(({u64}){self.value(v.seed)},({u64}){self.value(v.offset)},"
                    f"({u64})({v.counter.render()}))")
        if isinstance(v, ir.Load):
            load = self.load(v.buf, v.index.render(), v.dtype)
            return load if v.cond.always else f"(({v.cond.render()})?{load}:0)"
        if isinstance(v, ir.GatherLoad):
            p = self.value(v.position)
            ok = f"({p}>=0&&{p}<{v.size})"
            guard = ok if v.cond.always else f"({v.cond.render()})&&{ok}"
            load = self.load(v.buf, f"{v.base.render()}+({p})*{v.stride}", v.dtype)
            return f"(({guard})?{load}:((({v.cond.render()})&&{self.d.error_write.format(flag=v.flag)}),0))"
        return self.apply(v, [self.value(s) for s in v.srcs])

    def apply(self, v: ir.Apply, r: list[str]) -> str:
        """One primitive op on printed operands; a float16 result is rounded to half precision."""
        op, dtype = v.op, v.dtype
        if op is Op.CAST:
            return self.cast(r[0], dtype_of(v.srcs[0]), dtype)
        text = self._op(op, dtype, dtype_of(v.srcs[0]), r)
        return f"fg_rh({text})" if dtype == float16 and op in ROUNDED_HALF_OPS else text

    def cast(self, x: str, src: DType, dst: DType) -> str:
        if dst == bool_:
            return f"(({x})!=0)"
        if dst == float16:
            return f"fg_rhd({x})" if src == float64 and self.d.fp64 else f"fg_rh((float)({x}))"
        return f"(({self.local(dst)})({x}))"

    def _op(self, op: Op, dtype: DType, src: DType, r: list[str]) -> str:
        m = self.d.math
        if op is Op.NEG:
            return f"(-{r[0]})"
        if op in (Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT):
            return f"{m[(op.name.lower(), src)]}({r[0]})"
        if op is Op.RECIP:
            return f"(1/({self.local(dtype)})({r[0]}))"
        if op is Op.ADD:
            return f"({r[0]}||{r[1]})" if dtype == bool_ else f"({r[0]}+{r[1]})"
        if op is Op.MUL:
            return f"({r[0]}&&{r[1]})" if dtype == bool_ else f"({r[0]}*{r[1]})"
        if op is Op.MAX:  # NaN wins, like numpy.maximum
            return f"(({r[0]}>{r[1]}||{r[0]}!={r[0]})?{r[0]}:{r[1]})" if dtype.is_floating_point else \
                f"({r[0]}>{r[1]}?{r[0]}:{r[1]})"
        if op is Op.CMPLT:
            return f"({r[0]}<{r[1]})"
        if op is Op.CMPEQ:
            return f"({r[0]}=={r[1]})"
        if op is Op.IDIV:  # x/0 gives 0; INT_MIN/-1 wraps (negated as unsigned) instead of trapping
            if dtype not in self.d.unsigned:
                return f"({r[1]}==0?0:{r[0]}/{r[1]})"
            t, u = self.local(dtype), self.d.unsigned[dtype]
            return f"({r[1]}==0?0:{r[1]}==-1?({t})(({u})0-({u}){r[0]}):{r[0]}/{r[1]})"
        if op is Op.MOD:
            if dtype.is_floating_point:
                return f"{m[('fmod', src)]}({r[0]},{r[1]})"
            return f"(({r[1]}==0||{r[1]}==-1)?0:{r[0]}%{r[1]})"
        if op is Op.WHERE:
            return f"({r[0]}?{r[1]}:{r[2]})"
        if op is Op.MULADD:
            return f"{m[('fma', src)]}({r[0]},{r[1]},{r[2]})"
        raise NotImplementedError(f"no GPU printing for {op.name}")

    def stmts(self, stmts: list[ir.Stmt], depth: int) -> list[str]:
        return [line for s in stmts for line in self.stmt(s, depth)]

    def stmt(self, s: ir.Stmt, depth: int) -> list[str]:
        """Lines for one statement."""
        pad = "  " * depth
        if isinstance(s, ir.Loop):
            it = self.index_type
            return [f"{pad}for ({it} {s.var} = 0; {s.var} < {s.size}; {s.var}++) {{", *self.stmts(s.body, depth + 1),
                    f"{pad}}}"]
        if isinstance(s, ir.Let):
            return [f"{pad}{self.local(dtype_of(s.value))} {s.name} = {self.value(s.value)};"]
        if isinstance(s, ir.DeclareAcc):
            lines = [f"{pad}{self.acc_type(s.acc, s.op)} {s.acc.name} = {self.identity(s.acc, s.op)};"]
            if tracks_nan(s.acc, s.op):
                lines.append(f"{pad}int {s.acc.name}_nan = 0;")
            return lines
        if isinstance(s, ir.Accumulate):
            v, a = self.value(s.value), s.acc.name
            if s.op is Op.SUM:
                return [f"{pad}{a} |= {v};" if s.acc.dtype == bool_ else f"{pad}{a} += {v};"]
            nan = f" {a}_nan |= (x != x);" if tracks_nan(s.acc, s.op) else ""
            return [f"{pad}{{ {self.local(s.acc.dtype)} x = {v}; {a} = x > {a} ? x : {a};{nan} }}"]
        if isinstance(s, ir.FinishAcc):
            return [f"{pad}if ({s.acc.name}_nan) {s.acc.name} = NAN;"] if tracks_nan(s.acc, s.op) else []
        if isinstance(s, ir.Store):
            return [pad + self.store(s.buf, s.index.render(), self.value(s.value), self.buffers[s.buf])]
        raise TypeError(f"unknown statement {s!r}")

    def identity(self, acc: ir.Ref, op: Op) -> str:
        """The reduction's starting value."""
        return "0" if op is Op.SUM else self.d.min_values[acc.dtype]

    def combine(self, acc: ir.Ref, op: Op, a: str, b: str) -> str:
        """Two partial reductions combined (NaN is tracked on the side for float max)."""
        if op is Op.SUM:
            return f"({a}||{b})" if acc.dtype == bool_ else f"({a}+{b})"
        return f"({b}>{a}?{b}:{a})"


ROUNDED_HALF_OPS = {Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.ADD, Op.MUL, Op.MOD, Op.MULADD}


def tracks_nan(acc: ir.Ref, op: Op) -> bool:
    """A float max reduction records NaN on the side (a plain `>` drops it); NaN wins at the end, like numpy."""
    return op is Op.REDUCE_MAX and acc.dtype.is_floating_point


def arg_params(kernel: ir.Kernel, dialect: Dialect) -> list[str]:
    """Launch arguments as scalar parameters: a float slot is a double (float without fp64), an int slot a 64-bit
    integer. Values change per launch; the source does not."""
    out = []
    for slot, value in enumerate(kernel.args):
        if isinstance(value, float):
            out.append(f"const {'double' if dialect.fp64 else 'float'} a{slot}")
        else:
            out.append(f"const {dialect.index_types[1]} a{slot}")
    return out

