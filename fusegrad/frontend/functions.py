"""Module-level functions (`fg.exp(x)`, `fg.where(c, x, y)`, ...) that forward to Tensor methods, like torch.*."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import dtype as dt
from ..runtime.device import canonical_device
from .elementwise import promote
from .linalg import tensordot
from .reduce import std_mean, var_mean
from .stacking import column_stack, dstack, hstack, meshgrid, row_stack, vstack
from .tensor import Tensor

# torch.NAME(tensor, *args) is tensor.NAME(*args) for each of these
METHOD_FUNCTIONS = (
    "abs exp exp2 log log2 log10 log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu sign floor ceil round trunc "
    "reciprocal neg square erf clamp clip maximum minimum add sub mul div true_divide floor_divide remainder fmod pow "
    "eq ne lt le gt ge logical_and logical_or logical_not logical_xor isnan isinf isfinite isclose allclose lerp "
    "sum mean var std prod amax amin max min argmax argmin all any logsumexp softmax log_softmax cumsum "
    "reshape flatten unflatten squeeze unsqueeze permute transpose swapaxes movedim broadcast_to split chunk unbind "
    "repeat_interleave flip narrow gather index_select masked_fill triu tril nonzero matmul mm bmm dot numel clone "
    "sort argsort msort topk "
    "roll diff diag trace outer mv addmm baddbmm nan_to_num hypot atan2 arctan2 logaddexp count_nonzero "
    "take_along_dim signbit frac"
).split()


def _forward(name: str) -> Callable[..., Any]:
    method = getattr(Tensor, name)

    def fn(input: Tensor, *args: Any, **kwargs: Any) -> Any:  # noqa: A002 - PyTorch's argument name
        if not isinstance(input, Tensor):
            raise TypeError(f"fusegrad.{name}: expected a Tensor as the first argument, got {type(input).__name__}")
        return method(input, *args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Same as Tensor.{name}: {(method.__doc__ or '').strip().splitlines()[0] if method.__doc__ else ''}"
    return fn


FUNCTIONS: dict[str, Callable[..., Any]] = {name: _forward(name) for name in METHOD_FUNCTIONS}


def where(condition: Tensor, input: Any, other: Any) -> Tensor:  # noqa: A002 - PyTorch's argument name
    """`input` where condition is True, else `other` (broadcast together)."""
    return condition._select(input, other)


def one_hot(x: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding of an integer tensor (torch.nn.functional.one_hot)."""
    return x.one_hot(num_classes)


def xlogy(input: Any, other: Any) -> Tensor:  # noqa: A002 - PyTorch's argument name
    """input * log(other), 0 where input is 0 (unless other is NaN); either may be a Python number, not both."""
    if not isinstance(input, Tensor):
        if not isinstance(other, Tensor):
            raise TypeError(f"xlogy: expected a Tensor operand, got {type(input).__name__} and {type(other).__name__}")
        return promote([input, other], "xlogy", other)[0].xlogy(other)
    return input.xlogy(other)


def is_tensor(obj: Any) -> bool:
    """True if obj is a fusegrad Tensor."""
    return isinstance(obj, Tensor)


def as_tensor(data: Any, dtype: dt.DType | str | None = None, device: str | None = None) -> Tensor:
    """data as a tensor: a Tensor itself if dtype and device match, else converted; other data is copied."""
    if isinstance(data, Tensor):
        return data.to(dtype=dt.to_dtype(dtype), device=None if device is None else canonical_device(device))
    return Tensor(data, dtype=dtype, device=device)


# module-level only (no Tensor method of the name): exported by fusegrad/__init__ with the forwarders
FUNCTIONS.update(xlogy=xlogy, is_tensor=is_tensor, as_tensor=as_tensor, tensordot=tensordot, var_mean=var_mean,
                 std_mean=std_mean, meshgrid=meshgrid, hstack=hstack, vstack=vstack, row_stack=row_stack,
                 dstack=dstack, column_stack=column_stack)
