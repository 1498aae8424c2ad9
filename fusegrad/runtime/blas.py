"""The CBLAS gemm the `cpu` device multiplies with, eager and in compiled steps alike: Intel MKL where it is
installed (`pip install fusegrad[mkl]`, the BLAS PyTorch ships; up to 1.5x faster than OpenBLAS on a training
step's small products), else the OpenBLAS NumPy bundles. `FUSEGRAD_BLAS=openblas|mkl` picks one.

Both take 64-bit integer arguments, and both run their threads on the
kernels' GNU OpenMP pool (MKL through its GNU threading layer), so BLAS and kernels never spin against each other.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..dtype import DType, float32, float64
from ..view import matrix_layout

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enum values
MKL_THREADING_GNU = 3  # mkl_service.h: MKL's threads are libgomp's, the pool the compiled kernels use


def _openblas_paths() -> list[str]:
    root = os.path.dirname(os.path.dirname(np.__file__))
    return sorted(glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) +
                  glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*")))


def _mkl_paths() -> list[str]:
    found = ctypes.util.find_library("mkl_rt")
    return sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*"))) + ([found] if found else [])


@dataclass(frozen=True)
class BlasLibrary:
    """Where one BLAS lives and what its symbols are called."""
    name: str
    paths: Callable[[], list[str]]
    gemm: dict[DType, tuple[str, ...]]  # ILP64 cblas_?gemm, first present wins
    threads_local: str  # int f(int): this calling thread's BLAS thread count, 0 = the default
    setup: Callable[[ctypes.CDLL], object] = lambda lib: None


LIBRARIES = {
    # NumPy wheels bundle OpenBLAS with prefixed ILP64 symbols; a NumPy built against a system BLAS has none of these
    "openblas": BlasLibrary("openblas", _openblas_paths,
                            {float32: ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
                             float64: ("scipy_cblas_dgemm64_", "cblas_dgemm64_")},
                            "openblas_set_num_threads_local"),
    "mkl": BlasLibrary("mkl", _mkl_paths, {float32: ("cblas_sgemm_64",), float64: ("cblas_dgemm_64",)},
                       "MKL_Set_Num_Threads_Local",
                       lambda lib: lib.MKL_Set_Threading_Layer(MKL_THREADING_GNU)),
}
PREFERENCE = ("mkl", "openblas")


@functools.cache
def _load(name: str) -> ctypes.CDLL | None:
    spec = LIBRARIES[name]
    for path in spec.paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if any(hasattr(lib, s) for symbols in spec.gemm.values() for s in symbols):
            spec.setup(lib)  # before MKL's first call, which fixes its threading layer
            return lib
    return None


def available_blas() -> list[str]:
    """The BLAS libraries this process can load, most preferred first."""
    return [name for name in PREFERENCE if _load(name) is not None]


def blas_library() -> str | None:
    """The BLAS the cpu device uses: `FUSEGRAD_BLAS` if set (an unknown or missing one raises), else the first of
    `available_blas()`; None where there is none (matmuls then run as plain loop nests)."""
    choice = os.environ.get("FUSEGRAD_BLAS", "")
    if not choice:
        return next((name for name in PREFERENCE if _load(name) is not None), None)  # loads no library past it
    if choice not in LIBRARIES:
        raise ValueError(f"FUSEGRAD_BLAS={choice!r}: expected one of {sorted(LIBRARIES)}")
    if _load(choice) is None:
        raise RuntimeError(f"FUSEGRAD_BLAS={choice!r} but it cannot be loaded here (available: {available_blas()})"
                           + ("; pip install 'fusegrad[mkl]'" if choice == "mkl" else ""))
    return choice


@functools.cache
def _address(name: str, names: tuple[str, ...]) -> int | None:
    lib = _load(name)
    for symbol in names if lib is not None else ():
        if hasattr(lib, symbol):
            return ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    return None


def cblas_gemm(dtype: DType) -> int | None:
    """Address of `cblas_?gemm` with 64-bit integer arguments for float32/float64, or None where there is none
    (the compiled step then multiplies with a plain loop nest)."""
    name = blas_library()
    return _address(name, LIBRARIES[name].gemm.get(dtype, ())) if name else None


SINGLE_THREAD_GEMM = 1 << 20  # multiply-adds below which one BLAS thread beats two (measured: MLP, LeNet, GPT steps)


def gemm_threads(m: int, n: int, k: int) -> int:
    """BLAS threads for one (m, n, k) product, 0 = the BLAS's default. Eager and compiled steps both follow it: a
    BLAS may sum in another order on another number of threads (MKL does)."""
    return 1 if m * n * k < SINGLE_THREAD_GEMM else 0


def blas_threads_setter() -> int | None:
    """Address of the BLAS's per-thread thread count setter (`int f(int)`, 0 = the default), or None. Small
    products run on one thread: waking BLAS threads costs more than they save there."""
    name = blas_library()
    return _address(name, (LIBRARIES[name].threads_local,)) if name else None


def blas_layout(rows: int, cols: int, s_rows: int, s_cols: int) -> tuple[int, int] | None:
    """(CBLAS transpose flag, leading dimension) of a strided matrix (element strides), or None if BLAS can't
    read it (`view.matrix_layout`)."""
    layout = matrix_layout(rows, cols, s_rows, s_cols)
    return None if layout is None else (TRANS if layout[0] else NO_TRANS, layout[1])


# one ctypes call per product, however many batch matrices: a Python call per matrix costs more than small ones
BATCHED_SOURCE = """#include <stdint.h>
#define FG_BATCHED(name, T) \\
typedef void (*name##_t)(int, int, int, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*, \\
                         int64_t); \\
