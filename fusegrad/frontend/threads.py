"""torch.set_num_threads / get_num_threads: the threads the `cpu` device's kernels and its BLAS run on.

The compiled kernels' parallel loops are GNU OpenMP regions without a thread count, so they take libgomp's
`nthreads-var` (OMP_NUM_THREADS, else one per core); BLAS (MKL through its GNU layer, or OpenBLAS through
`runtime/blas_threads.py`) runs on the same pool with its own job count. Both are settable while running.
"""
from __future__ import annotations

import ctypes
import functools


@functools.cache
def _libgomp() -> ctypes.CDLL | None:
    """The process's GNU OpenMP runtime (the one compiled kernels link), or None where it is missing."""
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None


def _set_blas_threads(n: int) -> None:
    """Set the thread count of the BLAS the `cpu` device multiplies with, where it has a setter."""
    from ..runtime import blas
    try:
        name = blas.blas_library()
    except (RuntimeError, ValueError):  # a bad FUSEGRAD_BLAS: the cpu device reports it when it multiplies
        return
    lib = blas._load(name) if name else None
    setters = ("MKL_Set_Num_Threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
               "openblas_set_num_threads")
    setter = next((getattr(lib, s) for s in setters if lib is not None and hasattr(lib, s)), None)
    if setter is not None:
        setter.restype, setter.argtypes = None, [ctypes.c_int]
        setter(n)


def set_num_threads(n: int) -> None:
    """Run the cpu device's kernels and BLAS on n threads. Like OpenMP itself, the count belongs to the calling
    thread: kernels realized from other Python threads keep theirs. Compiled jit steps fix their split-k products'
    thread count (min(cores, 8)) when compiled, and a forked child runs on 1 thread whatever was set."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    if n <= 0:
        raise RuntimeError(f"set_num_threads expects a positive integer, got {n}")
    gomp = _libgomp()
    if gomp is not None:
        gomp.omp_set_num_threads(ctypes.c_int(n))
    _set_blas_threads(n)


def get_num_threads() -> int:
    """The number of threads the cpu device's parallel kernels use from this thread (1 without OpenMP)."""
    gomp = _libgomp()
    return int(gomp.omp_get_max_threads()) if gomp is not None else 1
