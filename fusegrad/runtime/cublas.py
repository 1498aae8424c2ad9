"""cuBLAS through ctypes (NVIDIA's Python bindings do not cover it): one strided-batched GEMM for MATMUL.

cuBLAS is column-major. A row-major C = A @ B is the column-major C^T = B^T @ A^T, so B is passed first. An operand
is any strided view whose matrix dims have a unit stride on one side (plain or transposed) and whose batch dims
collapse to a single stride (0 for a broadcast batch). `gemm_plan` works that out without touching a GPU.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from ..dtype import DType, float16, float32, float64
from ..view import View, batch_stride, matrix_layout

OP_N, OP_T = 0, 1
CUDA_R = {float32: 0, float64: 1, float16: 2}  # cudaDataType
COMPUTE = {float32: 68, float64: 70, float16: 68}  # CUBLAS_COMPUTE_32F (float16 accumulates in float), _64F
GEMM_DEFAULT = -1


@dataclass(frozen=True)
class Operand:
    """One matrix stack as cuBLAS reads it: transpose flag, leading dimension, batch stride, element offset."""

    op: int
    ld: int
    batch_stride: int
    offset: int


@dataclass(frozen=True)
class GemmPlan:
    """The arguments of cublasGemmStridedBatchedEx for row-major (batch, m, k) @ (batch, k, n)."""

    m: int
    n: int
    k: int
    batch: int
    a: Operand
    b: Operand


def _matrix(view: View, rows: int, cols: int) -> tuple[int, int] | None:
    """(op, ld) for a row-major rows x cols matrix with the view's strides, as cuBLAS reads its transposed operand:
    op N when rows are contiguous (ld = row stride), op T when columns are (ld = column stride)."""
    layout = matrix_layout(rows, cols, view.strides[-2], view.strides[-1])
    return None if layout is None else (OP_T if layout[0] else OP_N, layout[1])


def gemm_plan(a: View, b: View) -> GemmPlan | None:
    """How to run (…, m, k) @ (…, k, n) on these operand views with one cuBLAS call, or None when it cannot."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    ma, mb = _matrix(a, m, k), _matrix(b, k, n)
    ba, bb = batch_stride(a), batch_stride(b)
    if ma is None or mb is None or ba is None or bb is None or max(m, n, k) >= 2**31 or ba[0] >= 2**31:
        return None
    return GemmPlan(m, n, k, ba[0], Operand(*ma, ba[1], a.offset), Operand(*mb, bb[1], b.offset))


class Cublas:
    """A cuBLAS handle bound to one stream."""

    def __init__(self, stream: int, lib: Any = None) -> None:  # noqa: ANN401
        """A handle on `stream`; `lib`: the cuBLAS library as ctypes loads it (default: the `nvidia-cublas` one)."""
        if lib is None:
            from cuda.pathfinder import load_nvidia_dynamic_lib
            lib = ctypes.CDLL(load_nvidia_dynamic_lib("cublas").abs_path)
        self.lib = lib
        self.lib.cublasGemmStridedBatchedEx.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_int,
            ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_longlong, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.handle = ctypes.c_void_p()
        _check(self.lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        _check(self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream)), "cublasSetStream")

    def gemm(self, plan: GemmPlan, dtype: DType, a_ptr: int, b_ptr: int, c_ptr: int) -> None:
        """C (row-major, contiguous) = A @ B for every batch; the pointers are at element 0 of each base buffer."""
        scalar = ctypes.c_double if dtype == float64 else ctypes.c_float
        alpha, beta = scalar(1.0), scalar(0.0)
        size = dtype.itemsize
        t = CUDA_R[dtype]
        _check(self.lib.cublasGemmStridedBatchedEx(
            self.handle, plan.b.op, plan.a.op, plan.n, plan.m, plan.k, ctypes.byref(alpha),
            ctypes.c_void_p(b_ptr + plan.b.offset * size), t, plan.b.ld, plan.b.batch_stride,
            ctypes.c_void_p(a_ptr + plan.a.offset * size), t, plan.a.ld, plan.a.batch_stride,
            ctypes.byref(beta), ctypes.c_void_p(c_ptr), t, plan.n, plan.m * plan.n, plan.batch, COMPUTE[dtype],
            GEMM_DEFAULT), "cublasGemmStridedBatchedEx")


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"cuda: {what} failed with cuBLAS status {status}")


def emulate_gemm(plan: GemmPlan, a_flat: Any, b_flat: Any) -> Any:  # noqa: ANN401 - numpy arrays
    """What cuBLAS computes for `plan` on flat host buffers, in NumPy (column-major semantics): a test oracle."""
    import numpy as np

    def operand(flat: Any, o: Operand, rows: int, cols: int, batch: int) -> Any:  # noqa: ANN401
        # column-major op(X) of shape rows x cols, stored as X (cols x rows if op T)
        r, c = (rows, cols) if o.op == OP_N else (cols, rows)
        out = np.empty((batch, rows, cols), flat.dtype)
        for i in range(batch):
            base = o.offset + i * o.batch_stride
            x = np.array([[flat[base + p + q * o.ld] for q in range(c)] for p in range(r)], flat.dtype).reshape(r, c)
            out[i] = x if o.op == OP_N else x.T
        return out

    bt = operand(b_flat, plan.b, plan.n, plan.k, plan.batch)  # B^T: n x k
    at = operand(a_flat, plan.a, plan.k, plan.m, plan.batch)  # A^T: k x m
    ct = bt.astype(np.float64) @ at.astype(np.float64)  # C^T: n x m, column-major = C row-major
    return np.transpose(ct, (0, 2, 1)).astype(a_flat.dtype)
