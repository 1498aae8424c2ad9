"""fusegrad vs PyTorch on single ops, side by side in one process with the same thread count.

Run: python bench/ops.py [--device cpu] [--repeat 20] [--only conv] [--threads N] [--clock wall|cpu]
Prints the median time of each and the ratio fusegrad / torch (below 1.0: fusegrad is faster). fusegrad's time is
what a user pays per call in eager mode: building the graph, scheduling, launching (compiled kernels are cached
after the warm-up call) and computing. The two are timed in alternation, so a busy machine slows both alike; the
`min` column is the ratio of the fastest calls, the least disturbed by other processes. On a shared machine,
`--threads 1 --clock cpu` compares the work done (process CPU time on one thread), which other processes barely
disturb.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# torch and fusegrad each load an OpenMP runtime: threads of one that spin after their work hold the cores the
# other's next call needs (a stall of a scheduler tick, 4 ms), so both wait passively, as fusegrad's own do
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
if "--threads" in sys.argv:  # OpenMP and OpenBLAS read their thread counts once, when they load
    _threads = sys.argv[sys.argv.index("--threads") + 1]
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = _threads

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parent.parent))  # fusegrad from this checkout when it is not installed

import fusegrad as fg  # noqa: E402
from fusegrad import nn  # noqa: E402

Case = tuple[str, Callable[[], object], Callable[[], object]]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _timed(fn: Callable[[], object]) -> float:
    start = _clock()
    fn()
    return _clock() - start


def _pair(shape: tuple[int, ...], device: str, seed: int = 0) -> tuple[fg.Tensor, torch.Tensor]:
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return fg.tensor(data, device=device).realize(), torch.from_numpy(data.copy())


def _conv_cases(name: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], padding: int, device: str) -> list[Case]:
    """Forward alone, and forward + backward (the input and weight gradients of a given output gradient)."""
    img, timg = _pair(x_shape, device, 4)
    k, tk = _pair(w_shape, device, 5)
    out_shape = tuple(torch.nn.functional.conv2d(timg, tk, padding=padding).shape)
    gy, tgy = _pair(out_shape, device, 6)
    gimg, gk = img.detach().requires_grad_(), k.detach().requires_grad_()
    tgimg, tgk = timg.clone().requires_grad_(), tk.clone().requires_grad_()

    def fg_train() -> None:
        gimg.grad = gk.grad = None
        y = nn.functional.conv2d(gimg, gk, padding=padding)
        y.backward(gy)
        y.realize(gimg.grad, gk.grad)

    def torch_train() -> None:
        tgimg.grad = tgk.grad = None
        with torch.enable_grad():
            torch.nn.functional.conv2d(tgimg, tgk, padding=padding).backward(tgy)

    return [(name, lambda: nn.functional.conv2d(img, k, padding=padding).realize(),
             lambda: torch.nn.functional.conv2d(timg, tk, padding=padding)),
            (name + " fwd+bwd", fg_train, torch_train)]


def cases(device: str) -> list[Case]:
    """(name, fusegrad call, torch call) for every benchmarked op."""
    out: list[Case] = []
    x, tx = _pair((4 * 1024 * 1024,), device)
    out.append(("gelu 4M", lambda: x.gelu().realize(), lambda: torch.nn.functional.gelu(tx)))
    y, ty = _pair((4096, 1024), device, 1)
    out.append(("sum 4096x1024", lambda: y.sum(-1).realize(), lambda: ty.sum(-1)))
    out.append(("sum 4096x1024 dim 0", lambda: y.sum(0).realize(), lambda: ty.sum(0)))
    out.append(("softmax 4096x1024", lambda: y.softmax(-1).realize(), lambda: ty.softmax(-1)))
    w, b = fg.ones(1024, device=device), fg.zeros(1024, device=device)
    out.append(("layer_norm 4096x1024", lambda: nn.functional.layer_norm(y, (1024,), w, b).realize(),
                lambda: torch.nn.functional.layer_norm(ty, (1024,))))
    for n in (256, 1024, 2048):
        a, ta = _pair((n, n), device, 2)
        c, tc = _pair((n, n), device, 3)
        out.append((f"matmul {n}", lambda a=a, c=c: (a @ c).realize(), lambda ta=ta, tc=tc: ta @ tc))
    out += _conv_cases("conv2d 32x32x56x56 3x3->64", (32, 32, 56, 56), (64, 32, 3, 3), 1, device)
    out += _conv_cases("conv2d 64x6x14x14 5x5->16", (64, 6, 14, 14), (16, 6, 5, 5), 0, device)  # LeNet-5's second
    return out


def measure(f: Callable[[], object], t: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """Times of `repeat` calls of each, alternating (after one warm-up call each, which compiles and caches)."""
    f()
    t()
    tf, tt = [], []
    for _ in range(repeat):
        tf.append(_timed(f))
        tt.append(_timed(t))
    return tf, tt


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--only", default="", help="run the cases whose name contains this text")
    parser.add_argument("--threads", type=int, default=0, help="threads for both (default: torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    global _clock
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.clock} clock")
    print(f"{'op':36s} {'fusegrad ms':>12s} {'torch ms':>10s} {'ratio':>7s} {'min':>6s}")
    with torch.no_grad():
        for name, f, t in cases(args.device):
            if args.only not in name:
                continue
            tf, tt = measure(f, t, args.repeat)
            mf, mt = statistics.median(tf), statistics.median(tt)
            print(f"{name:36s} {mf * 1e3:12.3f} {mt * 1e3:10.3f} {mf / mt:7.2f} {min(tf) / min(tt):6.2f}", flush=True)


if __name__ == "__main__":
    main()
