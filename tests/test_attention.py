"""Attention against PyTorch: `scaled_dot_product_attention` (every mask kind, is_causal, gqa), `MultiheadAttention`
and `TransformerEncoderLayer` with weights copied from torch: outputs, input gradients and every parameter gradient,
default initialisation, repr and state_dict round trips."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from tests.helpers import assert_close, compare, randn

TF = torch.nn.functional
ATOL = 1e-10


# ---- scaled_dot_product_attention ----

def _sdpa(**kw: Any) -> tuple[Any, Any]:
    """fg and torch callables taking (q, k, v[, mask]) with the same keyword options."""
    def f(q: Any, k: Any, v: Any, *mask: Any) -> Any:
        return nn.functional.scaled_dot_product_attention(q, k, v, *mask, **kw)

    def t(q: Any, k: Any, v: Any, *mask: Any) -> Any:
        return TF.scaled_dot_product_attention(q, k, v, *mask, **kw)
    return f, t


def _qkv(lead: tuple[int, ...], length: int, source: int, e: int, ev: int, heads_kv: tuple[int, ...] | None = None,
         seed: int = 0) -> list[np.ndarray]:
    kv = heads_kv if heads_kv is not None else lead
    return [randn(*lead, length, e, seed=seed), randn(*kv, source, e, seed=seed + 1),
            randn(*kv, source, ev, seed=seed + 2)]


@pytest.mark.parametrize("lead,length,source,e,ev", [((2, 3), 4, 6, 5, 7), ((1, 1), 1, 1, 3, 2), ((3,), 5, 2, 4, 4),
                                                     ((), 3, 5, 2, 3), ((2, 1, 2), 3, 3, 4, 1)])
def test_sdpa_no_mask(device: str, lead: tuple[int, ...], length: int, source: int, e: int, ev: int) -> None:
    compare(*_sdpa(), *_qkv(lead, length, source, e, ev), device=device, atol=ATOL)


@pytest.mark.parametrize("length,source", [(4, 4), (3, 6), (6, 3), (1, 5), (5, 1)])
def test_sdpa_is_causal_top_left(device: str, length: int, source: int) -> None:
    """L > S leaves no fully masked row, L < S ignores the trailing keys: torch's top-left alignment."""
    compare(*_sdpa(is_causal=True), *_qkv((2, 2), length, source, 3, 4), device=device, atol=ATOL)


@pytest.mark.parametrize("mask_shape", [(4, 6), (1, 6), (4, 1), (3, 4, 6), (2, 3, 4, 6), (2, 1, 4, 1), (1, 1, 1, 6)])
def test_sdpa_bool_mask_broadcasts(device: str, mask_shape: tuple[int, ...]) -> None:
    mask = np.random.default_rng(3).random(mask_shape) > 0.35
    mask[..., 0] = True  # keep one key per row so no row is fully masked here
    compare(*_sdpa(), *_qkv((2, 3), 4, 6, 5, 3), mask, device=device, atol=ATOL)


@pytest.mark.parametrize("mask_shape", [(4, 6), (2, 3, 4, 6), (3, 1, 6), (1, 6)])
def test_sdpa_float_mask_added_and_differentiated(device: str, mask_shape: tuple[int, ...]) -> None:
    """A float mask is added to the scores (finite values and -inf), and gets a gradient like torch's."""
    mask = randn(*mask_shape, seed=5)
    mask[..., 1] = -np.inf
    compare(*_sdpa(), *_qkv((2, 3), 4, 6, 5, 3), mask, device=device, atol=ATOL)


def test_sdpa_fully_masked_rows_give_zeros_like_torch(device: str) -> None:
    """torch 2.13's SDPA returns zeros (and zero gradients) for a query row that may attend nothing, for bool and
    -inf float masks alike; a huge finite negative bias is still an ordinary softmax."""
    q, k, v = _qkv((2, 2), 4, 5, 3, 3)
    bool_mask = np.random.default_rng(1).random((2, 1, 4, 5)) > 0.3
    bool_mask[0, :, 1] = False
    bool_mask[1, :, 3] = False
    float_mask = np.where(bool_mask, 0.0, -np.inf)
    for mask in (bool_mask, float_mask, np.where(bool_mask, 0.0, -1e30)):
        compare(*_sdpa(), q, k, v, mask, device=device, atol=ATOL)
    out = nn.functional.scaled_dot_product_attention(*(fg.tensor(a, device=device) for a in (q, k, v)),
                                                     fg.tensor(bool_mask, device=device))
    assert not out.numpy()[0, :, 1].any() and np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_sdpa_scale(device: str, scale: float) -> None:
    compare(*_sdpa(scale=scale), *_qkv((2,), 3, 4, 5, 2), device=device, atol=ATOL)
    compare(*_sdpa(scale=scale, is_causal=True), *_qkv((2,), 3, 4, 5, 2), device=device, atol=ATOL)


