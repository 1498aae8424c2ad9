"""The `cuda` device on a machine without a GPU: fusegrad's own CudaDevice (host code unchanged) over a CUDA driver
and a cuBLAS that run on the CPU, so the printed CUDA kernels compute real values the test suite can check.

- Kernels: the CUDA C++ fusegrad prints, with its prelude (all but the float16 conversions, which are PTX), is
  compiled by g++ against `cuda_emulator.h`, which runs each block's threads as fibers so shared memory,
  `__syncthreads` and warp shuffles behave as on a GPU. Arguments arrive as cuLaunchKernel's `kernelParams`.
- The driver: device memory is host memory with a guard after every allocation (checked after every kernel, so a
  write out of bounds fails the test); a stream runs its work at once; stream capture records that work as a graph
  to launch again, whose kernel nodes take new arguments; the calls a capture forbids raise.
- cuBLAS: `cublasGemmStridedBatchedEx` as a C function pointer with cuBLAS's signature, computing column-major
  strided-batched GEMM with NumPy, so fusegrad's Cublas wrapper passes its arguments through ctypes as for real.

What this cannot show: timing, PTX and the GPU's own math (NVRTC's compile of the same source is tested in
test_cuda_render.py), memory ordering beyond what barriers give, and anything of the real driver's behaviour not
written down here.
"""
from __future__ import annotations

import bisect
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from fusegrad.codegen.cuda import CUDA_HELPERS, HALF_ROUNDING
from fusegrad.runtime.cublas import Cublas
from fusegrad.runtime.cuda import CudaDevice, cuda_available

SHIM = Path(__file__).with_name("cuda_emulator.h")
GUARD = 256  # bytes after each allocation that no kernel may write
GUARD_BYTE = 0xA5
SMS = 2  # a small GPU: grids are capped at 32 blocks per SM, so grid-stride loops go round many times


def emulator_available() -> bool:
    """True where g++ can build emulated kernels."""
    return shutil.which("g++") is not None


def child_prelude(device: str) -> str:
    """Python that makes `device` in a child interpreter what it is in the tests (the emulated cuda registers)."""
    if device != "cuda" or cuda_available():
        return ""
    return (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from cuda_emulator import EmulatedCudaDevice\nfrom fusegrad.runtime import register_device\n"
            "register_device('cuda', EmulatedCudaDevice)\n")


class EmulatorError(RuntimeError):
    """Something a real GPU would also refuse: a deadlocked block, an out-of-bounds write, a forbidden call."""


class Kernel:
    """A compiled kernel: cuLaunchKernel's `f`."""

    def __init__(self, lib: ctypes.CDLL, name: str):
        self.name = name
        self.launch = getattr(lib, f"fg_launch_{name}")
        self.launch.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
        self.params = getattr(lib, f"fg_params_{name}")()


_LAUNCH_ERRORS = {1: "its threads deadlocked", 2: "a launch shape no GPU takes",
                  3: "threads of one warp or block met at different shuffles or barriers"}


class KernelNode:
    """A kernel launch with its argument values copied, as a stream runs it and a graph holds it."""

    def __init__(self, driver: EmulatedDriver, fn: Kernel, grid: int, block: int, params: int):
        self.driver = driver
        self.set(fn, grid, block, params)

    def set(self, fn: Kernel, grid: int, block: int, params: int) -> None:
        pointers = np.ctypeslib.as_array(ctypes.cast(params, ctypes.POINTER(ctypes.c_uint64)), (fn.params,))
        # every parameter fusegrad passes is 8 bytes: copy each value now, as the driver does
        self.values = np.array([ctypes.c_uint64.from_address(int(p)).value for p in pointers], np.uint64)
        self.fn, self.grid, self.block = fn, grid, block

    def __call__(self) -> None:
        addresses = self.values.ctypes.data + 8 * np.arange(len(self.values), dtype=np.uint64)
        status = self.fn.launch(self.grid, self.block, addresses.ctypes.data)
        if status:
            raise EmulatorError(f"{self.fn.name}: {_LAUNCH_ERRORS[status]} "
                                f"(grid {self.grid}, block {self.block})")
        self.driver.check_guards(self.fn.name, self.values)


