"""The examples run and learn."""
from fusegrad.examples import micrograd


def test_micrograd_loss_falls() -> None:
    losses = micrograd.train(steps=20, lr=0.1)
    assert len(losses) == 20
    assert losses[-1] < 0.25 * losses[0]
    assert all(b <= a * 1.05 for a, b in zip(losses, losses[1:]))  # SGD on this problem is close to monotone


def test_mnist_mlp_learns_in_one_epoch() -> None:
    from fusegrad.examples import mnist_mlp
    assert mnist_mlp.train(epochs=1) > 0.955