@pytest.mark.parametrize("hq,hk", [(6, 2), (4, 1), (3, 3)])
def test_sdpa_enable_gqa(device: str, hq: int, hk: int) -> None:
    q, k, v = _qkv((2, hq), 3, 5, 4, 2, heads_kv=(2, hk))
    compare(*_sdpa(enable_gqa=True), q, k, v, device=device, atol=ATOL)
    compare(*_sdpa(enable_gqa=True, is_causal=True), q, k, v, device=device, atol=ATOL)
    compare(*_sdpa(enable_gqa=True), q, k, v, np.random.default_rng(0).random((3, 5)) > 0.2, device=device,
            atol=ATOL)


def test_sdpa_float32(device: str) -> None:
    q, k, v = (a.astype(np.float32) for a in _qkv((2, 2), 4, 6, 8, 8))
    compare(*_sdpa(is_causal=True), q, k, v, device=device, atol=1e-5)


def test_sdpa_errors() -> None:
    q, k, v = (fg.tensor(a) for a in _qkv((1, 2), 3, 4, 5, 5))
    with pytest.raises(RuntimeError, match="is_causal"):
        nn.functional.scaled_dot_product_attention(q, k, v, fg.ones(3, 4, dtype=fg.bool_), is_causal=True)
    with pytest.raises(TypeError, match="bool and floating"):
        nn.functional.scaled_dot_product_attention(q, k, v, fg.ones(3, 4, dtype=fg.int64))
    with pytest.raises(ValueError, match="key"):
        nn.functional.scaled_dot_product_attention(q, fg.ones(1, 2, 4, 3, dtype=fg.float64), v)
    with pytest.raises(ValueError, match="heads"):
        nn.functional.scaled_dot_product_attention(fg.ones(1, 3, 3, 5, dtype=fg.float64), k, v, enable_gqa=True)


def test_sdpa_dropout_drops_attention_weights(device: str) -> None:
    """With value = I the output is the attention matrix: each entry is 0 or the undropped weight / (1 - p)."""
    q, k = (fg.tensor(a, device=device) for a in _qkv((4, 8), 16, 16, 4, 16)[:2])
    eye = fg.eye(16, dtype=fg.float64, device=device)
    fg.manual_seed(0)
    full = nn.functional.scaled_dot_product_attention(q, k, eye).numpy()
    dropped = nn.functional.scaled_dot_product_attention(q, k, eye, dropout_p=0.25).numpy()
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], full[kept] / 0.75, rtol=1e-12)
    assert abs(1 - kept.mean() - 0.25) < 0.03
    np.testing.assert_allclose(full.sum(-1), 1.0, rtol=1e-12)


# ---- MultiheadAttention ----

