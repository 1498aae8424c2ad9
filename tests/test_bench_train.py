"""bench/train.py compares equal work: from the same weights and batches, fusegrad (eager and jit), torch and JAX
give the same loss at the first step and after each of the next optimizer steps, and the same weights after them.

Batches are smaller than the benchmark's (and the GPT's sequence shorter) to keep this fast; the batch size and
sequence length change no code path.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import openmp_wait  # noqa: E402 - bench/ is not a package: its path goes in first
import train as bench_train  # noqa: E402
import train_models as tm  # noqa: E402

# losses from the initial weights and after 1, 2, 3 updates; under fg.jit the calls run eagerly, capture, then
# replay twice, so a replay that loses the previous replay's parameter updates shows
STEPS = 4


def small(name: str) -> tm.Workload:
    """The benchmark workload with at most 4 samples per batch (and a GPT of 2 layers over 16 tokens)."""
    workload = tm.WORKLOADS[name]
    return dataclasses.replace(workload, batch=min(workload.batch, 4),
                               gpt=dataclasses.replace(workload.gpt, context=16, layers=2))


def assert_weights_close(weights: dict[str, np.ndarray], expected: dict[str, np.ndarray], optimizer: str) -> None:
    """Equal to float tolerance. Under AdamW an element whose gradient is (near) zero, like the attention's key
    bias (softmax ignores a constant added to a query's scores), is moved by rounding noise scaled up to about lr
    per step, so there a few elements (at most 0.2% of all; about 0.06% seen) may differ by a few lr."""
    assert weights.keys() == expected.keys()
    if optimizer == "sgd":
        for key, value in weights.items():
            np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-7, err_msg=key)
        return
    got, want = (np.concatenate([w[k].ravel() for k in sorted(w)]) for w in (weights, expected))
    off = ~np.isclose(got, want, rtol=1e-5, atol=1e-7)  # tight enough to see weight decay (lr * wd = 1e-5 a step)
    assert off.mean() <= 2e-3, f"{off.sum()} of {off.size} weights differ"
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * tm.ADAMW["lr"] * STEPS)


def run(impl: str, workload: tm.Workload) -> tuple[list[float], dict[str, np.ndarray]]:
    """Losses of STEPS steps of `impl`, from the torch model's initial weights, and the weights after them."""
    if impl == "jax" and tm.jax is None:
        pytest.skip("jax is not installed (pip install jax)")
    if impl == "fusegrad-jit" and not hasattr(fg, "jit"):
        pytest.skip("fg.jit does not exist yet")
    trainer = bench_train.trainer_for(impl, workload, tm.initial_weights(workload, seed=1),
                                      tm.make_batches(workload, 2, seed=2), "cpu")
    return [trainer.step(i) for i in range(STEPS)], trainer.weights()


@pytest.mark.parametrize("impl", ["fusegrad", "fusegrad-jit", "jax"])
@pytest.mark.parametrize("name", list(tm.WORKLOADS))
def test_same_losses_and_weights_as_torch(name: str, impl: str) -> None:
    workload = small(name)
    losses, weights = run(impl, workload)
    expected_losses, expected_weights = run("torch", workload)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5, atol=1e-6)
    assert_weights_close(weights, expected_weights, workload.optimizer)


def test_steps_change_the_weights() -> None:
    """The comparison above is not vacuous: two steps move every parameter of the GPT (AdamW decays them all)."""
    workload = small("gpt16")
    before = tm.initial_weights(workload, seed=1)
    _, after = run("torch", workload)
    for key, value in after.items():
        assert not np.allclose(value, before[key], rtol=0, atol=1e-7), key


def test_timing_interleaves_and_reports_errors() -> None:
    calls: list[str] = []

    def fast(i: int) -> float:
        calls.append("fast")
        return 1.0

    def broken(i: int) -> float:
        raise ValueError("no kernel")

    budget = bench_train.Budget(steps=4, seconds=0.0, cap_seconds=1.0, warmup=1)
    columns = {"fast": bench_train.Column(fast), "broken": bench_train.Column(broken)}
    out = bench_train.time_interleaved(columns, budget, block_seconds=0.0)
    assert out["fast"].steps == 4 and out["fast"].first_loss == 1.0 and len(calls) == 1 + 1 + 4
    assert out["broken"].steps == 0 and out["broken"].error == "ValueError: no kernel"
    row = bench_train.format_row("mlp1", {"fusegrad": out["fast"], "fusegrad-jit": out["broken"],
                                          "torch": out["fast"], "jax": out["fast"]}).split()
    assert row[:8] == ["mlp1", f"{out['fast'].median_ms:.3f}", "-", row[1], row[1], "-", "-", "1.00"]


def test_benchmarks_give_torch_the_wait_fusegrad_sets_for_itself() -> None:
    from fusegrad.runtime import cpu
    assert openmp_wait.SPIN_COUNT == cpu.OPENMP_SPIN_COUNT
