"""The CBLAS gemm a compiled step calls, as function pointers: the OpenBLAS NumPy bundles, or with
`FUSEGRAD_BLAS=mkl` Intel MKL (`pip install fusegrad[mkl]`, the BLAS PyTorch ships; up to 1.5x faster on a
training step's small products, but its rounding differs from the eager device's OpenBLAS).

Both take 64-bit integer arguments, and both run their threads on the
kernels' GNU OpenMP pool (MKL through its GNU threading layer), so BLAS and kernels never spin against each other.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..dtype import DType, float32, float64

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
PREFERENCE = ("openblas", "mkl")  # the eager device multiplies with OpenBLAS: a replayed step then equals it


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
    """The BLAS compiled steps use: `FUSEGRAD_BLAS` if set (an unknown or missing one raises), else the first of
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


def _address(names: tuple[str, ...]) -> int | None:
    name = blas_library()
    lib = _load(name) if name else None
    for symbol in names if lib is not None else ():
        if hasattr(lib, symbol):
            return ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    return None


def cblas_gemm(dtype: DType) -> int | None:
    """Address of `cblas_?gemm` with 64-bit integer arguments for float32/float64, or None where there is none
    (the compiled step then multiplies with a plain loop nest)."""
    name = blas_library()
    return _address(LIBRARIES[name].gemm.get(dtype, ())) if name else None


def blas_threads_setter() -> int | None:
    """Address of the BLAS's per-thread thread count setter (`int f(int)`, 0 = the default), or None. Small
    products run on one thread: waking BLAS threads costs more than they save there."""
    name = blas_library()
    return _address((LIBRARIES[name].threads_local,)) if name else None
