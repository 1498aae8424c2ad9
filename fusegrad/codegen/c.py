"""Print loop IR as C99: restrict pointers, plain nested loops the compiler vectorizes, OpenMP on big outer loops."""
from __future__ import annotations

from ..dtype import DType, bool_, float16, float32, float64, int32, int64, uint8
from ..graph import Op
from . import ir
from .invariants import hoist_invariants

C_TYPES = {bool_: "_Bool", uint8: "uint8_t", int32: "int32_t", int64: "int64_t", float16: "_Float16",
           float32: "float", float64: "double"}
# the type arithmetic happens in (float16 computes in float and rounds when stored in a _Float16 variable)
COMPUTE = {float16: "float"}
MATH_SUFFIX = {float16: "f", float32: "f", float64: ""}
MIN_VALUES = {bool_: "0", uint8: "0", int32: "INT32_MIN", int64: "INT64_MIN", float16: "-INFINITY",
              float32: "-INFINITY", float64: "-INFINITY"}

PRELUDE = """#include <math.h>
#include <stdint.h>
#define FG_NOINLINE __attribute__((noinline))
typedef union { double f; int64_t i; } fg_arg;  /* one launch argument: a float or an integer constant */
#ifdef FG_MVEC  /* glibc vector math (libmvec, <= 4 ulp, keeps IEEE special cases): these calls vectorize */
#pragma omp declare simd notinbranch
float exp2f(float);
#pragma omp declare simd notinbranch
float log2f(float);
#pragma omp declare simd notinbranch
float sinf(float);
#pragma omp declare simd notinbranch
double exp2(double);
#pragma omp declare simd notinbranch
double log2(double);
#pragma omp declare simd notinbranch
double sin(double);
#endif
/* 2^x = 2^n * 2^f with n = rint(x), |f| <= 1/2: Cephes' degree-6 polynomial by fmaf (under 1 ulp) and 2^n as two
   normal factors, so a subnormal result is rounded once. Branchless, so loops calling it vectorize; libmvec's exp2f
   is half as fast and computes all 16 lanes in scalar code when one lane is below -126 (a softmax's masked -inf). */
typedef union { float f; uint32_t u; } fg_bits32;
static inline float fg_exp2f(float x) {
  float c = x < -151.0f ? -151.0f : (x > 129.0f ? 129.0f : x);  /* 2^c rounds as 2^x does; a NaN stays */
  float n = rintf(c), f = c - n;
  float p = fmaf(fmaf(fmaf(fmaf(fmaf(fmaf(1.535336188319500e-4f, f, 1.339887440266574e-3f), f,
            9.618437357674640e-3f), f, 5.550332471162809e-2f), f, 2.402264791363012e-1f), f,
            6.931472028550421e-1f), f, 1.0f);
  int32_t k = (int32_t)(n == n ? n : 0.0f), half = k >> 1;  /* a NaN's exponent does not matter: p is NaN */
  fg_bits32 a = {.u = (uint32_t)(half + 127) << 23}, b = {.u = (uint32_t)(k - half + 127) << 23};
  return p * a.f * b.f;
}
static inline uint32_t fg_hash32(uint32_t x) {
  x ^= x >> 16; x *= 0x7FEB352Du; x ^= x >> 15; x *= 0x846CA68Bu; return x ^ (x >> 16);
}
static inline float fg_rand(uint64_t seed, uint64_t offset, uint64_t counter) {
  counter += offset;
  uint32_t key = fg_hash32((uint32_t)seed ^ fg_hash32((uint32_t)(seed >> 32)));
  uint32_t bits = fg_hash32(fg_hash32((uint32_t)counter ^ key) ^ ((uint32_t)(counter >> 32) * 0x9E3779B9u));
  return (float)(bits >> 8) * 0x1p-24f;
}
"""


def _literal(value: bool | int | float, dtype: DType) -> str:
    if dtype.is_floating_point:
        v = float(value)
        if v != v:
            return "NAN"
        if v in (float("inf"), float("-inf")):
            return "INFINITY" if v > 0 else "-INFINITY"
        return repr(v) + ("f" if dtype != float64 else "")
    if dtype == bool_:
        return "1" if value else "0"
    v = int(value)
    if dtype == int64:
        return "INT64_MIN" if v == -(2**63) else f"{v}LL"
    return str(v)


def _max(a: str, b: str, dtype: DType) -> str:
    if dtype.is_floating_point:  # NaN wins, like numpy.maximum
        return f"(({a}>{b}||{a}!={a})?{a}:{b})"
    return f"({a}>{b}?{a}:{b})"


