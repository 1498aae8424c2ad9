"""Train a small CNN (two 5x5 conv + max-pool stages, then two linear layers) on MNIST and report accuracy and speed.

Run: python -m fusegrad.examples.mnist_cnn [--epochs 3] [--plot loss.png]
"""
from __future__ import annotations

import argparse

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.data import TensorDataset
from fusegrad.examples.mnist_mlp import accuracy, as_tensors
from fusegrad.examples.training import fit


def make_model(c1: int = 16, c2: int = 32, hidden: int = 128) -> nn.Module:
    """The network: 1x28x28 -conv5-> c1x24x24 -pool-> c1x12x12 -conv5-> c2x8x8 -pool-> c2x4x4 -> hidden -> 10."""
    return nn.Sequential(nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(c2 * 4 * 4, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def subset(data: TensorDataset, limit: int | None) -> TensorDataset:
    """The first `limit` samples of `data` (all of them when `limit` is None)."""
    if limit is None or limit >= len(data):
        return data
    return TensorDataset(*(t[:limit].realize() for t in data.tensors))


def train(epochs: int = 1, batch_size: int = 64, lr: float = 1e-3, seed: int = 0, plot: str | None = None,
          limit: int | None = None, test_limit: int | None = None, jit: bool = True) -> tuple[float, list[float]]:
    """Train with Adam and a cosine learning-rate decay per step on the first `limit` training images.

    Returns the final accuracy on the first `test_limit` test images and the per-step training losses.
    """
    fg.manual_seed(seed)
    train_set, test_set = subset(as_tensors("train"), limit), subset(as_tensors("test"), test_limit)
    model = make_model()
    opt = optim.Adam(model.parameters(), lr=lr)
    return fit(model, opt, train_set, test_set, accuracy, epochs, batch_size, seed, "MNIST CNN", plot, jit)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="train on only the first LIMIT training images")
    parser.add_argument("--plot", metavar="PNG", help="write the loss curve to this file")
    parser.add_argument("--no-jit", action="store_true", help="run every step eagerly instead of with fg.jit")
    args = parser.parse_args()
    train(args.epochs, args.batch_size, args.lr, args.seed, args.plot, args.limit, jit=not args.no_jit)


if __name__ == "__main__":
    main()
