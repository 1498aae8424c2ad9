"""Training steps per second: fusegrad (eager and `fg.jit`), torch eager and JAX `jit`, in one process.

Run: python bench/train.py [--workload mlp1,mlp64,mlp256,lenet64,gpt16] [--quick] [--threads N] [--device cpu]

Every framework gets the same thread count, the same initial weights (the torch model's) and the same
pre-generated batches (bench/train_models.py; tests/test_bench_train.py checks that their losses agree step by
step). Prints the median ms per step over at least 200 steps and 3 s (--quick: 20 steps and 0.3 s), the ratios
fusegrad / torch and fusegrad / JAX (below 1.0: fusegrad is faster), then the first steps of fusegrad in a fresh
process with an empty kernel cache (cold) and with the cache that run filled (warm); the first-step times in the
notes are in-process ones, where fusegrad's jit reuses kernels its eager column compiled. The jit column is skipped
while `fg.jit` does not exist, the JAX column while `jax` is not installed (`pip install jax`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.append(str(BENCH.parent))  # fusegrad from this checkout when it is not installed
sys.path.insert(0, str(BENCH))
from openmp_wait import configure_openmp_wait  # noqa: E402 - bench/ is not a package

IMPLS = ("fusegrad", "fusegrad-jit", "torch", "jax")
# issue 4's targets: fusegrad-jit / torch eager, fusegrad-jit / jax jit
TARGETS = {"mlp1": (0.2, 1.0), "mlp64": (0.5, 1.0), "mlp256": (0.7, 1.0), "lenet64": (0.8, 1.2), "gpt16": (0.8, 1.2)}


@dataclass(frozen=True)
class Budget:
    """How long to time each column: at least `steps` steps and `seconds`, but stop after `cap_seconds` (with at
    least `min_steps`) so a slow column cannot stall the run."""

    steps: int
    seconds: float
    cap_seconds: float
    min_steps: int = 5
    warmup: int = 3  # untimed steps after the first: the jit runs, captures, then replays from its third call


FULL, QUICK = Budget(200, 3.0, 60.0), Budget(20, 0.3, 10.0)


@dataclass
class Timing:
    """One column of one workload: the first step, the median of the timed steps, how many were timed."""

    first_ms: float = float("nan")
    median_ms: float = float("nan")
    steps: int = 0
    first_loss: float = float("nan")
    error: str = ""
    notes: list[str] = field(default_factory=list)


def configure_threads(threads: int) -> str:
    """Give every framework `threads` threads; must run before numpy, torch, fusegrad or jax are imported.

    OpenMP (fusegrad's kernels, torch) and OpenBLAS (fusegrad's matmul through NumPy) read environment variables.
    Both OpenMP runtimes in the process (torch's and fusegrad's) get the short spin fusegrad's cpu device sets
    (`openmp_wait.py`).
    XLA's CPU client sizes its pool from the CPUs this process may run on, and in current jaxlib XLA_FLAGS do not
    shrink it, so with fewer threads than CPUs the process is pinned to the first `threads` CPUs (for everyone).
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    how = [f"OMP/OPENBLAS/MKL_NUM_THREADS={threads}", configure_openmp_wait(),
           f"torch.set_num_threads({threads})"]
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])
        how.append(f"process pinned to CPUs {cpus[:threads]} (XLA sizes its pool from them)")
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
        how.append("XLA_FLAGS single-threaded Eigen")
    return ", ".join(how)


class Column:
    """The timing of one implementation on one workload, filled in block by block."""

    def __init__(self, step: Callable[[int], float]):
        self.step, self.times, self.next_batch = step, [], 0
        self.timing = Timing()

    def warm_up(self, budget: Budget) -> None:
        """Time the first step alone (it compiles), then run a few untimed ones."""
        start = time.perf_counter()
        self.timing.first_loss = self.step(0)
        self.timing.first_ms = (time.perf_counter() - start) * 1e3
        for i in range(1, 1 + budget.warmup):
            self.step(i)
        self.next_batch = 1 + budget.warmup

    def run_block(self, seconds: float) -> None:
        """Time single steps for about `seconds` (at least one)."""
        begin = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            self.step(self.next_batch)
            t1 = time.perf_counter()
            self.times.append(t1 - t0)
            self.next_batch += 1
            if t1 - begin >= seconds:
                return

    def done(self, budget: Budget) -> bool:
        """Enough steps and seconds timed, or the time cap reached (noted)."""
        n, total = len(self.times), sum(self.times)
        if n >= budget.steps and total >= budget.seconds:
            return True
        if total >= budget.cap_seconds and n >= budget.min_steps:
            self.timing.notes.append(f"timed only {n} steps ({budget.cap_seconds:.0f} s cap)")
            return True
        return False

    def finish(self) -> Timing:
        """The Timing with the median of the timed steps."""
        self.timing.median_ms, self.timing.steps = statistics.median(self.times) * 1e3, len(self.times)
        return self.timing


