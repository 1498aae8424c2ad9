"""The MNIST MLP trained data-parallel over MPI: each rank takes its share of every global batch, gradients are
averaged across ranks, and every rank ends with the same weights; rank 0 reports accuracy and speed.

Run: mpiexec -n 2 python -m fusegrad.examples.mnist_ddp [--epochs 1] [--batch-size 64]   (the global batch)
"""
from __future__ import annotations

import argparse
import time

import fusegrad as fg
import fusegrad.distributed as dist
from fusegrad import nn, optim
from fusegrad.data import DataLoader, DistributedSampler
from fusegrad.examples.mnist_mlp import accuracy, as_tensors, make_model


def train(epochs: int = 1, batch_size: int = 64, lr: float = 0.1, seed: int = 0) -> float:
    """SGD with momentum on every rank's share; returns the test accuracy (the same on every rank)."""
    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    if batch_size % size:
        raise ValueError(f"the global batch of {batch_size} does not split over {size} ranks")
    fg.manual_seed(seed)
    train_set, test_set = as_tensors("train"), as_tensors("test")
    model = nn.parallel.DistributedDataParallel(make_model())
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sampler = DistributedSampler(train_set, seed=seed)
    loader = DataLoader(train_set, batch_size=batch_size // size, sampler=sampler, drop_last=True)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        start, steps = time.perf_counter(), 0
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()  # gradients are averaged over the ranks here
            opt.step()
            steps += 1
        elapsed = time.perf_counter() - start
        acc = accuracy(model.module, test_set)
        if rank == 0:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}  test accuracy {100 * acc:.2f}%  "
                  f"{steps / elapsed:.1f} steps/s ({steps * batch_size / elapsed:.0f} samples/s) on {size} ranks")
    return acc


def main() -> None:
    """Command-line entry point (start it with mpiexec)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch, split over the ranks")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train(args.epochs, args.batch_size, args.lr, args.seed)


if __name__ == "__main__":
    main()
