"""Print loop IR as CUDA C++ for NVRTC: no headers needed (float16 converts through PTX `cvt`, limits are spelled out).

Output loops become a grid-stride loop over a flat thread index. A large reduction with few outputs instead gets a
block per output: the block's threads split the reduction loops, then combine with warp shuffles and shared memory.
Launch arguments are scalar kernel parameters, so new constant values reuse the compiled kernel.
"""
from __future__ import annotations

from ..dtype import bool_, float16, float32, float64, int32, int64, uint8
from . import ir
from .c_like import Dialect, Printer, ThreadPlan, arg_params, decompose, fits_int32, math_table, thread_plan, tracks_nan

BLOCK = 256  # threads per block, both mappings (a multiple of the warp size)
BLOCK_REDUCE_MIN = 128  # reductions at least this long are split over a block's threads

CUDA = Dialect(
    local_types={bool_: "bool", uint8: "unsigned char", int32: "int", int64: "long long", float16: "float",
                 float32: "float", float64: "double"},
    buffer_types={bool_: "bool", uint8: "unsigned char", int32: "int", int64: "long long", float16: "unsigned short",
                  float32: "float", float64: "double"},
    unsigned={int32: "unsigned int", int64: "unsigned long long"},
    math=math_table("f"),
    min_values={bool_: "0", uint8: "0", int32: "FG_INT32_MIN", int64: "FG_INT64_MIN", float16: "(-INFINITY)",
                float32: "(-INFINITY)", float64: "(-INFINITY)"},
    int64_suffix="LL",
    load_half="fg_h2f({buf}[{i}])",
    store_half="{buf}[{i}] = fg_f2h({v})",
    error_write="(*err={flag})",
    index_types=("int", "long long"),
    rand_types=("unsigned int", "unsigned long long"),
)

CUDA_HELPERS = """#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
#define FG_INT32_MIN (-2147483647-1)
#define FG_INT64_MIN (-9223372036854775807LL-1)
__device__ __forceinline__ unsigned int fg_hash32(unsigned int x) {
  x ^= x >> 16; x *= 0x7FEB352Du; x ^= x >> 15; x *= 0x846CA68Bu; return x ^ (x >> 16);
}
__device__ __forceinline__ float fg_rand(unsigned long long seed, unsigned long long offset,
                                         unsigned long long counter) {
  counter += offset;
  unsigned int key = fg_hash32((unsigned int)seed ^ fg_hash32((unsigned int)(seed >> 32)));
  unsigned int bits = fg_hash32(fg_hash32((unsigned int)counter ^ key) ^ ((unsigned int)(counter >> 32) * 0x9E3779B9u));
  return (float)(bits >> 8) * 5.9604644775390625e-08f;
}
"""
# float16 <-> float conversions, each one PTX instruction (tests/cuda_emulator.py swaps in C++ ones for the CPU)
PTX_HALF = """__device__ __forceinline__ float fg_h2f(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short fg_f2h(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ unsigned short fg_f2h(double f) {
  unsigned short h; asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(f)); return h;
}
"""
HALF_ROUNDING = """__device__ __forceinline__ float fg_rh(float x) { return fg_h2f(fg_f2h(x)); }
__device__ __forceinline__ float fg_rhd(double x) { return fg_h2f(fg_f2h(x)); }
"""


def cuda_prelude(half_conversions: str = PTX_HALF) -> str:
    """Helpers printed once per module: limits, the counter-based RNG (bit-identical to the C one), float16
    conversions and rounding."""
    return CUDA_HELPERS + half_conversions + HALF_ROUNDING


CUDA_PRELUDE = cuda_prelude()
_SHUFFLE_TYPES = {"bool": "int", "unsigned char": "int"}  # __shfl_down_sync has no byte overloads


def launch_plan(kernel: ir.Kernel) -> ThreadPlan:
    """Thread plan: a block per output for long reductions, else a thread per output."""
    return thread_plan(kernel, block_reduce_min=BLOCK_REDUCE_MIN)


