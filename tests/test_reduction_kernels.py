"""Reduction kernels of the `cpu` device, which must give the numpy device's answers: row kernels (a kernel that
reads reductions of its own rows computes them itself, row by row: softmax, layer norm) and reductions to one value
split into pieces that run in parallel."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from fusegrad.codegen import ir
from fusegrad.codegen.lower import CPU, lower
from fusegrad.runtime import compiler

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C compiler on this machine")


def _data(*shape: int, seed: int = 0, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _on_both(fn: Callable[..., fg.Tensor], *arrays: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
    """(the cpu schedule, the cpu result, the numpy device's result) of fn on the same inputs."""
    cpu = fn(*[fg.tensor(a, device="cpu") for a in arrays])
    ref = fn(*[fg.tensor(a, device="numpy") for a in arrays])
    return fg.schedule(cpu), cpu.numpy(), ref.numpy()


def _rows(items: list) -> list[int]:
    return [len(i.rows) for i in items if i.kind != "view"]


FUSED = {  # (function, input shape, row reductions computed by the single kernel)
    "softmax": (lambda x: x.softmax(-1), (64, 100), 2),
    "log_softmax": (lambda x: x.log_softmax(-1), (64, 100), 2),
    "softmax_4d": (lambda x: x.softmax(-1), (2, 3, 17, 33), 2),
    "layer_norm": (lambda x: nn.functional.layer_norm(x, (48,)), (40, 48), 2),
    "layer_norm_2_axes": (lambda x: nn.functional.layer_norm(x, (6, 8)), (32, 6, 8), 2),
    "centered": (lambda x: x - x.mean(-1, keepdim=True), (64, 40), 1),
    "squeezed_and_back": (lambda x: x / x.sum(-1)[:, None], (64, 40), 1),
    # the exps are stored by the sum's pass only where the output pass reads each at the element it writes
    "exps_read_flipped": (lambda x: (lambda e: e.flip(-1) / e.sum(-1, keepdim=True) + e)(x.exp()), (64, 40), 1),
    "max_then_sum_owner": (lambda x: (x - x.max(-1, keepdim=True).values).square().sum(-1), (64, 40), 1),
}


@pytest.mark.parametrize("name", list(FUSED))
def test_row_reductions_fuse_into_one_kernel_and_match_numpy(name: str) -> None:
    fn, shape, rows = FUSED[name]
    items, got, want = _on_both(fn, _data(*shape, seed=1))
    assert _rows(items) == [rows], items
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


NOT_FUSED = {  # reads of a reduction that are not at the row being computed, or rows that would not pay
    "other_row": lambda x: x - x.sum(-1, keepdim=True).flip(0),
    "transposed": lambda x: x - x.sum(-1, keepdim=True).T,
    "over_dim_0": lambda x: x.softmax(0),
    "one_row": lambda x: x.reshape(-1) / x.sum(),
}


@pytest.mark.parametrize("name", list(NOT_FUSED))
def test_reductions_read_elsewhere_stay_buffers(name: str) -> None:
    items, got, want = _on_both(NOT_FUSED[name], _data(64, 64, seed=2))
    assert all(n == 0 for n in _rows(items)), items
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_reduction_another_kernel_reads_stays_a_buffer() -> None:
    x = fg.tensor(_data(64, 32, seed=3), device="cpu")
    m = x.max(-1, keepdim=True).values
    y, z = (x - m).exp(), m * 2
    items = fg.schedule(y, z)
    assert sum(i.out.op.name == "REDUCE_MAX" for i in items) == 1  # m is computed once, for both readers
    np.testing.assert_allclose(y.numpy(), np.exp(x.numpy() - x.numpy().max(-1, keepdims=True)), rtol=1e-6)
    np.testing.assert_allclose(z.numpy(), 2 * x.numpy().max(-1, keepdims=True))


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64])
def test_row_kernels_keep_each_dtype(dtype: type) -> None:
    data = (_data(32, 48, seed=4) * 4).astype(dtype)
    fn = (lambda x: x - x.sum(-1, keepdim=True)) if dtype == np.int64 else (lambda x: x.softmax(-1))
    items, got, want = _on_both(fn, data)
    assert _rows(items) == [1 if dtype == np.int64 else 2]
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=2e-3 if dtype == np.float16 else 1e-12)