def _error(e: Exception) -> str:
    if os.environ.get("BENCH_TRACEBACK"):
        traceback.print_exc()
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"


def time_interleaved(columns: dict[str, Column], budget: Budget, block_seconds: float = 0.05) -> dict[str, Timing]:
    """Time every column: each warmed up, then timed in short alternating blocks until each has its budget, so
    load from other processes on the machine falls on every column alike; the median per column is robust to the
    odd garbage collection or scheduler hiccup. A column that raises keeps the error instead of a time."""
    running = []
    for column in columns.values():
        try:
            column.warm_up(budget)
            running.append(column)
        except Exception as e:  # one broken column must not hide the others
            column.timing.error = _error(e)
    while running:
        for column in list(running):
            try:
                column.run_block(block_seconds)
            except Exception as e:
                column.timing.error, column.times = _error(e), []
                running.remove(column)
        running = [c for c in running if not c.done(budget)]
    return {name: column.finish() if column.times else column.timing for name, column in columns.items()}


def trainer_for(impl: str, workload: Any, weights: dict, batches: list, device: str) -> Any:
    """A fresh Trainer of one implementation, from the given weights."""
    import train_models as tm
    makers = {
        "fusegrad": lambda: tm.fusegrad_trainer(workload, weights, batches, device),
        "fusegrad-jit": lambda: tm.fusegrad_trainer(workload, weights, batches, device, jit=True),
        "torch": lambda: tm.torch_trainer(workload, weights, batches, device),
        "jax": lambda: tm.jax_trainer(workload, weights, batches),
    }
    return makers[impl]()


def skip_reason(impl: str, device: str) -> str | None:
    """Why a column cannot run here, or None."""
    import train_models as tm
    if impl == "fusegrad-jit" and not hasattr(tm.fg, "jit"):
        return "fg.jit does not exist yet"
    if impl == "jax" and tm.jax is None:
        return "jax is not installed (pip install jax)"
    if impl == "jax" and device != "cpu":
        return f"the JAX column runs on cpu only, not {device}"
    return None


def run_workload(name: str, budget: Budget, device: str, batch_count: int = 8) -> dict[str, Timing]:
    """Every available implementation on one workload, each from the same weights and batches."""
    import train_models as tm
    workload = tm.WORKLOADS[name]
    weights, batches = tm.initial_weights(workload), tm.make_batches(workload, batch_count)
    results: dict[str, Timing] = {}
    columns: dict[str, Column] = {}
    for impl in IMPLS:
        reason = skip_reason(impl, device)
        if reason:
            results[impl] = Timing(error=f"skipped: {reason}")
            continue
        try:
            columns[impl] = Column(trainer_for(impl, workload, weights, batches, device).step)
        except Exception as e:
            results[impl] = Timing(error=_error(e))
    results.update(time_interleaved(columns, budget))
    results = {impl: results[impl] for impl in IMPLS}
    reference = results["torch"].first_loss
    for r in results.values():
        if r.first_loss == r.first_loss and abs(r.first_loss - reference) > 1e-3 * max(1.0, abs(reference)):
            r.notes.append(f"first loss {r.first_loss:.6f} != torch's {reference:.6f}: not the same work")
    return results


def _ms(t: Timing) -> str:
    return f"{t.median_ms:.3f}" if t.steps else "-"


def _ratio(a: Timing, b: Timing) -> str:
    return f"{a.median_ms / b.median_ms:.2f}" if a.steps and b.steps else "-"


HEADER = (f"{'workload':9s} {'fg eager ms':>12s} {'fg jit ms':>10s} {'torch ms':>9s} {'jax ms':>8s} "
          f"{'jit/torch':>9s} {'jit/jax':>8s} {'eager/torch':>11s}  target jit/torch, jit/jax")


def format_row(name: str, r: dict[str, Timing]) -> str:
    """One table row: the four medians, the three ratios and the issue's targets."""
    eager, jit, torch_, jax_ = (r[i] for i in IMPLS)
    to_torch, to_jax = TARGETS.get(name, (float("nan"), float("nan")))
    return (f"{name:9s} {_ms(eager):>12s} {_ms(jit):>10s} {_ms(torch_):>9s} {_ms(jax_):>8s} "
            f"{_ratio(jit, torch_):>9s} {_ratio(jit, jax_):>8s} {_ratio(eager, torch_):>11s}  "
            f"<= {to_torch}, <= {to_jax}")


