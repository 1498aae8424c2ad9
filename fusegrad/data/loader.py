"""`DataLoader` and `default_collate`: batches of samples from a map-style dataset, with PyTorch's semantics."""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

import fusegrad as fg

from .dataset import Generator, make_rng


def default_collate(batch: Sequence[Any]) -> Any:
    """Merge a list of samples into a batch, like torch's default_collate.

    Tensors are stacked along a new dim 0; NumPy arrays and NumPy scalars become one tensor of their dtype; Python
    bools, ints and floats become bool, int64 and float64 tensors; strings and bytes stay a list; dicts, named
    tuples, tuples and lists are collated field by field (a tuple of samples gives a tuple of batches, where torch
    gives a list; a named tuple stays that named tuple).
    """
    if not batch:
        raise ValueError("default_collate: the batch is empty")
    elem = batch[0]
    if isinstance(elem, fg.Tensor):
        return fg.stack(list(batch))
    if isinstance(elem, (np.ndarray, np.generic)) and not isinstance(elem, (np.str_, np.bytes_)):
        if np.asarray(elem).dtype.kind not in "biuf":
            raise TypeError(f"default_collate: NumPy arrays of dtype {np.asarray(elem).dtype} cannot become tensors")
        return fg.tensor(np.stack([np.asarray(b) for b in batch]))
    if isinstance(elem, bool):  # before int: bool is an int subclass
        return fg.tensor(list(batch), dtype=fg.bool_)
    if isinstance(elem, int):
        return fg.tensor(list(batch), dtype=fg.int64)
    if isinstance(elem, float):
        return fg.tensor(list(batch), dtype=fg.float64)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, Mapping):
        return {key: default_collate([sample[key] for sample in batch]) for key in elem}
    if isinstance(elem, Sequence):
        size = len(elem)
        if any(len(sample) != size for sample in batch):
            raise ValueError(f"default_collate: every sample needs the same length, got {[len(s) for s in batch]}")
        fields = [default_collate(list(column)) for column in zip(*batch)]
        if isinstance(elem, tuple):
            return type(elem)(*fields) if hasattr(elem, "_fields") else tuple(fields)
        return fields
    raise TypeError(f"default_collate: samples must hold tensors, NumPy arrays, numbers, strings, dicts or "
                    f"sequences; found {type(elem).__name__}")


class DataLoader:
    """Iterate over `dataset` in batches of `batch_size` samples, like torch.utils.data.DataLoader.

    - `shuffle=True` draws a new permutation every epoch from a NumPy Generator: `generator` (a Generator, used as
      is, or an int seed); with `generator=None` each epoch's permutation is seeded from fusegrad's random stream,
      so `fg.manual_seed` makes it reproducible.
    - `drop_last=True` drops the last batch when it is smaller than `batch_size`.
    - `sampler`: an iterable of sample indices (with `len`) that gives each epoch's order instead, e.g. a
      `DistributedSampler`; it excludes `shuffle`.
    - `collate_fn` merges a list of samples into a batch (default `default_collate`). Without one, a dataset with
      a `get_batch(indices)` method (TensorDataset, MNIST, Subset of those) makes each batch with one fancy index.
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 collate_fn: Callable[[list[Any]], Any] | None = None, generator: Generator = None,
                 sampler: Any = None) -> None:  # noqa: ANN401 - any iterable of indices
        if isinstance(batch_size, bool) or operator.index(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = operator.index(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        # an int seed becomes one Generator now, so successive epochs continue its stream (and so differ)
        self.generator = None if generator is None else make_rng(generator)

    def __len__(self) -> int:
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> np.ndarray:
        """The sample indices of one epoch."""
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), np.int64)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return make_rng(self.generator).permutation(n).astype(np.int64)

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        fetch = getattr(self.dataset, "get_batch", None) if self.collate_fn is None else None
        collate = self.collate_fn or default_collate
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            indices = order[start:start + self.batch_size]
            if fetch is not None:
                yield fetch(indices)
            else:
                yield collate([self.dataset[int(i)] for i in indices])

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last})")
