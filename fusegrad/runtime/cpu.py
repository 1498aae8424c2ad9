"""The `cpu` device: fused kernels printed as C, compiled once (cached), launched through ctypes; BLAS for MATMUL.

Buffers are NumPy arrays in host memory, so MATMUL runs as numpy.matmul (OpenBLAS) directly on strided views of
them, and copies to and from the host are plain array copies.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import time

import numpy as np

from ..codegen.c import PRELUDE, render_c
from ..codegen.lower import lower
from ..dtype import DType, float16
from ..graph import Node, Op
from ..schedule import ScheduleItem, kernel_inputs, schedule_kernels, strided_view
from .compiler import compile_library, find_compiler, warn_no_compiler
from .device import Buffer, Device
from .numpy_device import NumpyDevice

# idle OpenMP threads must sleep, not spin: spinning threads starve OpenBLAS (and other processes) of cores
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _debug() -> int:
    return int(os.environ.get("DEBUG", "0") or 0)


def _operand(node: Node) -> np.ndarray:
    """A MATMUL operand as an array over its buffer: a strided view when one exists, no copy."""
    found = strided_view(node)
    if found is None:
        return node.buffer.handle
    base, view = found
    flat = base.buffer.handle.reshape(-1)
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[view.offset:], view.shape, tuple(s * item for s in view.strides),
                                           writeable=False)


class _Launch:
    """One compiled kernel call: its function, output node, input nodes, and the gather sizes it checks."""

    def __init__(self, item: ScheduleItem, name: str, source: str, uses_err: bool, value: Node, args: np.ndarray,
                 gathers: list[tuple[int, int]]):
        self.item, self.name, self.source, self.uses_err, self.value = item, name, source, uses_err, value
        self.args, self.gathers = args, gathers
        self.fn = None


def _pack_args(values: list[bool | int | float]) -> np.ndarray:
    """Launch arguments as 8-byte slots (the C side's `fg_arg` union): floats as double, integers as int64 bits."""
    slots = np.zeros(len(values), np.float64)
    as_int = slots.view(np.int64)
    for i, v in enumerate(values):
        if isinstance(v, float):
            slots[i] = v
        else:
            v = int(v) & (2**64 - 1)
            as_int[i] = v - 2**64 if v >= 2**63 else v
    return slots


class CpuDevice(Device):
    """Compiled C kernels; falls back to the numpy interpreter (with one warning) when no C compiler exists."""

    name = "cpu"

    def __init__(self) -> None:
        self.fallback = None
        self.allocations = 0  # buffers this device has allocated (a jit replay must add none)
        if find_compiler() is None:
            warn_no_compiler()
            self.fallback = NumpyDevice()

    def from_numpy(self, array: np.ndarray, dtype: DType) -> Buffer:
        """Copy host data into an owned, contiguous array."""
        self.allocations += 1
        return Buffer(self.name, array.shape, dtype, np.array(array, dtype=dtype.np, order="C", copy=True))

    def to_numpy(self, buffer: Buffer) -> np.ndarray:
        """A copy of the buffer's array."""
        return buffer.handle.copy()

    def realize(self, nodes: list[Node]) -> None:
        """Schedule, compile every kernel of this realize in one translation unit, then run them in order."""
        if self.fallback is not None:
            self.fallback.realize(nodes)
            for n in nodes:
                n.buffer.device = self.name
            return
        items = schedule_kernels(nodes)
        launches = [self._prepare(item) for item in items]
        kernels = [launch for launch in launches if launch is not None]
        if kernels:
            unique = {k.name: k.source for k in kernels}
            lib = compile_library(PRELUDE + "\n".join(unique.values()), list(unique))
            for k in kernels:
                k.fn = getattr(lib, k.name)
                k.fn.restype = None
            if _debug() >= 3:
                print("\n".join(unique.values()), file=sys.stderr)
        start = time.perf_counter()
        for item, launch in zip(items, launches):
            t0 = time.perf_counter()
            self._run(item, launch)
            if _debug() >= 2:
                dt = time.perf_counter() - t0
                nbytes = item.out.buffer.handle.nbytes + sum(i.buffer.handle.nbytes for i in item.inputs if i.realized)
                print(f"  {item.kind:6s} {item.out.op.name:10s} {str(item.out.shape):18s} {dt * 1e6:9.1f} us "
                      f"{nbytes / max(dt, 1e-9) / 1e9:7.2f} GB/s", file=sys.stderr)
        if _debug() >= 1 and items:
            launched = sum(i.kind != "view" for i in items)
            print(f"realize: {launched} kernels in {(time.perf_counter() - start) * 1e3:.3f} ms", file=sys.stderr)

    def _prepare(self, item: ScheduleItem) -> _Launch | None:
        if item.kind != "kernel":
            return None
        value = item.out.srcs[1] if item.out.op is Op.ASSIGN else item.out
        if value is not item.out:  # ASSIGN: compute the value, then copy it into the target buffer
            item = ScheduleItem(value, "kernel", kernel_inputs(value, {id(n) for n in item.inputs}))
        kernel = lower(item, "KERNEL")
        body = render_c(kernel)
        name = "k_" + hashlib.sha256(body.encode()).hexdigest()[:16]
        return _Launch(item, name, body.replace("KERNEL", name, 1), kernel.uses_error_flag, value,
                       _pack_args(kernel.args), kernel.gathers)

    def _run(self, item: ScheduleItem, launch: _Launch | None) -> None:
        out = item.out
        if item.kind == "view":  # a dense block of a buffer: share the memory
            found = strided_view(out)
            offset = found[1].offset if found is not None else 0
            count = int(np.prod(out.shape, dtype=np.int64))
            handle = item.inputs[0].buffer.handle.reshape(-1)[offset:offset + count].reshape(out.shape)
            out.buffer = Buffer(self.name, out.shape, out.dtype, handle)
            return
        if launch is None:
            a, b = (_operand(s) for s in out.srcs)
            if out.dtype == float16:
                result = np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
            else:
                result = np.matmul(a, b)
            self.allocations += 1
            out.buffer = Buffer(self.name, out.shape, out.dtype, np.ascontiguousarray(result))
            return
        self.allocations += 1
        target = np.empty(launch.value.shape, dtype=launch.value.dtype.np)
        args = [target.ctypes.data_as(ctypes.c_void_p)]
        args += [ctypes.c_void_p(n.buffer.handle.ctypes.data) for n in launch.item.inputs]
        err = np.zeros(1, np.int32)
        if launch.uses_err:
            args.append(err.ctypes.data_as(ctypes.c_void_p))
        if len(launch.args):
            args.append(launch.args.ctypes.data_as(ctypes.c_void_p))
        launch.fn(*args)
        if err[0]:
            dim, size = launch.gathers[err[0] - 1]
            raise IndexError(f"index out of bounds for dim {dim} with size {size} (while computing a tensor of shape "
                             f"{out.shape})")
        if out.op is Op.ASSIGN:
            np.copyto(out.srcs[0].buffer.handle, target)
            out.buffer = out.srcs[0].buffer
        else:
            out.buffer = Buffer(self.name, out.shape, out.dtype, target)