def _pair(cls_name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """The same layer in torch (float64) and fusegrad, with torch's weights loaded into fusegrad."""
    torch.manual_seed(0)
    t = getattr(torch.nn, cls_name)(*args, **kwargs).double()
    f = getattr(nn, cls_name)(*args, **kwargs).double()
    f.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return f, t


def _check(f: nn.Module, t: torch.nn.Module, call: Any, inputs: dict[str, np.ndarray], device: str,
           grad_inputs: tuple[str, ...] = (), alias: dict[str, str] | None = None, grads: bool = True,
           atol: float = ATOL) -> None:
    """Run call(module, **tensors) in both libraries; compare every output, then (under a random upstream gradient)
    the gradients of `grad_inputs` and of every parameter. `alias` passes one tensor under several names (so
    self-attention gets query is key is value, as torch's packed path expects)."""
    f.to(device)
    alias = alias or {}
    fx = {n: fg.tensor(a, device=device, requires_grad=n in grad_inputs) for n, a in inputs.items()}
    tx = {n: torch.tensor(a, requires_grad=n in grad_inputs) for n, a in inputs.items()}
    for name, src in alias.items():
        fx[name], tx[name] = fx[src], tx[src]
    f_out, t_out = call(f, **fx), call(t, **tx)
    f_out, t_out = (f_out, t_out) if isinstance(t_out, tuple) else ((f_out,), (t_out,))
    assert len(f_out) == len(t_out)
    rng = np.random.default_rng(7)
    f_total, t_total = 0, 0
    for i, (fo, to) in enumerate(zip(f_out, t_out)):
        if to is None:
            assert fo is None, f"output {i} should be None"
            continue
        assert_close(fo, to, atol, atol, what=f"output {i}")
        up = rng.standard_normal(to.shape)
        f_total = f_total + (fo * fg.tensor(up, device=device)).sum()
        t_total = t_total + (to * torch.tensor(up)).sum()
    if not grads:
        return
    f_total.backward()
    t_total.backward()
    for n in grad_inputs:
        assert_close(fx[n].grad, tx[n].grad, atol, atol, what=f"gradient of {n}")
    t_params = dict(t.named_parameters())
    f_params = dict(f.named_parameters())
    assert list(f_params) == list(t_params)
    for n, tp in t_params.items():
        want = tp.grad if tp.grad is not None else torch.zeros_like(tp)
        got = f_params[n].grad if f_params[n].grad is not None else fg.zeros(tp.shape, dtype=fg.float64)
        assert_close(got, want, atol, atol, what=f"gradient of parameter {n}")


def _mha_call(kw: dict[str, Any]) -> Any:
    return lambda m, query, key, value, **masks: m(query, key, value, **masks, **kw)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_mha_self_attention(device: str, batch_first: bool, need_weights: bool, average: bool) -> None:
    f, t = _pair("MultiheadAttention", 6, 3, batch_first=batch_first)
    x = randn(*((2, 5, 6) if batch_first else (5, 2, 6)), seed=1)
    _check(f, t, _mha_call({"need_weights": need_weights, "average_attn_weights": average}),
           {"query": x}, device, grad_inputs=("query",), alias={"key": "query", "value": "query"})


@pytest.mark.parametrize("kdim,vdim", [(None, None), (3, 5), (6, 2), (4, None)])
@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_cross_attention_kdim_vdim(device: str, kdim: int | None, vdim: int | None, need_weights: bool) -> None:
    f, t = _pair("MultiheadAttention", 6, 2, kdim=kdim, vdim=vdim)
    assert (f.in_proj_weight is None) == (t.in_proj_weight is None)
    inputs = {"query": randn(4, 3, 6, seed=1), "key": randn(7, 3, kdim or 6, seed=2),
              "value": randn(7, 3, vdim or 6, seed=3)}
    _check(f, t, _mha_call({"need_weights": need_weights}), inputs, device, grad_inputs=("query", "key", "value"))


def _masks(n: int, heads: int, length: int, source: int, kind: str) -> dict[str, np.ndarray]:
    """MHA masks (True = do not attend) that leave every row something to attend."""
    rng = np.random.default_rng(11)
    out: dict[str, np.ndarray] = {}
    if "attn2d" in kind or "attn3d" in kind:
        shape = (length, source) if "attn2d" in kind else (n * heads, length, source)
        m = rng.random(shape) < 0.3
        m[..., 0] = False
        out["attn_mask"] = np.where(m, -np.inf, rng.standard_normal(shape)) if "float" in kind else m
    if "kpm" in kind:
        m = rng.random((n, source)) < 0.4
        m[:, 0] = False
        out["key_padding_mask"] = np.where(m, -np.inf, 0.0) if "float" in kind else m
    return out


@pytest.mark.parametrize("kind,batch_first", [("attn2d", False), ("attn3d", True), ("kpm", False),
                                              ("attn2d+kpm", True), ("float attn2d", True), ("float attn3d", False),
                                              ("float kpm", True), ("float attn3d+kpm", False)])
@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_masks(device: str, kind: str, need_weights: bool, batch_first: bool) -> None:
    n, heads, length, source = 2, 2, 3, 5
    f, t = _pair("MultiheadAttention", 4, heads, batch_first=batch_first)
    shape = (lambda s: (n, s, 4)) if batch_first else (lambda s: (s, n, 4))
    inputs = {"query": randn(*shape(length), seed=1), "key": randn(*shape(source), seed=2),
              "value": randn(*shape(source), seed=3), **_masks(n, heads, length, source, kind)}
    _check(f, t, _mha_call({"need_weights": need_weights}), inputs, device, grad_inputs=("query", "key", "value"))


@pytest.mark.parametrize("need_weights,with_kpm", [(False, False), (True, False), (False, True)])
def test_mha_is_causal_hint(device: str, need_weights: bool, with_kpm: bool) -> None:
    """is_causal needs attn_mask; torch then uses SDPA's causal mask or the given mask, whichever path it takes."""
    f, t = _pair("MultiheadAttention", 4, 2, batch_first=True)
    causal = np.triu(np.ones((5, 5), dtype=bool), 1)
    inputs = {"query": randn(3, 5, 4, seed=1), "attn_mask": causal,
              **({"key_padding_mask": _masks(3, 2, 5, 5, "kpm")["key_padding_mask"]} if with_kpm else {})}
    _check(f, t, _mha_call({"need_weights": need_weights, "is_causal": True}), inputs, device,
           grad_inputs=("query",), alias={"key": "query", "value": "query"})
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        f(fg.ones(1, 5, 4, dtype=fg.float64), fg.ones(1, 5, 4, dtype=fg.float64), fg.ones(1, 5, 4, dtype=fg.float64),
          is_causal=True)


@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("mask", [None, "attn2d", "attn3d+kpm"])
def test_mha_unbatched(device: str, need_weights: bool, average: bool, mask: str | None) -> None:
    f, t = _pair("MultiheadAttention", 4, 2, batch_first=True)
    masks = _masks(1, 2, 3, 5, mask) if mask else {}
    if "key_padding_mask" in masks:
        masks["key_padding_mask"] = masks["key_padding_mask"][0]
    inputs = {"query": randn(3, 4, seed=1), "key": randn(5, 4, seed=2), "value": randn(5, 4, seed=3), **masks}
    _check(f, t, _mha_call({"need_weights": need_weights, "average_attn_weights": average}), inputs, device,
           grad_inputs=("query", "key", "value"))


@pytest.mark.parametrize("options", [{"bias": False}, {"add_bias_kv": True}, {"add_zero_attn": True},
                                     {"add_bias_kv": True, "add_zero_attn": True, "kdim": 3, "vdim": 5},
                                     {"bias": False, "add_zero_attn": True}])
@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_bias_options(device: str, options: dict[str, Any], need_weights: bool) -> None:
    f, t = _pair("MultiheadAttention", 4, 2, **options)
    inputs = {"query": randn(3, 2, 4, seed=1), "key": randn(5, 2, options.get("kdim", 4), seed=2),
              "value": randn(5, 2, options.get("vdim", 4), seed=3), **_masks(2, 2, 3, 5, "attn3d+kpm")}
    _check(f, t, _mha_call({"need_weights": need_weights}), inputs, device, grad_inputs=("query", "key", "value"))


def test_mha_fully_masked_rows_like_torch(device: str) -> None:
    """A batch whose keys are all padded: torch's need_weights path gives NaN (plain softmax), its SDPA path zeros."""
    f, t = _pair("MultiheadAttention", 4, 2, batch_first=True)
    kpm = np.zeros((2, 3), dtype=bool)
    kpm[1] = True
    inputs = {"query": randn(2, 3, 4, seed=1), "key_padding_mask": kpm}
    alias = {"key": "query", "value": "query"}
    _check(f, t, _mha_call({"need_weights": True}), inputs, device, grad_inputs=("query",), alias=alias, grads=False)
    out, _ = f(*(fg.tensor(inputs["query"], device=device),) * 3, key_padding_mask=fg.tensor(kpm, device=device))
    assert np.isnan(out.numpy()[1]).all() and np.isfinite(out.numpy()[0]).all()
    _check(f, t, _mha_call({"need_weights": False}), inputs, device, grad_inputs=("query",), alias=alias)


def test_mha_float32(device: str) -> None:
    torch.manual_seed(0)
    t = torch.nn.MultiheadAttention(8, 4, batch_first=True)
    f = nn.MultiheadAttention(8, 4, batch_first=True)
    f.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    f.to(device)
    x = randn(2, 5, 8, dtype=np.float32)
    compare(lambda a: f(a, a, a), lambda a: t(a, a, a), x, device=device, atol=1e-5)


def test_mha_dropout_train_and_eval(device: str) -> None:
    """Training drops attention weights (the returned weights are the dropped ones, like torch); eval does not."""
    m = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True).to(device)
    x = fg.tensor(randn(2, 6, 8, seed=1), dtype=fg.float32, device=device)
    m.eval()
    ref_out, ref_w = m(x, x, x, average_attn_weights=False)
    fg.manual_seed(1)
    m.train()
    out, w = m(x, x, x, average_attn_weights=False)
    w, ref_w = w.numpy(), ref_w.numpy()
    kept = w != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(w[kept], ref_w[kept] * 2, rtol=1e-5)
    assert not np.allclose(out.numpy(), ref_out.numpy())
    np.testing.assert_allclose(m.eval()(x, x, x)[0].numpy(), ref_out.numpy(), rtol=1e-6)


