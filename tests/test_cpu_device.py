"""The compiled `cpu` device: fusion, the kernel cache, IEEE semantics, and the fallback without a compiler."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_gelu_backward_is_one_kernel_and_matches_torch() -> None:
    x = fg.tensor(np.linspace(-12, 12, 401, dtype=np.float32).reshape(1, 401), device="cpu", requires_grad=True)
    g = _t(1, 401)
    y = (x * 1.5).gelu()
    (dx,) = fg.grad(y, x, g)
    assert _kernels(y, dx) == 2  # gelu's own slope shares nothing with the forward that is worth a buffer
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    torch.nn.functional.gelu(tx * 1.5).backward(torch.tensor(g.numpy()))
    np.testing.assert_allclose(dx.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


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


@pytest.mark.parametrize("blas", ["mkl", "openblas"])
def test_eager_products_agree_with_numpy_on_every_blas(blas: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusegrad.runtime import blas as blas_module
    if blas not in blas_module.available_blas():
        pytest.skip(f"{blas} is not installed here")
    monkeypatch.setenv("FUSEGRAD_BLAS", blas)
    calls = []
    real = blas_module.PreparedProduct.__call__
    monkeypatch.setattr(blas_module.PreparedProduct, "__call__", lambda *args: calls.append(1) or real(*args))
    rng = np.random.default_rng(3)
    cases = [((5, 7), (7, 3), False), ((7, 5), (7, 3), True), ((2, 1, 4, 6), (3, 6, 2), False), ((6,), (6, 4), False),
             ((3, 6), (6,), False), ((0, 4), (4, 3), False), ((2, 0), (0, 3), False)]
    for sa, sb, transposed in cases:
        a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
        ta = fg.tensor(a, device="cpu").T if transposed else fg.tensor(a, device="cpu")
        want = (a.T if transposed else a).astype(np.float64) @ b
        np.testing.assert_allclose((ta @ fg.tensor(b, device="cpu")).numpy(), want, rtol=1e-5, atol=1e-5)
    d = rng.standard_normal((4, 5))
    np.testing.assert_allclose((fg.tensor(d, device="cpu") @ fg.tensor(d.T, device="cpu")).numpy(), d @ d.T)
    assert bool(calls) == (blas == "mkl")  # NumPy's matmul is OpenBLAS already; MKL is called directly


@pytest.mark.parametrize("blas", ["mkl", "openblas"])
def test_repeated_eager_products_of_views_agree_with_numpy(blas: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a repeated graph reuses its plan's prepared BLAS call: offsets, transposes and batch strides must follow the data
    from fusegrad.runtime import blas as blas_module
    if blas not in blas_module.available_blas():
        pytest.skip(f"{blas} is not installed here")
    monkeypatch.setenv("FUSEGRAD_BLAS", blas)
    rng = np.random.default_rng(4)
    products = [lambda a, b: a[1:, 2:] @ b[:, 2:].T,  # offset rows and columns, a transposed operand
                lambda a, b: a.reshape(2, 3, 8)[:, 1:] @ b[:8, :5],  # a batch of offset matrices, a broadcast one
                lambda a, b: (a + 1) @ b[::2, :8].T]  # a computed operand and a strided one
    for product in products:
        for _ in range(3):  # the first call plans, the others replay the plan over new buffers
            a = rng.standard_normal((6, 8)).astype(np.float64)
            b = rng.standard_normal((10, 8)).astype(np.float64)
            got = product(fg.tensor(a, device="cpu"), fg.tensor(b, device="cpu")).numpy()
            np.testing.assert_allclose(got, product(a, b), rtol=1e-12, atol=1e-12)


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


def test_exp2_is_exact_through_underflow_and_masked_lanes() -> None:
    # vector lanes below -126 take a shifted path (libmvec's scalar fallback is 40x slower): same answers as numpy
    rng = np.random.default_rng(0)
    x = rng.uniform(-160, 130, 4096).astype(np.float32)
    x[::7] = -INF  # a causal mask's -inf in most 16-lane vectors
    x[3::11] = rng.uniform(-150.5, -124.5, len(x[3::11]))  # denormal results and the edges of the shifted range
    x[5::97] = NAN
    x[6::97] = -np.float32(NAN)
    x[:8] = [-150.0, -149.0, -126.0, -125.0, 127.9, 128.0, -0.0, INF]
    got = fg.tensor(x, device="cpu").exp2().numpy()
    with np.errstate(over="ignore"):  # 2**128 is inf in float32, as intended
        want = np.exp2(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=2e-45, equal_nan=True)


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
    # OpenBLAS keeps its own threads here, so the cache holds only the kernels' library (not the thread callback's)
    own = {"FUSEGRAD_BLAS_OWN_THREADS": "1"}
    first = _run(PROGRAM, tmp_path, **own)
    assert first.returncode == 0, first.stderr
    libs = list((tmp_path / "fusegrad" / "kernels").glob("*.so"))
    assert len(libs) == 1
    assert oct(os.stat(tmp_path / "fusegrad").st_mode & 0o777) == "0o700"
    mtime = libs[0].stat().st_mtime_ns
    second = _run(PROGRAM, tmp_path, **own)
    assert second.stdout == first.stdout and libs[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    libs[0].write_bytes(b"not a shared library")
    third = _run(PROGRAM, tmp_path, **own)
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


@pytest.mark.parametrize("width", [3, 17, 64, 100])
def test_fused_select_into_max_reduction_regression(width: int) -> None:
    """GCC 12.2 -O3 once returned the first element of this reduction instead of the maximum (AVX-512 masked
    epilogues); widths around the 8- and 16-lane vectors exercise those epilogues."""
    rng = np.random.default_rng(7)
    for _ in range(10):
        vals = [rng.standard_normal(()), rng.standard_normal(width), rng.standard_normal((3, 2, 2, width)),
                rng.standard_normal((3, 1, 2, width))]
        s, c, b, d = (fg.tensor(v, device="cpu") for v in vals)
        picked = fg.where(s > 0, 1.5, -0.5) * fg.where(c > 0, b, d)
        want = (np.where(vals[0] > 0, 1.5, -0.5) * np.where(vals[1] > 0, vals[2], vals[3]))
        np.testing.assert_allclose(picked.amax(0, keepdim=True).numpy(), want.max(0, keepdims=True), rtol=1e-12)
        np.testing.assert_allclose(picked.amax(-1).numpy(), want.max(-1), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_gradient_of_recomputed_exp_finds_the_max(dtype: str) -> None:
    """The max's gradient compares its operand with the max: an exp recomputed by a vector loop in one kernel and a
    scalar loop in another differed in the last bit, so no element matched and 0 * (1 / 0) gave NaN."""
    found = np.array([[1.31113142, 0.58392166], [-0.37797209, 0.11205914], [-0.2023427, 0.44051166]], dtype=dtype)
    for a in [found, np.random.default_rng(3).standard_normal((7, 33)).astype(dtype)]:
        shape = a.shape
        x = fg.tensor(a, device="cpu", requires_grad=True)
        (x.exp().amax(1)[1:3] * fg.tensor(np.array([0.5, -2.0], dtype=dtype))).sum().backward()
        want = np.zeros(shape, dtype)
        rows = np.arange(1, 3)
        want[rows, a[1:3].argmax(1)] = np.exp(a[1:3].max(1)) * np.array([0.5, -2.0])
        np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("shape", [(8, 64), (300_000,)])
def test_launch_arguments_are_read_before_the_loops(shape: tuple[int, ...]) -> None:
    """A constant read inside a loop next to a select made GCC branch around it and keep the loop scalar; every
    kernel function reads its launch arguments into locals before its first loop."""
    from fusegrad.runtime.cpu import compile_kernel
    x = _t(*shape)
    y = fg.where(x > 0.25, 1.5, x * 3.0).exp()
    (item,) = [i for i in fg.schedule(y) if i.kind == "kernel"]
    _, source, _ = compile_kernel(item)
    for function in source.split("\n}\n"):
        lines = function.splitlines()
        first_loop = next((k for k, line in enumerate(lines) if line.strip().startswith("for ")), len(lines))
        assert not any("args[" in line for line in lines[first_loop:]), function
    assert "args[" in source
    np.testing.assert_allclose(y.numpy(), np.exp(np.where(x.numpy() > 0.25, 1.5, x.numpy() * 3.0)), rtol=1e-6)


@pytest.mark.parametrize("shape", [(64, 256), (3, 5, 40), (1, 1000)])
def test_loop_invariant_values_are_computed_before_the_loop(shape: tuple[int, ...]) -> None:
    """A logsumexp reads each row's max inside the sum over the row, behind an 'is the max infinite' select; left
    in the loop, GCC unswitched on it and both copies stayed scalar (a GPT's loss kernel ran 12x slower)."""
    import re

    from fusegrad.runtime.cpu import compile_kernel
    x = _t(*shape)
    y = x.logsumexp(-1)
    loops = 0
    for item in (i for i in fg.schedule(y) if i.kind == "kernel"):
        lines = compile_kernel(item)[1].splitlines()
        for k, line in enumerate(lines):
            if not line.strip().startswith("#pragma omp simd reduction"):
                continue
            var = re.match(r"\s*for \(int64_t (\w+) =", lines[k + 1]).group(1)
            end = next(j for j in range(k + 2, len(lines)) if lines[j].strip() == "}")
            for load in re.findall(r"\bin\d+\[([^\]]*)\]", "\n".join(lines[k + 2:end])):
                assert re.search(rf"\b{var}\b", load), (load, lines[k:end])
            loops += 1
    assert loops >= 1
    want = np.log(np.exp(x.numpy().astype(np.float64)).sum(-1))
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5)


