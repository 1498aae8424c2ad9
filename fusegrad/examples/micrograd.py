"""The micrograd demo on fusegrad: an MLP 3-4-4-1 with tanh fits four points with plain SGD.

Run: python -m fusegrad.examples.micrograd [--steps 20] [--plot loss.png]
"""
from __future__ import annotations

import argparse

import fusegrad as fg
from fusegrad.examples.training import plot_losses

# the four-sample data set of the micrograd demo
XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
YS = [1.0, -1.0, -1.0, 1.0]


class MLP:
    """Fully connected layers with tanh, weights uniform in [-1, 1] like micrograd's neurons."""

    def __init__(self, sizes: list[int]):
        self.layers = [(fg.rand(n_in, n_out) * 2 - 1, fg.rand(n_out) * 2 - 1) for n_in, n_out in zip(sizes, sizes[1:])]
        for w, b in self.layers:
            w.requires_grad_()
            b.requires_grad_()

    def __call__(self, x: fg.Tensor) -> fg.Tensor:
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            x = x.tanh() if i < len(self.layers) - 1 else x
        return x

    def parameters(self) -> list[fg.Tensor]:
        """Every weight and bias."""
        return [p for layer in self.layers for p in layer]


def train(steps: int = 20, lr: float = 0.1, seed: int = 1337) -> list[float]:
    """Fit the demo data with SGD; returns the loss of every step."""
    fg.manual_seed(seed)
    model = MLP([3, 4, 4, 1])
    x, y = fg.tensor(XS), fg.tensor(YS)
    losses = []
    for step in range(steps):
        pred = model(x).reshape(-1).tanh()
        loss = ((pred - y) ** 2).sum()
        for p in model.parameters():
            p.grad = None
        loss.backward()
        with fg.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        losses.append(loss.item())
        print(f"step {step:2d}  loss {losses[-1]:.4f}")
    print("predictions:", [round(v, 3) for v in model(x).reshape(-1).tanh().tolist()], "targets:", YS)
    return losses


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--plot", metavar="PNG", help="write the loss curve to this file")
    args = parser.parse_args()
    losses = train(args.steps, args.lr)
    if args.plot:
        plot_losses(losses, args.plot, "micrograd demo: MLP 3-4-4-1")


if __name__ == "__main__":
    main()