def test_mha_shape_errors() -> None:
    m = nn.MultiheadAttention(4, 2)
    x = fg.ones(3, 2, 4)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(5, 2)
    with pytest.raises(ValueError, match="attn_mask"):
        m(x, x, x, attn_mask=fg.ones(3, 4, dtype=fg.bool_))
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, x, x, key_padding_mask=fg.ones(3, 3, dtype=fg.bool_))
    with pytest.raises(ValueError, match="features"):
        m(x, fg.ones(3, 2, 5), fg.ones(3, 2, 5))
    with pytest.raises(TypeError, match="bool and floating"):
        m(x, x, x, attn_mask=fg.ones(3, 3, dtype=fg.int64))


def test_mha_mismatched_mask_dtypes_warn_like_torch() -> None:
    m = nn.MultiheadAttention(4, 2)
    x = fg.ones(3, 2, 4)
    with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
        m(x, x, x, key_padding_mask=fg.zeros(2, 3, dtype=fg.bool_), attn_mask=fg.zeros(3, 3))


@pytest.mark.parametrize("embed_dim,heads,kdim,vdim", [(64, 4, None, None), (48, 3, 16, 80)])
def test_mha_default_init_like_torch(embed_dim: int, heads: int, kdim: int | None, vdim: int | None) -> None:
    m = nn.MultiheadAttention(embed_dim, heads, kdim=kdim, vdim=vdim, add_bias_kv=True)
    t = torch.nn.MultiheadAttention(embed_dim, heads, kdim=kdim, vdim=vdim, add_bias_kv=True)
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in t.named_parameters()]
    weights = {"in_proj_weight": (embed_dim, 3 * embed_dim)} if kdim is None else \
        {"q_proj_weight": (embed_dim, embed_dim), "k_proj_weight": (kdim, embed_dim),
         "v_proj_weight": (vdim, embed_dim)}
    for name, (fan_in, fan_out) in weights.items():  # xavier_uniform
        w = getattr(m, name).numpy()
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
        assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound
    ow = m.out_proj.weight.numpy()  # Linear's kaiming_uniform(a=sqrt(5)): bound 1 / sqrt(fan_in)
    assert np.abs(ow).max() <= 1 / math.sqrt(embed_dim) and np.abs(ow).max() > 0.9 / math.sqrt(embed_dim)
    assert not m.in_proj_bias.numpy().any() and not m.out_proj.bias.numpy().any()
    bk = np.concatenate([m.bias_k.numpy().ravel(), m.bias_v.numpy().ravel()])  # xavier_normal, fans (E, E)
    assert abs(bk.std() - math.sqrt(1.0 / embed_dim)) < 0.35 * math.sqrt(1.0 / embed_dim)
    assert m.out_proj.weight.requires_grad and type(m.out_proj).__name__ == "NonDynamicallyQuantizableLinear"


