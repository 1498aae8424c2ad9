"""Run NumPy's OpenBLAS on the OpenMP threads of the compiled kernels instead of its own thread pool.

OpenBLAS's threads spin for a long while after each product (about 2^28 cycles) waiting for more work. On a machine
with few cores they hold the cores that the next compiled kernel's OpenMP threads need, and that kernel runs up to
twice as slow (an im2col right after a conv's product, a bias + relu after a linear layer). OpenBLAS 0.3.27+ can
hand its parallel work to a callback: ours runs the jobs on the same OpenMP pool as the kernels, whose idle threads
spin briefly and then sleep (`runtime/cpu.OPENMP_SPIN_COUNT`), so the two never compete.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np

from .compiler import CompileError, compile_library, find_compiler, openmp_flags

# OpenBLAS starts every job of a call at once and some wait for others: the team must have one thread per job
CALLBACK_SOURCE = """#include <stddef.h>
typedef void (*fg_dojob)(int thread_num, void* jobdata, int dojob_data);
void fg_blas_threads(int sync, fg_dojob dojob, int numjobs, size_t size, void* jobdata, int dojob_data) {
  (void)sync;
  #pragma omp parallel for num_threads(numjobs) schedule(static, 1)
  for (int i = 0; i < numjobs; i++) dojob(i, (char*)jobdata + (size_t)i * size, dojob_data);
}
"""
SETTERS = ("scipy_openblas_set_threads_callback_function64_", "openblas_set_threads_callback_function64_",
           "openblas_set_threads_callback_function")


def _openblas() -> ctypes.CDLL | None:
    """NumPy's bundled OpenBLAS (wheels ship it under numpy.libs or .dylibs), or None."""
    root = os.path.dirname(np.__file__)
    for path in sorted(glob.glob(os.path.join(os.path.dirname(root), "numpy.libs", "*openblas*")) +
                       glob.glob(os.path.join(root, ".dylibs", "*openblas*"))):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@functools.cache
def share_threads_with_blas() -> bool:
    """Install the callback once per process; True if OpenBLAS now runs on the kernels' OpenMP threads.
    FUSEGRAD_BLAS_OWN_THREADS=1 leaves OpenBLAS its own pool."""
    if os.environ.get("FUSEGRAD_BLAS_OWN_THREADS") == "1":
        return False
    lib = _openblas()
    setter = next((getattr(lib, name) for name in SETTERS if lib is not None and hasattr(lib, name)), None)
    cc = find_compiler()
    if setter is None or cc is None or not openmp_flags(cc):
        return False
    try:
        callback = compile_library(CALLBACK_SOURCE, ["fg_blas_threads"])
    except CompileError:
        return False
    setter.restype = None
    setter.argtypes = [ctypes.c_void_p]
    setter(ctypes.cast(callback.fg_blas_threads, ctypes.c_void_p))
    _keep.append(callback)  # the library must stay loaded while OpenBLAS holds the pointer
    # GNU OpenMP's threads do not survive fork (a child's first parallel region hangs): a forked child (a
    # multiprocessing worker) gives OpenBLAS back its own pool, which OpenBLAS rebuilds after fork
    os.register_at_fork(after_in_child=lambda: setter(None))
    return True


_keep: list[ctypes.CDLL] = []