def test_import_raises_the_collectors_default_threshold_only(tmp_path: Path) -> None:
    show = "import gc; {}import fusegrad; print(gc.get_threshold()[0])"
    assert _run(show.format(""), tmp_path).stdout.strip() == "10000"  # graphs of many nodes: fewer rescans
    assert _run(show.format("gc.set_threshold(5000); "), tmp_path).stdout.strip() == "5000"  # the user's own kept


def test_import_sets_a_short_openmp_spin_unless_the_user_chose_a_wait() -> None:
    from fusegrad.runtime import cpu
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def spin(**user: str) -> str:
        code = "import os, fusegrad; print(os.environ.get('GOMP_SPINCOUNT'))"
        return subprocess.run([sys.executable, "-c", code], env={**env, **user}, capture_output=True, text=True,
                              timeout=120).stdout.strip()
    assert spin() == cpu.OPENMP_SPIN_COUNT  # idle threads spin ~0.3 ms, then sleep
    assert spin(OMP_WAIT_POLICY="passive") == "None"  # the user's policy is theirs (libgomp ignores a spin then)
    assert spin(GOMP_SPINCOUNT="7") == "7"


# ---- the kernel cache: code is keyed by the graph's structure, constants are launch arguments ----

def _count_compiles(monkeypatch: pytest.MonkeyPatch) -> list:
    from fusegrad.runtime import cpu
    calls: list = []
    original = cpu.compile_kernel
    monkeypatch.setattr(cpu, "compile_kernel", lambda item: calls.append(item) or original(item))
    return calls


