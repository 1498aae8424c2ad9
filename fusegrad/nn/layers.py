"""Stateless-shape layers: Linear, Identity, Flatten, Dropout, and activations as modules."""
from __future__ import annotations

import math
from typing import Any

import fusegrad as fg
from fusegrad import Tensor

from . import functional as F  # noqa: N812 - the name every PyTorch user knows
from . import init
from .module import Module, Parameter, bind_options


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features) initialised like PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: str | None = None,
                 dtype: Any = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(fg.empty(out_features, in_features, device=device, dtype=dtype))
        self.register_parameter("bias", Parameter(fg.empty(out_features, device=device, dtype=dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform(a=sqrt(5)) weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Flatten(Module):
    """Flatten dims start_dim..end_dim (default: all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zero elements with probability p in training mode."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


def _activation(name: str, fn: Any, doc: str, fmt: str = "", **defaults: Any) -> type[Module]:
    """A Module class applying `fn(x, **options)`, taking PyTorch's constructor arguments (`defaults`, in order);
    `fmt` formats its repr from the options, like torch's extra_repr."""
    def __init__(self: Module, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        Module.__init__(self)
        values = bind_options(name, defaults, args, kwargs)
        for k, v in values.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_kwargs", {k: v for k, v in values.items() if k != "inplace"})

    def forward(self: Module, input: Tensor) -> Tensor:
        return fn(input, **self._kwargs)

    def extra_repr(self: Module) -> str:
        inplace = getattr(self, "inplace", False)
        text = fmt.format(**self._kwargs, approximate_repr=repr(self._kwargs.get("approximate")))
        return text + (", inplace=True" if inplace and text else "inplace=True" if inplace else "")

    return type(name, (Module,), {"__init__": __init__, "forward": forward, "extra_repr": extra_repr, "__doc__": doc})


ReLU = _activation("ReLU", F.relu, "max(x, 0).", inplace=False)
LeakyReLU = _activation("LeakyReLU", F.leaky_relu, "x if x > 0 else negative_slope * x.",
                        "negative_slope={negative_slope}", negative_slope=0.01, inplace=False)
ELU = _activation("ELU", F.elu, "x if x > 0 else alpha (e^x - 1).", "alpha={alpha}", alpha=1.0, inplace=False)
GELU = _activation("GELU", F.gelu, "Gaussian error linear unit.", "approximate={approximate_repr}",
                   approximate="none")
SiLU = _activation("SiLU", F.silu, "x * sigmoid(x).", inplace=False)
Sigmoid = _activation("Sigmoid", F.sigmoid, "1 / (1 + e^-x).")
Tanh = _activation("Tanh", F.tanh, "Hyperbolic tangent.")
Softplus = _activation("Softplus", F.softplus, "log(1 + e^(beta x)) / beta.", "beta={beta}, threshold={threshold}",
                       beta=1.0, threshold=20.0)
Softmax = _activation("Softmax", F.softmax, "Softmax along dim.", "dim={dim}", dim=None)
LogSoftmax = _activation("LogSoftmax", F.log_softmax, "Log-softmax along dim.", "dim={dim}", dim=None)
