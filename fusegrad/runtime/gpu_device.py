"""What the accelerator devices (`opencl`, `cuda`) share: the realize loop over scheduled kernels, program caching,
launch arguments, views as shared memory, MATMUL through the loop IR, and the gather error flag.

A subclass supplies the device primitives (allocate, copy, build a program, launch a kernel) and the renderer. Every
kernel of one realize that is not compiled yet goes into ONE program (compiling dominates on slow compilers such as
PoCL); compiled kernels are kept by name, which is a hash of their source, so a graph seen before compiles nothing.
"""
from __future__ import annotations

import hashlib
import sys
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..codegen import ir
from ..codegen.c_like import ThreadPlan
from ..codegen.lower import lower
from ..codegen.matmul_ir import matmul_kernels
from ..dtype import DType, float64
from ..graph import Node, Op, prod
from ..schedule import ScheduleItem, kernel_inputs, schedule_kernels, strided_view
from ..view import View
from .device import Buffer, Device, debug_level
from .memory_pool import Allocation, MemoryPool


class DeviceArray:
    """A buffer's device memory: a pooled allocation and a byte offset into it (views share the allocation)."""

    __slots__ = ("alloc", "offset", "nbytes")

    def __init__(self, alloc: Allocation, offset: int, nbytes: int):
        self.alloc, self.offset, self.nbytes = alloc, offset, nbytes

    def __repr__(self) -> str:
        return f"<DeviceArray {self.nbytes} bytes at +{self.offset}>"


@dataclass
class Launch:
    """One kernel to run: its compiled name and thread plan, what it reads, what it computes and where that goes."""

    name: str
    source: str
    kernel: ir.Kernel
    plan: ThreadPlan
    inputs: list[Node]
    value: Node  # the node the kernel computes
    target: Node  # the node that gets the result: `value`, a MATMUL computed by IR kernels, or an ASSIGN
    args: list[Any] = field(default_factory=list)  # packed launch arguments (numpy scalars)
    err_slot: int = -1  # its place in this realize's error-flag array, when it gathers


def operand_view(src: Node, ready: set[int] = frozenset()) -> tuple[Node, View]:
    """The node whose memory a MATMUL operand reads, and the View it reads it through: a realized (or, in `ready`,
    computed earlier) buffer under movement ops, else the operand itself, computed into a contiguous buffer."""
    found = strided_view(src, ready)
    return found if found is not None else (src, View.contiguous(src.shape))