def test_repeated_graph_with_new_constants_reuses_its_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _t(64, 32)
    (x * 2.0 + 1.0).relu().numpy()
    calls = _count_compiles(monkeypatch)
    for a, b in [(3.5, -0.25), (-1.0, 7.0)]:
        np.testing.assert_allclose((x * a + b).relu().numpy(), np.maximum(x.numpy() * a + b, 0), rtol=1e-6)
    r1, r2 = fg.rand(1000, device="cpu").numpy(), fg.rand(1000, device="cpu").numpy()
    assert not (r1 == r2).all()  # new seeds, same code
    assert len(calls) == 1  # only the first rand compiled; the affine chain hit the cache twice


def test_kernel_cache_tells_structures_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _t(16, 8, seed=1), _t(16, 8, seed=2)
    calls = _count_compiles(monkeypatch)
    np.testing.assert_allclose((a * a).numpy(), a.numpy() ** 2, rtol=1e-6)
    np.testing.assert_allclose((a * b).numpy(), a.numpy() * b.numpy(), rtol=1e-6)  # one input twice vs two inputs
    np.testing.assert_allclose((a + 2.0).numpy(), a.numpy() + 2, rtol=1e-6)
    np.testing.assert_array_equal((a.long() + 2).numpy(), a.numpy().astype(np.int64) + 2)  # int constant, new dtype
    np.testing.assert_allclose(a.sum(0).numpy(), a.numpy().sum(0), rtol=1e-5)
    np.testing.assert_allclose(a.sum(1).numpy(), a.numpy().sum(1), rtol=1e-5)  # same op, other axis
    assert len(calls) == 6


