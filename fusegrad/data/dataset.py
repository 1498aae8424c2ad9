"""Map-style datasets: the `Dataset` protocol, `TensorDataset`, `Subset` and `random_split`, as in torch.utils.data.

A dataset may also define `get_batch(indices)`, taking a 1-D int64 NumPy array of indices and returning the batch
already collated (what `default_collate` would make of those samples). `DataLoader` uses it when no custom
`collate_fn` is given, so array-backed datasets make each batch with one fancy index instead of a Python loop.
"""
from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

import fusegrad as fg

Generator = np.random.Generator | int | None


def make_rng(generator: Generator) -> np.random.Generator:
    """A NumPy Generator: `generator` itself, a fresh one seeded with an int, or (None) one seeded from fusegrad's
    random stream, so `fg.manual_seed(s)` makes shuffles and splits reproducible (and, as in torch, advances it)."""
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None:
        # three 24-bit draws from the counter-based stream: the seed follows fg.manual_seed like torch's global RNG
        words = fg.randint(0, 2**24, (3,)).numpy()
        return np.random.default_rng([int(w) for w in words])
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be None, an int seed or a numpy.random.Generator, got {type(generator).__name__}")


class Dataset(ABC):
    """A map-style dataset: `len(ds)` samples, `ds[i]` the i-th one (any object `collate_fn` understands)."""

    @abstractmethod
    def __getitem__(self, index: int) -> Any:
        """The sample at `index` (0 <= index < len(self); negative indices count from the end)."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of samples."""


class TensorDataset(Dataset):
    """Samples are tuples `(t[i] for t in tensors)`; every tensor must have the same size in dim 0.

    Batches are gathered straight from the tensors with one `index_select` each, on their own device, so they keep
    gradients and see in-place updates, as stacking the samples would in torch.
    """

    def __init__(self, *tensors: fg.Tensor | np.ndarray):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors: tuple[fg.Tensor, ...] = tuple(t if isinstance(t, fg.Tensor) else fg.tensor(t) for t in tensors)
        for k, t in enumerate(self.tensors):
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: tensor {k} is 0-d; every tensor needs a first (sample) dim")
        sizes = [t.shape[0] for t in self.tensors]
        if len(set(sizes)) > 1:
            shapes = ", ".join(str(t.shape) for t in self.tensors)
            raise ValueError(f"TensorDataset: all tensors need the same size in dim 0, got shapes {shapes}")

    def __getitem__(self, index: int) -> tuple[fg.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def get_batch(self, indices: np.ndarray) -> tuple[fg.Tensor, ...]:
        """The samples at `indices`, collated: one gather per tensor, computed now."""
        n = len(self)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"TensorDataset: indices must be in [-{n}, {n}), got {indices.min()}..{indices.max()}")
        indices = indices % max(n, 1)  # checked and wrapped here, so a plain gather does (4x cheaper than index_select)
        idx: dict[str, fg.Tensor] = {}  # one index tensor per device
        out = []
        for t in self.tensors:
            if t.device not in idx:
                idx[t.device] = fg.tensor(indices, device=t.device)
            rows = idx[t.device].reshape((-1,) + (1,) * (t.ndim - 1)).expand((len(indices),) + t.shape[1:])
            out.append(t.gather(0, rows))
        fg.realize(*out)
        return tuple(out)

    def __repr__(self) -> str:
        return f"TensorDataset({', '.join(f'{t.dtype.name}{list(t.shape)}' for t in self.tensors)})"


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int] | np.ndarray):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[operator.index(index)])]

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: np.ndarray) -> Any:
        """The samples at `indices`, collated (through the parent's `get_batch` when it has one)."""
        picked = self.indices[np.asarray(indices, dtype=np.int64)]
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(picked)
        from .loader import default_collate
        return default_collate([self.dataset[int(i)] for i in picked])


def random_split(dataset: Any, lengths: Sequence[int | float], generator: Generator = None) -> list[Subset]:
    """Split `dataset` into non-overlapping random subsets of the given lengths (ints summing to len(dataset), or
    fractions summing to 1 whose leftover samples go one each to the first subsets, like torch)."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0):
        if any(x < 0 for x in lengths):
            raise ValueError(f"random_split: fractions must be non-negative, got {lengths}")
        sizes = [math.floor(n * x) for x in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
    else:
        sizes = [operator.index(x) for x in lengths]
        if any(x < 0 for x in sizes) or sum(sizes) != n:
            raise ValueError(f"random_split: lengths {lengths} must be non-negative and sum to the dataset's "
                             f"length {n} (or be fractions summing to 1)")
    perm = make_rng(generator).permutation(n)
    bounds = np.cumsum([0, *sizes])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
