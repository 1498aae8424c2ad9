"""sort, argsort, msort and topk against torch on every device: values, indices and gradients, over 0-d, size-1,
empty and batched shapes, every dim, both orders, ties (sorting is stable), NaN and infinities, and integer and
bool dtypes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import compare

import fusegrad as fg

SHAPES = [(7,), (3, 5), (2, 3, 4), (), (1,), (4, 1), (0,), (3, 0), (1, 6)]


def _data(shape: tuple[int, ...], kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few distinct values, with NaN and infinities among them
        pool = np.array([0.5, -1.0, 2.0, np.nan, np.inf, -np.inf, 0.5], np.float32)
        return pool[rng.integers(0, len(pool), shape)]
    if kind == "int64":
        return rng.integers(-4, 5, shape).astype(np.int64)
    if kind == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.permutation(max(int(np.prod(shape)), 1))[:int(np.prod(shape))].reshape(shape).astype(np.float32) \
        * 0.25 - 3  # distinct values: the gradient goes to one element each


def _dims(shape: tuple[int, ...]) -> list[int]:
    return [-1, 0] if shape else [0, -1]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["distinct", "ties", "int64", "bool"])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_and_argsort_match_torch(device: str, shape: tuple[int, ...], kind: str, descending: bool) -> None:
    x = _data(shape, kind)
    for dim in _dims(shape):
        compare(lambda t, dim=dim: t.sort(dim, descending=descending, stable=True),
                lambda t, dim=dim: torch.sort(t, dim=dim, descending=descending, stable=True), x, device=device,
                atol=0, rtol=0)
        compare(lambda t, dim=dim: fg.argsort(t, dim, descending, True),
                lambda t, dim=dim: torch.argsort(t, dim=dim, descending=descending, stable=True), x, device=device,
                grad=False)


def test_msort_and_functional_forms(device: str) -> None:
    x = _data((4, 3), "distinct", seed=2)
    compare(lambda t: t.msort(), lambda t: torch.msort(t), x, device=device, atol=0)
    compare(lambda t: fg.sort(t, 0).values, lambda t: torch.sort(t, 0).values, x, device=device, atol=0)
    out = fg.tensor(x, device=device).sort()
    assert out.values is out[0] and out.indices is out[1] and out.indices.dtype == fg.int64


@pytest.mark.parametrize("shape", [(9,), (3, 20), (2, 5, 4), (), (1,), (6, 1)], ids=str)
@pytest.mark.parametrize("k", [0, 1, 3, 20])
@pytest.mark.parametrize("largest", [True, False])
def test_topk_matches_torch(device: str, shape: tuple[int, ...], k: int, largest: bool) -> None:
    x = _data(shape, "distinct", seed=1)
    for dim in _dims(shape):
        n = shape[dim] if shape else 1
        if k > n:
            with pytest.raises(RuntimeError, match="topk: k"):
                fg.tensor(x, device=device).topk(k, dim)
            continue
        compare(lambda t, dim=dim: t.topk(k, dim, largest), lambda t, dim=dim: torch.topk(t, k, dim, largest), x,
                device=device, atol=0, rtol=0)


def test_topk_by_maxima_orders_nan_first_and_takes_equal_values_by_index(device: str) -> None:
    """The k-maxima path (small k): NaN is the largest, equal values come in index order, -inf rows work."""
    x = fg.tensor([[1.0, float("nan"), 3.0, 3.0, -1.0, 3.0], [-np.inf] * 6], device=device)
    values, indices = x.topk(4)
    np.testing.assert_array_equal(indices.numpy(), [[1, 2, 3, 5], [0, 1, 2, 3]])
    np.testing.assert_array_equal(values.numpy(), [[np.nan, 3, 3, 3], [-np.inf] * 4])
    ints = fg.tensor([[5, -2**63, 5, 7]], device=device)
    assert ints.topk(3).indices.tolist() == [[3, 0, 2]] and ints.topk(4).values.tolist() == [[7, 5, 5, -2**63]]
    flags = fg.tensor([False, True, False, True], device=device)
    assert flags.topk(3).indices.tolist() == [1, 3, 0]


def test_topk_of_a_large_row_takes_maxima_and_its_gradient_reaches_them(device: str) -> None:
    x = np.random.default_rng(3).standard_normal((2, 5000)).astype(np.float32)
    compare(lambda t: t.topk(5), lambda t: torch.topk(t, 5), x, device=device, atol=0, rtol=0)
