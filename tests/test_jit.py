"""fg.jit: replayed steps give exactly the eager results, state is updated in place, errors are clear."""
import gc
import tracemalloc

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.runtime import get_device


def _batches(n: int, batch: int, features: int = 20, classes: int = 5, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, features)).astype(np.float32), rng.integers(0, classes, batch))
            for _ in range(n)]


def _mlp(device: str, dropout: float = 0.0, batchnorm: bool = False) -> nn.Module:
    fg.manual_seed(1)
    layers = [nn.Linear(20, 32, device=device), nn.ReLU()]
    if batchnorm:
        layers.insert(1, nn.BatchNorm1d(32, device=device))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(32, 5, device=device))


def _train(device: str, use_jit: bool, make_opt, steps: int = 7, schedule: bool = False, dropout: float = 0.0,
           batchnorm: bool = False, accumulate: bool = False, batch: int = 8) -> tuple[list[float], dict]:
    """Losses of a few training steps and the final state dict, with or without fg.jit."""
    model = _mlp(device, dropout, batchnorm)
    opt = make_opt(model.parameters())
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if schedule else None

    def step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        if not accumulate:
            opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    run = fg.jit(step) if use_jit else step
    fg.manual_seed(5)
    losses = []
    for x, y in _batches(steps, batch):
        losses.append(run(fg.tensor(x, device=device), fg.tensor(y, device=device)).item())
        if sched is not None:
            sched.step()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state.update({f"grad.{i}": p.grad.numpy() for i, p in enumerate(model.parameters())})
    return losses, state


OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd_momentum_wd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2),
    "adamw_amsgrad": lambda ps: optim.AdamW(ps, lr=1e-2, amsgrad=True),
    "rmsprop": lambda ps: optim.RMSprop(ps, lr=1e-2, momentum=0.5, centered=True),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_jit_equals_eager_for_every_optimizer(device: str, name: str) -> None:
    eager = _train(device, False, OPTIMIZERS[name])
    jitted = _train(device, True, OPTIMIZERS[name])
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-5, atol=1e-6)
    for k in eager[1]:
        np.testing.assert_allclose(jitted[1][k], eager[1][k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("case", [dict(schedule=True), dict(dropout=0.3), dict(batchnorm=True),
                                  dict(accumulate=True), dict(batch=1)])
def test_jit_equals_eager_with_scheduler_dropout_batchnorm_accumulation(device: str, case: dict) -> None:
    eager = _train(device, False, OPTIMIZERS["adam"], **case)
    jitted = _train(device, True, OPTIMIZERS["adam"], **case)
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-5, atol=1e-6)
    for k in eager[1]:
        np.testing.assert_allclose(jitted[1][k], eager[1][k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_dropout_masks_differ_per_call_and_follow_the_seed() -> None:
    @fg.jit
    def masked(x: fg.Tensor) -> fg.Tensor:
        return fg.dropout(x, 0.5, training=True)

    x = fg.ones(64)
    fg.manual_seed(3)
    first = [masked(x).numpy() for _ in range(5)]
    assert all(not np.array_equal(a, b) for a, b in zip(first, first[1:]))
    fg.manual_seed(3)
    again = [masked(x).numpy() for _ in range(5)]
    fg.manual_seed(3)
    eager = [fg.dropout(x, 0.5, training=True).numpy() for _ in range(5)]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, eager)


def test_new_shapes_capture_again_and_read_only_tensors_follow_outside_updates(device: str) -> None:
    model = _mlp(device)

    @fg.jit
    def predict(x: fg.Tensor) -> fg.Tensor:
        return model(x).softmax(-1)

    opt = optim.SGD(model.parameters(), lr=0.5)
    for batch in (4, 4, 4, 4, 3, 3, 3, 3):
        x = fg.randn(batch, 20, device=device)
        got = predict(x).numpy()
        want = model(x).softmax(-1).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        model(x).sum().backward()  # train outside the jitted function: it must see the new weights
        opt.step()
        opt.zero_grad()
    assert len(predict.captures) == 2


def test_value_dependent_control_flow_is_an_error() -> None:
    @fg.jit
    def branchy(x: fg.Tensor) -> fg.Tensor:
        return x * 2 if (x.sum() > 0).item() else x

    x = fg.ones(3)
    branchy(x)
    with pytest.raises(fg.JitError, match="read"):
        branchy(x)


def test_python_numbers_that_change_between_calls_are_an_error() -> None:
    calls = [0]

    @fg.jit
    def counting(x: fg.Tensor) -> fg.Tensor:
        calls[0] += 1
        return x * calls[0]

    x = fg.ones(3)
    counting(x)
    counting(x)
    with pytest.raises(fg.JitError, match="constant changed"):
        counting(x)


def test_replaced_state_of_another_shape_is_a_clear_error() -> None:
    w = fg.ones(3)

    @fg.jit
    def scale(x: fg.Tensor) -> fg.Tensor:
        return x * w

    x = fg.ones(3)
    for _ in range(3):
        scale(x)
    w.data = fg.ones(4)
    with pytest.raises(fg.JitError, match=r"\(3,\) float32"):
        scale(x)


def test_outputs_nested_and_static_values_and_methods() -> None:
    class Doubler(nn.Module):
        @fg.jit
        def forward(self, x: fg.Tensor, k: int) -> dict:
            return {"y": (x * k, x + k), "k": k}

    m = Doubler()
    for k in (2, 2, 2, 2, 3):
        out = m(fg.arange(4.0), k)
        assert out["k"] == k
        np.testing.assert_array_equal(out["y"][0].numpy(), np.arange(4.0) * k)
        np.testing.assert_array_equal(out["y"][1].numpy(), np.arange(4.0) + k)


def test_eval_shape_of_a_jitted_function_runs_it_shape_only() -> None:
    step = fg.jit(lambda x: (x @ x.T).sum(0))
    assert fg.eval_shape(step, fg.Spec((5, 3))) == fg.Spec((5,))


def test_steady_state_allocates_nothing() -> None:
    model, (x, y) = _mlp("cpu"), _batches(1, 16)[0]
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = fg.tensor(x), fg.tensor(y)

    @fg.jit
    def step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(5):
        step(x, y)
    device = get_device("cpu")
    before = device.allocations
    gc.collect()
    tracemalloc.start()
    for _ in range(100):
        step(x, y)
    gc.collect()
    start, _ = tracemalloc.get_traced_memory()
    for _ in range(1000):
        step(x, y)
    gc.collect()
    end, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert device.allocations == before
    assert end - start < 4096, f"memory grew by {end - start} bytes over 1000 replays"
    plan = step.memory_plan()
    assert 0 < plan.arena_bytes < plan.total_bytes, plan


def test_capture_compiles_one_entry_point_for_the_whole_step() -> None:
    model = _mlp("cpu")
    opt = optim.SGD(model.parameters(), lr=0.1)

    @fg.jit
    def step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    x, y = (fg.tensor(a) for a in _batches(1, 8)[0])
    for _ in range(3):
        step(x, y)
    program = step.last.program
    assert type(program).__name__ == "CpuProgram"
    assert program.source.count(" fg_run(") == 1
    assert "sgemm" in program.source  # matmuls go to BLAS from inside the compiled step


@pytest.mark.parametrize("k", [2048, 4099])
def test_products_with_few_outputs_and_a_long_k_split_k_between_threads(k: int) -> None:
    """(8, k) @ (k, 16) in both BLAS layouts of b: each thread sums a slice of k; the total equals NumPy's."""
    rng = np.random.default_rng(k)
    a, b = rng.standard_normal((8, k)).astype(np.float32), rng.standard_normal((k, 16)).astype(np.float32)
    step = fg.jit(lambda x, y, yt: (x @ y, x @ yt.T))
    args = (fg.tensor(a), fg.tensor(b), fg.tensor(np.ascontiguousarray(b.T)))
    for _ in range(4):
        got = step(*args)
    program = step.last.program
    if "num_threads(" not in program.source:
        pytest.skip("one thread here: no split")
    assert program.source.count("num_threads(") == 2  # both products
    for out in got:
        np.testing.assert_allclose(out.numpy(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


def test_debug_2_profiles_every_call_of_a_compiled_step(tmp_path) -> None:
    import subprocess
    import sys
    code = ("import fusegrad as fg\n"
            "step = fg.jit(lambda x, w: (x @ w).relu().sum())\n"
            "x, w = fg.randn(64, 32), fg.randn(32, 16)\n"
            "for _ in range(5): step(x, w)\n"
            "print(step.last.program.kernel_profile()[0][0])\n")
    env = {**__import__("os").environ, "DEBUG": "2", "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "jit step profile: 2 calls" in result.stderr and " runs" in result.stderr
    assert result.stdout.split()[0] in ("kernel", "matmul")


def test_batched_small_products_run_one_matrix_per_thread() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 6, 5, 7)).astype(np.float32), rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    step = fg.jit(lambda x, y: (x @ y, x.transpose(-1, -2).transpose(-1, -2) @ y.transpose(-1, -2).transpose(-1, -2)))
    for _ in range(4):
        got = step(fg.tensor(a), fg.tensor(b))
    if "collapse(2)" not in step.last.program.source:
        pytest.skip("one thread here")
    for out in got:
        np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blas", ["mkl", "openblas"])
def test_compiled_products_agree_with_numpy_on_every_blas(blas: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusegrad.runtime import blas as blas_module
    if blas not in blas_module.available_blas():
        pytest.skip(f"{blas} is not installed here" + (" (pip install 'fusegrad[mkl]')" if blas == "mkl" else ""))
    monkeypatch.setenv("FUSEGRAD_BLAS", blas)
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 70)).astype(np.float32), rng.standard_normal((70, 130)).astype(np.float32)
    heads = rng.standard_normal((2, 3, 9, 4)).astype(np.float32)
    long_k = rng.standard_normal((4, 3000)).astype(np.float32)
    step = fg.jit(lambda x, y, h, k: (x @ y, x.T.T @ y.T.T, y.T @ x.T, h @ h.transpose(-1, -2), k @ k.T,
                                      x.double() @ y.double()))
    for _ in range(3):
        got = [t.numpy() for t in step(fg.tensor(a), fg.tensor(b), fg.tensor(heads), fg.tensor(long_k))]
    program = step.last.program
    assert program.gemm[0] == blas_module.cblas_gemm(fg.float32) is not None
    wants = [a @ b.astype(np.float64), a @ b.astype(np.float64), (a @ b.astype(np.float64)).T,
             heads @ heads.swapaxes(-1, -2).astype(np.float64), long_k @ long_k.T.astype(np.float64),
             a.astype(np.float64) @ b]
    for g, w in zip(got, wants, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-3 if g.dtype == np.float32 else 1e-10)


def test_an_unknown_blas_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEGRAD_BLAS", "atlas")
    step = fg.jit(lambda x: x @ x)
    x = fg.ones(3, 3)
    with pytest.raises(ValueError, match="FUSEGRAD_BLAS='atlas'"):
        for _ in range(3):
            step(x)


def test_outputs_fed_back_as_inputs_and_views_at_any_offset(device: str) -> None:
    """A recurrence h = f(h, x) reads last call's output, which lives in memory the run overwrites; slices start
    inside buffers (on accelerators: copied where a kernel argument cannot start there, shared where it can)."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 6)).astype(np.float32)
    xs = rng.standard_normal((5, 70, 6)).astype(np.float32)
    wt = fg.tensor(w, device=device)

    def cell(h: fg.Tensor, x: fg.Tensor) -> fg.Tensor:
        return ((h @ wt).tanh() + x[1:33] * 0.5 + x[:32].exp() * 0.1 + x[64:].sum() * x[32:64]).sum(0, keepdim=True) \
            * 0.01 + h

    def reference(h: np.ndarray, x: np.ndarray) -> np.ndarray:
        return (np.tanh(h @ w) + x[1:33] * 0.5 + np.exp(x[:32]) * 0.1 + x[64:].sum() * x[32:64]).sum(0, keepdims=True) \
            * 0.01 + h

    step = fg.jit(cell)
    h, expect = fg.tensor(np.zeros((1, 6), np.float32), device=device), np.zeros((1, 6), np.float32)
    for x in xs:
        h = step(h, fg.tensor(x, device=device))
        expect = reference(expect, x)
        np.testing.assert_allclose(h.numpy(), expect, rtol=1e-5, atol=1e-6)
    program = type(step.last.program).__name__
    assert program == {"numpy": "GraphProgram", "cpu": "CpuProgram"}.get(device, "GpuProgram")
