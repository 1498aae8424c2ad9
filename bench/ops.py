"""fusegrad vs PyTorch on single ops, side by side in one process with the same thread count.

Run: python bench/ops.py [--device cpu|cuda|opencl] [--repeat 20] [--only conv] [--threads N] [--clock wall|cpu]
Prints the median time of each and the ratio fusegrad / torch (below 1.0: fusegrad is faster); with `--device cuda`
torch runs on the GPU too, and every timed call ends when its device has finished. fusegrad's time is
what a user pays per call in eager mode: building the graph, scheduling, launching (compiled kernels are cached
after the warm-up calls) and computing. The `jit` column is the same op as an `fg.jit` function (replayed from its
third call: no graph building or scheduling in the loop) over torch's time. All three are timed in alternation, so
a busy machine slows them alike; the `min` column is the eager ratio of the fastest calls, the least disturbed by
other processes. On a shared machine, `--threads 1 --clock cpu` compares the work done (process CPU time on one
thread), which other processes barely disturb.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
from openmp_wait import configure_openmp_wait  # noqa: E402

WAIT = configure_openmp_wait()  # torch's OpenMP threads wait as fusegrad's do
if "--threads" in sys.argv:  # OpenMP and OpenBLAS read their thread counts once, when they load
    _threads = sys.argv[sys.argv.index("--threads") + 1]
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = _threads

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parent.parent))  # fusegrad from this checkout when it is not installed

import fusegrad as fg  # noqa: E402
from fusegrad import nn  # noqa: E402

# (name, the op as a function of fusegrad tensors, its inputs, the torch call)
Case = tuple[str, Callable[..., object], tuple, Callable[[], object]]
MEMORY_BOUND = ("gelu", "sum", "softmax", "layer_norm")  # cases whose speed limit is memory bandwidth


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _timed(fn: Callable[[], object]) -> float:
    start = _clock()
    fn()
    return _clock() - start


def torch_device(device: str) -> str:
    """Where torch runs beside fusegrad's `device`: the GPU for `cuda`, else the CPU (torch has no OpenCL)."""
    return "cuda" if device == "cuda" else "cpu"


def _pair(shape: tuple[int, ...], device: str, seed: int = 0) -> tuple[fg.Tensor, torch.Tensor]:
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return fg.tensor(data, device=device).realize(), torch.from_numpy(data.copy()).to(torch_device(device))


def synchronized(fn: Callable[[], object], wait: Callable[[], None]) -> Callable[[], None]:
    """`fn`, then wait for the device: GPU work runs asynchronously, so its time ends when the device is done."""
    def call() -> None:
        fn()
        wait()
    return call


def _conv_cases(name: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], padding: int, device: str) -> list[Case]:
    """Forward alone, and forward + backward (the input and weight gradients of a given output gradient)."""
    img, timg = _pair(x_shape, device, 4)
    k, tk = _pair(w_shape, device, 5)
    out_shape = tuple(torch.nn.functional.conv2d(timg, tk, padding=padding).shape)
    gy, tgy = _pair(out_shape, device, 6)
    tgimg, tgk = timg.clone().requires_grad_(), tk.clone().requires_grad_()

    def forward(x: fg.Tensor, w: fg.Tensor) -> fg.Tensor:
        return nn.functional.conv2d(x, w, padding=padding)

    def gradients(x: fg.Tensor, w: fg.Tensor, g: fg.Tensor) -> list[fg.Tensor]:
        x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
        return fg.grad(nn.functional.conv2d(x, w, padding=padding), [x, w], g)

    def torch_train() -> None:
        tgimg.grad = tgk.grad = None
        with torch.enable_grad():
            torch.nn.functional.conv2d(tgimg, tgk, padding=padding).backward(tgy)

    return [(name, forward, (img, k), lambda: torch.nn.functional.conv2d(timg, tk, padding=padding)),
            (name + " fwd+bwd", gradients, (img, k, gy), torch_train)]


