"""The `opencl` device: kernels printed as OpenCL C, built and launched through pyopencl (PoCL runs them on CPUs).

MATMUL of float32/float64 runs as a fixed tiled kernel (codegen/opencl_matmul.py) reading the operand views through
strides; other dtypes, and batches that are not one stride apart, run as loop-IR kernels (codegen/matmul_ir.py).
Memory comes from a caching pool; a view starting inside a buffer is a sub-buffer where it is aligned as the device
requires (`mem_base_addr_align`), else a copy, because OpenCL kernels take whole buffers. Programs are cached in
memory by kernel name (a source hash) and on disk by pyopencl (and PoCL's own kernel cache).
"""
from __future__ import annotations

import os
import warnings
from functools import cache
from typing import Any

import numpy as np

from ..codegen import ir
from ..codegen.c_like import ThreadPlan
from ..codegen.opencl import launch_plan, opencl_prelude, render_opencl
from ..codegen.opencl_matmul import MATMUL_DTYPES, TILE, matmul_kernel_name, render_opencl_matmul
from ..graph import Node
from ..view import View, batch_stride
from .gpu_device import DeviceArray, GpuDevice, Launch
from .memory_pool import Allocation

# round floats as IEEE does: OpenCL lets single-precision / and sqrt be off by ulps unless asked
BUILD_OPTIONS = ["-cl-fp32-correctly-rounded-divide-sqrt"]


@cache
def opencl_available() -> bool:
    """True when pyopencl imports and some OpenCL platform offers a device (never raises)."""
    try:
        import pyopencl as cl
        return any(p.get_devices() for p in cl.get_platforms())
    except Exception:  # no pyopencl, no ICD loader, no platform: the device is simply absent
        return False


def _pick_device() -> Any:  # noqa: ANN401 - pyopencl.Device
    """$PYOPENCL_CTX's choice when set (pyopencl's convention), else the first GPU, else the first device."""
    import pyopencl as cl
    if os.environ.get("PYOPENCL_CTX"):
        return cl.create_some_context(interactive=False).devices[0]
    devices = [d for p in cl.get_platforms() for d in p.get_devices()]
    gpus = [d for d in devices if d.type & cl.device_type.GPU]
    return (gpus or devices)[0]