def _apply(v: ir.Apply, r: list[str]) -> str:
    """One primitive op on rendered operands."""
    op, dtype = v.op, v.dtype
    src = v.srcs[0]
    sdtype = _dtype(src)
    m = MATH_SUFFIX.get(sdtype, "")
    table = {
        Op.NEG: lambda: f"(-{r[0]})",
        Op.EXP2: lambda: f"fg_exp2f({r[0]})" if m else f"exp2({r[0]})",
        Op.LOG2: lambda: f"log2{m}({r[0]})",
        Op.SIN: lambda: f"sin{m}({r[0]})",
        Op.SQRT: lambda: f"sqrt{m}({r[0]})",
        Op.RECIP: lambda: f"(1/({COMPUTE.get(dtype, C_TYPES[dtype])})({r[0]}))",
        Op.CAST: lambda: f"(({C_TYPES[dtype]})({r[0]}))",
        Op.ADD: lambda: f"({r[0]}||{r[1]})" if dtype == bool_ else f"({r[0]}+{r[1]})",
        Op.MUL: lambda: f"({r[0]}&&{r[1]})" if dtype == bool_ else f"({r[0]}*{r[1]})",
        Op.MAX: lambda: _max(r[0], r[1], dtype),
        Op.CMPLT: lambda: f"({r[0]}<{r[1]})",
        Op.CMPEQ: lambda: f"({r[0]}=={r[1]})",
        # integer division must not trap: x/0 gives 0, and INT_MIN/-1 wraps (-fwrapv) instead of faulting
        Op.IDIV: lambda: f"({r[1]}==0?0:{r[1]}==-1?-{r[0]}:{r[0]}/{r[1]})",
        Op.MOD: lambda: f"fmod{m}({r[0]},{r[1]})" if dtype.is_floating_point else
        f"(({r[1]}==0||{r[1]}==-1)?0:{r[0]}%{r[1]})",
        Op.WHERE: lambda: f"({r[0]}?{r[1]}:{r[2]})",
        Op.MULADD: lambda: f"fma{m}({r[0]},{r[1]},{r[2]})",  # one rounding; a vfmadd under -march=native
    }
    return table[op]()


def _dtype(v: ir.Value) -> DType | None:
    if isinstance(v, ir.Rand):
        return float32
    if isinstance(v, ir.Valid):
        return bool_
    return v.dtype


UNROLLED_REDUCTION = 16  # reduction loops this short are unrolled rather than vectorized (a simd prologue costs more)
PARALLEL_CHUNK = 4096  # elements a thread takes at a time from a parallel loop with no loop inside
# guided: the launching thread starts at once and the others may wake late (tens of us when they sleep: idle longer
# than their spin), so a static split waits for their halves; an iteration computes the same values whichever
# thread runs it, so results do not depend on the schedule
PARALLEL_FOR = "#pragma omp parallel for schedule(guided)"


def _cond(c) -> str:  # noqa: ANN001 - symbolic.Cond
    return c.render()


def render_value(v: ir.Value) -> str:
    """C expression for a value."""
    if isinstance(v, ir.Const):
        return _literal(v.value, v.dtype)
    if isinstance(v, ir.Ref):
        return v.name
    if isinstance(v, ir.Valid):
        return f"({_cond(v.cond)})"
    if isinstance(v, ir.Arg):
        return f"arg{v.slot}"
    if isinstance(v, ir.Rand):
        seed, offset = render_value(v.seed), render_value(v.offset)
        return f"fg_rand((uint64_t){seed},(uint64_t){offset},(uint64_t)({v.counter.render()}))"
    if isinstance(v, ir.Load):
        load = f"{v.buf}[{v.index.render()}]"
        return load if v.cond.always else f"(({_cond(v.cond)})?{load}:0)"
    if isinstance(v, ir.GatherLoad):
        p = render_value(v.position)
        ok = f"({p}>=0&&{p}<{v.size})"
        guard = ok if v.cond.always else f"({_cond(v.cond)})&&{ok}"
        return (f"(({guard})?{v.buf}[{v.base.render()}+({p})*{v.stride}]:"
                f"((({_cond(v.cond)})&&(*err={v.flag})),0))")
    return _apply(v, [render_value(s) for s in v.srcs])


def _loop(s: ir.Loop, depth: int) -> list[str]:
    pad = "  " * depth
    head = [f"{pad}{PARALLEL_FOR}"] if s.parallel else []
    acc = next((b for b in s.body if isinstance(b, ir.Accumulate)), None) if s.reduction else None
    if acc is not None and s.size <= UNROLLED_REDUCTION:  # a few taps (pooling): straight-line code is faster
        head.append(f"{pad}#pragma GCC unroll {UNROLLED_REDUCTION}")
    elif acc is not None and _chunked(acc):
        return _chunked_sum(s, acc, depth)
    elif acc is not None:  # the innermost loop of a reduction: let it reassociate, so it vectorizes
        head.append(f"{pad}#pragma omp simd {_reduction_clause(acc)}")
    body = [line for b in s.body for line in _stmt(b, depth + 1)]
    if acc is None and not s.parallel and _element_loop(s, body):
        # an innermost loop of independent elements: vectorize it even where its selects look like branches
        head.append(f"{pad}#pragma omp simd")
    return head + [f"{pad}for (int64_t {s.var} = 0; {s.var} < {s.size}; {s.var}++) {{", *body, f"{pad}}}"]