class EmulatedDriver:
    """The part of cuda-bindings' `driver` module CudaDevice calls, answering (CUresult, *values) like it."""

    CUresult = SimpleNamespace(CUDA_SUCCESS=0, CUDA_ERROR_OUT_OF_MEMORY=2)
    CUdevice_attribute = SimpleNamespace(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
                                         CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76,
                                         CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT=16)
    CUstream_flags = SimpleNamespace(CU_STREAM_NON_BLOCKING=1)
    CUstreamCaptureMode = SimpleNamespace(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL=1)
    CUDA_KERNEL_NODE_PARAMS = SimpleNamespace

    def __init__(self) -> None:
        self.memory: dict[int, tuple[np.ndarray, int]] = {}  # address -> (backing array, requested size)
        self.starts: list[int] = []  # the addresses, sorted
        self.capture: list[Callable[[], None]] | None = None  # the graph being recorded, while a capture runs

    # ---- context, device, stream ----

    def cuInit(self, flags: int) -> tuple:  # noqa: N802 - the driver's names
        return (0,)

    def cuDeviceGet(self, ordinal: int) -> tuple:  # noqa: N802
        return 0, ordinal

    def cuDevicePrimaryCtxRetain(self, device: int) -> tuple:  # noqa: N802
        return 0, "context"

    def cuCtxSetCurrent(self, context: Any) -> tuple:  # noqa: N802, ANN401
        return (0,)

    def cuDeviceGetAttribute(self, attribute: int, device: int) -> tuple:  # noqa: N802
        return 0, {75: 9, 76: 0, 16: SMS}[attribute]

    def cuStreamCreate(self, flags: int) -> tuple:  # noqa: N802
        return 0, 1

    def cuGetErrorName(self, err: int) -> tuple:  # noqa: N802
        return 0, f"CUresult {int(err)}".encode()

    def cuStreamSynchronize(self, stream: int) -> tuple:  # noqa: N802
        self._forbidden_while_capturing("cuStreamSynchronize")
        return (0,)

    def _forbidden_while_capturing(self, what: str) -> None:
        if self.capture is not None:
            raise EmulatorError(f"{what} while a stream is being captured (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)")

    def enqueue(self, work: Callable[[], None]) -> None:
        """Stream order: run now, or add to the graph being captured."""
        if self.capture is None:
            work()
        else:
            self.capture.append(work)

    # ---- memory ----

    def cuMemAlloc(self, nbytes: int) -> tuple:  # noqa: N802
        self._forbidden_while_capturing("cuMemAlloc")
        backing = np.empty(nbytes + 2 * GUARD, np.uint8)
        address = -(-backing.ctypes.data // GUARD) * GUARD  # 256-byte aligned, as cuMemAlloc's are
        start = address - backing.ctypes.data
        backing[start:start + nbytes] = 0x5A  # fresh device memory is not zeroed: reading it unwritten shows
        backing[start + nbytes:start + nbytes + GUARD] = GUARD_BYTE
        self.memory[address] = (backing, nbytes)
        bisect.insort(self.starts, address)
        return 0, address

    def cuMemFree(self, address: int) -> tuple:  # noqa: N802
        self.memory.pop(int(address))
        self.starts.remove(int(address))
        return (0,)

    def check_guards(self, after: str, pointers: Iterable[int]) -> None:
        """Raise if something given these pointers (and perhaps other values) wrote past the end of the allocation
        one of them points into."""
        for p in map(int, pointers):
            i = bisect.bisect_right(self.starts, p) - 1
            if i < 0:
                continue
            address = self.starts[i]
            backing, nbytes = self.memory[address]
            start = address - backing.ctypes.data + nbytes
            if p <= address + nbytes and np.any(backing[start:start + GUARD] != GUARD_BYTE):
                raise EmulatorError(f"{after} wrote past the end of a {nbytes}-byte allocation")

    def cuMemcpyHtoDAsync(self, dst: int, src: int, nbytes: int, stream: int) -> tuple:  # noqa: N802
        self._forbidden_while_capturing("a copy from pageable host memory")
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cuMemcpyDtoHAsync(self, dst: int, src: int, nbytes: int, stream: int) -> tuple:  # noqa: N802
        self._forbidden_while_capturing("a copy to pageable host memory")
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cuMemcpyDtoDAsync(self, dst: int, src: int, nbytes: int, stream: int) -> tuple:  # noqa: N802
        self.enqueue(lambda: ctypes.memmove(dst, src, nbytes))
        return (0,)

    def cuMemsetD8Async(self, dst: int, value: int, nbytes: int, stream: int) -> tuple:  # noqa: N802
        self.enqueue(lambda: ctypes.memset(dst, value, nbytes))
        return (0,)

    # ---- kernels ----

    def cuLaunchKernel(self, fn: Kernel, gx: int, gy: int, gz: int, bx: int, by: int, bz: int,  # noqa: N802
                       shared: int, stream: int, params: int, extra: int) -> tuple:
        if (gy, gz, by, bz, shared, extra) != (1, 1, 1, 1, 0, 0):
            raise EmulatorError("the emulator runs 1-d grids and blocks without dynamic shared memory only")
        self.enqueue(KernelNode(self, fn, gx, bx, params))
        return (0,)

    # ---- graphs ----

    def cuStreamBeginCapture(self, stream: int, mode: int) -> tuple:  # noqa: N802
        if self.capture is not None:
            raise EmulatorError("cuStreamBeginCapture on a stream that is being captured")
        self.capture = []
        return (0,)

    def cuStreamGetCaptureInfo(self, stream: int) -> tuple:  # noqa: N802
        # CUDA 13: status, id, graph, the nodes the next one will depend on (the last captured), edge data, count
        deps = [self.capture[-1]] if self.capture else []
        return 0, 1, 1, "graph", deps, [], len(deps)

    def cuStreamEndCapture(self, stream: int) -> tuple:  # noqa: N802
        graph, self.capture = self.capture, None
        return 0, graph

    def cuGraphInstantiate(self, graph: list, flags: int) -> tuple:  # noqa: N802
        return 0, list(graph)

    def cuGraphExecKernelNodeSetParams(self, graph: list, node: KernelNode, params: Any) -> tuple:  # noqa: N802, ANN401
        if not any(n is node for n in graph):
            raise EmulatorError("cuGraphExecKernelNodeSetParams: the node is not in this graph")
        node.set(params.func, params.gridDimX, params.blockDimX, params.kernelParams)
        return (0,)

    def cuGraphLaunch(self, graph: list, stream: int) -> tuple:  # noqa: N802
        self._forbidden_while_capturing("cuGraphLaunch")  # fusegrad never nests graphs
        for work in graph:
            work()
        return (0,)

    def cuGraphDestroy(self, graph: Any) -> tuple:  # noqa: N802, ANN401
        return (0,)

    def cuGraphExecDestroy(self, graph: Any) -> tuple:  # noqa: N802, ANN401
        return (0,)


# ---- cuBLAS ----

_GEMM = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_int,
    ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong,
    ctypes.c_int, ctypes.c_int, ctypes.c_int)