void name(void* gemm, int ta, int tb, int64_t m, int64_t n, int64_t k, const char* a, int64_t lda, const char* b, \\
          int64_t ldb, char* c, const int64_t* offsets, int64_t count, void* threads, int nthreads) { \\
  if (threads) ((int (*)(int))threads)(nthreads); \\
  for (int64_t i = 0; i < count; i++) \\
    ((name##_t)gemm)(101, ta, tb, m, n, k, 1, (const T*)(a + offsets[3 * i]), lda, \\
                     (const T*)(b + offsets[3 * i + 1]), ldb, 0, (T*)(c + offsets[3 * i + 2]), n); \\
}
FG_BATCHED(fg_gemm_batched_f32, float)
FG_BATCHED(fg_gemm_batched_f64, double)
"""
BATCHED = {np.dtype(np.float32): "fg_gemm_batched_f32", np.dtype(np.float64): "fg_gemm_batched_f64"}


@functools.cache
def _batched() -> ctypes.CDLL:
    from .compiler import compile_library
    lib = compile_library(BATCHED_SOURCE, list(BATCHED.values()))
    for name in BATCHED.values():
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] + [ctypes.c_int64] * 3 + \
            [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
             ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    return lib


def _byte_offsets(shape: tuple[int, ...], *strides: tuple[int, ...]) -> np.ndarray:
    """(count, len(strides)) byte offsets of every batch matrix of each operand (its byte strides), row-major over
    the batch `shape`."""
    if not shape:  # one matrix each, at offset 0: no index grid
        return np.zeros((1, len(strides)), np.int64)
    grid = np.indices(shape, dtype=np.int64).reshape(len(shape), -1)
    return np.stack([np.asarray(s[:len(shape)], np.int64) @ grid for s in strides], axis=1)


class PreparedProduct:
    """One product's BLAS call with all but the operands' addresses fixed (sizes, layouts, batch offsets, thread
    count): an eager MATMUL that repeats is one ctypes call."""

    __slots__ = ("fn", "head", "lda", "ldb", "a_offset", "b_offset", "offsets", "tail")

    def __init__(self, fn: ctypes._CFuncPtr, head: tuple, lda: int, ldb: int, a_offset: int, b_offset: int,
                 offsets: np.ndarray, tail: tuple):
        self.fn, self.head, self.lda, self.ldb, self.tail = fn, head, lda, ldb, tail
        self.a_offset, self.b_offset, self.offsets = a_offset, b_offset, offsets  # offsets: kept alive for C

    def __call__(self, a: int, b: int, out: int) -> None:
        """out = a @ b, given the address each operand's view starts from (its base buffer's)."""
        self.fn(*self.head, a + self.a_offset, self.lda, b + self.b_offset, self.ldb, out, *self.tail)


def prepare_product(a: tuple[tuple[int, ...], tuple[int, ...], int], b: tuple[tuple[int, ...], tuple[int, ...], int],
                    dtype: np.dtype) -> PreparedProduct | None:
    """The BLAS call computing (batch..., m, n) = a @ b into a contiguous output, from each operand's (shape,
    element strides, element offset) with equal batch dims; None where numpy.matmul must do it (the BLAS is NumPy's
    own, or can't read an operand, or the product is empty)."""
    name, dtype = blas_library(), np.dtype(dtype)
    (a_shape, a_strides, a_offset), (b_shape, b_strides, b_offset) = a, b
    if name in (None, "openblas") or dtype not in BATCHED or a_shape[:-2] != b_shape[:-2]:
        return None
    *batch, m, k = a_shape
    n = b_shape[-1]
    la, lb = blas_layout(m, k, *a_strides[-2:]), blas_layout(k, n, *b_strides[-2:])
    address = _address(name, LIBRARIES[name].gemm[float32 if dtype == np.float32 else float64])
    if la is None or lb is None or address is None or k == 0 or math.prod(batch) * m * n == 0:
        return None
    item = dtype.itemsize
    out_strides = tuple(math.prod(batch[i + 1:]) * m * n * item for i in range(len(batch)))
    offsets = _byte_offsets(tuple(batch), tuple(s * item for s in a_strides), tuple(s * item for s in b_strides),
                            out_strides)
    return PreparedProduct(getattr(_batched(), BATCHED[dtype]), (address, la[0], lb[0], m, n, k), la[1], lb[1],
                           a_offset * item, b_offset * item, offsets,
                           (offsets.ctypes.data, len(offsets), blas_threads_setter(), gemm_threads(m, n, k)))


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b (batch dims already broadcast alike, out contiguous) with the BLAS compiled steps call, so eager
    and replayed products round alike; numpy.matmul where that BLAS is NumPy's own or can't read the operands."""
    item = a.itemsize
    product = None
    if out.shape[:-2] == a.shape[:-2] and not any(s % item for s in a.strides + b.strides):
        product = prepare_product((a.shape, tuple(s // item for s in a.strides), 0),
                                  (b.shape, tuple(s // item for s in b.strides), 0), out.dtype)
    if product is None:
        return np.matmul(a, b, out=out)  # NumPy's own matmul is OpenBLAS already
    product(a.ctypes.data, b.ctypes.data, out.ctypes.data)
    return out
