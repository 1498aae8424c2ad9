"""`eval_shape`: run any function on shape-only inputs and get output shapes, computing nothing."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import dtype as dt
from ..dtype import DType
from ..graph import Op, source_node
from ..runtime.device import canonical_device
from . import creation, grad_mode
from .tensor import Tensor


@dataclass(frozen=True)
class Spec:
    """A tensor's shape and dtype without data: an input or output of `eval_shape` (device None: the default)."""

    shape: tuple[int, ...]
    dtype: DType = dt.float32
    requires_grad: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", dt.to_dtype(self.dtype))
        object.__setattr__(self, "device", canonical_device(self.device))  # so Spec((2,)) equals an output's spec


def _to_tensor(spec: Any) -> Any:
    if not isinstance(spec, Spec):
        return spec
    node = source_node(Op.LOAD, None, spec.shape, spec.dtype, spec.device)
    t = Tensor(node)
    return t.requires_grad_() if spec.requires_grad else t


def _to_spec(x: Any) -> Any:
    if isinstance(x, Tensor):
        return Spec(x.shape, x.dtype, x.requires_grad, x.device)
    if isinstance(x, (list, tuple)):
        return type(x)(_to_spec(v) for v in x) if not hasattr(x, "_fields") else type(x)(*map(_to_spec, x))
    if isinstance(x, dict):
        return {k: _to_spec(v) for k, v in x.items()}
    return x


def eval_shape(fn: Callable[..., Any], *specs: Any, **kwargs: Any) -> Any:
    """Run `fn` on shape-only tensors made from `Spec`s and return its outputs as Specs (same nesting).

    Shape and dtype errors surface exactly as they would in a real run, but nothing is computed, and every
    change `fn` makes to existing tensors (parameter updates, `.grad`) is undone afterwards.
    """
    with grad_mode.recording_mutations():
        grad_mode.journal_dict(creation._rng)  # random draws inside do not shift the real run's random stream
        out = fn(*[_to_tensor(s) for s in specs], **{k: _to_tensor(v) for k, v in kwargs.items()})
        return _to_spec(out)
