"""Print loop IR as OpenCL C: the output loops become one grid-stride loop over a flat global id, reductions stay
loops inside a work-item.

bool buffers are bytes (OpenCL forbids bool in kernel arguments) and float16 buffers are `half` read and written
with vload_half/vstore_half_rte, which need no cl_khr_fp16. Launch arguments are scalar kernel parameters.
"""
from __future__ import annotations

from dataclasses import replace

from ..dtype import bool_, float16, float32, float64, int32, int64, uint8
from . import ir
from .c_like import Dialect, Printer, ThreadPlan, arg_params, decompose, fits_int32, math_table, thread_plan

OPENCL = Dialect(
    local_types={bool_: "bool", uint8: "uchar", int32: "int", int64: "long", float16: "float", float32: "float",
                 float64: "double"},
    buffer_types={bool_: "uchar", uint8: "uchar", int32: "int", int64: "long", float16: "half", float32: "float",
                  float64: "double"},
    unsigned={int32: "uint", int64: "ulong"},
    math=math_table(""),  # OpenCL's math builtins are overloaded on float and double
    min_values={bool_: "0", uint8: "0", int32: "INT_MIN", int64: "LONG_MIN", float16: "(-INFINITY)",
                float32: "(-INFINITY)", float64: "(-INFINITY)"},
    int64_suffix="L",
    load_half="vload_half({i},{buf})",
    store_half="vstore_half_rte({v},{i},{buf})",
    error_write="(err[fg_err_slot]={flag})",
    index_types=("int", "long"),
    rand_types=("uint", "ulong"),
)

_PRELUDE = """#pragma OPENCL FP_CONTRACT OFF
{fp64}
uint fg_hash32(uint x) {{
  x ^= x >> 16; x *= 0x7FEB352Du; x ^= x >> 15; x *= 0x846CA68Bu; return x ^ (x >> 16);
}}
float fg_rand(ulong seed, ulong offset, ulong counter) {{
  counter += offset;
  uint key = fg_hash32((uint)seed ^ fg_hash32((uint)(seed >> 32)));
  uint bits = fg_hash32(fg_hash32((uint)counter ^ key) ^ ((uint)(counter >> 32) * 0x9E3779B9u));
  return (float)(bits >> 8) * 0x1p-24f;
}}
float fg_rh(float x) {{ ushort h; vstore_half_rte(x, 0, (half*)&h); return vload_half(0, (const half*)&h); }}
"""
_FP64 = """#pragma OPENCL EXTENSION cl_khr_fp64 : enable
float fg_rhd(double x) { ushort h; vstore_half_rte(x, 0, (half*)&h); return vload_half(0, (const half*)&h); }"""


def dialect(fp64: bool = True) -> Dialect:
    """The OpenCL dialect for a device with (or without) double precision."""
    return OPENCL if fp64 else replace(OPENCL, fp64=False)


def opencl_prelude(fp64: bool = True) -> str:
    """Helpers printed once per program: the counter-based RNG (bit-identical to the C one), half rounding."""
    return _PRELUDE.format(fp64=_FP64 if fp64 else "")


def launch_plan(kernel: ir.Kernel) -> ThreadPlan:
    """Every output element is one work-item's job (a reduction is a loop inside it)."""
    return thread_plan(kernel)


def render_opencl(kernel: ir.Kernel, fp64: bool = True) -> str:
    """The OpenCL kernel for one loop-IR kernel (the prelude is `opencl_prelude`, printed once per program)."""
    d = dialect(fp64)
    plan = launch_plan(kernel)
    it = d.index_types[0] if fits_int32(kernel, plan.work) else d.index_types[1]
    printer = Printer(d, kernel, it)
    params = []
    for p in kernel.params:
        if p.name == "err":
            params += ["__global int* restrict err", "const int fg_err_slot"]
        else:
            const = "" if p.writable else "const "
            params.append(f"__global {const}{d.buffer_types[p.dtype]}* restrict {p.name}")
    params += arg_params(kernel, d)
    lines = [f"__kernel void {kernel.name}({', '.join(params)}) {{",
             f"  for ({it} fg_g = get_global_id(0); fg_g < {plan.work}; fg_g += get_global_size(0)) {{",
             *decompose("fg_g", plan.outer, it, "    "),
             *printer.stmts(plan.body, 2),
             "  }", "}"]
    return "\n".join(lines) + "\n"
