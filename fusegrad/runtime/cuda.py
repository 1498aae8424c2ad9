"""The `cuda` device: kernels printed as CUDA C++, compiled by NVRTC to a cubin for the GPU's architecture, launched
with the CUDA driver API through NVIDIA's `cuda-bindings`; MATMUL through cuBLAS (strided batched GEMM).

Install with `pip install "fusegrad[cuda]"`. Everything runs on one stream of the device's primary context (the one
cuBLAS and other CUDA libraries share), so memory returned to the caching pool is safely reused in stream order.
Kernels are cached in memory by name (a source hash) and as cubins on disk (runtime/nvrtc.py).
"""
from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np

from ..codegen import ir
from ..codegen.c_like import ThreadPlan
from ..codegen.cuda import BLOCK, CUDA_PRELUDE, launch_plan, render_cuda
from ..graph import prod
from ..schedule import ScheduleItem, strided_view
from ..view import View
from .cublas import CUDA_R, Cublas, gemm_plan
from .device import Buffer
from .gpu_device import DeviceArray, GpuDevice, Launch
from .nvrtc import compile_cuda, target_for


@cache
def cuda_available() -> bool:
    """True when cuda-bindings imports, the driver initializes and reports a GPU (never raises)."""
    try:
        import importlib.util
        if importlib.util.find_spec("cuda.bindings") is None:
            return False
        from cuda.bindings import driver as cu
        if int(cu.cuInit(0)[0]) != 0:
            return False
        err, count = cu.cuDeviceGetCount()
        return int(err) == 0 and count > 0
    except Exception:  # no driver library, no device: the device is simply absent
        return False


class CudaError(RuntimeError):
    """A CUDA driver call failed."""


def _ok(result: Any, what: str) -> Any:  # noqa: ANN401 - cuda-bindings returns (error, *values)
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        from cuda.bindings import driver as cu
        name = cu.cuGetErrorName(err)[1]
        raise CudaError(f"cuda: {what} failed: {name.decode() if isinstance(name, bytes) else err!r}")
    return values[0] if len(values) == 1 else values or None