_DATA_TYPES = {0: (np.float32, ctypes.c_float), 1: (np.float64, ctypes.c_double), 2: (np.float16, ctypes.c_float)}
_COMPUTE = {68: np.float32, 70: np.float64}  # CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_64F


def _column_major(address: int, dtype: np.dtype, rows: int, cols: int, ld: int, stride: int, batch: int) \
        -> np.ndarray:
    """A stack of column-major rows x cols matrices with leading dimension `ld`, read in place."""
    item = np.dtype(dtype).itemsize
    span = (batch - 1) * stride + (cols - 1) * ld + rows if rows and cols and batch else 0
    flat = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_uint8)), (max(span, 1) * item,))
    return np.lib.stride_tricks.as_strided(flat.view(dtype), (batch, rows, cols), (stride * item, item, ld * item))


class EmulatedCublas:
    """cuBLAS's C entry points that fusegrad.runtime.cublas calls, as ctypes function pointers; GEMMs go on the
    driver's stream (so a graph captures them)."""

    def __init__(self, driver: EmulatedDriver):
        self.driver = driver
        self.cublasGemmStridedBatchedEx = _GEMM(self._gemm)
        self.cublasCreate_v2 = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(lambda handle: 0)
        self.cublasSetStream_v2 = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda h, s: 0)

    def _gemm(self, handle: int, transa: int, transb: int, m: int, n: int, k: int, alpha: int, a: int, atype: int,
              lda: int, stride_a: int, b: int, btype: int, ldb: int, stride_b: int, beta: int, c: int, ctype: int,
              ldc: int, stride_c: int, batch: int, compute: int, algo: int) -> int:
        """C = alpha op(A) op(B) + beta C, column-major, for each of `batch` strided matrices."""
        dtype, scalar = _DATA_TYPES[ctype]
        if atype != ctype or btype != ctype or compute not in _COMPUTE or min(m, n, k, batch) < 0:
            return 7  # CUBLAS_STATUS_INVALID_VALUE
        if lda < max(1, m if transa == 0 else k) or ldb < max(1, k if transb == 0 else n) or ldc < max(1, m):
            return 7
        alpha_value, beta_value = scalar.from_address(alpha).value, scalar.from_address(beta).value

        def run() -> None:
            op_a = _column_major(a, dtype, *((m, k) if transa == 0 else (k, m)), lda, stride_a, batch)
            op_b = _column_major(b, dtype, *((k, n) if transb == 0 else (n, k)), ldb, stride_b, batch)
            out = _column_major(c, dtype, m, n, ldc, stride_c, batch)
            op_a = op_a if transa == 0 else op_a.transpose(0, 2, 1)
            op_b = op_b if transb == 0 else op_b.transpose(0, 2, 1)
            acc = _COMPUTE[compute]
            result = alpha_value * (op_a.astype(acc) @ op_b.astype(acc))
            if beta_value != 0:
                result += beta_value * out.astype(acc)
            out[...] = result.astype(dtype)
            self.driver.check_guards("a cuBLAS GEMM", [c])

        self.driver.enqueue(run)
        return 0


