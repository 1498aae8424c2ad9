"""The `cpu` device: fused kernels printed as C, compiled once (cached), launched through ctypes; BLAS for MATMUL.

Buffers are NumPy arrays in host memory (large ones reuse freed memory, `host_pool`), so MATMUL reads strided views
of them without copies (a prepared MKL call on their addresses, or numpy.matmul, which is OpenBLAS), and copies to
and from the host are plain array copies.
Kernels are cached in memory by their structure (`lower.kernel_signature`): an eager call that repeats a graph shape
only packs its constants as launch arguments; the first one lowers (`lower.CPU` nests), prints and compiles.
"""
from __future__ import annotations

import array
import ctypes
import hashlib
import os
import sys
import time
from collections import OrderedDict

import numpy as np

from ..codegen import ir
from ..codegen.c import PRELUDE, render_c
from ..codegen.lower import CPU, kernel_signature, launch_args, lower
from ..dtype import DType, float16
from ..graph import Node, Op, prod
from ..schedule import ScheduleItem, graph_signature, kernel_inputs, schedule_kernels, strided_view
from ..view import View, matrix_layout
from .blas import PreparedProduct, blas_library, matmul_into, prepare_product
from .blas_threads import share_threads_with_blas
from .compiler import compile_library, find_compiler, warn_no_compiler
from .device import Buffer, Device, debug_level
from .host_pool import HostPool
from .numpy_device import NumpyDevice

# idle OpenMP threads spin ~0.3 ms, then sleep: a step's kernels follow each other within that (a sleeping thread
# takes tens of us to wake: an MLP's jit step took twice as long), and a longer idle thread hands its core back
# (libgomp's default spins ~10 ms). The user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins; bench/ sets the same for torch.
OPENMP_SPIN_COUNT = "5000"
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)


def _one_thread_after_fork() -> None:
    """GNU OpenMP's thread pool does not survive fork: in a forked child (a multiprocessing worker) the first
    parallel kernel would wait forever for threads that do not exist, so a child runs its kernels on one thread."""
    for name in (None, "libgomp.so.1"):
        try:
            ctypes.CDLL(name).omp_set_num_threads(1)
            return
        except (OSError, AttributeError):
            continue


os.register_at_fork(after_in_child=_one_thread_after_fork)


def _host_address(buffer: Buffer) -> int:
    """The host address of a buffer's data (asking numpy costs a microsecond; parameters are read every step)."""
    if buffer.address is None:
        buffer.address = buffer.handle.ctypes.data
    return buffer.address


def _strided(handle: np.ndarray, view: View | None) -> np.ndarray:
    """A MATMUL operand over a buffer's array: `view` of it without a copy (None: the array itself)."""
    if view is None:
        return handle
    flat = handle.reshape(-1)
    item = flat.itemsize
    array = np.lib.stride_tricks.as_strided(flat[view.offset:], view.shape, tuple(s * item for s in view.strides),
                                            writeable=False)
    # numpy.matmul falls back to a slow loop on matrices BLAS cannot read (it takes any batch strides)
    return array if matrix_layout(*view.shape[-2:], *view.strides[-2:]) else np.ascontiguousarray(array)


class _Compiled:
    """One kernel structure's code: its C function (once compiled), and what a launch of it needs to know."""

    __slots__ = ("name", "source", "uses_err", "gathers", "fn", "key", "nargs")

    def __init__(self, name: str, source: str, uses_err: bool, gathers: list[tuple[int, int]]):
        self.name, self.source, self.uses_err, self.gathers = name, source, uses_err, gathers
        self.fn = None
        self.key: tuple = ()
        self.nargs = 0


_POOL = HostPool()  # large buffers reuse freed memory instead of faulting in fresh pages

# kernels by structure (`kernel_signature`): a repeated eager call of the same graph shape skips lowering, printing,
# hashing and the library lookup, and only packs its constants
_KERNELS: OrderedDict[tuple, _Compiled] = OrderedDict()
MAX_CACHED_KERNELS = 4096


