"""The examples run and learn."""
import numpy as np
import pytest

from fusegrad.examples import micrograd


def test_micrograd_loss_falls() -> None:
    losses = micrograd.train(steps=20, lr=0.1)
    assert len(losses) == 20
    assert losses[-1] < 0.25 * losses[0]
    assert all(b <= a * 1.05 for a, b in zip(losses, losses[1:]))  # SGD on this problem is close to monotone


def test_mnist_mlp_learns_in_one_epoch() -> None:
    from fusegrad.examples import mnist_mlp
    assert mnist_mlp.train(epochs=1) > 0.955


def test_mnist_cnn_learns_on_a_subset() -> None:
    from fusegrad.examples import mnist_cnn
    acc, losses = mnist_cnn.train(epochs=1, batch_size=25, lr=2e-3, limit=2000, test_limit=1000)
    assert len(losses) == 80
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert acc > 0.6  # measured 0.83; chance is 0.1


def test_mnist_cnn_gives_the_same_losses_with_and_without_jit() -> None:
    from fusegrad.examples import mnist_cnn
    runs = [mnist_cnn.train(epochs=1, batch_size=16, limit=96, test_limit=50, jit=jit)[1] for jit in (False, True)]
    assert len(runs[0]) == 6
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-4, atol=1e-5)


def test_micrograd_plots_its_loss_curve(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the examples extra (pip install -e '.[examples]')")
    out = tmp_path / "loss.png"
    monkeypatch.setattr("sys.argv", ["micrograd", "--steps", "3", "--plot", str(out)])
    micrograd.main()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