@pytest.mark.parametrize("kwargs", [{}, {"kdim": 3, "vdim": 5, "add_bias_kv": True}, {"bias": False}])
def test_mha_repr_and_state_dict_round_trip(kwargs: dict[str, Any]) -> None:
    f, t = _pair("MultiheadAttention", 4, 2, **kwargs)
    assert repr(f) == repr(t)
    assert list(f.state_dict()) == list(t.state_dict())
    fresh = torch.nn.MultiheadAttention(4, 2, **kwargs).double()
    fresh.load_state_dict({k: torch.tensor(v.numpy()) for k, v in f.state_dict().items()})
    for k, v in t.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


# ---- TransformerEncoderLayer ----

def _encoder_pair(activation: Any = "relu", **kwargs: Any) -> tuple[nn.TransformerEncoderLayer, Any]:
    """A torch and a fusegrad encoder layer with the same weights; activation is a name or a (fg, torch) pair."""
    fa, ta = (activation, activation) if isinstance(activation, str) else activation
    torch.manual_seed(0)
    t = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, activation=ta, **kwargs).double()
    f = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, activation=fa, **kwargs).double()
    f.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return f.eval(), t.eval()


def _encoder_call(kw: dict[str, Any]) -> Any:
    return lambda m, src, **masks: m(src, **masks, **kw)


ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu-fn": (nn.functional.silu, TF.silu),
               "gelu-module": (nn.GELU(), torch.nn.GELU()),
               "tanh-approx-gelu": (nn.GELU("tanh"), torch.nn.GELU("tanh"))}


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_encoder_layer_norm_orders_and_activations(device: str, norm_first: bool, activation: str) -> None:
    f, t = _encoder_pair(ACTIVATIONS[activation], norm_first=norm_first)
    atol = 1e-6 if activation in ("gelu", "gelu-module") else ATOL  # fusegrad's erf is a 5e-7 approximation
    _check(f, t, _encoder_call({}), {"src": randn(5, 2, 8, seed=1)}, device, grad_inputs=("src",), atol=atol)