def cases(device: str) -> list[Case]:
    """(name, fusegrad function, its inputs, torch call) for every benchmarked op."""
    out: list[Case] = []
    x, tx = _pair((4 * 1024 * 1024,), device)
    out.append(("gelu 4M", lambda t: t.gelu(), (x,), lambda: torch.nn.functional.gelu(tx)))
    y, ty = _pair((4096, 1024), device, 1)
    out.append(("sum 4096x1024", lambda t: t.sum(-1), (y,), lambda: ty.sum(-1)))
    out.append(("sum 4096x1024 dim 0", lambda t: t.sum(0), (y,), lambda: ty.sum(0)))
    out.append(("softmax 4096x1024", lambda t: t.softmax(-1), (y,), lambda: ty.softmax(-1)))
    w, b = fg.ones(1024, device=device), fg.zeros(1024, device=device)
    out.append(("layer_norm 4096x1024", lambda t: nn.functional.layer_norm(t, (1024,), w, b), (y,),
                lambda: torch.nn.functional.layer_norm(ty, (1024,))))
    for n in (256, 1024, 2048):
        a, ta = _pair((n, n), device, 2)
        c, tc = _pair((n, n), device, 3)
        out.append((f"matmul {n}", lambda p, q: p @ q, (a, c), lambda ta=ta, tc=tc: ta @ tc))
    out += _conv_cases("conv2d 32x32x56x56 3x3->64", (32, 32, 56, 56), (64, 32, 3, 3), 1, device)
    out += _conv_cases("conv2d 64x6x14x14 5x5->16", (64, 6, 14, 14), (16, 6, 5, 5), 0, device)  # LeNet-5's second
    return out


def _realized(result: fg.Tensor | list[fg.Tensor]) -> None:
    results = result if isinstance(result, (list, tuple)) else [result]
    results[0].realize(*results[1:])


def calls(case: Case, device: str) -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]]:
    """(eager fusegrad, jitted fusegrad, torch) calls of one case, each ending when its device has finished."""
    _, fn, inputs, torch_call = case
    jitted = fg.jit(fn)
    done = (lambda: fg.synchronize(device))
    torch_done = torch.cuda.synchronize if torch_device(device) == "cuda" else (lambda: None)
    return (synchronized(lambda: _realized(fn(*inputs)), done), synchronized(lambda: _realized(jitted(*inputs)), done),
            synchronized(torch_call, torch_done))


def moved_bytes(case: Case) -> int | None:
    """Bytes a memory-bound op must read and write at least (its inputs once, its output once), else None."""
    name, fn, inputs, _ = case
    if not name.startswith(MEMORY_BOUND):
        return None
    out = fn(*inputs)
    return sum(t.numel() * t.element_size() for t in (*inputs, out))


def measure(fns: tuple[Callable[[], object], ...], repeat: int) -> list[list[float]]:
    """Times of `repeat` calls of each, in alternation (after three warm-up calls each: compiling, the jit's
    capture)."""
    for _ in range(3):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for f, t in zip(fns, times):
            t.append(_timed(f))
    return times


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
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {WAIT}, {args.clock} clock")
    print(f"torch on {torch_device(args.device)}; GB/s: the least bytes a memory-bound op moves (inputs and output "
          "once) over the jit's median time, and over torch's")
    print(f"{'op':36s} {'fusegrad ms':>12s} {'jit ms':>8s} {'torch ms':>10s} {'ratio':>7s} {'min':>6s} {'jit':>6s} "
          f"{'jit GB/s':>9s} {'torch GB/s':>10s}")
    with torch.no_grad():
        for case in cases(args.device):
            if args.only not in case[0]:
                continue
            tf, tj, tt = measure(calls(case, args.device), args.repeat)
            mf, mj, mt = (statistics.median(t) for t in (tf, tj, tt))
            moved = moved_bytes(case)
            rates = f"{moved / mj / 1e9:9.1f} {moved / mt / 1e9:10.1f}" if moved else f"{'-':>9s} {'-':>10s}"
            print(f"{case[0]:36s} {mf * 1e3:12.3f} {mj * 1e3:8.3f} {mt * 1e3:10.3f} {mf / mt:7.2f} "
                  f"{min(tf) / min(tt):6.2f} {mj / mt:6.2f} {rates}", flush=True)


if __name__ == "__main__":
    main()