class _Step:
    """One item of a plan, by node position in the graph's `toposort`: the node it computes (`out`), what it reads
    (`inputs`), and how: a view of its input's buffer at `offset`, a MATMUL through BLAS (`compiled` None), or a
    compiled kernel whose launch arguments are the values of its CONST and RAND nodes (`leaves`)."""

    __slots__ = ("kind", "out", "inputs", "offset", "compiled", "leaves", "operands", "products")

    def __init__(self, kind: str, out: int, inputs: list[int], offset: int, compiled: _Compiled | None,
                 leaves: list[int], operands: list[tuple[int, View | None]] | None = None):
        self.kind, self.out, self.inputs, self.offset, self.compiled, self.leaves = \
            kind, out, inputs, offset, compiled, leaves
        self.operands = operands  # a MATMUL's: (position of the buffer it reads, the view it reads it through)
        self.products: dict[str | None, PreparedProduct | None] = {}  # a MATMUL's BLAS call, by BLAS library

    def product(self, order: list[Node]) -> PreparedProduct | None:
        """A MATMUL's prepared BLAS call for the BLAS in use (None: numpy.matmul on strided arrays computes it)."""
        name = blas_library()
        if name not in self.products:
            operands = [(order[at].shape, View.contiguous(order[at].shape).strides, 0) if view is None else
                        (view.shape, view.strides, view.offset) for at, view in self.operands]
            self.products[name] = prepare_product(*operands, order[self.out].dtype.np)  # None for float16 too
        return self.products[name]


def _operand_view(node: Node, at: dict[int, int], ready: set[int]) -> tuple[int, View | None]:
    """(position, view): where a MATMUL operand's data is, and the strided view that reads it (None: as it is);
    `ready`: the nodes earlier items compute."""
    found = strided_view(node, ready)
    if found is None:
        return at[id(node)], None
    base, view = found
    return at[id(base)], None if view == View.contiguous(base.shape) else view  # a whole buffer: its array


class _Plan:
    """The schedule of one graph structure (`graph_signature`) with its compiled kernels, by node position: a
    repeated eager call of the same graph (every training step, every call of an op on same-shaped inputs) runs
    it over its own nodes without scheduling, kernel signatures or lookups."""

    __slots__ = ("steps",)

    def __init__(self, items: list[ScheduleItem], order: list[Node]):
        at = {id(n): i for i, n in enumerate(order)}
        self.steps = []
        ready: set[int] = set()
        for item in items:
            ready.add(id(item.out))
            if item.kind != "kernel":
                operands = [_operand_view(s, at, ready) for s in item.out.srcs] if item.kind == "matmul" else None
                self.steps.append(_Step(item.kind, at[id(item.out)], [at[id(n)] for n in item.inputs], item.offset,
                                        None, [], operands))
                continue
            if item.out.op is Op.ASSIGN:  # compute the value, then copy it into the target buffer
                value = item.out.srcs[1]
                item = ScheduleItem(value, "kernel", kernel_inputs(value, {id(n) for n in item.inputs}), rows=item.rows)
            key, leaves = kernel_signature(item)
            compiled = _KERNELS.get(key)
            if compiled is None:
                name, source, kernel = compile_kernel(item)
                compiled = _Compiled(name, source, kernel.uses_error_flag, kernel.gathers)
                compiled.key = key
                compiled.nargs = len(kernel.params) + (1 if kernel.args else 0)
            else:
                _KERNELS.move_to_end(key)
            self.steps.append(_Step("kernel", at[id(item.out)], [at[id(n)] for n in item.inputs], 0, compiled,
                                    [at[id(n)] for n in leaves]))
        fresh = [c for c in self.compiled() if c.fn is None]
        if fresh:
            sources = {c.name: c.source for c in fresh}  # two structures may print the same function
            lib = compile_library(PRELUDE + "\n".join(sources.values()), list(sources))
            for c in fresh:
                c.fn = getattr(lib, c.name)
                c.fn.restype = None
                c.fn.argtypes = [ctypes.c_void_p] * c.nargs
                _KERNELS[c.key] = c
                if len(_KERNELS) > MAX_CACHED_KERNELS:
                    _KERNELS.popitem(last=False)

    def compiled(self) -> list[_Compiled]:
        """The kernels the plan launches, in order."""
        return [step.compiled for step in self.steps if step.compiled is not None]


_PLANS: OrderedDict[tuple, _Plan] = OrderedDict()
MAX_CACHED_PLANS = 512


def compile_kernel(item: ScheduleItem) -> tuple[str, str, ir.Kernel]:
    """(name, C source, IR) of a kernel item as the cpu device builds it; the name is a hash of the source."""
    kernel = lower(item, "KERNEL", CPU)
    body = render_c(kernel)
    name = "k_" + hashlib.sha256(body.encode()).hexdigest()[:16]
    return name, body.replace("KERNEL", name), kernel  # the kernel and its helpers