# ---- first steps in a fresh process, cold and warm kernel cache ----

FIRST_STEPS = 3  # the jit's first call runs eagerly, the second captures, the third is the first replay


def first_steps(spec: str, device: str) -> dict[str, Any]:
    """In this (fresh) process: the times of the first few steps of `impl` on `workload` ("workload:impl")."""
    import train_models as tm
    name, impl = spec.split(":")
    workload = tm.WORKLOADS[name]
    trainer = trainer_for(impl, workload, tm.initial_weights(workload), tm.make_batches(workload, 2), device)
    times = []
    for i in range(FIRST_STEPS):
        start = time.perf_counter()
        trainer.step(i)
        times.append((time.perf_counter() - start) * 1e3)
    return {"ms": times}


def measure_first_steps(name: str, impl: str, threads: int, device: str) -> str:
    """Run `first_steps` in two fresh processes sharing a new, empty XDG_CACHE_HOME: cold, then warm."""
    cells = []
    with tempfile.TemporaryDirectory(prefix="fusegrad-bench-cache-") as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache, PYTHONPATH=os.pathsep.join(
            [str(BENCH.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
        for _ in ("cold", "warm"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--first-steps", f"{name}:{impl}",
                   "--threads", str(threads), "--device", device]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
                return f"error: {lines[-1][:200]}"
            cells.append(" ".join(f"{t:8.1f}" for t in json.loads(proc.stdout.strip().splitlines()[-1])["ms"]))
    return "   ".join(cells)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mlp1,mlp64,mlp256,lenet64,gpt16",
                        help="comma-separated: mlp1, mlp64, mlp256, lenet64, gpt16")
    parser.add_argument("--quick", action="store_true", help="time 20 steps / 0.3 s per column instead of 200 / 3 s")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--device", default="cpu", help="fusegrad's and torch's device")
    parser.add_argument("--first-steps-for", default=None,
                        help="comma-separated workloads whose first steps are timed cold and warm, 'all' (the "
                             "selected ones) or 'none' (default: mlp64 when selected, else the first selected)")
    parser.add_argument("--first-steps", default=None, help=argparse.SUPPRESS)  # internal: the fresh-process run
    args = parser.parse_args()
    how = configure_threads(args.threads)
    import torch  # after configure_threads: thread pools read the environment at import
    torch.set_num_threads(args.threads)
    if args.first_steps:
        print(json.dumps(first_steps(args.first_steps, args.device)))
        return
    import train_models as tm
    names = [n.strip() for n in args.workload.split(",") if n.strip()]
    unknown = [n for n in names if n not in tm.WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(tm.WORKLOADS)}")
    print(f"threads {args.threads}: {how}; device {args.device}; torch {torch.__version__}"
          + (f", jax {tm.jax.__version__}" if tm.jax is not None else ", jax not installed"))
    budget = QUICK if args.quick else FULL
    print(f"ms/step: median over >= {budget.steps} steps and >= {budget.seconds} s (cap {budget.cap_seconds:.0f} s)"
          f"; ratios below 1.0 mean fusegrad is faster")
    print(HEADER)
    notes = []
    for name in names:
        results = run_workload(name, budget, args.device)
        print(format_row(name, results), flush=True)
        for impl, r in results.items():
            notes += [f"  {name} {impl}: {n}" for n in ([r.error] if r.error else []) + r.notes]
            if r.steps:
                notes.append(f"  {name} {impl}: first step {r.first_ms:.1f} ms, {r.steps} steps timed")
    print("notes:\n" + "\n".join(notes))
    chosen = args.first_steps_for or ("mlp64" if "mlp64" in names else names[0])
    chosen = ",".join(names) if chosen == "all" else chosen
    if chosen == "none":
        return
    print(f"first {FIRST_STEPS} steps in a fresh process, ms (cold: empty kernel cache; warm: the cache it filled)")
    print(f"{'workload':9s} {'impl':13s} {'cold':>26s}   {'warm':>26s}")
    for name in chosen.split(","):
        for impl in ("fusegrad", "fusegrad-jit"):
            reason = skip_reason(impl, args.device)
            cells = f"skipped: {reason}" if reason else measure_first_steps(name, impl, args.threads, args.device)
            print(f"{name:9s} {impl:13s} {cells}", flush=True)


if __name__ == "__main__":
    main()
