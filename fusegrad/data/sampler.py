"""`DistributedSampler`: each rank's share of a dataset's indices per epoch (torch.utils.data.DistributedSampler)."""
from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import distributed as dist


class DistributedSampler:
    """Indices of `dataset` for rank `rank` of `num_replicas` (default: the process group's): one permutation per
    epoch, the same on every rank (seeded with seed + epoch: call `set_epoch` each epoch), dealt out round-robin.
    Without `drop_last` the list is padded with its first indices to a multiple of num_replicas, so every rank
    gets as many; with it, the tail that does not divide evenly is dropped."""

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None,  # noqa: ANN401
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        self.num_replicas = dist.get_world_size() if num_replicas is None else operator.index(num_replicas)
        self.rank = dist.get_rank() if rank is None else operator.index(rank)
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank {self.rank} is not in [0, {self.num_replicas})")
        self.dataset, self.shuffle, self.seed, self.drop_last = dataset, bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0

    @property
    def total_size(self) -> int:
        """How many indices the ranks get together."""
        return len(self) * self.num_replicas

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.num_replicas if self.drop_last else -(-n // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle else np.arange(n)
        if self.total_size > n:  # pad by repeating from the start (several times over for a tiny dataset)
            order = np.resize(order, self.total_size)
        order = order[:self.total_size]
        return iter(order[self.rank::self.num_replicas].tolist())

    def set_epoch(self, epoch: int) -> None:
        """Use epoch's permutation from the next iteration on (the same on every rank)."""
        self.epoch = operator.index(epoch)