class OpenCLDevice(GpuDevice):
    """Printed OpenCL C on the first GPU (or CPU, through PoCL) that pyopencl finds."""

    name = "opencl"

    def __init__(self) -> None:
        import pyopencl as cl
        self.cl = cl
        self.device = _pick_device()
        self.context = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.context)
        self.fp64 = "cl_khr_fp64" in self.device.extensions
        self.is_cpu = bool(self.device.type & cl.device_type.CPU)
        self.region_align = max(self.device.mem_base_addr_align // 8, 1)
        # one fixed work-group size: PoCL compiles a kernel once per work-group size, so never let it vary
        self.local_size = min(64 if self.is_cpu else 256, self.device.max_work_group_size)
        self.max_groups = max(1, self.device.max_compute_units) * (16 if self.is_cpu else 64)
        super().__init__()

    def __repr__(self) -> str:
        return f"<OpenCLDevice {self.device.name.strip()} ({self.device.platform.name.strip()})>"

    # ---- memory ----

    def _allocate(self, nbytes: int) -> Any:  # noqa: ANN401 - pyopencl.Buffer
        try:
            return self.cl.Buffer(self.context, self.cl.mem_flags.READ_WRITE, nbytes)
        except self.cl.MemoryError as e:
            raise MemoryError(f"opencl: cannot allocate {nbytes} bytes: {e}") from e

    def _free(self, raw: Any) -> None:  # noqa: ANN401
        raw.release()

    def _upload(self, dst: DeviceArray, host: np.ndarray) -> None:
        self.cl.enqueue_copy(self.queue, dst.alloc.raw, host, dst_offset=dst.offset, is_blocking=True)

    def _download(self, src: DeviceArray, host: np.ndarray) -> None:
        self.cl.enqueue_copy(self.queue, host, src.alloc.raw, src_offset=src.offset, is_blocking=True)

    def _copy(self, dst: DeviceArray, src: DeviceArray, nbytes: int) -> None:
        self.cl.enqueue_copy(self.queue, dst.alloc.raw, src.alloc.raw, byte_count=nbytes, src_offset=src.offset,
                             dst_offset=dst.offset)

    def _fill_zero(self, dst: DeviceArray) -> None:
        self.cl.enqueue_fill_buffer(self.queue, dst.alloc.raw, np.uint8(0), dst.offset, dst.nbytes)

    def _region(self, base: DeviceArray, offset: int, nbytes: int) -> DeviceArray:
        alloc, start = base.alloc, base.offset + offset
        if alloc.parent is not None:  # a region of a region: OpenCL has no nested sub-buffers
            alloc, start = alloc.parent, start + alloc.raw.offset
        if start == 0:
            return DeviceArray(alloc, 0, nbytes)
        # kernels take whole buffers: a region is a sub-buffer, which keeps its allocation alive so the pool cannot
        # hand that out again
        return DeviceArray(Allocation(alloc.raw.get_sub_region(start, max(nbytes, 1)), nbytes, parent=alloc), 0, nbytes)

    def synchronize(self) -> None:
        """Wait for the command queue to drain."""
        self.queue.finish()

    # ---- kernels ----

    def render(self, kernel: ir.Kernel) -> tuple[str, ThreadPlan]:
        """OpenCL C for one kernel, and its thread plan."""
        return render_opencl(kernel, self.fp64), launch_plan(kernel)

    def _build(self, sources: dict[str, str]) -> dict[str, Any]:
        source = opencl_prelude(self.fp64) + "\n".join(sources.values())
        with warnings.catch_warnings():  # PoCL's informational build log is not a user-facing warning
            warnings.simplefilter("ignore")
            try:
                program = self.cl.Program(self.context, source).build(options=BUILD_OPTIONS)
            except self.cl.RuntimeError as e:
                raise RuntimeError(f"opencl: the driver rejected generated code (a fusegrad bug; DEBUG=3 prints "
                                   f"the source):\n{str(e)[-4000:]}") from e
        return {name: self.cl.Kernel(program, name) for name in sources}

    def _launch(self, launch: Launch, out: DeviceArray, inputs: list[DeviceArray], err: DeviceArray | None) -> None:
        args: list[Any] = [out.alloc.raw]
        for mem in inputs:
            if mem.offset:
                raise AssertionError("opencl buffers are never offset views")  # _view copies instead
            args.append(mem.alloc.raw)
        if launch.kernel.uses_error_flag:
            args += [err.alloc.raw, np.int32(launch.err_slot)]
        args += launch.args
        fn = self.functions[launch.name]
        fn.set_args(*args)
        local = self.local_size
        groups = min(-(-launch.plan.work // local), self.max_groups)
        self.cl.enqueue_nd_range_kernel(self.queue, fn, (groups * local,), (local,))

    # ---- MATMUL: the tiled kernel ----

    def _library_matmul_fits(self, out: Node, views: list[View]) -> bool:
        if out.dtype not in MATMUL_DTYPES or (out.dtype.itemsize == 8 and not self.fp64):
            return False
        return all(batch_stride(v) is not None for v in views) and max(out.shape[-2:] + views[0].shape[-1:]) < 2**31

    def _matmul_into(self, out: Node, mem: DeviceArray, a: tuple[DeviceArray, View], b: tuple[DeviceArray, View]) \
            -> None:
        name = matmul_kernel_name(out.dtype)
        if name not in self.functions:  # one fixed source per dtype: built once per process
            self.functions.update(self._build({name: render_opencl_matmul(out.dtype)}))
            self.programs_built += 1
        (a_mem, av), (b_mem, bv) = a, b
        if a_mem.offset or b_mem.offset:
            raise AssertionError("opencl buffers are never offset views")
        m, k, n = av.shape[-2], av.shape[-1], bv.shape[-1]
        count, a_batch = batch_stride(av)
        b_batch = batch_stride(bv)[1]
        fn = self.functions[name]
        fn.set_args(mem.alloc.raw, a_mem.alloc.raw, b_mem.alloc.raw, *(np.int32(x) for x in (m, n, k)),
                    *(np.int64(x) for x in (av.offset, a_batch, av.strides[-2], av.strides[-1])),
                    *(np.int64(x) for x in (bv.offset, b_batch, bv.strides[-2], bv.strides[-1])))
        groups = (-(-n // TILE) * TILE, -(-m // TILE) * TILE, count)
        self.cl.enqueue_nd_range_kernel(self.queue, fn, groups, (TILE, TILE, 1))
