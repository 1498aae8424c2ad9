"""The CUDA renderer's output compiles (NVRTC or nvcc, no GPU needed), and cuBLAS's operand layouts are right.

Every machine with NVRTC (`pip install "fusegrad[cuda]"`) or nvcc catches syntax and type errors in printed CUDA for
the graphs below; running the kernels needs a GPU and happens in the device-parametrized suite.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import nn
from fusegrad.codegen.cuda import CUDA_PRELUDE, launch_plan, render_cuda
from fusegrad.codegen.lower import lower
from fusegrad.codegen.matmul_ir import matmul_kernels
from fusegrad.runtime.cublas import emulate_gemm, gemm_plan
from fusegrad.runtime.nvrtc import CudaCompileError, compile_cuda, nvrtc_version
from fusegrad.view import View

ARCH = "sm_90"  # the H100/H200 the project's GPU runs target
DTYPES = [fg.bool_, fg.uint8, fg.int32, fg.int64, fg.float16, fg.float32, fg.float64]


def _t(*shape: int, dtype: fg.DType = fg.float32, seed: int = 0) -> fg.Tensor:
    data = np.random.default_rng(seed).standard_normal(shape) * 4
    return fg.tensor(data).to(dtype)


def _ints(*shape: int, high: int) -> fg.Tensor:
    return fg.tensor(np.random.default_rng(1).integers(0, high, shape))


def _mlp_grads() -> list[fg.Tensor]:
    x, y = _t(8, 20), _ints(8, high=5)
    w1, w2 = _t(20, 16).requires_grad_(), _t(16, 5).requires_grad_()
    loss = nn.functional.cross_entropy((x @ w1).relu() @ w2, y)
    return [loss, *fg.grad(loss, [w1, w2])]


def _dtype_cases() -> dict[str, Callable[[], list[fg.Tensor]]]:
    cases = {}
    for dt in DTYPES:
        def make(dt: fg.DType = dt) -> list[fg.Tensor]:
            a, b = _t(6, 50, dtype=dt, seed=1), _t(6, 50, dtype=dt, seed=2)
            out = [a + b, a * b, a.maximum(b), a < b, a == b, fg.where(a < b, a, b), a.sum(1), a.amax(1),
                   a.sum(), a.to(fg.float32), a.to(fg.float16), a.to(fg.bool_), a.to(fg.int64)]
            if dt.is_floating_point:
                out += [a.exp(), a.log(), a.sin(), a.sqrt(), a.reciprocal(), a.fmod(b), -a, a.softmax(-1)]
            elif dt != fg.bool_:
                out += [a // b, a % b, a.div(b, rounding_mode="trunc")]
            else:
                out += [a | b, a & b, a.any(1), a.all()]
            return out
        cases[f"dtype_{dt.name}"] = make
    return cases


CASES: dict[str, Callable[[], list[fg.Tensor]]] = {
    "elementwise_chain": lambda: [((_t(64, 32) + _t(64, 32, seed=1)) * _t(32)).relu().exp().log1p().tanh()],
    "gelu_sigmoid": lambda: [_t(16, 16).gelu(), _t(7).sigmoid(), _t(5, 3).clamp(-1, 1).floor()],
    "sum_all_block": lambda: [_t(1000).sum(), _t(50, 40).mean()],
    "sum_small_rows": lambda: [_t(300, 7).sum(1), _t(40, 30).sum(0)],
    "max_with_nan": lambda: [fg.tensor([1.0, float("nan"), 3.0] * 100).amax(), _t(9, 200).amax(1),
                             _t(9, 3).amax(0)],
    "softmax": lambda: [_t(8, 512).softmax(-1), _t(8, 10).log_softmax(0)],
    "layer_norm": lambda: [nn.functional.layer_norm(_t(4, 64), (64,))],
    "gather_embedding": lambda: [_t(10, 6).gather(0, _ints(4, 6, high=10)), _t(30, 8)[_ints(5, high=30)]],
    "rand_dropout": lambda: [fg.dropout(_t(32, 32), 0.3), fg.rand(7, 5, dtype=fg.float64), fg.randn(9)],
    "pad_where_flip_stride": lambda: [nn.functional.pad(_t(3, 4), (1, 2, 0, 1)), _t(6, 6)[::2].flip(1) + 1,
                                      fg.where(_t(5) > 0, _t(5, seed=3), 0.5), fg.cat([_t(2, 3), _t(4, 3)])],
    "cumsum_one_hot": lambda: [_t(4, 9).cumsum(1), nn.functional.one_hot(_ints(6, high=4), 4)],
    "conv_pool": lambda: [nn.functional.max_pool2d(nn.Conv2d(2, 3, 3)(_t(1, 2, 8, 8)), 2)],
    "mlp_backward": _mlp_grads,
    "huge_int64_indices": lambda: [fg.tensor(1.5).expand(1 << 16, 1 << 15) + 1,
                                   fg.tensor(2.0).expand(1 << 17, 1 << 15).sum(1)],
    **_dtype_cases(),
}


def _kernel_sources(tensors: list[fg.Tensor], prefix: str) -> list[str]:
    """CUDA for every kernel computing `tensors`, MATMULs included (through the loop IR, cuBLAS's fallback)."""
    items = fg.schedule(*tensors)
    boundary = {id(item.out) for item in items}
    kernels = []
    for item in items:
        if item.kind == "matmul":
            kernels += matmul_kernels(item.out, boundary)[0]
        elif item.kind == "kernel":
            kernels.append(item)
    return [render_cuda(lower(item, f"{prefix}_{i}")) for i, item in enumerate(kernels)]


@cache
def _sources() -> dict[str, list[str]]:
    return {name: _kernel_sources(make(), name) for name, make in CASES.items()}


def _nvcc() -> str | None:
    for path in (shutil.which("nvcc"), "/usr/local/bin/nvcc", "/usr/local/cuda/bin/nvcc"):
        if path and Path(path).exists():
            return path
    return None


def _compile(source: str) -> None:
    """Compile to a cubin for sm_90 with NVRTC if it loads, else with nvcc; raise on any error."""
    if nvrtc_version() is not None:
        compile_cuda(source, ARCH, use_cache=False)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "k.cu")
        src.write_text(source)
        result = subprocess.run([_nvcc(), "-cubin", f"-arch={ARCH}", "-o", str(Path(tmp, "k.cubin")), str(src)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise CudaCompileError(result.stderr[-4000:])


needs_compiler = pytest.mark.skipif(nvrtc_version() is None and _nvcc() is None,
                                    reason="no CUDA compiler here: neither NVRTC (pip install 'fusegrad[cuda]') "
                                           "nor nvcc (CUDA toolkit) is installed")


@cache
def _all_compile() -> str | None:
    """Compile every case as one module (one compiler run); None when it compiled, else the error."""
    try:
        _compile(CUDA_PRELUDE + "\n".join(src for srcs in _sources().values() for src in srcs))
        return None
    except CudaCompileError as e:
        return str(e)


@needs_compiler
@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_cuda_compiles(case: str) -> None:
    assert _sources()[case], f"{case} has no kernels"
    if _all_compile() is not None:  # find out whether this case is one that fails, and how
        _compile(CUDA_PRELUDE + "\n".join(_sources()[case]))


def _plan_of(t: fg.Tensor):  # noqa: ANN202 - ThreadPlan
    (item,) = [i for i in fg.schedule(t) if i.kind == "kernel"]
    return launch_plan(lower(item, "k"))


def test_long_reductions_use_a_block_per_output_and_short_ones_a_thread() -> None:
    assert _plan_of(_t(4, 1000).sum(1)).block_reduce
    assert _plan_of(_t(2000).amax()).block_reduce
    assert not _plan_of(_t(1000, 4).sum(1)).block_reduce
    assert not _plan_of(_t(8, 8) + 1).block_reduce
    src = _sources()["sum_all_block"][0]
    assert "__shfl_down_sync" in src and "__syncthreads" in src


def test_index_width_follows_the_sizes() -> None:
    small, huge = _sources()["elementwise_chain"][0], _sources()["huge_int64_indices"][0]
    assert re.search(r"for \(int fg_g", small)
    assert re.search(r"for \(long long fg_g", huge)


def test_launch_arguments_are_parameters_not_literals() -> None:
    a = _t(4, 4)
    one, two = (_kernel_sources([a * c + c], "k")[0] for c in (0.25, 7.5))
    assert one == two and "const double a0" in one


# ---- cuBLAS operand layouts, checked with a NumPy model of column-major GEMM ----

# each: logical (2, rows, cols) matrix stack -> (shape of the buffer, the view of it)
LAYOUTS: dict[str, Callable[[int, int], tuple[tuple[int, ...], Callable[[np.ndarray], np.ndarray]]]] = {
    "plain": lambda r, c: ((2, r, c), lambda x: x),
    "transposed": lambda r, c: ((2, c, r), lambda x: x.transpose(0, 2, 1)),
    "column_slice": lambda r, c: ((2, r, c + 3), lambda x: x[:, :, 1:1 + c]),
    "row_slice": lambda r, c: ((2, r + 2, c), lambda x: x[:, 1:1 + r, :]),
    "broadcast_batch": lambda r, c: ((1, r, c), lambda x: np.broadcast_to(x, (2, r, c))),
    "strided_batch": lambda r, c: ((4, r, c), lambda x: x[1::2]),
    "transposed_slice": lambda r, c: ((2, c + 1, r + 2), lambda x: x[:, 1:, 2:].transpose(0, 2, 1)),
}


def _view_of(base_shape: tuple[int, ...], fn: Callable[[np.ndarray], np.ndarray]) -> View:
    """The View equal to fn applied to a row-major array of base_shape (read off NumPy's strides)."""
    base = np.zeros(base_shape)
    out = fn(base)
    item = base.itemsize
    offset = (out.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // item
    return View(out.shape, tuple(s // item for s in out.strides), offset)


@pytest.mark.parametrize("mkn", [(3, 4, 5), (1, 4, 1), (3, 1, 5)])
@pytest.mark.parametrize("b_layout", sorted(LAYOUTS))
@pytest.mark.parametrize("a_layout", sorted(LAYOUTS))
def test_gemm_plan_computes_the_row_major_product(a_layout: str, b_layout: str, mkn: tuple[int, int, int]) -> None:
    m, k, n = mkn
    (a_shape, a_fn), (b_shape, b_fn) = LAYOUTS[a_layout](m, k), LAYOUTS[b_layout](k, n)
    plan = gemm_plan(_view_of(a_shape, a_fn), _view_of(b_shape, b_fn))
    assert plan is not None, "every layout here is one cuBLAS reads without a copy"
    rng = np.random.default_rng(0)
    a_flat, b_flat = rng.standard_normal(int(np.prod(a_shape))), rng.standard_normal(int(np.prod(b_shape)))
    want = a_fn(a_flat.reshape(a_shape)) @ b_fn(b_flat.reshape(b_shape))
    np.testing.assert_allclose(emulate_gemm(plan, a_flat, b_flat), want, rtol=1e-12)


def test_gemm_plan_refuses_layouts_cublas_cannot_read() -> None:
    ok = _view_of((2, 4, 5), lambda x: x)
    assert gemm_plan(_view_of((2, 3, 4), lambda x: x[:, ::-1, :]), ok) is None  # a negative stride
    assert gemm_plan(_view_of((2, 3, 8), lambda x: x[:, :, ::2]), ok) is None  # neither matrix dim contiguous
    uneven_batch = _view_of((2, 3, 3, 4), lambda x: x[:, :2])  # batch strides 36, 12: not one progression
    assert gemm_plan(uneven_batch, _view_of((2, 2, 4, 5), lambda x: x)) is None
