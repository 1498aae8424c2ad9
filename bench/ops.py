"""fusegrad vs PyTorch on single ops, side by side in one process with the same thread count.

Run: python bench/ops.py [--device cpu] [--repeat 20]
Prints the median time of each and the ratio fusegrad / torch (below 1.0: fusegrad is faster). fusegrad's time is
what a user pays per call in eager mode: building the graph, scheduling, launching (compiled kernels are cached
after the warm-up call) and computing.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import fusegrad as fg
from fusegrad import nn


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: compiles and caches kernels, lets BLAS spin up its threads
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _pair(shape: tuple[int, ...], device: str, seed: int = 0) -> tuple[fg.Tensor, torch.Tensor]:
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return fg.tensor(data, device=device).realize(), torch.from_numpy(data.copy())


def cases(device: str) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(name, fusegrad call, torch call) for every benchmarked op."""
    out = []
    x, tx = _pair((4 * 1024 * 1024,), device)
    out.append(("gelu 4M", lambda: x.gelu().realize(), lambda: torch.nn.functional.gelu(tx)))
    y, ty = _pair((4096, 1024), device, 1)
    out.append(("sum 4096x1024", lambda: y.sum(-1).realize(), lambda: ty.sum(-1)))
    out.append(("softmax 4096x1024", lambda: y.softmax(-1).realize(), lambda: ty.softmax(-1)))
    w, b = fg.ones(1024, device=device), fg.zeros(1024, device=device)
    out.append(("layer_norm 4096x1024", lambda: nn.functional.layer_norm(y, (1024,), w, b).realize(),
                lambda: torch.nn.functional.layer_norm(ty, (1024,))))
    for n in (256, 1024, 2048):
        a, ta = _pair((n, n), device, 2)
        c, tc = _pair((n, n), device, 3)
        out.append((f"matmul {n}", lambda a=a, c=c: (a @ c).realize(), lambda ta=ta, tc=tc: ta @ tc))
    img, timg = _pair((32, 32, 56, 56), device, 4)
    k, tk = _pair((64, 32, 3, 3), device, 5)
    out.append(("conv2d 32x32x56x56 3x3->64", lambda: nn.functional.conv2d(img, k, padding=1).realize(),
                lambda: torch.nn.functional.conv2d(timg, tk, padding=1)))
    return out


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'op':30s} {'fusegrad ms':>12s} {'torch ms':>10s} {'ratio':>7s}")
    with torch.no_grad():
        for name, f, t in cases(args.device):
            tf, tt = _median_time(f, args.repeat), _median_time(t, args.repeat)
            print(f"{name:30s} {tf * 1e3:12.3f} {tt * 1e3:10.3f} {tf / tt:7.2f}")


if __name__ == "__main__":
    main()