def _count_schedules(monkeypatch: pytest.MonkeyPatch) -> list:
    from fusegrad.runtime import cpu
    calls: list = []
    original = cpu.schedule_kernels
    monkeypatch.setattr(cpu, "schedule_kernels", lambda *a, **k: calls.append(a) or original(*a, **k))
    return calls


def test_repeated_graph_reuses_its_schedule_with_new_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from fusegrad.runtime import cpu

    def step(x: fg.Tensor, scale: float) -> fg.Tensor:
        return (x * scale).softmax(-1) + fg.rand(*x.shape, device="cpu") * 0 + x.sum() * scale

    calls = _count_schedules(monkeypatch)
    for seed, scale in [(1, 0.5), (2, -3.0), (3, 2.0)]:
        x = _t(40, 64, seed=seed)
        want = torch.from_numpy(x.numpy() * scale).softmax(-1).numpy() + x.numpy().sum() * scale
        np.testing.assert_allclose(step(x, scale).numpy(), want, rtol=1e-5, atol=1e-5)
    assert len(calls) == 1  # new inputs and constants, one schedule
    r = [fg.rand(1000, device="cpu").numpy() for _ in range(2)]
    assert not (r[0] == r[1]).all()  # a cached plan still draws new seeds
    cpu._KERNELS.clear()  # a plan keeps the kernels it launches when the kernel cache lets them go
    np.testing.assert_allclose(step(_t(40, 64, seed=4), 1.0).numpy(),
                               torch.from_numpy(_t(40, 64, seed=4).numpy()).softmax(-1).numpy() +
                               _t(40, 64, seed=4).numpy().sum(), rtol=1e-5, atol=1e-5)


def test_schedule_cache_tells_structures_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _t(16, 64, seed=1), _t(16, 64, seed=2)
    calls = _count_schedules(monkeypatch)
    np.testing.assert_allclose((a * a).numpy(), a.numpy() ** 2, rtol=1e-6)
    np.testing.assert_allclose((a * b).numpy(), a.numpy() * b.numpy(), rtol=1e-6)  # one input twice vs two inputs
    np.testing.assert_allclose((a * b).sum(0).numpy(), (a.numpy() * b.numpy()).sum(0), rtol=1e-5)
    np.testing.assert_allclose((a * b).sum(1).numpy(), (a.numpy() * b.numpy()).sum(1), rtol=1e-5)  # other axis
    np.testing.assert_allclose((a[:8] * b[:8]).numpy(), a.numpy()[:8] * b.numpy()[:8], rtol=1e-6)  # other shape
    np.testing.assert_allclose((a * b * b).numpy(), a.numpy() * b.numpy() ** 2, rtol=1e-6)
    c = a * b
    c.realize()  # now a leaf like a: c * b has the structure of a * b
    np.testing.assert_allclose((c * b).numpy(), a.numpy() * b.numpy() ** 2, rtol=1e-6)
    assert len(calls) == 6


# ---- loop nests: padding conditions decided per loop piece, rows of accumulators ----

def _sources(*tensors: fg.Tensor) -> list[str]:
    from fusegrad.runtime import cpu
    return [cpu.compile_kernel(i)[1] for i in fg.schedule(*tensors) if i.kind == "kernel"]


def test_cat_runs_without_per_element_tests() -> None:
    a, b = _t(100, 30, seed=1), _t(100, 20, seed=2)
    (src,) = _sources(fg.cat([a, b], 1))
    assert "?" not in src  # each piece of the loop over the cat dim reads its own input, unguarded
    np.testing.assert_array_equal(fg.cat([a, b], 1).numpy(), np.concatenate([a.numpy(), b.numpy()], 1))


# (x shape, w shape, the im2col matrix's shape): small images share one product over the batch, large ones have one
# product per image whose output is already (n, c, h, w)
CONV_LAYOUTS = [((2, 3, 12, 12), (4, 3, 3, 3), (1, 3, 3, 3, 2, 12, 12)),
                ((2, 16, 48, 48), (16, 16, 3, 3), (2, 1, 16, 3, 3, 48, 48))]


