"""Train an MLP 784-128-64-10 on MNIST (the copy committed under data/mnist) and report accuracy and speed.

Run: python -m fusegrad.examples.mnist_mlp [--epochs 3] [--plot loss.png]
"""
from __future__ import annotations

import argparse

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.data import DataLoader, TensorDataset, mnist
from fusegrad.examples.training import fit


def make_model() -> nn.Module:
    """The network: two hidden ReLU layers."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def as_tensors(split: str) -> TensorDataset:
    """A split as (images float32 in [0, 1] of shape (N, 1, 28, 28), labels int64)."""
    ds = mnist(split)
    images = fg.tensor(ds.images.reshape(-1, 1, 28, 28)) / 255.0
    return TensorDataset(images.realize(), fg.tensor(ds.labels))


@fg.no_grad()
def accuracy(model: nn.Module, data: TensorDataset, batch_size: int = 1000) -> float:
    """Fraction of correctly classified samples."""
    model.eval()
    correct = 0
    for x, y in DataLoader(data, batch_size=batch_size):
        correct += int((model(x).argmax(1) == y).sum().item())
    model.train()
    return correct / len(data)


def train(epochs: int = 1, batch_size: int = 64, lr: float = 0.1, seed: int = 0,
          plot: str | None = None, jit: bool = True) -> float:
    """Train with SGD + momentum and a cosine learning-rate decay per step; returns the final test accuracy."""
    fg.manual_seed(seed)
    train_set, test_set = as_tensors("train"), as_tensors("test")
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    acc, _ = fit(model, opt, train_set, test_set, accuracy, epochs, batch_size, seed, "MNIST MLP 784-128-64-10", plot,
                 jit)
    return acc


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PNG", help="write the loss curve to this file")
    parser.add_argument("--no-jit", action="store_true", help="run every step eagerly instead of with fg.jit")
    args = parser.parse_args()
    train(args.epochs, args.batch_size, args.lr, args.seed, args.plot, jit=not args.no_jit)


if __name__ == "__main__":
    main()
