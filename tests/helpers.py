"""Compare fusegrad against PyTorch: forward values and gradients of every input, on a chosen device."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import fusegrad as fg

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                np.dtype(np.float16): torch.float16, np.dtype(np.int32): torch.int32,
                np.dtype(np.int64): torch.int64, np.dtype(np.uint8): torch.uint8, np.dtype(np.bool_): torch.bool}


def _flatten(x: Any) -> list:
    if isinstance(x, (tuple, list)):
        return [v for item in x for v in _flatten(item)]
    return [x]


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    if isinstance(x, fg.Tensor):
        return x.numpy()
    return np.asarray(x)


def assert_close(got: Any, want: Any, atol: float = 1e-5, rtol: float = 1e-5, what: str = "value") -> None:
    """Same shape, same dtype kind, values within tolerance (NaN matches NaN)."""
    g, w = _as_numpy(got), _as_numpy(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != torch's {w.shape}"
    assert g.dtype == w.dtype, f"{what}: dtype {g.dtype} != torch's {w.dtype}"
    if g.dtype == np.bool_ or g.dtype.kind in "iu":
        np.testing.assert_array_equal(g, w, err_msg=what)
    else:
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), atol=atol, rtol=rtol, equal_nan=True,
                                   err_msg=what)


def compare(fg_fn: Callable[..., Any], torch_fn: Callable[..., Any] | None, *arrays: np.ndarray,
            device: str = "numpy", grad: bool = True, atol: float = 1e-5, rtol: float = 1e-5,
            grad_atol: float | None = None, grad_rtol: float | None = None, seed: int = 0) -> None:
    """Run fg_fn and torch_fn (default: the same function) on the same inputs; compare outputs, then the gradients
    of every floating-point input under a random upstream gradient."""
    torch_fn = torch_fn or fg_fn
    wants_grad = [grad and a.dtype.kind == "f" for a in arrays]
    fx = [fg.tensor(a, dtype=a.dtype, device=device, requires_grad=w) for a, w in zip(arrays, wants_grad)]
    tx = [torch.tensor(a, dtype=TORCH_DTYPES[a.dtype], requires_grad=w) for a, w in zip(arrays, wants_grad)]
    f_out, t_out = _flatten(fg_fn(*fx)), _flatten(torch_fn(*tx))
    assert len(f_out) == len(t_out), f"{len(f_out)} outputs vs torch's {len(t_out)}"
    for i, (f, t) in enumerate(zip(f_out, t_out)):
        assert f.device == device, f"output {i} is on {f.device}, expected {device}"
        assert_close(f, t, atol, rtol, what=f"output {i}")
    if not any(wants_grad):
        return
    rng = np.random.default_rng(seed)
    f_total, t_total = None, None
    for f, t in zip(f_out, t_out):
        if not (t.requires_grad and t.dtype.is_floating_point):
            continue
        up = rng.standard_normal(t.shape).astype(_as_numpy(t).dtype)
        fs = (f * fg.tensor(up, dtype=up.dtype, device=device)).sum()
        ts = (t * torch.tensor(up)).sum()
        f_total = fs if f_total is None else f_total + fs
        t_total = ts if t_total is None else t_total + ts
    if t_total is None:
        return
    f_total.backward()
    t_total.backward()
    for i, (f, t, w) in enumerate(zip(fx, tx, wants_grad)):
        if not w:
            continue
        want = t.grad if t.grad is not None else torch.zeros_like(t)
        got = f.grad if f.grad is not None else fg.zeros(f.shape, dtype=f.dtype)
        assert_close(got, want, grad_atol or atol, grad_rtol or rtol, what=f"gradient of input {i}")


def randn(*shape: int, dtype: Any = np.float64, seed: int = 0, low: float | None = None) -> np.ndarray:
    """Deterministic normal data (or uniform in [low, low + 2) when low is given, e.g. for log/sqrt)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape) if low is None else rng.uniform(low, low + 2, shape)
    return np.asarray(data, dtype=dtype)


def check_module_step(m: Any, t: Any, x: np.ndarray, device: str, atol: float = 1e-10, seed: int = 99,
                      **call: Any) -> None:
    """One forward/backward of a fusegrad module and its torch twin (same weights): the outputs, the input's
    gradient and every parameter's gradient (names in the same order) agree."""
    fx, tx = fg.tensor(x, device=device, requires_grad=True), torch.tensor(x, requires_grad=True)
    fy, ty = m(fx, **call), t(tx, **call)
    assert_close(fy, ty, atol=atol, rtol=atol, what="output")
    up = randn(*ty.shape, dtype=x.dtype, seed=seed)
    m.zero_grad()
    t.zero_grad()
    (fy * fg.tensor(up, device=device)).sum().backward()
    (ty * torch.tensor(up)).sum().backward()
    assert_close(fx.grad, tx.grad, atol=atol, rtol=atol, what="input grad")
    tparams = dict(t.named_parameters())
    assert [n for n, _ in m.named_parameters()] == list(tparams)
    for name, p in m.named_parameters():
        assert_close(p.grad, tparams[name].grad, atol=atol, rtol=atol, what=f"{name} grad")