def _pack_args(values: list[bool | int | float]) -> array.array:
    """Launch arguments as 8-byte slots (the C side's `fg_arg` union): floats as double, integers as int64 bits.
    An `array.array`, whose address is one C call away (NumPy's `ctypes.data` runs Python code)."""
    if all(type(v) is float for v in values):  # the common case (and no arguments at all): no per-value loop
        return array.array("d", values)
    slots = array.array("d", bytes(8 * len(values)))
    as_int = memoryview(slots).cast("B").cast("q")
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
        self._err = np.zeros(1, np.int32)  # a gathering kernel's out-of-range flag, reset before each launch
        self._err_address = self._err.ctypes.data
        if find_compiler() is None:
            warn_no_compiler()
            self.fallback = NumpyDevice()
        else:
            share_threads_with_blas()  # BLAS products run on the kernels' OpenMP threads: no two pools spinning

    def from_numpy(self, array: np.ndarray, dtype: DType) -> Buffer:
        """Copy host data into an owned, contiguous array."""
        self.allocations += 1
        return Buffer(self.name, array.shape, dtype, np.array(array, dtype=dtype.np, order="C", copy=True))

    def to_numpy(self, buffer: Buffer) -> np.ndarray:
        """A copy of the buffer's array."""
        return buffer.handle.copy()

    def realize(self, nodes: list[Node], order: list[Node] | None = None) -> None:
        """Schedule, compile every kernel of this realize in one translation unit, then run them in order."""
        if self.fallback is not None:
            self.fallback.realize(nodes)
            for n in nodes:
                n.buffer.device = self.name
            return
        key, order = graph_signature(nodes, order)
        plan = _PLANS.get(key)
        if plan is None:
            plan = _PLANS[key] = _Plan(schedule_kernels(nodes, row_kernels=True), order)
            if len(_PLANS) > MAX_CACHED_PLANS:
                _PLANS.popitem(last=False)
        else:
            _PLANS.move_to_end(key)
        debug = debug_level()
        if debug >= 3:
            print("\n".join({c.name: c.source for c in plan.compiled()}.values()), file=sys.stderr)
        start = time.perf_counter()
        for step in plan.steps:
            t0 = time.perf_counter()
            self._run(step, order)
            if debug >= 2:
                dt = time.perf_counter() - t0
                out = order[step.out]
                nbytes = out.buffer.handle.nbytes + sum(order[i].buffer.handle.nbytes for i in step.inputs
                                                        if order[i].realized)
                print(f"  {step.kind:6s} {out.op.name:10s} {str(out.shape):18s} {dt * 1e6:9.1f} us "
                      f"{nbytes / max(dt, 1e-9) / 1e9:7.2f} GB/s", file=sys.stderr)
        if debug >= 1 and plan.steps:
            launched = sum(step.kind != "view" for step in plan.steps)
            print(f"realize: {launched} kernels in {(time.perf_counter() - start) * 1e3:.3f} ms", file=sys.stderr)

    def _run(self, step: _Step, order: list[Node]) -> None:
        out = order[step.out]
        if step.kind == "view":  # a dense block of a buffer: share the memory
            base = order[step.inputs[0]].buffer.handle
            handle = base.reshape(out.shape) if base.size == prod(out.shape) else \
                base.reshape(-1)[step.offset:step.offset + prod(out.shape)].reshape(out.shape)
            out.buffer = Buffer(self.name, out.shape, out.dtype, handle)
            return
        compiled = step.compiled
        if compiled is None:  # a MATMUL into a pooled buffer
            target, address = _POOL.empty(out.shape, out.dtype.np)
            product = step.product(order)
            if product is not None:  # the common case: one BLAS call on the buffers' addresses
                (a, _), (b, _) = step.operands
                product(_host_address(order[a].buffer), _host_address(order[b].buffer), address)
            else:
                a, b = (_strided(order[at].buffer.handle, view) for at, view in step.operands)
                if out.dtype == float16:  # no half-precision GEMM: a float32 product, rounded once
                    np.copyto(target, np.matmul(a.astype(np.float32), b.astype(np.float32)), casting="same_kind")
                else:
                    matmul_into(a, b, target)
            self.allocations += 1
            out.buffer = Buffer(self.name, out.shape, out.dtype, target)
            out.buffer.address = address
            return
        self.allocations += 1
        value = out.srcs[1] if out.op is Op.ASSIGN else out
        target, address = _POOL.empty(value.shape, value.dtype.np)
        args = [address]
        args += [_host_address(order[i].buffer) for i in step.inputs]
        if compiled.uses_err:
            self._err[0] = 0
            args.append(self._err_address)
        if step.leaves:
            packed = _pack_args(launch_args([order[i] for i in step.leaves]))  # kept alive until the call returns
            args.append(packed.buffer_info()[0])
        compiled.fn(*args)
        if compiled.uses_err and self._err[0]:
            dim, size = compiled.gathers[self._err[0] - 1]
            raise IndexError(f"index out of bounds for dim {dim} with size {size} (while computing a tensor of shape "
                             f"{out.shape})")
        if out.op is Op.ASSIGN:
            np.copyto(out.srcs[0].buffer.handle, target)
            out.buffer = out.srcs[0].buffer
        else:
            out.buffer = Buffer(self.name, out.shape, out.dtype, target)
            out.buffer.address = address
