"""Loss modules: each holds its options and calls the function of the same name in `nn.functional`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fusegrad import Tensor

from . import losses
from .module import Module, bind_options


def _loss_module(name: str, fn: Callable[..., Tensor], **defaults: Any) -> type[Module]:
    """A loss Module class whose constructor takes PyTorch's options for `fn` (tensor options become buffers)."""
    def __init__(self: Module, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        Module.__init__(self)
        values = bind_options(name, defaults, args, kwargs)
        for k, v in values.items():
            if isinstance(v, Tensor) or k in ("weight", "pos_weight"):
                self.register_buffer(k, v)
            else:
                object.__setattr__(self, k, v)
        object.__setattr__(self, "_options", tuple(values))

    def forward(self: Module, input: Tensor, target: Tensor) -> Tensor:
        return fn(input, target, **{k: getattr(self, k) for k in self._options})

    doc = f"Module form of nn.functional.{fn.__name__}."
    return type(name, (Module,), {"__init__": __init__, "forward": forward, "__doc__": doc})


CrossEntropyLoss = _loss_module("CrossEntropyLoss", losses.cross_entropy, weight=None, ignore_index=-100,
                                reduction="mean", label_smoothing=0.0)
NLLLoss = _loss_module("NLLLoss", losses.nll_loss, weight=None, ignore_index=-100, reduction="mean")
MSELoss = _loss_module("MSELoss", losses.mse_loss, reduction="mean")
L1Loss = _loss_module("L1Loss", losses.l1_loss, reduction="mean")
SmoothL1Loss = _loss_module("SmoothL1Loss", losses.smooth_l1_loss, reduction="mean", beta=1.0)
HuberLoss = _loss_module("HuberLoss", losses.huber_loss, reduction="mean", delta=1.0)
BCELoss = _loss_module("BCELoss", losses.binary_cross_entropy, weight=None, reduction="mean")
BCEWithLogitsLoss = _loss_module("BCEWithLogitsLoss", losses.binary_cross_entropy_with_logits, weight=None,
                                 reduction="mean", pos_weight=None)
KLDivLoss = _loss_module("KLDivLoss", losses.kl_div, reduction="mean", log_target=False)
