"""Attention: `scaled_dot_product_attention` and `MultiheadAttention` with PyTorch's masks, parameters and layout."""
from __future__ import annotations

import math
import warnings
from typing import Any

import fusegrad as fg
from fusegrad import Tensor

from . import functional as F  # noqa: N812 - the name every PyTorch user knows
from . import init
from .layers import Linear
from .module import Module, Parameter

_NEG_INF = float("-inf")


def _check_mask_dtype(mask: Tensor, name: str) -> None:
    if mask.dtype != fg.bool_ and not mask.is_floating_point():
        raise TypeError(f"{name}: only bool and floating point masks are supported, got {mask.dtype.name}")


def _causal_mask(length: int, source: int, device: str) -> Tensor:
    """(L, S) bool, True where query i may attend key j (j <= i): torch's top-left aligned lower triangle."""
    rows = fg.arange(length, dtype=fg.int64, device=device).reshape(length, 1)
    cols = fg.arange(source, dtype=fg.int64, device=device).reshape(1, source)
    return rows >= cols


def _repeat_heads(x: Tensor, repeats: int) -> Tensor:
    """repeat_interleave along the head dim (-3): key/value head h serves query heads h*r .. h*r + r - 1."""
    if repeats == 1:
        return x
    lead, (h, s, e) = x.shape[:-3], x.shape[-3:]
    return x.unsqueeze(-3).expand(lead + (h, repeats, s, e)).reshape(lead + (h * repeats, s, e))


