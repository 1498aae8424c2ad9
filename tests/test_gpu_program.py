"""fg.jit on the accelerators (`opencl`, `cuda`): a replay is fixed launches over memory placed at capture (a CUDA
graph on `cuda`), gives the eager results, allocates nothing, and reports bad indices as eager mode does."""
import numpy as np
import pytest

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.jit.gpu_program import GpuProgram
from fusegrad.runtime import get_device

ACCELERATORS = ["opencl", "cuda"]


@pytest.fixture(params=ACCELERATORS)
def accelerator(request: pytest.FixtureRequest) -> str:
    """An accelerator device name; skips (saying which) when it is not available here."""
    if request.param not in fg.available_devices():
        pytest.skip(f"device {request.param!r} is not available on this machine")
    return request.param


class _Model(nn.Module):
    """Embedding (a gather), dropout (random numbers), a linear layer: every kind of command a step holds."""

    def __init__(self, device: str):
        super().__init__()
        self.emb = nn.Embedding(11, 8, device=device)
        self.drop = nn.Dropout(0.25)
        self.out = nn.Linear(8, 3, device=device)

    def forward(self, idx: fg.Tensor) -> fg.Tensor:
        return self.out(self.drop(self.emb(idx).relu())).sum(1)


def _train(device: str, use_jit: bool, steps: int = 6) -> tuple[list[float], list[np.ndarray], object]:
    fg.manual_seed(3)
    model = _Model(device)
    opt = optim.AdamW(model.parameters(), lr=1e-2)

    def step(idx: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = nn.functional.cross_entropy(model(idx), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    run = fg.jit(step) if use_jit else step
    rng = np.random.default_rng(0)
    losses = [run(fg.tensor(rng.integers(0, 11, (5, 4)), device=device),
                  fg.tensor(rng.integers(0, 3, 5), device=device)).item() for _ in range(steps)]
    return losses, [p.numpy() for p in model.parameters()], run


def test_replays_fixed_launches_with_the_eager_results(accelerator: str) -> None:
    eager_losses, eager_params, _ = _train(accelerator, False)
    losses, params, run = _train(accelerator, True)
    program = run.last.program
    assert isinstance(program, GpuProgram)
    # every new state value (parameters, optimizer state, gradients, some of them reshapes of a reduction) is
    # computed straight into its buffer: a kernel reads the old value only at the element it writes, or not at all
    assert len(program.captured.states) >= 12 and program.final_copies == []
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-6, atol=1e-7)
    for p, q in zip(params, eager_params):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
    if accelerator == "cuda":  # replays after the first run are one CUDA graph launch
        assert run.last.program.graph is not None


def test_cuda_graphs_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    if "cuda" not in fg.available_devices():
        pytest.skip("device 'cuda' is not available on this machine")
    with_graph, _, _ = _train("cuda", True)
    monkeypatch.setenv("FUSEGRAD_CUDA_GRAPHS", "0")
    losses, _, run = _train("cuda", True)
    assert run.last.program.graph is None
    np.testing.assert_allclose(losses, with_graph, rtol=1e-6, atol=1e-7)


def test_steady_state_allocates_no_device_memory(accelerator: str) -> None:
    _, _, run = _train(accelerator, True, steps=4)
    pool = get_device(accelerator).pool
    idx = fg.tensor(np.arange(20).reshape(5, 4) % 11, device=accelerator)
    y = fg.tensor(np.arange(5) % 3, device=accelerator)
    run(idx, y)
    calls = []
    original = pool.alloc
    pool.alloc = lambda nbytes: (calls.append(nbytes), original(nbytes))[1]
    try:
        for _ in range(5):
            run(idx, y)
    finally:
        del pool.alloc
    assert calls == []
    plan = run.memory_plan()
    assert 0 < plan.arena_bytes < plan.total_bytes, plan


def test_an_index_out_of_range_is_an_index_error_and_the_step_still_runs(accelerator: str) -> None:
    _, _, run = _train(accelerator, True, steps=4)
    idx = fg.tensor(np.ones((5, 4), np.int64), device=accelerator)
    with pytest.raises(IndexError, match="out of bounds for dim 1 with size 3"):  # cross_entropy gathers class 3
        run(idx, fg.tensor(np.full(5, 3), device=accelerator))
    assert np.isfinite(run(idx, fg.tensor(np.zeros(5, np.int64), device=accelerator)).item())


def test_debug_2_times_every_command_of_a_step(accelerator: str, tmp_path) -> None:  # noqa: ANN001
    import os
    import subprocess
    import sys

    from cuda_emulator import child_prelude
    code = (child_prelude(accelerator) + "import fusegrad as fg\n"
            f"step = fg.jit(lambda x, w: (x @ w).relu().sum())\n"
            f"x, w = fg.randn(64, 32, device='{accelerator}'), fg.randn(32, 16, device='{accelerator}')\n"
            "for _ in range(5): step(x, w)\n"
            "print(step.last.program.kernel_profile()[0][0], step.last.program.graph)\n")
    env = {**os.environ, "DEBUG": "2", "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "jit step profile: 2 calls" in result.stderr and "over 4 runs" in result.stderr
    first, graph = result.stdout.split()[0], result.stdout.split()[-1]
    assert first in ("kernel", "matmul") and graph == "None"  # timed command by command, so never one graph