@pytest.mark.parametrize("kind,batch_first,norm_first", [("attn2d", False, False), ("kpm", True, True),
                                                         ("attn2d+kpm", False, True),
                                                         ("float attn3d+kpm", True, False)])
def test_encoder_layer_masks(device: str, kind: str, batch_first: bool, norm_first: bool) -> None:
    f, t = _encoder_pair("relu", batch_first=batch_first, norm_first=norm_first)
    masks = _masks(3, 2, 4, 4, kind)
    inputs = {"src": randn(*((3, 4, 8) if batch_first else (4, 3, 8)), seed=2)}
    if "attn_mask" in masks:
        inputs["src_mask"] = masks["attn_mask"]
    if "key_padding_mask" in masks:
        inputs["src_key_padding_mask"] = masks["key_padding_mask"]
    _check(f, t, _encoder_call({}), inputs, device, grad_inputs=("src",))


@pytest.mark.parametrize("with_kpm", [False, True])
def test_encoder_layer_is_causal(device: str, with_kpm: bool) -> None:
    f, t = _encoder_pair(batch_first=True)
    inputs = {"src": randn(2, 5, 8, seed=3), "src_mask": np.triu(np.full((5, 5), -np.inf), 1)}
    if with_kpm:
        inputs["src_key_padding_mask"] = _masks(2, 2, 5, 5, "float kpm")["key_padding_mask"]
    _check(f, t, _encoder_call({"is_causal": True}), inputs, device, grad_inputs=("src",))


@pytest.mark.parametrize("options", [{"bias": False}, {"layer_norm_eps": 1e-2, "batch_first": True}])
def test_encoder_layer_options_and_unbatched(device: str, options: dict[str, Any]) -> None:
    f, t = _encoder_pair(**options)
    _check(f, t, _encoder_call({}), {"src": randn(4, 3, 8, seed=4)}, device, grad_inputs=("src",))
    f, t = _encoder_pair(**options)
    _check(f, t, _encoder_call({}), {"src": randn(4, 8, seed=5)}, device, grad_inputs=("src",))


def test_encoder_layer_train_dropout_zero_matches_torch(device: str) -> None:
    f, t = _encoder_pair(dropout=0.0, norm_first=True)
    _check(f.train(), t.train(), _encoder_call({}), {"src": randn(3, 2, 8, seed=6)}, device, grad_inputs=("src",))


def test_encoder_layer_train_dropout_is_random_eval_is_not(device: str) -> None:
    m = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.3).to(device)
    x = fg.tensor(randn(4, 2, 8, seed=7), dtype=fg.float32, device=device)
    ref = m.eval()(x).numpy()
    np.testing.assert_array_equal(m(x).numpy(), ref)
    m.train()
    fg.manual_seed(3)
    assert not np.allclose(m(x).numpy(), ref)


