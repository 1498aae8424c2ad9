"""The user-facing Tensor: a lazy graph node plus autograd bookkeeping, with PyTorch's names and semantics."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import dtype as dt
from ..autograd import Composite, Context, backprop
from ..dtype import DType
from ..graph import Node, Op, make_node, shape_error, source_node
from ..realize import ShapeOnlyError, realize
from ..runtime import get_device
from ..runtime.device import canonical_device
from . import grad_mode
from .binary import BinaryMathMixin
from .elementwise import ElementwiseMixin
from .expansions import expand
from .hooks import HooksMixin, run_post_accumulate_grad_hooks
from .indexing import IndexingMixin
from .inplace import InplaceMixin
from .linalg import LinalgMixin
from .movement import MovementMixin
from .new_factories import NewFactoriesMixin
from .random import RandomMixin
from .reduce import ReduceMixin
from .sorting import SortMixin

Scalar = bool | int | float


def _host_array(data: Any, dtype: DType | None) -> tuple[np.ndarray, DType]:
    """Turn Python data or an array into a NumPy array and its fusegrad dtype, inferring like torch.tensor."""
    if isinstance(data, Tensor):
        return data.numpy(), dtype or data.dtype
    if isinstance(data, np.ndarray) and data.dtype.kind in "biuf" and data.dtype != np.float16:
        arr = data
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    else:
        arr = np.array(data)
        if arr.dtype == object:
            raise TypeError(f"cannot make a tensor from {type(data).__name__} data: ragged or non-numeric elements")
    if dtype is None:
        if arr.dtype.kind == "f" and not isinstance(data, (np.ndarray, np.generic)):
            dtype = dt.default_float  # Python floats become float32; NumPy scalars keep their dtype, like torch
        elif arr.dtype.kind in "iu" and not isinstance(data, (np.ndarray, np.generic)):
            dtype = dt.default_int
        elif arr.dtype.kind == "b":
            dtype = dt.bool_
        else:
            dtype = dt.to_dtype(arr.dtype)
    return arr, dtype


class device(str):  # noqa: N801 - torch.device's name
    """A device, as `torch.device`: `fg.device("cpu")`, `fg.device("cuda:0")`, `fg.device("cuda", 0)`.

    It is a `str` holding fusegrad's device name (the type, without the index), so it goes wherever a device name
    does: `tensor.to(dev)`, `module.to(dev)`, `fg.zeros(3, device=dev)`, `fg.load(path, map_location=dev)`. `.type`
    and `.index` are torch's. fusegrad has one device per backend ($FUSEGRAD_CUDA_DEVICE picks the GPU), so the
    index may only be None or 0. The name is checked when the device is used, as torch checks availability.
    """

    index: int | None

    def __new__(cls, type: str, index: int | None = None) -> device:  # noqa: A002 - torch's argument name
        if isinstance(type, device) and index is None:
            return type
        if not isinstance(type, str):
            raise TypeError(f"device(): expected a device name such as 'cpu' or 'cuda:0', got {type!r}")
        name, colon, number = type.partition(":")
        if colon:
            if index is not None:
                raise ValueError(f"device(): the type {type!r} must not include an index because index was passed "
                                 "explicitly")
            if not number.isdigit():
                raise ValueError(f"device(): invalid device string {type!r}")
            index = int(number)
        if index is not None and (isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0):
            raise ValueError(f"device(): the index must be a non-negative int, got {index!r}")
        if index:
            raise ValueError(f"device(): fusegrad has one {name!r} device, index 0; got index {index} (the GPU the "
                             "cuda device uses is chosen by $FUSEGRAD_CUDA_DEVICE)")
        if not name:
            raise ValueError(f"device(): invalid device string {type!r}")
        out = super().__new__(cls, name)
        out.index = None if index is None else int(index)
        return out

    @property
    def type(self) -> str:  # noqa: A003 - torch's attribute name
        """The device name without the index: 'cpu', 'cuda', 'numpy', 'opencl'."""
        return str(self)

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type={str(self)!r}{index})"


class Tensor(ElementwiseMixin, BinaryMathMixin, ReduceMixin, MovementMixin, IndexingMixin, LinalgMixin, InplaceMixin,
             NewFactoriesMixin, SortMixin, RandomMixin, HooksMixin):
    """A multi-dimensional array that records how it was computed and computes only when asked.

    Operations build an immutable graph (checked for shape and dtype as it is built); `.realize()`, `.numpy()`,
    `.item()` and `.tolist()` compute it on the tensor's device. Gradients flow through the recorded operations.
    """

    __slots__ = ("_node", "requires_grad", "_grad", "_ctx", "__weakref__")
    __array_priority__ = 1000  # numpy scalars on the left defer to our operators

    def __init__(self, data: Any, dtype: DType | str | None = None, device: str | None = None,
                 requires_grad: bool = False):
        if isinstance(data, Node):
            self._node = data
        else:
            arr, dtype = _host_array(data, dt.to_dtype(dtype))
            dev = canonical_device(device)
            buf = get_device(dev).from_numpy(arr.astype(dtype.np, copy=False), dtype)
            self._node = source_node(Op.LOAD, buf, arr.shape, dtype, dev)
            self._node.buffer = buf
        self.requires_grad = False
        self._grad: Tensor | None = None
        self._ctx: Context | None = None
        if requires_grad:
            self.requires_grad_(True)

    # ---- graph plumbing used by the mixins and the gradient rules ----

    def _wrap(self, node: Node) -> Tensor:
        """A tensor over `node`, outside the tape."""
        return Tensor(node)

    def _apply(self, op: Op, *srcs: Tensor, arg: Any = None) -> Tensor:
        """Apply a primitive op and record it on the tape when gradients are wanted."""
        if grad_mode._state["trace"] is not None:  # fg.jit learns which existing tensors the step reads
            grad_mode._state["trace"].read(srcs)
        out = Tensor(make_node(op, tuple(s._node for s in srcs), arg))
        # integer and bool results are not differentiable (torch: x.long(), x > 0 do not require grad)
        if grad_mode.enabled() and out.dtype.is_floating_point and any(s.requires_grad for s in srcs):
            out.requires_grad = True
            out._ctx = Context(op, srcs, arg, out._node)
        return out

    def _composite(self, composite: Composite, fn: Any, *srcs: Tensor, arg: Any = None) -> Tensor:
        """fn(*srcs) computed from primitives off the tape, recorded as one entry whose gradient is `composite`'s
        (which sees `arg` as ctx.arg)."""
        with grad_mode.no_grad():
            out = expand(fn, srcs)
        if grad_mode.enabled() and out.dtype.is_floating_point and any(s.requires_grad for s in srcs):
            out = Tensor(out._node)
            out.requires_grad = True
            out._ctx = Context(composite, srcs, arg, out._node)
        return out

    def _const(self, value: Scalar, shape: tuple[int, ...] | None = None, dtype: DType | None = None) -> Tensor:
        """A constant filled with `value`, with this tensor's shape (or `shape`), dtype and device."""
        return Tensor(source_node(Op.CONST, value, self.shape if shape is None else shape, dtype or self.dtype,
                                  self.device))

    def _arange_node(self, n: int, dtype: DType) -> Node:
        """A realized 0..n-1 vector on this tensor's device (positions for gathers, masks and one-hot)."""
        return Tensor(np.arange(n), dtype=dtype, device=self.device)._node

    def _set_node(self, node: Node) -> None:
        """Rebind this tensor to a new value (in-place ops, realization); eval_shape can undo it."""
        grad_mode.journal(self, "_node", self._node)
        self._node = node

    def _become(self, result: Tensor) -> Tensor:
        """In-place update: take result's value and, when it is being recorded, its place on the tape."""
        if grad_mode.enabled() and self._ctx is not None and not result.requires_grad:
            # overwritten by an untracked value (zero_, fill_, copy_): stays on the tape, as in torch, passing a
            # zero gradient to the old value instead of its stale one
            old = Tensor(self._node)
            old.requires_grad, old._ctx = True, self._ctx
            keep = self._const(True, dtype=dt.bool_)
            result = keep._apply(Op.WHERE, keep, result.cast(self.dtype), old)
        if grad_mode.enabled() and result.requires_grad:
            grad_mode.journal(self, "requires_grad", self.requires_grad)
            grad_mode.journal(self, "_ctx", self._ctx)
            self.requires_grad, self._ctx = True, result._ctx
        self._set_node(result.cast(self.dtype)._node if result.dtype != self.dtype else result._node)
        return self

    # ---- attributes ----

    @property
    def shape(self) -> tuple[int, ...]:
        """The size of every dimension (a tuple, like torch.Size)."""
        return self._node.shape

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """The shape, or the size of one dimension."""
        return self.shape if dim is None else self.shape[self._dim(dim)]

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def dim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def element_size(self) -> int:
        """Bytes per element."""
        return self.dtype.itemsize

    @property
    def dtype(self) -> DType:
        """The element type."""
        return self._node.dtype

    @property
    def device(self) -> str:
        """The name of the device holding (or going to compute) this tensor."""
        return self._node.device

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by a recorded operation."""
        return self._ctx is None

    def is_floating_point(self) -> bool:
        """True for floating-point dtypes."""
        return self.dtype.is_floating_point

    def _dim(self, d: int, extra: int = 0) -> int:
        """Normalize a possibly negative dim against ndim (+extra, for unsqueeze-like ops)."""
        n = self.ndim + extra
        if not -max(n, 1) <= d < max(n, 1):
            raise IndexError(f"dim {d} is out of range for a tensor of shape {self.shape} (expected in "
                             f"[{-max(n, 1)}, {max(n, 1) - 1}])")
        return d % max(n, 1)

    # ---- computing and reading values ----

    def realize(self, *others: Tensor) -> Tensor:
        """Compute this tensor (and `others`) now; returns self."""
        tensors = (self,) + others
        if grad_mode.shape_only() or grad_mode.tracing():  # eval_shape / fg.jit: computed later, as one graph
            return self
        realize([t._node for t in tensors])
        for t in tensors:  # drop the computed graph so its intermediates can be freed
            if t._node.op is not Op.LOAD:
                loaded = Node(Op.LOAD, (), t._node.buffer, t.shape, t.dtype, t.device)
                loaded.buffer = t._node.buffer
                t._node = loaded
        return self

    def numpy(self) -> np.ndarray:
        """The values as a new NumPy array."""
        if grad_mode.shape_only():
            raise ShapeOnlyError("this tensor is shape-only inside fg.eval_shape: its values cannot be read")
        if grad_mode.tracing() and not self._node.realized:
            raise grad_mode.tracing().value_read_error(self)
        self.realize()
        return get_device(self.device).to_numpy(self._node.buffer)

    def item(self) -> Scalar:
        """The value of a one-element tensor as a Python number."""
        if self.numel() != 1:
            raise RuntimeError(f"item() needs a tensor with one element, this one has shape {self.shape} "
                               f"({self.numel()} elements)")  # RuntimeError, like torch
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        """The values as (nested) Python lists."""
        return self.numpy().tolist()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self) -> str:
        extras = []
        if self.dtype not in (dt.float32, dt.int64, dt.bool_):
            extras.append(f"dtype={self.dtype!r}")
        if self.device != "numpy":
            extras.append(f"device='{self.device}'")
        if self.requires_grad:
            extras.append("requires_grad=True")
        if self._node.op is Op.LOAD and self._node.buffer is None:
            return f"tensor(<shape-only {self.shape}>, dtype={self.dtype!r})"
        arr = self.numpy()
        body = np.array2string(arr, separator=", ", prefix="tensor(", precision=4,
                               floatmode="fixed" if arr.dtype.kind == "f" else "maxprec")
        if arr.size == 0:
            body = f"[], size={self.shape}"
        return "tensor(" + ", ".join([body] + extras) + ")"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor with shape {self.shape} is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __hash__ = object.__hash__

    # ---- devices and dtypes ----

    def to(self, *args: Any, dtype: DType | str | None = None, device: str | None = None) -> Tensor:
        """Convert dtype and/or move device: `.to("numpy")`, `.to(fg.float64)`, `.to(other_tensor)`."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, str) and a not in dt._BY_NAME:
                device = a
            else:
                dtype = a
        out = self
        if device is not None and canonical_device(device) != self.device:
            out = out._apply(Op.COPY, out, arg=canonical_device(device))
        if dtype is not None and dt.to_dtype(dtype) != out.dtype:
            out = out.cast(dt.to_dtype(dtype))
        return out

    def cpu(self) -> Tensor:
        """Move to the host device (the `numpy` device until the compiled `cpu` device exists)."""
        from ..runtime import available_devices
        return self.to("cpu" if "cpu" in available_devices() else "numpy")

    def cast(self, dtype: DType | str) -> Tensor:
        """Convert to another dtype (float to int truncates toward zero, like PyTorch)."""
        dtype = dt.to_dtype(dtype)
        return self if dtype == self.dtype else self._apply(Op.CAST, self, arg=dtype)

    def type(self, dtype: DType | str) -> Tensor:
        """Alias of `.to(dtype)`."""
        return self.cast(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        """Cast to other's dtype (and move to its device), like torch's `self.to(other.dtype, other.device)`."""
        if not isinstance(other, Tensor):
            raise TypeError(f"type_as: expected a Tensor, got {type(other).__name__}")
        return self.to(other)

    def float(self) -> Tensor:
        """As float32."""
        return self.cast(dt.float32)

    def double(self) -> Tensor:
        """As float64."""
        return self.cast(dt.float64)

    def half(self) -> Tensor:
        """As float16."""
        return self.cast(dt.float16)

    def int(self) -> Tensor:
        """As int32."""
        return self.cast(dt.int32)

    def long(self) -> Tensor:
        """As int64."""
        return self.cast(dt.int64)

    def bool(self) -> Tensor:
        """As bool (nonzero is True)."""
        return self.cast(dt.bool_)

    # ---- autograd ----

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by `.backward()` (None until then, and for non-leaf tensors)."""
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        grad_mode.journal(self, "_grad", self._grad)  # eval_shape undoes zero_grad() and the like
        self._grad = value

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark this leaf tensor as one whose gradient `.backward()` fills in."""
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError(f"only floating-point tensors can require gradients, this one is {self.dtype.name}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use .detach()")
        grad_mode.journal(self, "requires_grad", self.requires_grad)
        self.requires_grad = requires_grad
        return self

    def detach(self) -> Tensor:
        """The same values, cut off from the tape."""
        return Tensor(self._node)

    @property
    def data(self) -> Tensor:
        """The values without gradient tracking; in-place ops on it (and assigning to `.data`) update self."""
        alias = _DataAlias(self._node)
        alias._owner = self
        return alias

    @data.setter
    def data(self, value: Tensor) -> None:
        self._set_node(value._node if isinstance(value, Tensor) else Tensor(value, dtype=self.dtype)._node)

    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no input of it requires grad)")
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(f"backward() without a gradient needs a one-element output, got shape {self.shape}")
            gradient = self._const(1.0)
        grads = _gradients([self], [gradient], create_graph)
        leaves = [(t, g) for t, g in grads.values() if t._ctx is None and t.requires_grad]
        for t, g in leaves:
            grad_mode.journal(t, "grad", t.grad)
            t.grad = g if t.grad is None else (t.grad + g)
        if not create_graph and leaves:  # the output too, as torch has computed it: its errors (a bad index) show
            leaves[0][0].grad.realize(*[t.grad for t, _ in leaves[1:]], self)
        run_post_accumulate_grad_hooks([t for t, _ in leaves])