def test_nan_inf_and_fully_masked_rows() -> None:
    x = _data(16, 40, seed=5)
    x[1, 3] = np.nan
    x[2, :] = -np.inf  # a fully masked row: softmax is NaN there, as in torch
    x[3, 7] = np.inf
    x[4, ::2] = -np.inf
    items, got, want = _on_both(lambda t: t.softmax(-1), x)
    assert _rows(items) == [2]
    np.testing.assert_allclose(got, want, equal_nan=True, rtol=1e-6)
    np.testing.assert_allclose(got, torch.from_numpy(x).softmax(-1).numpy(), equal_nan=True, rtol=1e-6)


def test_softmax_and_layer_norm_training_step_match_torch() -> None:
    """Forward and backward, where the backward's row sums (softmax's and layer norm's) fuse too."""
    x, w, b = _data(24, 32, seed=6), _data(32, seed=7), _data(32, seed=8)
    g = _data(24, 32, seed=9)
    fx, fw, fb = (fg.tensor(a, device="cpu", requires_grad=True) for a in (x, w, b))
    y = nn.functional.layer_norm(fx, (32,), fw, fb).softmax(-1)
    grads = fg.grad(y, [fx, fw, fb], fg.tensor(g, device="cpu"))
    assert any(i.rows for i in fg.schedule(*grads))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.layer_norm(tx, (32,), tw, tb).softmax(-1)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 1 << 17), (64, 10)], ids=["too_long_for_cache", "too_short_to_vectorize"])
def test_rows_outside_the_useful_lengths_stay_separate_passes(shape: tuple[int, int]) -> None:
    x = fg.tensor(_data(*shape, seed=10), device="cpu")
    assert all(not i.rows for i in fg.schedule(x.softmax(-1)))


SPLIT = {  # reductions to one value of >= 128K elements run as 16 pieces in parallel, then combine in order
    "sum": lambda x: x.sum(),
    "mean": lambda x: x.mean(),
    "max": lambda x: x.max(),
    "min": lambda x: x.min(),
    "sum_of_squares": lambda x: (x * x).sum(),
    "prime_rows": lambda x: x[:521].sum(),  # no piece count divides 521: one loop, as before
}


def _pieces(items: list) -> int:
    """The partial results of the kernel's split reduction (0: not split)."""
    (kernel,) = [lower(i, "k", CPU) for i in items if i.kind == "kernel" and i.out.op.name in ("SUM", "REDUCE_MAX")]
    return next((s.size for s in kernel.body if isinstance(s, ir.Local) and s.name == "parts"), 0)


@pytest.mark.parametrize("name", list(SPLIT))
def test_large_reductions_to_one_value_match_numpy(name: str) -> None:
    data = _data(1024, 300, seed=11)
    items, got, want = _on_both(SPLIT[name], data)
    assert _pieces(items) == (0 if name == "prime_rows" else 16)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float64])
def test_split_reductions_keep_integer_and_double_answers(dtype: type) -> None:
    data = (_data(512, 512, seed=12) * 100).astype(dtype)
    for fn in (lambda x: x.sum(), lambda x: x.max(), lambda x: x.any()):
        _, got, want = _on_both(fn, data)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12)  # exact for integers and bools


@pytest.mark.parametrize("where", [0, 150_000, 512 * 512 - 1], ids=["first_piece", "middle_piece", "last_piece"])
def test_nan_in_any_piece_wins_the_max(where: int) -> None:
    data = _data(512, 512, seed=13)
    data.reshape(-1)[where] = np.nan
    x = fg.tensor(data, device="cpu")
    assert np.isnan(x.max().item()) and np.isnan(x.sum().item())
    data.reshape(-1)[where] = np.inf
    assert fg.tensor(data, device="cpu").max().item() == np.inf


def test_split_sum_is_the_same_on_any_thread_count() -> None:
    """The pieces are fixed by the shape, not by the threads, so the rounding is too (a fresh process each)."""
    code = ("import numpy as np, fusegrad as fg; x = np.random.default_rng(14).standard_normal((2048, 1000))"
            ".astype(np.float32); print(repr(fg.tensor(x, device='cpu').sum().item()))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "OMP_NUM_THREADS": str(n)}).stdout for n in (1, 2, 3)}
    assert len(outs) == 1, outs