@pytest.mark.parametrize("activation", ["relu", "gelu-module"])
@pytest.mark.parametrize("bias", [True, False])
def test_encoder_layer_repr_and_state_dict_round_trip(activation: str, bias: bool) -> None:
    f, t = _encoder_pair(ACTIVATIONS[activation], bias=bias)
    assert repr(f) == repr(t)
    assert list(f.state_dict()) == list(t.state_dict())
    assert [n for n, _ in f.named_modules()] == [n for n, _ in t.named_modules()]
    assert f.activation_relu_or_gelu == t.activation_relu_or_gelu
    fresh = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, bias=bias).double()
    fresh.load_state_dict({k: torch.tensor(v.numpy()) for k, v in f.state_dict().items()})
    for k, v in t.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_encoder_layer_defaults_and_errors() -> None:
    m, t = nn.TransformerEncoderLayer(8, 2), torch.nn.TransformerEncoderLayer(8, 2)
    assert m.linear1.weight.shape == (2048, 8) and m.dropout.p == t.dropout.p == 0.1
    assert m.norm1.eps == 1e-5 and not m.norm_first and not m.self_attn.batch_first
    assert m.activation is nn.functional.relu
    assert not m.self_attn.in_proj_bias.numpy().any()
    np.testing.assert_array_equal(m.norm1.weight.numpy(), np.ones(8, dtype=np.float32))
    with pytest.raises(RuntimeError, match="relu/gelu"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")


# ---- TransformerEncoder ----

def _stack_pair(num_layers: int = 2, final_norm: bool = True, **kwargs: Any) -> tuple[Any, Any]:
    """A torch and a fusegrad TransformerEncoder (layers of _encoder_pair's shape) with the same weights, in eval."""
    torch.manual_seed(0)
    t = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, **kwargs), num_layers,
                                    norm=torch.nn.LayerNorm(8) if final_norm else None,
                                    enable_nested_tensor=False).double()
    f = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, **kwargs), num_layers,
                              norm=nn.LayerNorm(8) if final_norm else None, enable_nested_tensor=False).double()
    with torch.no_grad():  # torch's clones start equal; make them differ so a layer applied twice would show
        for p in t.parameters():
            p.add_(torch.randn(p.shape, dtype=p.dtype) * 0.1)
    f.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return f.eval(), t.eval()


@pytest.mark.parametrize("kind,batch_first,final_norm", [("", True, True), ("attn2d", False, False),
                                                         ("attn2d+kpm", True, True), ("float kpm", False, True)])
def test_encoder_stack_matches_torch(device: str, kind: str, batch_first: bool, final_norm: bool) -> None:
    f, t = _stack_pair(3, final_norm, batch_first=batch_first)
    masks = _masks(3, 2, 4, 4, kind)
    inputs = {"src": randn(*((3, 4, 8) if batch_first else (4, 3, 8)), seed=8)}
    if "attn_mask" in masks:
        inputs["mask"] = masks["attn_mask"]
    if "key_padding_mask" in masks:
        inputs["src_key_padding_mask"] = masks["key_padding_mask"]
    _check(f, t, lambda m, src, **masks: m(src, **masks), inputs, device, grad_inputs=("src",))


@pytest.mark.parametrize("is_causal", [None, True])
def test_encoder_stack_causal_mask(device: str, is_causal: bool | None) -> None:
    f, t = _stack_pair(batch_first=True)
    inputs = {"src": randn(2, 5, 8, seed=9), "mask": np.triu(np.ones((5, 5), bool), 1)}
    _check(f, t, lambda m, src, mask: m(src, mask=mask, is_causal=is_causal), inputs, device, grad_inputs=("src",))


def test_encoder_stack_clones_layers_like_torch() -> None:
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, batch_first=True)
    f = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(8))
    t = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, batch_first=True), 2,
                                    norm=torch.nn.LayerNorm(8))
    assert repr(f) == repr(t) and list(f.state_dict()) == list(t.state_dict())
    assert f.num_layers == 2 and len(f.layers) == 2 and f.enable_nested_tensor and f.mask_check
    first, second = f.layers
    assert first is not layer and second is not layer and first.linear1.weight is not second.linear1.weight
    np.testing.assert_array_equal(first.linear1.weight.numpy(), layer.linear1.weight.numpy())
    np.testing.assert_array_equal(second.linear1.weight.numpy(), layer.linear1.weight.numpy())
    assert len(list(f.parameters())) == 2 * len(list(layer.parameters())) + 2
    assert nn.TransformerEncoder(layer, 1).norm is None