def _stmt(s: ir.Stmt, depth: int) -> list[str]:
    pad = "  " * depth
    if isinstance(s, ir.Loop):
        hoisted, s = hoist_invariants(s)
        return [line for h in hoisted for line in _stmt(h, depth)] + _loop(s, depth)
    if isinstance(s, ir.Let):
        return [f"{pad}{C_TYPES[_dtype(s.value)]} {s.name} = {render_value(s.value)};"]
    if isinstance(s, ir.DeclareAcc):
        t = "double" if s.acc.dtype in (float16, float32) and s.op is Op.SUM else \
            COMPUTE.get(s.acc.dtype, C_TYPES[s.acc.dtype])
        init = "0" if s.op is Op.SUM else MIN_VALUES[s.acc.dtype]
        lines = [f"{pad}{t} {s.acc.name} = {init};"]
        if _tracks_nan(s.acc, s.op):
            lines.append(f"{pad}int32_t {s.acc.name}_nan = 0;")
        return lines
    if isinstance(s, ir.Accumulate):
        v, a = render_value(s.value), s.acc.name
        if s.op is Op.SUM:
            return [f"{pad}{a} |= {v};" if s.acc.dtype == bool_ else f"{pad}{a} += {v};"]
        if _tracks_nan(s.acc, s.op):  # max as a plain simd max, with NaN seen on the side (NaN wins, like numpy)
            return [f"{pad}{{ {C_TYPES[s.acc.dtype]} x = {v}; {a} = x > {a} ? x : {a}; {a}_nan |= (x != x); }}"]
        return [f"{pad}{{ {C_TYPES[s.acc.dtype]} x = {v}; {a} = x > {a} ? x : {a}; }}"]
    if isinstance(s, ir.FinishAcc):
        return [f"{pad}if ({s.acc.name}_nan) {s.acc.name} = NAN;"] if _tracks_nan(s.acc, s.op) else []
    if isinstance(s, ir.Store):
        return [f"{pad}{s.buf}[{s.index.render()}] = {render_value(s.value)};"]
    if isinstance(s, ir.Local):
        return [f"{pad}{C_TYPES[s.dtype]} {s.name}[{s.size}];"]
    raise TypeError(f"unknown statement {s!r}")


SUM_CHUNK = 256  # a float sum adds this many elements in float vector lanes, then the chunk's total in double


def _chunked(acc: ir.Accumulate) -> bool:
    return acc.op is Op.SUM and acc.acc.dtype in (float16, float32)


def _chunked_sum(s: ir.Loop, acc: ir.Accumulate, depth: int) -> list[str]:
    """A float sum's innermost loop in chunks: each chunk sums in float at full vector width (a double accumulator
    halves it and converts every element), then adds into the double accumulator, so long sums keep their digits."""
    pad, a, v = "  " * depth, acc.acc.name, s.var
    chunk = min(SUM_CHUNK, s.size)
    body = [ir.Accumulate(ir.Ref(f"{a}_f", float32), Op.SUM, b.value) if b is acc else b for b in s.body]
    lines = [line for b in body for line in _stmt(b, depth + 2)]
    end = f"({v}_c + {chunk} < {s.size} ? {v}_c + {chunk} : {s.size})" if s.size % chunk else f"{v}_c + {chunk}"
    return [f"{pad}for (int64_t {v}_c = 0; {v}_c < {s.size}; {v}_c += {chunk}) {{",
            f"{pad}  float {a}_f = 0;", f"{pad}  #pragma omp simd reduction(+:{a}_f)",
            f"{pad}  for (int64_t {v} = {v}_c; {v} < {end}; {v}++) {{", *lines, f"{pad}  }}",
            f"{pad}  {a} += {a}_f;", f"{pad}}}"]


def _tracks_nan(acc: ir.Ref, op: Op) -> bool:
    return op is Op.REDUCE_MAX and acc.dtype.is_floating_point


def _reduction_clause(acc: ir.Accumulate) -> str:
    """OpenMP simd reduction clause for an accumulator."""
    a = acc.acc.name
    if acc.op is Op.SUM:
        return f"reduction(|:{a})" if acc.acc.dtype == bool_ else f"reduction(+:{a})"
    return f"reduction(max:{a})" + (f" reduction(|:{a}_nan)" if _tracks_nan(acc.acc, acc.op) else "")


