"""The `cuda` device: kernels printed as CUDA C++, compiled by NVRTC to a cubin for the GPU's architecture, launched
with the CUDA driver API through NVIDIA's `cuda-bindings`; MATMUL through cuBLAS (strided batched GEMM).

Install with `pip install "fusegrad[cuda]"`. Everything runs on one stream of the device's primary context (the one
cuBLAS and other CUDA libraries share), so memory returned to the caching pool is safely reused in stream order.
Kernels are cached in memory by name (a source hash) and as cubins on disk (runtime/nvrtc.py). A jitted step's
fixed commands (jit/gpu_program.py) are recorded once as a CUDA graph (`CudaGraph`) and replayed with one launch.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from ..codegen import ir
from ..codegen.c_like import ThreadPlan
from ..codegen.cuda import BLOCK, CUDA_PRELUDE, launch_plan, render_cuda
from ..graph import Node
from ..view import View
from .cublas import CUDA_R, Cublas, gemm_plan
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


class CudaGraph:
    """Work enqueued on a device's stream, recorded once by stream capture and launched again as one graph."""

    def __init__(self, device: CudaDevice, enqueue: Callable[[], None], updated: list[Launch]):
        cu = self.cu = device.cu
        self.device = device
        self.nodes: dict[int, Any] = {id(launch): None for launch in updated}
        device.capturing = self.nodes
        _ok(cu.cuStreamBeginCapture(device.stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "cuStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            err, graph = cu.cuStreamEndCapture(device.stream)  # the stream leaves capture mode; the graph is dropped
            if int(err) == 0 and graph is not None:
                cu.cuGraphDestroy(graph)
            raise
        finally:
            device.capturing = None
        self.graph = _ok(cu.cuStreamEndCapture(device.stream), "cuStreamEndCapture")
        self.exec = _ok(cu.cuGraphInstantiate(self.graph, 0), "cuGraphInstantiate")

    def set_args(self, launch: Launch, out: DeviceArray, inputs: list[DeviceArray], err: DeviceArray | None) -> None:
        """New argument values for a recorded launch (one of `updated`), used from the next `launch()` on."""
        slots, addresses, blocks = self.device._kernel_params(launch, out, inputs, err)
        params = self.cu.CUDA_KERNEL_NODE_PARAMS()
        params.func = self.device.functions[launch.name]
        params.gridDimX, params.gridDimY, params.gridDimZ = blocks, 1, 1
        params.blockDimX, params.blockDimY, params.blockDimZ = BLOCK, 1, 1
        params.sharedMemBytes = 0
        params.kernelParams = addresses.ctypes.data  # read (copied) by the call: `slots` lives until it returns
        _ok(self.cu.cuGraphExecKernelNodeSetParams(self.exec, self.nodes[id(launch)], params),
            "cuGraphExecKernelNodeSetParams")

    def launch(self) -> None:
        """Enqueue the whole recording on the device's stream."""
        _ok(self.cu.cuGraphLaunch(self.exec, self.device.stream), "cuGraphLaunch")

    def __del__(self) -> None:
        try:
            self.cu.cuGraphExecDestroy(self.exec)
            self.cu.cuGraphDestroy(self.graph)
        except Exception:  # at interpreter exit the driver may be gone already
            pass


class CudaDevice(GpuDevice):
    """Printed CUDA kernels on GPU $FUSEGRAD_CUDA_DEVICE (default 0)."""

    name = "cuda"

    def __init__(self, driver: Any = None) -> None:  # noqa: ANN401 - a module
        """`driver`: the CUDA driver API as cuda-bindings' `driver` module has it (default: that module)."""
        if driver is None:
            from cuda.bindings import driver
        self.cu = cu = driver
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
        self.capturing: dict[int, Any] | None = None  # while a graph records: id(launch) -> its graph node
        super().__init__()

    def __repr__(self) -> str:
        return f"<CudaDevice sm_{self.capability}, {self.sms} SMs>"

    @property
    def cublas(self) -> Cublas:
        if self._cublas is None:
            self._cublas = Cublas(self.stream_handle)
        return self._cublas

    def make_current(self) -> None:
        """Make the device's context current on this thread (each thread has its own)."""
        _ok(self.cu.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

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

    def _region(self, base: DeviceArray, offset: int, nbytes: int) -> DeviceArray:
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

    def _kernel_params(self, launch: Launch, out: DeviceArray, inputs: list[DeviceArray], err: DeviceArray | None) \
            -> tuple[np.ndarray, np.ndarray, int]:
        """A launch's parameter values, the array of their addresses (cuLaunchKernel's `kernelParams`; keep both
        alive until the call returns), and its block count."""
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
        return slots, addresses, max(1, min(blocks, 32 * self.sms))

    def _launch(self, launch: Launch, out: DeviceArray, inputs: list[DeviceArray], err: DeviceArray | None) -> None:
        slots, addresses, blocks = self._kernel_params(launch, out, inputs, err)
        _ok(self.cu.cuLaunchKernel(self.functions[launch.name], blocks, 1, 1, BLOCK, 1, 1, 0, self.stream,
                                   addresses.ctypes.data, 0), "cuLaunchKernel")
        if self.capturing is not None and id(launch) in self.capturing:
            info = _ok(self.cu.cuStreamGetCaptureInfo(self.stream), "cuStreamGetCaptureInfo")
            self.capturing[id(launch)] = info[3][0]  # what the next captured node depends on: this launch's node

    def record(self, enqueue: Callable[[], None], updated: list[Launch]) -> CudaGraph | None:
        """`enqueue`'s work as a CUDA graph ($FUSEGRAD_CUDA_GRAPHS=0: none, so jitted steps launch kernel by
        kernel)."""
        if os.environ.get("FUSEGRAD_CUDA_GRAPHS", "1") == "0":
            return None
        return CudaGraph(self, enqueue, updated)

    # ---- MATMUL through cuBLAS ----

    def _library_matmul_fits(self, out: Node, views: list[View]) -> bool:
        return out.dtype in CUDA_R and gemm_plan(*views) is not None

    def _matmul_into(self, out: Node, mem: DeviceArray, a: tuple[DeviceArray, View], b: tuple[DeviceArray, View]) \
            -> None:
        plan = gemm_plan(a[1], b[1])
        if plan.k == 0:
            self._fill_zero(mem)
        else:
            self.cublas.gemm(plan, out.dtype, self.ptr(a[0]), self.ptr(b[0]), self.ptr(mem))