class _DataAlias(Tensor):
    """What `.data` returns: an untracked tensor whose in-place updates also rebind the tensor it came from."""

    __slots__ = ("_owner",)

    def _set_node(self, node: Node) -> None:
        super()._set_node(node)
        self._owner._set_node(node)


def _gradients(roots: Sequence[Tensor], root_grads: Sequence[Tensor], create_graph: bool) -> dict:
    for r, g in zip(roots, root_grads):
        if g.shape != r.shape:
            raise shape_error(f"backward: gradient shape {g.shape} does not match output shape {r.shape}")
    with grad_mode.set_grad_enabled(create_graph):
        return backprop(list(roots), [g.cast(r.dtype) for r, g in zip(roots, root_grads)])


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Tensor | Sequence[Tensor] | None = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Tensor | None, ...]:
    """d(outputs)/d(inputs), like torch.autograd.grad: returns the gradients instead of filling `.grad`."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    seeds = []
    for o, g in zip(outputs, grad_outputs):
        if not o.requires_grad:
            raise RuntimeError("grad(): an output does not require grad")
        if g is None and o.numel() != 1:
            raise RuntimeError(f"grad(): grad_outputs is needed for a non-scalar output of shape {o.shape}")
        seeds.append(o._const(1.0) if g is None else g)
    for i in inputs:
        if not i.requires_grad:
            raise RuntimeError("grad(): an input does not require grad")
    grads = _gradients(outputs, seeds, create_graph)
    result = []
    for i in inputs:
        if id(i) in grads:
            result.append(grads[id(i)][1])
        elif allow_unused:
            result.append(None)
        else:
            raise RuntimeError("grad(): one of the inputs was not used to compute the outputs (allow_unused=True "
                               "returns None for it)")
    return tuple(result)
