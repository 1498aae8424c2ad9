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