def _element_loop(s: ir.Loop, body: list[str]) -> bool:
    """Whether loop `s` (its body rendered as `body`) runs independent elements: no loop, reduction or error flag
    inside, so it can be an `omp simd` loop."""
    return not s.reduction and not any(isinstance(b, ir.Loop) for b in s.body) and not any("*err" in x for x in body)


def _value_args(v: ir.Value, found: dict[int, DType]) -> None:
    if isinstance(v, ir.Arg):
        found[v.slot] = v.dtype
    elif isinstance(v, ir.Rand):
        _value_args(v.seed, found)
        _value_args(v.offset, found)
    elif isinstance(v, ir.GatherLoad):
        _value_args(v.position, found)
    elif isinstance(v, ir.Apply):
        for src in v.srcs:
            _value_args(src, found)


def _stmt_args(stmts: list[ir.Stmt], found: dict[int, DType]) -> dict[int, DType]:
    for s in stmts:
        if isinstance(s, ir.Loop):
            _stmt_args(s.body, found)
        elif isinstance(s, (ir.Let, ir.Accumulate, ir.Store)):
            _value_args(s.value, found)
    return found


def _read_args(stmts: list[ir.Stmt]) -> list[str]:
    """The launch arguments the statements use, read once at the top of the function: a constant read in the loop
    (GCC sinks it into the branch of a select that needs it) leaves control flow in the loop that stops it
    vectorizing (a softmax gradient's masked sum ran 12x slower)."""
    return [f"  const {C_TYPES[t]} arg{slot} = ({C_TYPES[t]})args[{slot}].{'f' if t.is_floating_point else 'i'};"
            for slot, t in sorted(_stmt_args(stmts, {}).items())]


def render_c(kernel: ir.Kernel) -> str:
    """The C function for one kernel (the prelude with helpers is `PRELUDE`, printed once per file)."""
    params = []
    for p in kernel.params:
        if p.name == "err":
            params.append("int32_t* restrict err")
        else:
            const = "" if p.writable else "const "
            params.append(f"{const}{C_TYPES[p.dtype]}* restrict {p.name}")
    if kernel.args:
        params.append("const fg_arg* restrict args")
    locals_ = [s for s in kernel.body if isinstance(s, ir.Local)]  # arrays the parallel loops fill: helpers take them
    outlined = params + [f"{C_TYPES[s.dtype]}* restrict {s.name}" for s in locals_]
    names = [p.rsplit("*", 1)[1].replace("restrict ", "").strip() for p in outlined]
    helpers, body, inline = [], [], []
    alone = True  # no kernel-level value computed so far that a loop's body could read
    for s in kernel.body:
        alone = alone and isinstance(s, (ir.Loop, ir.Local))
        if alone and isinstance(s, ir.Loop) and s.parallel:
            # the body of a parallel loop as its own function, never inlined: GCC vectorizes loops in the function
            # OpenMP outlines far less often (it sees control flow where there is none) than in a plain one
            helper = f"{kernel.name}_p{len(helpers)}"
            inner = [line for b in s.body for line in _stmt(b, 1)]
            reads = "".join(line + "\n" for line in _read_args(s.body))
            if _element_loop(s, inner):  # elements alone: each thread runs vector loops over chunks of them
                v, c = s.var, PARALLEL_CHUNK
                helpers.append(f"static FG_NOINLINE void {helper}(int64_t {v}_c, {', '.join(outlined)}) {{\n{reads}"
                               f"  int64_t {v}_e = {v}_c + {c} < {s.size} ? {v}_c + {c} : {s.size};\n"
                               f"  #pragma omp simd\n  for (int64_t {v} = {v}_c; {v} < {v}_e; {v}++) {{\n"
                               + "\n".join("  " + line for line in inner) + "\n  }\n}\n")
                body += [f"  {PARALLEL_FOR}", f"  for (int64_t {v}_c = 0; {v}_c < {s.size}; {v}_c += {c}) "
                         f"{helper}({v}_c, {', '.join(names)});"]
            else:
                helpers.append(f"static FG_NOINLINE void {helper}(int64_t {s.var}, {', '.join(outlined)}) {{\n{reads}"
                               + "\n".join(inner) + "\n}\n")
                body += [f"  {PARALLEL_FOR}", f"  for (int64_t {s.var} = 0; {s.var} < {s.size}; "
                         f"{s.var}++) {helper}({s.var}, {', '.join(names)});"]
        else:
            inline.append(s)
            body += _stmt(s, 1)
    body = _read_args(inline) + body
    return "".join(helpers) + f"void {kernel.name}({', '.join(params)}) {{\n" + "\n".join(body) + "\n}\n"
