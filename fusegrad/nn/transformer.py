"""`TransformerEncoderLayer` (self-attention and a feed-forward block with residuals) and `TransformerEncoder` (a
stack of them), with PyTorch's names and layout."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fusegrad import Tensor

from . import functional as F  # noqa: N812 - the name every PyTorch user knows
from .attention import MultiheadAttention, _canonical_mask
from .containers import ModuleList
from .layers import GELU, Dropout, Linear, ReLU
from .module import Module
from .normalization import LayerNorm


def _get_activation_fn(activation: str) -> Callable[[Tensor], Tensor]:
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise RuntimeError(f"activation should be relu/gelu, not {activation}")


class TransformerEncoderLayer(Module):
    """One encoder block of "Attention Is All You Need" (torch.nn.TransformerEncoderLayer): post-norm
    x = norm1(x + sa(x)); x = norm2(x + ff(x)), or with norm_first x = x + sa(norm1(x)); x = x + ff(norm2(x)).
    Submodules are named like torch's, so state_dicts interchange."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = F.relu, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True, device: str | None = None,
                 dtype: Any = None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            activation = _get_activation_fn(activation)
        # torch records which fused activation its fast path could use; kept for attribute parity
        if activation is F.relu or isinstance(activation, ReLU):
            self.activation_relu_or_gelu = 1
        elif activation is F.gelu or isinstance(activation, GELU):
            self.activation_relu_or_gelu = 2
        else:
            self.activation_relu_or_gelu = 0
        self.activation = activation  # a Module activation becomes a child, as in torch

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        """src is (S, N, E) ((N, S, E) with batch_first) or unbatched (S, E); masks as in MultiheadAttention
        (bool True = do not attend, float added). is_causal is a hint that src_mask is causal."""
        src_key_padding_mask = _canonical_mask(src_key_padding_mask, "src_key_padding_mask", src.dtype, src_mask,
                                               "src_mask")
        src_mask = _canonical_mask(src_mask, "src_mask", src.dtype)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None,
                  is_causal: bool) -> Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerEncoder(Module):
    """`num_layers` copies of `encoder_layer` applied in turn, then `norm` if given (torch.nn.TransformerEncoder).

    As in torch the layers are deep copies, so they start with equal weights, and they are `layers.0`, `layers.1`,
    ... in the state_dict. `enable_nested_tensor` and `mask_check` only steer torch's inference fast path and are
    kept as attributes; fusegrad always takes the regular path (the fast path's results are the same, except that
    with a `src_key_padding_mask` it gives zeros at padded positions).
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = False
        self.mask_check = mask_check

    def forward(self, src: Tensor, mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool | None = None) -> Tensor:
        """src and the masks as in `TransformerEncoderLayer` (mask is its src_mask). is_causal is a hint that mask
        is causal; torch detects it when None by comparing values, which fusegrad does not do (it would compute the
        mask on the host, and inside `fg.jit` that is an error), so None means False: the mask is applied as given,
        which gives the same result."""
        src_key_padding_mask = _canonical_mask(src_key_padding_mask, "src_key_padding_mask", src.dtype, mask, "mask")
        mask = _canonical_mask(mask, "mask", src.dtype)
        out = src
        for layer in self.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return out if self.norm is None else self.norm(out)
