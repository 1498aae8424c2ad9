"""A fixed tiled MATMUL kernel in OpenCL C for float32/float64: 16x16 output tiles, operands staged in local memory.

The loop IR has no local memory or barriers, so this one kernel is written by hand. Operands are read through
strides passed at launch (a transposed, sliced or batch-broadcast view costs no copy), and the source depends only
on the dtype, so it compiles once per process. Accumulation is in the operand type, as BLAS does.
"""
from __future__ import annotations

from ..dtype import DType, float32, float64

TILE = 16
MATMUL_DTYPES = {float32: "float", float64: "double"}

_SOURCE = """__kernel __attribute__((reqd_work_group_size({tile}, {tile}, 1)))
void {name}(__global {t}* restrict c, __global const {t}* restrict a, __global const {t}* restrict b,
            const int m, const int n, const int k,
            const long a_off, const long a_batch, const long a_row, const long a_col,
            const long b_off, const long b_batch, const long b_row, const long b_col) {{
  __local {t} a_tile[{tile}][{tile}];
  __local {t} b_tile[{tile}][{tile} + 1];  /* +1: no bank conflicts on GPUs reading a column */
  const int tj = get_local_id(0), ti = get_local_id(1);
  const int j = get_group_id(0) * {tile} + tj, i = get_group_id(1) * {tile} + ti;
  const long batch = get_global_id(2);
  a += a_off + batch * a_batch;
  b += b_off + batch * b_batch;
  {t} acc = 0;
  for (int p0 = 0; p0 < k; p0 += {tile}) {{
    a_tile[ti][tj] = (i < m && p0 + tj < k) ? a[i * a_row + (p0 + tj) * a_col] : 0;
    b_tile[ti][tj] = (p0 + ti < k && j < n) ? b[(p0 + ti) * b_row + j * b_col] : 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int p = 0; p < {tile}; p++) acc += a_tile[ti][p] * b_tile[p][tj];
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
  if (i < m && j < n) c[batch * m * n + (long)i * n + j] = acc;
}}
"""


def matmul_kernel_name(dtype: DType) -> str:
    """The kernel's name for a dtype (its source is fixed, so the name is too)."""
    return f"fg_matmul_{MATMUL_DTYPES[dtype]}"


def render_opencl_matmul(dtype: DType) -> str:
    """The tiled kernel for float32 or float64 operands."""
    return _SOURCE.format(tile=TILE, t=MATMUL_DTYPES[dtype], name=matmul_kernel_name(dtype))
