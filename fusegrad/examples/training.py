"""Shared example plumbing: a tqdm progress bar when tqdm is installed, and an optional loss-curve plot."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def progress(items: Iterable[Any], **kwargs: Any) -> Any:
    """tqdm(items) if tqdm is installed (`pip install fusegrad[examples]`), else the items unchanged."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, **kwargs)


def plot_losses(losses: list[float], path: str, title: str) -> None:
    """Draw the loss curve into a PNG with matplotlib (needs `pip install fusegrad[examples]`)."""
    try:
        import matplotlib
    except ImportError as e:
        raise SystemExit("--plot needs matplotlib: pip install 'fusegrad[examples]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(losses, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"loss curve written to {path}")


def fit(model: Any, opt: Any, train_set: Any, test_set: Any, evaluate: Any, epochs: int, batch_size: int,
        seed: int, title: str, plot: str | None = None, jit: bool = True) -> tuple[float, list[float]]:
    """The examples' classifier training loop: cross-entropy, a per-step cosine decay of the learning rate, a
    progress bar, and test accuracy (from `evaluate(model, test_set)`) with speed after every epoch. With `jit`,
    the whole step (forward, backward, update) is captured by `fg.jit` and replayed as one compiled program.

    Returns the final test accuracy and the loss of every step.
    """
    import time

    import fusegrad as fg
    from fusegrad import nn, optim
    from fusegrad.data import DataLoader

    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=seed)
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    losses: list[float] = []
    acc = 0.0

    def train_step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step = fg.jit(train_step) if jit else train_step
    for epoch in range(epochs):
        start, steps = time.perf_counter(), 0
        bar = progress(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="step", mininterval=1.0)
        for x, y in bar:
            loss = step(x, y)
            schedule.step()
            losses.append(loss.item())
            steps += 1
            if steps % 50 == 0 and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
        elapsed = time.perf_counter() - start
        acc = evaluate(model, test_set)
        print(f"epoch {epoch + 1}: loss {sum(losses[-steps:]) / max(steps, 1):.4f}  test accuracy {acc:.2%}  "
              f"{steps / elapsed:.1f} steps/s ({steps * batch_size / elapsed:.0f} samples/s) on device "
              f"'{fg.default_device()}'{' with fg.jit' if jit else ''}")
    if plot:
        plot_losses(losses, plot, title)
    return acc, losses