def pack_args(values: list[bool | int | float], fp64: bool) -> list[Any]:
    """Launch-argument values as the scalar types the kernel declares (see codegen.c_like.arg_params)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, float):
            out.append(np.float64(v) if fp64 else np.float32(v))
        else:
            v = int(v) & (2**64 - 1)
            out.append(np.int64(v - 2**64 if v >= 2**63 else v))
    return out


class GpuDevice(Device):
    """The realize loop of a device that runs printed kernels on its own memory."""

    name: str
    fp64: bool = True
    region_align = 1  # bytes: where in a buffer a kernel argument may start (OpenCL: the sub-buffer alignment)

    def __init__(self) -> None:
        self.pool = MemoryPool(self._allocate, self._free)
        self.functions: dict[str, Any] = {}  # kernel name (a source hash) -> compiled, launchable kernel
        self.programs_built = 0

    # ---- device primitives, per subclass ----

    @abstractmethod
    def _allocate(self, nbytes: int) -> Any:
        """Raw device memory (raise MemoryError when the device is full)."""

    @abstractmethod
    def _free(self, raw: Any) -> None:
        """Give raw memory back to the device."""

    @abstractmethod
    def _upload(self, dst: DeviceArray, host: np.ndarray) -> None:
        """Copy a contiguous host array into device memory."""

    @abstractmethod
    def _download(self, src: DeviceArray, host: np.ndarray) -> None:
        """Copy device memory into a contiguous host array (waits for the device)."""

    @abstractmethod
    def _copy(self, dst: DeviceArray, src: DeviceArray, nbytes: int) -> None:
        """Copy between device arrays, in queue order."""

    @abstractmethod
    def _fill_zero(self, dst: DeviceArray) -> None:
        """Set device memory to zero bytes, in queue order."""

    @abstractmethod
    def _region(self, base: DeviceArray, offset: int, nbytes: int) -> DeviceArray:
        """`nbytes` of `base` starting `offset` bytes in, as memory kernels can take (offset a multiple of
        `region_align`)."""

    def _view(self, base: DeviceArray, offset: int, nbytes: int) -> DeviceArray:
        """`nbytes` of `base` starting `offset` bytes in: shared memory where the device can address it, else a copy."""
        if (base.offset + offset) % self.region_align == 0:
            return self._region(base, offset, nbytes)
        out = self.alloc(nbytes)
        if nbytes:
            self._copy(out, DeviceArray(base.alloc, base.offset + offset, nbytes), nbytes)
        return out

    @abstractmethod
    def render(self, kernel: ir.Kernel) -> tuple[str, ThreadPlan]:
        """The device source of one kernel and how it maps onto threads."""

    @abstractmethod
    def _build(self, sources: dict[str, str]) -> dict[str, Any]:
        """Compile kernels (name -> source, all in one program/module) into launchable functions."""

    @abstractmethod
    def _launch(self, launch: Launch, out: DeviceArray, inputs: list[DeviceArray], err: DeviceArray | None) -> None:
        """Enqueue one kernel."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until every enqueued command has finished."""

    def make_current(self) -> None:  # noqa: B027 - a default: only some drivers bind a device to each thread
        """Bind the device to the calling thread before enqueuing (CUDA's current context)."""

    def record(self, enqueue: Callable[[], None], updated: list[Launch]) -> Any:  # noqa: ANN401
        """A recording of what `enqueue` enqueues, launched again with one call (a CUDA graph), or None where the
        device has none. Its `set_args(launch, out, inputs, err)` takes new launch arguments for the launches in
        `updated`; `launch()` enqueues it all."""
        return None

    def _library_matmul_fits(self, out: Node, views: list[View]) -> bool:
        """Whether a library (cuBLAS, a fixed tiled kernel) runs MATMUL `out` on its operands read through `views`;
        if not, loop-IR kernels do."""
        return False

    def _matmul_into(self, out: Node, mem: DeviceArray, a: tuple[DeviceArray, View], b: tuple[DeviceArray, View]) \
            -> None:
        """Enqueue MATMUL `out` (accepted by `_library_matmul_fits`) into `mem`, reading each operand as a View of
        the memory under it."""
        raise NotImplementedError(f"{self.name} has no library MATMUL")

    # ---- the Device interface ----

    def alloc(self, nbytes: int) -> DeviceArray:
        """Fresh device memory (from the caching pool)."""
        return DeviceArray(self.pool.alloc(nbytes), 0, nbytes)

    def from_numpy(self, array: np.ndarray, dtype: DType) -> Buffer:
        """Copy host data into new device memory."""
        self._check_dtype(dtype)
        host = np.asarray(array, dtype=dtype.np, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        mem = self.alloc(host.nbytes)
        if host.nbytes:
            self._upload(mem, host)
        return Buffer(self.name, tuple(host.shape), dtype, mem)

    def to_numpy(self, buffer: Buffer) -> np.ndarray:
        """Copy a buffer back to the host."""
        host = np.empty(buffer.shape, dtype=buffer.dtype.np)
        if host.nbytes:
            self._download(buffer.handle, host)
        return host

    def _check_dtype(self, dtype: DType) -> None:
        if dtype == float64 and not self.fp64:
            raise TypeError(f"device {self.name!r} has no double precision (float64)")

    def realize(self, nodes: list[Node], order: list[Node] | None = None) -> None:
        """Schedule, compile what is new as one program, run every item in order, then check the error flags."""
        self.make_current()
        items = schedule_kernels(nodes)
        boundary = {id(item.out) for item in items}
        steps = [step for item in items for step in self.plan(item, boundary)]
        launches = [s for s in steps if isinstance(s, Launch)]
        self.compile(launches)
        gathering = [k for k in launches if k.kernel.uses_error_flag]
        for slot, k in enumerate(gathering):
            k.err_slot = slot
        err = self.alloc(4 * len(gathering)) if gathering else None
        if err is not None:
            self._fill_zero(err)
        start = time.perf_counter()
        done: list[Node] = []
        try:
            for step in steps:
                t0 = time.perf_counter()
                self._run(step, err, done)
                if debug_level() >= 2:
                    self.synchronize()
                    out = step.target if isinstance(step, Launch) else step.out
                    print(f"  {type(step).__name__:12s} {out.op.name:10s} {str(out.shape):18s} "
                          f"{(time.perf_counter() - t0) * 1e6:9.1f} us", file=sys.stderr)
            if err is not None:
                self._raise_gather_errors(err, gathering)
        except BaseException:
            for n in done:  # nothing half-computed stays: computing them again raises again
                n.buffer = None
            raise
        if debug_level() >= 1 and items:
            self.synchronize()
            print(f"realize: {len(launches)} kernels in {(time.perf_counter() - start) * 1e3:.3f} ms", file=sys.stderr)

    def compile(self, launches: list[Launch]) -> None:
        """Build every kernel of `launches` not compiled yet, as one program."""
        new = {k.name: k.source for k in launches if k.name not in self.functions}
        if new:
            if debug_level() >= 3:
                print("\n".join(new.values()), file=sys.stderr)
            self.functions.update(self._build(new))
            self.programs_built += 1

    # ---- planning and running ----

    def plan(self, item: ScheduleItem, boundary: set[int]) -> list[Launch | ScheduleItem]:
        """What runs one scheduled item: itself (a view, a library MATMUL) or kernel launches. `boundary` holds
        the ids of every item's output in this schedule (computed by the time the item runs)."""
        if item.kind == "view":
            return [item]
        if item.kind == "matmul":
            if self._library_matmul_fits(item.out, [operand_view(s, boundary)[1] for s in item.out.srcs]):
                return [item]
            subs, _ = matmul_kernels(item.out, boundary)
            launches = [self._prepare(sub) for sub in subs]
            launches[-1].target = item.out
            return launches
        target = item.out
        if target.op is Op.ASSIGN:  # compute the value, then copy it into the target buffer
            value = target.srcs[1]
            item = ScheduleItem(value, "kernel", kernel_inputs(value, {id(n) for n in item.inputs}))
        launch = self._prepare(item)
        launch.target = target
        return [launch]

    def _prepare(self, item: ScheduleItem) -> Launch:
        kernel = lower(item, "KERNEL")
        body, plan = self.render(kernel)
        name = "k_" + hashlib.sha256(body.encode()).hexdigest()[:16]
        return Launch(name, body.replace("KERNEL", name, 1), kernel, plan, item.inputs, item.out, item.out,
                      pack_args(kernel.args, self.fp64))

    def _run(self, step: Launch | ScheduleItem, err: DeviceArray | None, done: list[Node]) -> None:
        if isinstance(step, ScheduleItem):
            out = step.out
            if step.kind == "view":  # a dense block of a buffer
                base = step.inputs[0].buffer.handle  # the block starts step.offset elements into it
                nbytes = prod(out.shape) * out.dtype.itemsize
                out.buffer = Buffer(self.name, out.shape, out.dtype,
                                    self._view(base, step.offset * out.dtype.itemsize, nbytes))
            else:
                mem = self.alloc(prod(out.shape) * out.dtype.itemsize)
                if mem.nbytes:
                    (a_base, a), (b_base, b) = (operand_view(s) for s in out.srcs)
                    self._matmul_into(out, mem, (a_base.buffer.handle, a), (b_base.buffer.handle, b))
                out.buffer = Buffer(self.name, out.shape, out.dtype, mem)
            done.append(out)
            return
        value, target = step.value, step.target
        nbytes = prod(value.shape) * value.dtype.itemsize
        mem = self.alloc(nbytes)
        if step.plan.work:
            self._launch(step, mem, [n.buffer.handle for n in step.inputs], err)
        if value is not target and target.op is Op.ASSIGN:
            dst = target.srcs[0].buffer
            if nbytes:
                self._copy(dst.handle, mem, nbytes)
            target.buffer = dst
        else:
            if value is not target:  # IR matmul: the last kernel's buffer, in the MATMUL's shape
                value.buffer = Buffer(self.name, value.shape, value.dtype, mem)
                done.append(value)
            target.buffer = Buffer(self.name, target.shape, target.dtype, mem)
        done.append(target)

    def _raise_gather_errors(self, err: DeviceArray, gathering: list[Launch]) -> None:
        flags = np.empty(len(gathering), np.int32)
        self._download(err, flags)
        for launch, flag in zip(gathering, flags):
            if flag:
                dim, size = launch.kernel.gathers[flag - 1]
                raise IndexError(f"index out of bounds for dim {dim} with size {size} (while computing a tensor of "
                                 f"shape {launch.target.shape})")