@pytest.mark.parametrize("xs,ws,cols", CONV_LAYOUTS)
def test_conv_training_step_builds_im2col_once_without_per_element_tests(xs: tuple, ws: tuple, cols: tuple) -> None:
    x, w = _t(*xs, seed=3).requires_grad_(), _t(*ws, seed=4).requires_grad_()
    y = nn.functional.conv2d(x, w, padding=1)
    gy = _t(*y.shape, seed=5)
    grads = fg.grad(y, [x, w], gy)
    items = fg.schedule(y, *grads)
    im2col = [i for i in items if i.kind == "kernel" and i.out.shape == cols]
    assert len(im2col) == 1  # shared by the forward product and the weight gradient's
    from fusegrad.runtime import cpu
    assert "?" not in cpu.compile_kernel(im2col[0])[1]  # zeros where a window hangs over the border: loop pieces
    assert sum(i.kind == "matmul" for i in items) == 3
    assert not [i for i in items if i.kind == "kernel" and i.out.op is fg.graph.Op.SUM and i.out.shape == xs]
    tx, tw = (torch.tensor(t.numpy(), requires_grad=True) for t in (x, w))
    ty = torch.nn.functional.conv2d(tx, tw, padding=1)
    ty.backward(torch.tensor(gy.numpy()))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    for got, want in zip(grads, (tx.grad, tw.grad)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-3)


def test_reductions_over_leading_axes_accumulate_rows_exactly() -> None:
    x = fg.full((1 << 17, 8), 0.1, device="cpu")
    assert any("parts[" in s for s in _sources(x.sum(0)))  # rows of accumulators, each read in memory order
    np.testing.assert_allclose(x.sum(0).numpy(), np.full(8, 0.1, np.float32).astype(np.float64) * (1 << 17),
                               rtol=1e-6)  # accumulated in double, like the last-axis sum
    cases = [lambda t: t.sum(0), lambda t: t.sum((0, 1)), lambda t: t.amax(1), lambda t: t.amax(0),
             lambda t: t.half().sum(0), lambda t: (t > 0).any(0), lambda t: (t > 0).all(1),
             lambda t: (t * 10).long().sum(0), lambda t: t[:, :0].sum(0), lambda t: t.mean(0).sum(0)]
    # small (one thread); parallel, with rows split between pieces (64 and 48 rows: 16 pieces, 4 or 3 rows each);
    # 1031 rows (prime: no split)
    for shape in [(5, 7, 300), (64, 40, 64), (48, 16, 200), (1031, 2, 64)]:
        data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        data[3, 1, 17] = np.nan
        for fn in cases:
            got, want = fn(fg.tensor(data, device="cpu")).numpy(), fn(fg.tensor(data, device="numpy")).numpy()
            np.testing.assert_allclose(got, want, rtol=2e-3 if got.dtype == np.float16 else 1e-5, atol=1e-4,
                                       equal_nan=True, err_msg=str(shape))  # float32 sums of 2K terms: 1e-4
    assert any("parts[" in s for s in _sources(fg.zeros(48, 16, 200).sum((0, 1))))


def test_host_pool_reuses_freed_blocks_and_keeps_viewed_ones() -> None:
    from fusegrad.runtime.host_pool import ALIGNMENT, BLOCK_OVERHEAD, HostPool
    pool = HostPool(max_cached_bytes=9 << 20)
    a, address = pool.empty((1024, 1024), np.float32)
    assert a.ctypes.data == address and address % ALIGNMENT == 0
    view = a.reshape(-1)[10:20]
    del a
    assert pool.empty((1024, 1024), np.float32)[1] != address  # the view still holds the block
    del view
    b, b_address = pool.empty((1000, 1040), np.float32)  # another shape of the same size class
    assert b_address == address == b.ctypes.data and b.shape == (1000, 1040) and b.dtype == np.float32
    b[:] = 1.5
    assert b.sum() == 1.5 * b.size
    big = [pool.empty((4 << 20,), np.uint8)[0] for _ in range(3)]
    del big, b
    assert pool.cached_bytes <= 9 << 20  # beyond the cap, freed blocks go back to the system
    small, small_address = pool.empty((3, 5), np.float64)  # small arrays are pooled too, and aligned
    assert small.shape == (3, 5) and small_address % ALIGNMENT == 0 and small.ctypes.data == small_address
    before = pool.cached_bytes
    del small
    assert pool.cached_bytes == before + 120 + BLOCK_OVERHEAD
    empty, _ = pool.empty((0, 4), np.int64)
    assert empty.shape == (0, 4) and empty.size == 0
