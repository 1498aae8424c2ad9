"""The compiled `cpu` device: fusion, the kernel cache, IEEE semantics, and the fallback without a compiler."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import nn
from fusegrad.runtime import compiler

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C compiler on this machine")


def _t(*shape: int, seed: int = 0) -> fg.Tensor:
    return fg.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), device="cpu")


def _kernels(*tensors: fg.Tensor) -> int:
    """Launched kernels (a "view" item only renames memory)."""
    return sum(item.kind != "view" for item in fg.schedule(*tensors))


def test_elementwise_chain_and_sum_is_one_kernel() -> None:
    a, b, c = _t(64, 32, seed=1), _t(64, 32, seed=2), _t(32, seed=3)
    out = ((a + b) * c).relu().sum()
    assert _kernels(out) == 1
    want = (np.maximum((a.numpy() + b.numpy()) * c.numpy(), 0)).sum()
    np.testing.assert_allclose(out.item(), want, rtol=1e-5)


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_gelu_of_any_depth_is_one_kernel(depth: int) -> None:
    x = _t(16, 16)
    y = x
    for _ in range(depth):
        y = y.gelu()
    assert _kernels(y) == 1


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_is_at_most_three_kernels(fn: str) -> None:
    x = _t(8, 100)
    assert _kernels(getattr(x, fn)(-1)) <= 3
    assert _kernels(getattr(x, fn)(0)) <= 3


def test_layer_norm_forward_is_at_most_three_kernels() -> None:
    ln = nn.LayerNorm(64).to("cpu")
    assert _kernels(ln(_t(8, 64))) <= 3


def test_sgd_update_is_one_kernel() -> None:
    p, g = _t(128, 64, seed=1), _t(128, 64, seed=2)
    assert _kernels(p - 0.1 * g) == 1


def test_matmul_of_transposed_buffer_needs_no_copy_kernel() -> None:
    a, b = _t(32, 16), _t(32, 8)
    items = fg.schedule(a.T @ b)
    assert [i.kind for i in items] == ["matmul"]
    np.testing.assert_allclose((a.T @ b).numpy(), a.numpy().T @ b.numpy(), rtol=1e-5, atol=1e-5)


def test_deep_chains_are_cut_into_bounded_kernels() -> None:
    x = _t(4)
    y = x
    for _ in range(1000):
        y = y * 1.0001
    assert 1 < _kernels(y) < 20
    np.testing.assert_allclose(y.numpy(), x.numpy() * 1.0001**1000, rtol=1e-3)


NAN, INF = float("nan"), float("inf")
SPECIAL = np.array([NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 1e-30], dtype=np.float32)


@pytest.mark.parametrize("fn", [
    lambda x: x.exp(), lambda x: x.log(), lambda x: x.sqrt(), lambda x: x.reciprocal(), lambda x: 1.0 / x,
    lambda x: x / x, lambda x: x.maximum(x.flip(0)), lambda x: x.minimum(x.flip(0)), lambda x: x.relu(),
    lambda x: x.sigmoid(), lambda x: x.tanh(), lambda x: x.amax().reshape(1), lambda x: x.sum().reshape(1),
    lambda x: x.clamp(-1, 1), lambda x: x * 0, lambda x: x.floor(), lambda x: x.sin(),
])
def test_nan_and_inf_propagate_like_the_reference(fn) -> None:  # noqa: ANN001
    got = fn(fg.tensor(SPECIAL, device="cpu")).numpy()
    want = fn(fg.tensor(SPECIAL, device="numpy")).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True)


def test_integer_division_by_zero_does_not_trap() -> None:
    a = fg.tensor([7, -7, np.iinfo(np.int64).min, 5], device="cpu")
    b = fg.tensor([0, 2, -1, 0], device="cpu")
    np.testing.assert_array_equal(a.div(b, rounding_mode="trunc").numpy(),
                                  a.to("numpy").div(b.to("numpy"), rounding_mode="trunc").numpy())


def test_gather_out_of_range_raises_instead_of_reading_memory() -> None:
    x = _t(5, 3)
    idx = fg.tensor([[0, 1, 7]], device="cpu")
    with pytest.raises(IndexError):
        x.gather(0, idx).numpy()


def _run(code: str, cache: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "XDG_CACHE_HOME": str(cache), **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120)


PROGRAM = ("import fusegrad as fg; x = fg.arange(10., device='cpu'); "
           "print(((x * 3.25 + 1).exp2().log2()).sum().item())")


def test_kernel_cache_is_reused_across_processes_and_rebuilt_when_corrupt(tmp_path: Path) -> None:
    first = _run(PROGRAM, tmp_path)
    assert first.returncode == 0, first.stderr
    libs = list((tmp_path / "fusegrad" / "kernels").glob("*.so"))
    assert len(libs) == 1
    assert oct(os.stat(tmp_path / "fusegrad").st_mode & 0o777) == "0o700"
    mtime = libs[0].stat().st_mtime_ns
    second = _run(PROGRAM, tmp_path)
    assert second.stdout == first.stdout and libs[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    libs[0].write_bytes(b"not a shared library")
    third = _run(PROGRAM, tmp_path)
    assert third.returncode == 0, third.stderr
    assert third.stdout == first.stdout and libs[0].read_bytes()[:4] == b"\x7fELF"  # detected and rebuilt
    assert not [p for p in (tmp_path / "fusegrad" / "kernels").iterdir() if p.suffix != ".so"]  # no temp files


def test_without_a_compiler_cpu_falls_back_to_numpy_with_one_warning(tmp_path: Path) -> None:
    code = ("import warnings; warnings.simplefilter('always'); import fusegrad as fg; "
            "x = fg.arange(4., device='cpu'); print((x * 2).sum().item(), (x + 1).sum().item())")
    result = _run(code, tmp_path, CC="/nonexistent/cc")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["12.0", "10.0"]
    assert result.stderr.count("no C compiler found") == 1


def test_debug_levels_print_kernels_and_source(tmp_path: Path) -> None:
    one = _run(PROGRAM, tmp_path, DEBUG="1")
    assert "realize: 1 kernels" in one.stderr
    three = _run(PROGRAM, tmp_path, DEBUG="3")
    assert "void k_" in three.stderr and "GB/s" in three.stderr


def test_fused_select_into_max_reduction_regression() -> None:
    """GCC 12.2 -O3 with AVX-512 returned the first element of this reduction instead of the maximum."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        vals = [rng.standard_normal(()), rng.standard_normal(3), rng.standard_normal((3, 2, 2, 3)),
                rng.standard_normal((3, 1, 2, 3))]
        s, c, b, d = (fg.tensor(v, device="cpu") for v in vals)
        got = (fg.where(s > 0, 1.5, -0.5) * fg.where(c > 0, b, d)).amax(0, keepdim=True).numpy()
        want = (np.where(vals[0] > 0, 1.5, -0.5) * np.where(vals[1] > 0, vals[2], vals[3])).max(0, keepdims=True)
        np.testing.assert_allclose(got, want, rtol=1e-12)