def render_cuda(kernel: ir.Kernel) -> str:
    """The CUDA kernel (extern "C", so NVRTC keeps its name) for one loop-IR kernel; the prelude is `CUDA_PRELUDE`,
    printed once per module."""
    plan = launch_plan(kernel)
    it = CUDA.index_types[0] if fits_int32(kernel, max(plan.work, plan.reduce_size)) else CUDA.index_types[1]
    printer = Printer(CUDA, kernel, it)
    params = []
    for p in kernel.params:
        if p.name == "err":
            params.append("int* __restrict__ err")
        else:
            const = "" if p.writable else "const "
            params.append(f"{const}{CUDA.buffer_types[p.dtype]}* __restrict__ {p.name}")
    params += arg_params(kernel, CUDA)
    head = f'extern "C" __global__ void __launch_bounds__({BLOCK}) {kernel.name}({", ".join(params)}) {{'
    body = _block_reduce(plan, printer, it) if plan.block_reduce else _per_thread(plan, printer, it)
    return "\n".join([head, *body, "}"]) + "\n"


def _per_thread(plan: ThreadPlan, printer: Printer, it: str) -> list[str]:
    return [f"  for ({it} fg_g = ({it})blockIdx.x * blockDim.x + threadIdx.x; fg_g < {plan.work}; "
            f"fg_g += ({it})gridDim.x * blockDim.x) {{",
            *decompose("fg_g", plan.outer, it, "    "),
            *printer.stmts(plan.body, 2),
            "  }"]


def _block_reduce(plan: ThreadPlan, printer: Printer, it: str) -> list[str]:
    """A block per output: strided partial reductions, a warp-shuffle tree, partials of warps through shared memory,
    then thread 0 finishes (NaN fix-up for max) and stores."""
    acc, op = plan.declare.acc, plan.declare.op
    a, t = acc.name, printer.acc_type(acc, op)
    shuffle = _SHUFFLE_TYPES.get(t, t)
    nan = tracks_nan(acc, op)
    identity = printer.identity(acc, op)

    def warp_tree(pad: str) -> list[str]:
        # every lane shuffles, unconditionally, once: a combine may print its operand twice, under a condition
        lines = [f"{pad}for (int fg_o = 16; fg_o > 0; fg_o >>= 1) {{",
                 f"{pad}  {t} fg_other = ({t})__shfl_down_sync(0xffffffffu, ({shuffle}){a}, fg_o);",
                 f"{pad}  {a} = {printer.combine(acc, op, a, 'fg_other')};"]
        if nan:
            lines.append(f"{pad}  {a}_nan |= __shfl_down_sync(0xffffffffu, {a}_nan, fg_o);")
        return lines + [f"{pad}}}"]

    lines = [f"  __shared__ {t} fg_part[{BLOCK // 32}];"]
    if nan:
        lines.append(f"  __shared__ int fg_part_nan[{BLOCK // 32}];")
    lines += [f"  for ({it} fg_g = blockIdx.x; fg_g < {plan.work}; fg_g += gridDim.x) {{",
              *decompose("fg_g", plan.outer, it, "    "),
              *printer.stmts(plan.pre, 2),
              *printer.stmt(plan.declare, 2),
              f"    for ({it} fg_r = threadIdx.x; fg_r < {plan.reduce_size}; fg_r += blockDim.x) {{",
              *decompose("fg_r", plan.reduce_loops, it, "      "),
              *printer.stmts(plan.inner, 3),
              "    }",
              *warp_tree("    "),
              "    if ((threadIdx.x & 31) == 0) {",
              f"      fg_part[threadIdx.x >> 5] = {a};"]
    if nan:
        lines.append(f"      fg_part_nan[threadIdx.x >> 5] = {a}_nan;")
    lines += ["    }", "    __syncthreads();", "    if (threadIdx.x < 32) {",
              f"      {a} = threadIdx.x < (blockDim.x >> 5) ? fg_part[threadIdx.x] : ({t})({identity});"]
    if nan:
        lines.append(f"      {a}_nan = threadIdx.x < (blockDim.x >> 5) ? fg_part_nan[threadIdx.x] : 0;")
    lines += [*warp_tree("      "), "      if (threadIdx.x == 0) {", *printer.stmts(plan.post, 4), "      }",
              "    }", "    __syncthreads();  // fg_part is reused by this block's next output", "  }"]
    return lines