class CudaDevice(GpuDevice):
    """Printed CUDA kernels on GPU $FUSEGRAD_CUDA_DEVICE (default 0)."""

    name = "cuda"

    def __init__(self) -> None:
        from cuda.bindings import driver as cu
        self.cu = cu
        _ok(cu.cuInit(0), "cuInit")
        self.device = _ok(cu.cuDeviceGet(int(os.environ.get("FUSEGRAD_CUDA_DEVICE", "0"))), "cuDeviceGet")
        self.context = _ok(cu.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        _ok(cu.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        attr = cu.CUdevice_attribute
        major = _ok(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.device), "attr")
        minor = _ok(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.device), "attr")
        self.capability = 10 * major + minor
        self.sms = _ok(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, self.device), "attr")
        self.stream = _ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")
        self.stream_handle = int(self.stream)
        self.modules: list[Any] = []  # loaded modules stay alive as long as their functions are cached
        self._cublas: Cublas | None = None
        super().__init__()

    def __repr__(self) -> str:
        return f"<CudaDevice sm_{self.capability}, {self.sms} SMs>"

    @property
    def cublas(self) -> Cublas:
        if self._cublas is None:
            self._cublas = Cublas(self.stream_handle)
        return self._cublas

    def realize(self, nodes: list, order: list | None = None) -> None:
        """Make the context current on this thread, then run the shared realize loop."""
        _ok(self.cu.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        super().realize(nodes)

    # ---- memory ----

    def _allocate(self, nbytes: int) -> int:
        err, ptr = self.cu.cuMemAlloc(nbytes)
        if err == self.cu.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
            raise MemoryError(f"cuda: out of memory allocating {nbytes} bytes")
        _ok((err,), "cuMemAlloc")
        return int(ptr)

    def _free(self, raw: int) -> None:
        self.cu.cuMemFree(raw)

    @staticmethod
    def ptr(mem: DeviceArray) -> int:
        """The device address of a (possibly offset) array."""
        return mem.alloc.raw + mem.offset

    def _upload(self, dst: DeviceArray, host: np.ndarray) -> None:
        # pageable memory: returns once the data is staged, so `host` may be freed right after
        _ok(self.cu.cuMemcpyHtoDAsync(self.ptr(dst), host.ctypes.data, host.nbytes, self.stream), "cuMemcpyHtoD")

    def _download(self, src: DeviceArray, host: np.ndarray) -> None:
        _ok(self.cu.cuMemcpyDtoHAsync(host.ctypes.data, self.ptr(src), host.nbytes, self.stream), "cuMemcpyDtoH")
        self.synchronize()

    def _copy(self, dst: DeviceArray, src: DeviceArray, nbytes: int) -> None:
        _ok(self.cu.cuMemcpyDtoDAsync(self.ptr(dst), self.ptr(src), nbytes, self.stream), "cuMemcpyDtoD")

    def _fill_zero(self, dst: DeviceArray) -> None:
        _ok(self.cu.cuMemsetD8Async(self.ptr(dst), 0, dst.nbytes, self.stream), "cuMemsetD8")

    def _view(self, base: DeviceArray, offset: int, nbytes: int) -> DeviceArray:
        return DeviceArray(base.alloc, base.offset + offset, nbytes)  # device pointers can point anywhere

    def synchronize(self) -> None:
        """Wait for this device's stream."""
        _ok(self.cu.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    # ---- kernels ----

    def render(self, kernel: ir.Kernel) -> tuple[str, ThreadPlan]:
        """CUDA C++ for one kernel, and its thread plan."""
        return render_cuda(kernel), launch_plan(kernel)

    def _build(self, sources: dict[str, str]) -> dict[str, Any]:
        arch, is_cubin = target_for(self.capability)
        binary = compile_cuda(CUDA_PRELUDE + "\n".join(sources.values()), arch)
        image = binary if is_cubin else binary.rstrip(b"\0") + b"\0"  # PTX is loaded as a C string
        module = _ok(self.cu.cuModuleLoadData(image), "cuModuleLoadData")
        self.modules.append(module)
        return {name: _ok(self.cu.cuModuleGetFunction(module, name.encode()), "cuModuleGetFunction")
                for name in sources}

    def _launch(self, launch: Launch, out: DeviceArray, inputs: list[DeviceArray], err: DeviceArray | None) -> None:
        pointers = [self.ptr(out), *(self.ptr(m) for m in inputs)]
        if launch.kernel.uses_error_flag:
            pointers.append(self.ptr(err) + 4 * launch.err_slot)
        # every parameter is 8 bytes (pointers, double, long long): one slot each, and an array of their addresses
        slots = np.zeros(len(pointers) + len(launch.args), np.uint64)
        slots[:len(pointers)] = pointers
        for i, v in enumerate(launch.args, start=len(pointers)):
            slots[i:i + 1].view(v.dtype)[0] = v
        addresses = slots.ctypes.data + 8 * np.arange(len(slots), dtype=np.uint64)
        plan = launch.plan
        blocks = plan.work if plan.block_reduce else -(-plan.work // BLOCK)
        blocks = max(1, min(blocks, 32 * self.sms))
        _ok(self.cu.cuLaunchKernel(self.functions[launch.name], blocks, 1, 1, BLOCK, 1, 1, 0, self.stream,
                                   addresses.ctypes.data, 0), "cuLaunchKernel")

    # ---- MATMUL through cuBLAS ----

    def _library_matmul_fits(self, item: ScheduleItem) -> bool:
        if item.out.dtype not in CUDA_R:
            return False
        views = []
        for src in item.out.srcs:  # realized views now, or (computed earlier in this realize) contiguous buffers
            found = strided_view(src)
            views.append(found[1] if found is not None else View.contiguous(src.shape))
        return gemm_plan(*views) is not None

    def _library_matmul(self, item: ScheduleItem) -> None:
        out = item.out
        (a_base, a_view), (b_base, b_view) = (strided_view(s) for s in out.srcs)
        plan = gemm_plan(a_view, b_view)
        mem = self.alloc(prod(out.shape) * out.dtype.itemsize)
        if mem.nbytes:
            if plan.k == 0:
                self._fill_zero(mem)
            else:
                self.cublas.gemm(plan, out.dtype, self.ptr(a_base.buffer.handle), self.ptr(b_base.buffer.handle),
                                 self.ptr(mem))
        out.buffer = Buffer(self.name, out.shape, out.dtype, mem)
