"""The CBLAS gemm that NumPy ships (scipy-openblas, 64-bit integers), as a function pointer compiled code can call."""
from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np

from ..dtype import DType, float32, float64

# NumPy wheels bundle OpenBLAS with prefixed ILP64 symbols; a NumPy built against a system BLAS has none of these
SYMBOLS = {float32: ("scipy_cblas_sgemm64_", "cblas_sgemm64_"), float64: ("scipy_cblas_dgemm64_", "cblas_dgemm64_")}


@functools.cache
def _library() -> ctypes.CDLL | None:
    root = os.path.dirname(os.path.dirname(np.__file__))
    for path in sorted(glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) +
                       glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@functools.cache
def cblas_gemm(dtype: DType) -> int | None:
    """Address of `cblas_?gemm` with 64-bit integer arguments for float32/float64, or None where there is none
    (the compiled step then multiplies with a plain loop nest)."""
    lib = _library()
    if lib is None or dtype not in SYMBOLS:
        return None
    for name in SYMBOLS[dtype]:
        if hasattr(lib, name):
            return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    return None


@functools.cache
def blas_threads_setter() -> int | None:
    """Address of OpenBLAS's `openblas_set_num_threads_local(int)` (a per-thread thread count; 0 = the default),
    or None. Small products run on one thread: waking BLAS threads costs more than they save there."""
    lib = _library()
    if lib is None or not hasattr(lib, "openblas_set_num_threads_local"):
        return None
    return ctypes.cast(lib.openblas_set_num_threads_local, ctypes.c_void_p).value