# ---- the device ----

def _build_kernels(sources: dict[str, str]) -> dict[str, Kernel]:
    """g++ builds the kernels (cached by source in the temp directory) and each becomes a `Kernel`."""
    exports = [f"FG_EXPORT({name}, {int('__syncthreads' in src or '__shfl' in src)})" for name, src in sources.items()]
    text = "\n".join([f'#include "{SHIM}"', CUDA_HELPERS + HALF_ROUNDING, *sources.values(), *exports]) + "\n"
    key = hashlib.sha256((text + SHIM.read_text()).encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / f"fusegrad-cuda-emulator-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    library = folder / f"{key}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            source = Path(tmp, "kernels.cpp")
            source.write_text(text)
            built = Path(tmp, "kernels.so")
            result = subprocess.run(["g++", "-std=c++17", "-O0", "-shared", "-fPIC", "-ffp-contract=off", "-w",
                                     "-o", str(built), str(source), "-lm"], capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"g++ rejected the emulated CUDA source:\n{result.stderr[-4000:]}")
            os.replace(built, library)
    lib = ctypes.CDLL(str(library))
    return {name: Kernel(lib, name) for name in sources}


class EmulatedCudaDevice(CudaDevice):
    """fusegrad's CudaDevice, unchanged but for where its kernels are built: g++ instead of NVRTC."""

    def __init__(self) -> None:
        super().__init__(driver=EmulatedDriver())
        self._cublas = Cublas(self.stream_handle, lib=EmulatedCublas(self.cu))

    def __repr__(self) -> str:
        return "<CudaDevice emulated on the CPU>"

    def _build(self, sources: dict[str, str]) -> dict[str, Any]:
        return _build_kernels(sources)
