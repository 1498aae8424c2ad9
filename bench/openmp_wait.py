"""One OpenMP wait setting for every framework a benchmark runs in its process (both OpenMP runtimes read it).

torch and fusegrad each load an OpenMP runtime. Threads of one that spin long after their work (libgomp's default,
~10 ms) hold the cores the other's next call needs: a torch thread spinning on a busy 2-core machine made a
batch-1 step 100x slower. Threads that sleep at once (`OMP_WAIT_POLICY=passive`) take tens of us to wake for every
parallel call, which made small training steps 2-3x slower (torch's and fusegrad's alike). Both therefore get the
short spin that fusegrad's cpu device sets for itself (`fusegrad.runtime.cpu.OPENMP_SPIN_COUNT`), unless the caller
set one.
"""
from __future__ import annotations

import os

SPIN_COUNT = "5000"  # fusegrad.runtime.cpu.OPENMP_SPIN_COUNT (not imported: it must be set before numpy loads)


def configure_openmp_wait() -> str:
    """Set the wait policy before any OpenMP runtime loads; returns it as the benchmarks print it."""
    if "OMP_WAIT_POLICY" in os.environ:
        return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