def _safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last dim whose rows of only -inf give zeros (torch's SDPA), with finite gradients there."""
    dead = scores.amax(-1, keepdim=True).detach() == _NEG_INF  # a fully masked row
    # dead rows become zeros before the softmax (so no -inf - -inf NaN, forward or backward) and after it
    return fg.where(dead, 0.0, fg.where(dead, 0.0, scores).softmax(-1))


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value over (..., L, E), (..., S, E), (..., S, Ev) -> (..., L, Ev).

    attn_mask broadcasts to (..., L, S): a bool mask keeps positions where it is True, a float mask is added to
    the scores. is_causal masks key j > query i (top-left aligned when L != S) and excludes attn_mask. Rows left
    with no key to attend give zeros (and zero gradients), as torch's SDPA does. dropout_p is applied whenever it
    is positive (the functional form ignores train/eval, like torch). enable_gqa lets key/value have fewer heads
    (dim -3) than query, each serving a group of query heads.
    """
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise fg.ShapeError(f"scaled_dot_product_attention: query, key and value need at least 2 dims, got shapes "
                            f"{query.shape}, {key.shape} and {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise fg.ShapeError(f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and value "
                            f"{value.shape} must be (..., L, E), (..., S, E) and (..., S, Ev)")
    if enable_gqa and query.ndim >= 3 and key.ndim >= 3:
        hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
        if hk != hv or hq % hk:
            raise fg.ShapeError(f"scaled_dot_product_attention: with enable_gqa the query heads ({hq}) must be a "
                                f"multiple of the key heads ({hk}), and key and value heads ({hk}, {hv}) must agree")
        key, value = _repeat_heads(key, hq // hk), _repeat_heads(value, hq // hk)
    length, source = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        scores = fg.where(_causal_mask(length, source, query.device), scores, _NEG_INF)
    elif attn_mask is not None:
        _check_mask_dtype(attn_mask, "scaled_dot_product_attention: attn_mask")
        scores = fg.where(attn_mask, scores, _NEG_INF) if attn_mask.dtype == fg.bool_ \
            else scores + attn_mask.to(scores.dtype)
    attn = _safe_softmax(scores)
    if dropout_p > 0.0:
        attn = fg.dropout(attn, dropout_p, True)
    return attn @ value


def _canonical_mask(mask: Tensor | None, name: str, dtype: Any, other: Tensor | None = None,
                    other_name: str = "") -> Tensor | None:
    """torch's `_canonical_mask`: a bool mask (True = do not attend) becomes 0 / -inf of `dtype`; floats pass."""
    if mask is None:
        return None
    _check_mask_dtype(mask, name)
    if other is not None and mask.dtype != other.dtype:
        warnings.warn(f"Support for mismatched {name} and {other_name} is deprecated. Use same type for both "
                      "instead.", UserWarning, stacklevel=3)
    if mask.dtype == fg.bool_:
        return fg.where(mask, _NEG_INF, fg.zeros(mask.shape, dtype=dtype, device=mask.device))
    return mask


class NonDynamicallyQuantizableLinear(Linear):
    """The Linear that MultiheadAttention uses as out_proj (a distinct class in torch; here only its name differs)."""


class MultiheadAttention(Module):
    """Multi-head attention (torch.nn.MultiheadAttention): packed `in_proj_weight` (3E, E) when key and value have
    embed_dim features, else separate `q_proj_weight`, `k_proj_weight`, `v_proj_weight`; `out_proj` a Linear.

    Masks follow torch's MHA convention: in a bool attn_mask or key_padding_mask True means *do not attend*; float
    masks are added to the scores.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device: str | None = None, dtype: Any = None):
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                             f"num_heads={num_heads} instead")
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads, self.dropout, self.batch_first = num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError(f"embed_dim must be divisible by num_heads, got {embed_dim} and {num_heads}")
        empty = lambda *shape: Parameter(fg.empty(*shape, device=device, dtype=dtype))  # noqa: E731
        if self._qkv_same_embed_dim:
            self.in_proj_weight = empty(3 * embed_dim, embed_dim)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = empty(embed_dim, embed_dim)
            self.k_proj_weight = empty(embed_dim, self.kdim)
            self.v_proj_weight = empty(embed_dim, self.vdim)
            self.register_parameter("in_proj_weight", None)
        self.register_parameter("in_proj_bias", empty(3 * embed_dim) if bias else None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        if add_bias_kv:
            self.bias_k, self.bias_v = empty(1, 1, embed_dim), empty(1, 1, embed_dim)
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """torch's init: xavier_uniform projections, zero in/out biases, xavier_normal bias_k/bias_v."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v = the input projections (packed weights are split in q, k, v order, like torch)."""
        e = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def _check_shapes(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None,
                      attn_mask: Tensor | None) -> bool:
        """torch's `_mha_shape_check`: True for batched (3-D) input, False for unbatched (2-D)."""
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise fg.ShapeError(f"MultiheadAttention: query, key and value must all be 3-D (batched) or 2-D "
                                f"(unbatched), got shapes {query.shape}, {key.shape} and {value.shape}")
        batched = query.ndim == 3
        if key_padding_mask is not None and key_padding_mask.ndim != (2 if batched else 1):
            raise fg.ShapeError(f"MultiheadAttention: key_padding_mask must be {2 if batched else 1}-D for a "
                                f"{query.ndim}-D query, got shape {key_padding_mask.shape}")
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise fg.ShapeError(f"MultiheadAttention: attn_mask must be 2-D or 3-D, got shape {attn_mask.shape}")
        if key.shape[:-1] != value.shape[:-1]:
            raise fg.ShapeError(f"MultiheadAttention: key {key.shape} and value {value.shape} must agree in "
                                "sequence and batch dims")
        dims = (query.shape[-1], key.shape[-1], value.shape[-1])
        if dims != (self.embed_dim, self.kdim, self.vdim):
            raise fg.ShapeError(f"MultiheadAttention: query, key and value have {dims} features, expected "
                                f"{(self.embed_dim, self.kdim, self.vdim)} (embed_dim, kdim, vdim)")
        return batched

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """(attn_output, attn_weights or None). Inputs are (L, N, E) ((N, L, E) with batch_first) or unbatched
        (L, E); key_padding_mask (N, S); attn_mask (L, S) or (N * num_heads, L, S). Weights are (N, L, S) averaged
        over heads, or (N, num_heads, L, S). is_causal is a hint that attn_mask is causal, which must be given."""
        batched = self._check_shapes(query, key, value, key_padding_mask, attn_mask)
        # to (N, L, E) internally: the math is the same as torch's (L, N * H, D) layout
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, length, _ = query.shape
        source, heads, d = key.shape[1], self.num_heads, self.head_dim
        key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", query.dtype, attn_mask, "attn_mask")
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                               "method `generate_square_subsequent_mask` to create this mask.")
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # SDPA applies the causal mask itself
        else:
            attn_mask = _canonical_mask(attn_mask, "attn_mask", query.dtype)
            is_causal = is_causal and key_padding_mask is None
        if attn_mask is not None:
            want = (length, source) if attn_mask.ndim == 2 else (n * heads if batched else heads, length, source)
            if attn_mask.shape != want:
                raise fg.ShapeError(f"MultiheadAttention: the shape of the {attn_mask.ndim}D attn_mask is "
                                    f"{attn_mask.shape}, but should be {want}")
            attn_mask = attn_mask.reshape(1, 1, length, source) if attn_mask.ndim == 2 \
                else attn_mask.reshape(n, heads, length, source)
        if key_padding_mask is not None and key_padding_mask.shape != (n, source):
            raise fg.ShapeError(f"MultiheadAttention: expected key_padding_mask of shape {(n, source)}, got "
                                f"{key_padding_mask.shape}")

        q, k, v = self._project(query, key, value)
        if self.bias_k is not None:  # one more key/value, the learned bias, that every query may attend
            k = fg.cat([k, self.bias_k.expand(n, 1, self.embed_dim)], 1)
            v = fg.cat([v, self.bias_v.expand(n, 1, self.embed_dim)], 1)
            attn_mask, key_padding_mask = _pad_key(attn_mask), _pad_key(key_padding_mask)
        q, k, v = (t.reshape(n, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))  # (N, H, *, D)
        if self.add_zero_attn:
            zeros = fg.zeros(n, heads, 1, d, dtype=k.dtype, device=k.device)
            k, v = fg.cat([k, zeros], 2), fg.cat([v, zeros], 2)
            attn_mask, key_padding_mask = _pad_key(attn_mask), _pad_key(key_padding_mask)
        if key_padding_mask is not None:
            kpm = key_padding_mask.reshape(n, 1, 1, k.shape[2])
            attn_mask = kpm if attn_mask is None else attn_mask + kpm
        dropout_p = self.dropout if self.training else 0.0

        weights = None
        if need_weights:  # torch's explicit path: a plain softmax, so fully masked rows give NaN as in torch
            scores = (q * math.sqrt(1.0 / d)) @ k.transpose(-2, -1)
            scores = scores if attn_mask is None else scores + attn_mask
            weights = fg.dropout(scores.softmax(-1), dropout_p, True)  # torch returns the dropped weights too
            out = weights @ v
            if average_attn_weights:
                weights = weights.mean(1)
            if not batched:
                weights = weights.squeeze(0)
        else:  # torch's SDPA path: fully masked rows give zeros
            out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, self.embed_dim))
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights


def _pad_key(mask: Tensor | None) -> Tensor | None:
    """Let every query attend one appended key (bias_k or the zero key): a 0 column on a float mask."""
    return None if mask is None else mask.pad((0, 1))
