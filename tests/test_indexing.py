"""Indexing against PyTorch: `x[...]` reads (values, result dim placement, gradients) and writes, plus errors."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import fusegrad as fg
from tests.helpers import assert_close, compare, randn

# An index case gets the tensor and a constructor for index tensors (fg.tensor or torch.tensor), so one lambda
# serves both libraries.
Case = Callable[[Any, Callable[..., Any]], Any]

BASIC: list[tuple[str, tuple[int, ...], Case]] = [
    ("int", (4, 5), lambda x, mk: x[1]),
    ("int_neg", (4, 5), lambda x, mk: x[-1]),
    ("int_int", (4, 5), lambda x, mk: x[2, -2]),
    ("int_1d_to_0d", (4,), lambda x, mk: x[3]),
    ("slice", (6, 5), lambda x, mk: x[1:4]),
    ("slice_step", (7, 5), lambda x, mk: x[::2, 1::3]),
    ("slice_neg_bounds", (7, 5), lambda x, mk: x[-5:-1:2, :-2]),
    ("slice_beyond", (7, 5), lambda x, mk: x[2:100, -100:3]),
    ("slice_empty", (7, 5), lambda x, mk: x[5:2]),
    ("slice_empty_beyond", (7, 5), lambda x, mk: x[10:, 1:3]),
    ("slice_step_beyond", (7, 5), lambda x, mk: x[1:50:4]),
    ("none", (3, 4), lambda x, mk: x[None]),
    ("none_mid", (3, 4), lambda x, mk: x[:, None, :, None]),
    ("none_0d", (), lambda x, mk: x[None, None]),
    ("ellipsis", (2, 3, 4), lambda x, mk: x[...]),
    ("ellipsis_int", (2, 3, 4), lambda x, mk: x[..., 1]),
    ("int_ellipsis", (2, 3, 4), lambda x, mk: x[1, ...]),
    ("ellipsis_mid", (2, 3, 4, 5), lambda x, mk: x[1, ..., ::2]),
    ("ellipsis_none", (2, 3, 4), lambda x, mk: x[..., None, 0]),
    ("ellipsis_0d", (), lambda x, mk: x[...]),
    ("combo", (5, 6, 7), lambda x, mk: x[1:, None, -2, ::3]),
    ("combo_empty_dim", (0, 3), lambda x, mk: x[:, 1]),
    ("noncontig_source", (5, 6), lambda x, mk: x.T[1:4:2, -1]),
    ("index_twice", (5, 6), lambda x, mk: x[1:][::2][:, 3]),
]

ADVANCED: list[tuple[str, tuple[int, ...], Case]] = [
    ("list", (5, 3), lambda x, mk: x[[0, 2, 4]]),
    ("list_neg", (5, 3), lambda x, mk: x[[-1, 0, -5]]),
    ("list_repeat", (5, 3), lambda x, mk: x[[1, 1, 3, 1]]),
    ("tensor_1d", (5, 3), lambda x, mk: x[mk([4, 0])]),
    ("tensor_2d", (5, 3), lambda x, mk: x[mk([[0, 1], [4, -2]])]),
    ("tensor_0d", (5, 3), lambda x, mk: x[mk(2)]),
    ("tensor_empty", (5, 3), lambda x, mk: x[mk([], dtype=mk([1]).dtype)]),
    ("tensor_dim1", (3, 5), lambda x, mk: x[:, mk([4, 0, 4])]),
    ("two_broadcast", (4, 5), lambda x, mk: x[mk([[0], [3]]), mk([1, 2, 4])]),
    ("two_pairs", (4, 5), lambda x, mk: x[[0, 1, 3], [4, 4, -1]]),
    ("adjacent_middle", (2, 4, 5, 3), lambda x, mk: x[:, mk([0, 3]), mk([1, 4])]),
    ("adjacent_last", (2, 4, 5), lambda x, mk: x[:, mk([[0, 3]]), mk([1, 4])]),
    ("separated_by_slice", (4, 3, 5), lambda x, mk: x[mk([0, 3]), :, mk([1, 4])]),
    ("separated_by_none", (4, 5), lambda x, mk: x[mk([0, 3]), None, mk([1, 4])]),
    ("int_then_tensor_separated", (4, 3, 5), lambda x, mk: x[0, :, [1, 2]]),
    ("tensor_int_tensor", (4, 3, 5), lambda x, mk: x[[0, 1], 1, [1, 2]]),
    ("tensor_slice_int", (2, 3, 4, 5), lambda x, mk: x[:, [0, 1], :, 1]),
    ("int_tensor_slice_tensor", (2, 3, 4, 5), lambda x, mk: x[1, [0, 1], :, [1, 2]]),
    ("ellipsis_tensor_int", (2, 3, 4, 5), lambda x, mk: x[..., [0, 1], 1]),
    ("int_tensor_none_tensor", (2, 3, 4, 5), lambda x, mk: x[0, [0, 1], None, [1, 2]]),
    ("tensor_with_step_slice", (6, 5), lambda x, mk: x[::2, [0, 4]]),
    ("tensor_ellipsis", (3, 4, 5), lambda x, mk: x[[2, 0], ...]),
    ("noncontig_source", (4, 5), lambda x, mk: x.T[[1, 3], 2:]),
    ("int32_index", (5, 3), lambda x, mk: x[mk([3, 1], dtype=torch.int32 if mk is torch.tensor else fg.int32)]),
    ("mask_full", (3, 4), lambda x, mk: x[mk([[True, False, True, False], [False] * 4, [True] * 4])]),
    ("mask_rows", (3, 4), lambda x, mk: x[mk([True, False, True])]),
    ("mask_list", (3, 4), lambda x, mk: x[[False, True, True]]),
    ("mask_dim1", (3, 4), lambda x, mk: x[:, mk([True, False, False, True])]),
    ("mask_partial_dims", (2, 3, 4), lambda x, mk: x[mk([[True, False, True], [False, True, False]])]),
    ("mask_all_false", (3, 4), lambda x, mk: x[mk([False, False, False])]),
    ("mask_all_false_full", (3, 4), lambda x, mk: x[mk(np.zeros((3, 4), bool))]),
    ("mask_then_slice", (3, 4), lambda x, mk: x[mk([True, False, True]), 1:3]),
    ("mask_from_values", (3, 4), lambda x, mk: x[x > 0]),
    ("empty_list", (3, 4), lambda x, mk: x[[]]),
    ("bool_true", (3, 4), lambda x, mk: x[True]),
    ("bool_false", (3, 4), lambda x, mk: x[False]),
    ("bool_mid", (3, 4), lambda x, mk: x[:, True]),
    ("bool_false_ellipsis_int", (2, 3, 4), lambda x, mk: x[..., False, 0]),
    ("bool_tensor_0d", (3,), lambda x, mk: x[mk(True)]),
    ("bool_tensor_0d_false", (3,), lambda x, mk: x[mk(False)]),
]

SETITEM: list[tuple[str, tuple[int, ...], Case, Any]] = [
    ("int", (4, 5), lambda x, mk: 1, 7.0),
    ("int_neg_row_vector", (4, 5), lambda x, mk: -1, np.arange(5.0)),
    ("int_int", (4, 5), lambda x, mk: (2, -2), -3.0),
    ("slice", (6, 5), lambda x, mk: slice(1, 4), 2.0),
    ("slice_step", (7, 5), lambda x, mk: (slice(None, None, 2), slice(1, None, 3)), 9.0),
    ("slice_step_tensor_value", (7, 5), lambda x, mk: (slice(1, None, 3), slice(None, None, 2)), np.ones((2, 3))),
    ("slice_beyond", (7, 5), lambda x, mk: slice(4, 100), np.arange(5.0)),
    ("slice_empty", (7, 5), lambda x, mk: slice(5, 2), 1.0),
    ("ellipsis", (2, 3, 4), lambda x, mk: (Ellipsis, 1), np.arange(2.0)[:, None]),
    ("ellipsis_all", (2, 3), lambda x, mk: Ellipsis, 4.0),
    ("none", (2, 3), lambda x, mk: (None, 1), np.arange(3.0)),
    ("mask", (3, 4), lambda x, mk: mk(np.arange(12).reshape(3, 4) % 3 == 0), 0.5),
    ("mask_values", (3, 4), lambda x, mk: x > 0, -1.0),
    ("mask_rows", (3, 4), lambda x, mk: mk([True, False, True]), np.arange(4.0)),
    ("tensor_idx", (5, 3), lambda x, mk: mk([0, 3, -1]), 8.0),
    ("tensor_idx_values", (5, 3), lambda x, mk: mk([4, 1]), np.arange(6.0).reshape(2, 3)),
    ("two_tensor_idx", (4, 5), lambda x, mk: (mk([0, 1, 3]), mk([4, 4, -1])), np.array([1.0, 2.0, 3.0])),
    ("list_idx_dim1", (4, 5), lambda x, mk: (slice(None), [0, 2]), -2.0),
]


def _index_fns(case: Case) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    return lambda x: case(x, fg.tensor), lambda x: case(x, torch.tensor)


@pytest.mark.parametrize("name,shape,case", BASIC + ADVANCED, ids=[c[0] for c in BASIC + ADVANCED])
def test_getitem(device: str, name: str, shape: tuple[int, ...], case: Case) -> None:
    compare(*_index_fns(case), randn(*shape), device=device)


@pytest.mark.parametrize("name,shape,case", [c for c in BASIC + ADVANCED if c[0] in (
    "slice_step", "combo", "two_broadcast", "separated_by_slice", "int_then_tensor_separated", "mask_partial_dims")],
    ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("np_dtype", [np.float32, np.int64, np.int32, np.bool_])
def test_getitem_dtypes(device: str, name: str, shape: tuple[int, ...], case: Case, np_dtype: Any) -> None:
    compare(*_index_fns(case), (randn(*shape) * 4).astype(np_dtype), device=device)


def test_getitem_repeated_indices_accumulate_gradient(device: str) -> None:
    x = fg.tensor(np.arange(4.0), device=device, requires_grad=True)
    x[[0, 2, 2, 2, -4]].sum().backward()
    assert_close(x.grad, np.array([2.0, 0.0, 3.0, 0.0]))


def test_getitem_chain_of_views_gradient(device: str) -> None:
    compare(lambda x: x[1:, None][..., ::2][[0, 2], 0] * x[0, 0], None, randn(4, 5), device=device)


def test_getitem_index_from_computation(device: str) -> None:
    """A lazy (not yet computed) index tensor works like a realized one."""
    compare(lambda x: x[(x[:, 0] > 0).long()], None, randn(4, 3), device=device)
    compare(lambda x: x[x.argmax(1)], None, randn(3, 3), device=device)


@pytest.mark.parametrize("name,shape,case,value", SETITEM, ids=[c[0] for c in SETITEM])
@pytest.mark.parametrize("value_kind", ["python", "tensor"])
def test_setitem(device: str, name: str, shape: tuple[int, ...], case: Case, value: Any, value_kind: str) -> None:
    data = randn(*shape)
    f = fg.tensor(data, device=device)
    t = torch.tensor(data)
    if value_kind == "python" and isinstance(value, np.ndarray):
        fv, tv = value.tolist(), torch.tensor(value)  # torch takes only tensors or scalars as values
    elif value_kind == "tensor":
        fv, tv = fg.tensor(np.asarray(value), device=device), torch.tensor(np.asarray(value))
    else:
        fv, tv = value, value
    f[case(f, fg.tensor)] = fv
    t[case(t, torch.tensor)] = tv
    assert_close(f, t)


@pytest.mark.parametrize("np_dtype", [np.int64, np.int32, np.bool_, np.float32])
def test_setitem_dtypes(device: str, np_dtype: Any) -> None:
    data = (randn(4, 5) * 3).astype(np_dtype)
    f, t = fg.tensor(data, device=device), torch.tensor(data)
    f[1:3, ::2] = 1
    t[1:3, ::2] = 1
    f[[0, 3], 1] = fg.tensor(np.array([0, 1], dtype=np_dtype), device=device)
    t[[0, 3], 1] = torch.tensor(np.array([0, 1], dtype=np_dtype))
    assert_close(f, t)


def test_setitem_float_value_into_int_truncates(device: str) -> None:
    f, t = fg.zeros(3, dtype=fg.int64, device=device), torch.zeros(3, dtype=torch.int64)
    f[1] = 2.7
    t[1] = 2.7
    f[2] = fg.tensor(-1.9, device=device)
    t[2] = torch.tensor(-1.9)
    assert_close(f, t)


def test_setitem_keeps_earlier_reads(device: str) -> None:
    """A value read before the write keeps what it read (fusegrad rebinds instead of mutating shared memory)."""
    x = fg.tensor(np.arange(4.0), device=device)
    y = x * 1
    x[0] = 100.0
    assert_close(y, np.arange(4.0))
    assert_close(x, np.array([100.0, 1.0, 2.0, 3.0]))


def test_setitem_on_leaf_that_requires_grad_raises(device: str) -> None:
    x = fg.tensor(randn(3, 4), device=device, requires_grad=True)
    for index in (0, slice(1, 2), x.detach() > 0, [0, 2]):
        with pytest.raises(RuntimeError, match="leaf"):
            x[index] = 1.0
    with fg.no_grad():
        x[0] = 5.0
        x[[1, 2], 0] = -1.0
    want = torch.tensor(randn(3, 4))
    want[0] = 5.0
    want[[1, 2], 0] = -1.0
    assert_close(x, want)
    assert x.requires_grad and x.is_leaf


@pytest.mark.parametrize("index,value_shape", [
    ((slice(1, None), slice(None, None, 2)), (2, 1)), ((Ellipsis, 0), ()), (([0, 2], 1), (2,)),
    (([[0], [2]], [1, 3]), (1, 2)), ((slice(None), [3, 0]), (3, 1)),
])
def test_setitem_non_leaf_gradient(device: str, index: Any, value_shape: tuple[int, ...]) -> None:
    """Writing into a computed tensor: the overwritten places get no gradient, the value gets theirs."""
    def fn(x: Any, v: Any) -> Any:
        y = x * 2
        y[index] = v
        return y * x

    compare(fn, None, randn(3, 4), randn(*value_shape, seed=1), device=device)


# ---- gather, index_select, masked_fill, triu/tril, one_hot, nonzero ----

@pytest.mark.parametrize("shape,dim,index", [
    ((3, 4), 0, [[0, 1, 2, 0], [2, 2, 1, 0]]),
    ((3, 4), 1, [[3, 0], [1, 1], [0, 0]]),
    ((3, 4), -1, [[3, 0, 3, 3, 1], [1, 1, 2, 2, 2]]),
    ((3, 4), 0, [[1], [1], [1]]),
    ((3, 4), 1, [[2]]),
    ((2, 3, 4), 2, [[[0, 3], [1, 1], [2, 0]]]),
    ((2, 3, 4), 1, [[[0], [2]], [[1], [1]]]),
    ((5,), 0, [4, 4, 0, 1]),
    ((3, 4), 0, np.zeros((0, 4), np.int64)),
])
def test_gather(device: str, shape: tuple[int, ...], dim: int, index: Any) -> None:
    idx = np.asarray(index, dtype=np.int64)
    compare(lambda x, i: x.gather(dim, i), lambda x, i: torch.gather(x, dim, i), randn(*shape), idx, device=device)


def test_gather_noncontig_and_int32(device: str) -> None:
    idx = np.array([[0, 2], [1, 1], [2, 0], [0, 0]], np.int64)
    compare(lambda x, i: x.T.gather(1, i), None, randn(3, 4), idx, device=device)
    compare(lambda x, i: x.gather(0, i), None, randn(3, 2), np.array([[2, 0]], np.int32).astype(np.int64),
            device=device)


@pytest.mark.parametrize("shape,dim,index", [
    ((5, 3), 0, [4, 0, 0, -1]), ((5, 3), 1, [2, 0]), ((5, 3), -1, [1]), ((2, 3, 4), 1, [2, 2, 1]),
    ((5, 3), 0, []), ((5,), 0, [3]),
])
def test_index_select(device: str, shape: tuple[int, ...], dim: int, index: list[int]) -> None:
    idx = np.asarray(index, dtype=np.int64)
    # torch rejects negative indices in index_select; fusegrad wraps them like x[idx] does
    tidx = np.where(idx < 0, idx + shape[dim], idx)
    compare(lambda x: x.index_select(dim, fg.tensor(idx, device=device)),
            lambda x: x.index_select(dim, torch.tensor(tidx)), randn(*shape), device=device)


@pytest.mark.parametrize("shape,mask_shape,value", [((3, 4), (3, 4), 0.0), ((3, 4), (4,), -1.5),
                                                    ((3, 4), (3, 1), 2.0), ((2, 3, 4), (), 9.0), ((0, 2), (2,), 1.0)])
def test_masked_fill(device: str, shape: tuple[int, ...], mask_shape: tuple[int, ...], value: float) -> None:
    mask = randn(*mask_shape, seed=7) > 0
    compare(lambda x, m: x.masked_fill(m, value), None, randn(*shape), mask, device=device)
    compare(lambda x, m: fg.masked_fill(x, m, value), lambda x, m: torch.masked_fill(x, m, value), randn(*shape),
            mask, device=device)


def test_masked_fill_int_and_tensor_value(device: str) -> None:
    ints = np.arange(6, dtype=np.int64).reshape(2, 3)
    compare(lambda x: x.masked_fill(x > 2, -7), None, ints, device=device)
    compare(lambda x: x.masked_fill(x > 0, fg.tensor(3.0, dtype=fg.float64)),
            lambda x: x.masked_fill(x > 0, torch.tensor(3.0, dtype=torch.float64)), randn(2, 3), device=device)


@pytest.mark.parametrize("name", ["triu", "tril"])
@pytest.mark.parametrize("shape,diagonal", [((4, 4), 0), ((4, 4), 1), ((3, 5), -1), ((5, 3), 2), ((2, 3, 4), 0),
                                            ((2, 1, 3, 3), -2), ((3, 3), 5), ((3, 3), -5), ((0, 3), 0)])
def test_triu_tril(device: str, name: str, shape: tuple[int, ...], diagonal: int) -> None:
    compare(lambda x: getattr(x, name)(diagonal), None, randn(*shape), device=device)
    compare(lambda x: getattr(fg, name)(x, diagonal=diagonal), lambda x: getattr(torch, name)(x, diagonal=diagonal),
            randn(*shape), device=device)


def test_triu_of_bool_and_int_is_the_causal_mask(device: str) -> None:
    causal = fg.triu(fg.ones(4, 4, dtype=fg.bool, device=device), diagonal=1)
    assert causal.dtype == fg.bool and causal.device == device
    assert causal.tolist() == torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1).tolist()
    ints = np.arange(12, dtype=np.int64).reshape(3, 4)
    compare(lambda x: x.tril(1), None, ints, device=device)
    with pytest.raises(fg.ShapeError, match="at least 2 dims"):
        fg.ones(3).triu()
    with pytest.raises(TypeError, match="diagonal must be an int"):
        fg.ones(3, 3).tril(0.5)


@pytest.mark.parametrize("values,num_classes", [([0, 2, 1], 3), ([0, 2, 1], 5), ([0, 2, 1], -1), ([[3, 0], [1, 1]], -1),
                                                (5, 7), ([], 4)])
def test_one_hot(device: str, values: Any, num_classes: int) -> None:
    arr = np.asarray(values, dtype=np.int64)
    compare(lambda x: fg.one_hot(x, num_classes), lambda x: torch.nn.functional.one_hot(x, num_classes), arr,
            device=device)
    compare(lambda x: x.one_hot(num_classes), lambda x: torch.nn.functional.one_hot(x, num_classes), arr,
            device=device)


def test_one_hot_errors(device: str) -> None:
    with pytest.raises(TypeError):
        fg.tensor([0.5], device=device).one_hot(2)
    for values, num_classes in (([0, 3], 3), ([0, -1], 3), ([0, -1], -1), ([], -1)):
        with pytest.raises(RuntimeError):
            fg.one_hot(fg.tensor(values, dtype=fg.int64, device=device), num_classes)
        with pytest.raises(RuntimeError):
            torch.nn.functional.one_hot(torch.tensor(values, dtype=torch.int64), num_classes)


@pytest.mark.parametrize("data", [
    np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]]), np.array([0, 3, 0, 0, 7], np.int64), np.zeros((2, 3)),
    np.array([True, False, True]), np.array(2.0), np.array(0.0), np.zeros((0, 3)), np.ones((2, 1, 2), np.int32),
])
def test_nonzero(device: str, data: np.ndarray) -> None:
    compare(lambda x: x.nonzero(), None, data, device=device, grad=False)
    compare(lambda x: x.nonzero(as_tuple=True), None, data, device=device, grad=False)
    compare(lambda x: fg.nonzero(x), lambda x: torch.nonzero(x), data, device=device, grad=False)


def test_nonzero_of_lazy_value(device: str) -> None:
    compare(lambda x: (x > 0).nonzero(), None, randn(3, 4), device=device, grad=False)


# ---- dropout ----

def test_dropout_identity_cases(device: str) -> None:
    x = fg.tensor(randn(4, 5), device=device, requires_grad=True)
    assert fg.dropout(x, 0.7, training=False) is x
    assert_close(fg.dropout(x, 0.0), x)
    out = fg.dropout(x, 1.0)
    assert_close(out, np.zeros((4, 5)))
    (out * 3).sum().backward()
    assert_close(x.grad, np.zeros((4, 5)))
    with pytest.raises(ValueError):
        fg.dropout(x, 1.5)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_scale_and_gradient(device: str, p: float) -> None:
    fg.manual_seed(1234)
    data = randn(200, 250, low=1.0)  # nonzero everywhere, so a zero output means dropped
    x = fg.tensor(data, device=device, requires_grad=True)
    out = fg.dropout(x, p)
    y = out.numpy()
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(y[kept], data[kept] / (1 - p), rtol=1e-12)
    up = randn(200, 250, seed=3)
    (out * fg.tensor(up, device=device)).sum().backward()
    assert_close(x.grad, np.where(kept, up / (1 - p), 0.0), atol=1e-12)


def test_dropout_same_seed_same_mask(device: str) -> None:
    x = fg.ones(64, 64, device=device)
    fg.manual_seed(7)
    a = fg.dropout(x, 0.5).numpy()
    b = fg.dropout(x, 0.5).numpy()
    fg.manual_seed(7)
    c = fg.dropout(x, 0.5).numpy()
    assert np.array_equal(a, c)
    assert not np.array_equal(a, b)
    fg.manual_seed(8)
    assert not np.array_equal(a, fg.dropout(x, 0.5).numpy())


def test_dropout_keeps_dtype(device: str) -> None:
    x = fg.ones(8, 8, dtype=fg.float64, device=device)
    assert fg.dropout(x, 0.5).dtype == fg.float64
    assert fg.dropout(x.float(), 0.5).dtype == fg.float32


# ---- errors ----

@pytest.mark.parametrize("index,needles", [
    (3, ["3", "size 3"]), (-4, ["-4", "size 3"]), ((0, 5), ["5", "size 4"]), ((Ellipsis, -5), ["-5", "size 4"]),
    ((0, 0, 0), ["too many"]), ((Ellipsis, 0, Ellipsis), ["ellipsis"]),
])
def test_int_index_out_of_range(index: Any, needles: list[str]) -> None:
    with pytest.raises(IndexError) as err:
        fg.ones(3, 4)[index]
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("make_index", [
    lambda: [0, 3], lambda: [-4], lambda: fg.tensor([1, 5]), lambda: fg.tensor([[0], [3]]),
    lambda: fg.arange(4) * 2, lambda: fg.arange(3) - 5,
])
def test_tensor_index_out_of_range(make_index: Callable[[], Any]) -> None:
    with pytest.raises(IndexError, match="size 3"):
        fg.ones(3, 4)[make_index()].numpy()


def test_lazy_tensor_indices_out_of_range_raise_when_computed() -> None:
    """Two lazy indices flatten into one: an out-of-range one must not land on another valid element."""
    x = fg.ones(3, 4)
    y = x[fg.arange(2) * 0, fg.arange(2) + 3]
    with pytest.raises(IndexError):
        y.numpy()
    with pytest.raises(IndexError):
        x[fg.arange(2) - 4, fg.arange(2)].numpy()
    assert_close(x[fg.arange(2) - 3, fg.arange(2) - 4], np.ones(2, np.float32))


def test_gather_and_index_select_out_of_range() -> None:
    x = fg.ones(3, 4)
    with pytest.raises(IndexError, match="size 3"):
        x.gather(0, fg.tensor([[3, 0, 0, 0]])).numpy()
    with pytest.raises(IndexError, match="size 4"):
        x.index_select(1, fg.tensor([4])).numpy()


@pytest.mark.parametrize("fn,needles", [
    (lambda x: x.gather(0, fg.tensor([1, 2])), ["(2,)", "(3, 4)"]),
    (lambda x: x.gather(1, fg.zeros(4, 4, dtype=fg.int64)), ["(4, 4)", "(3, 4)"]),
    (lambda x: x.index_select(0, fg.zeros(2, 2, dtype=fg.int64)), ["(2, 2)"]),
    (lambda x: x.masked_fill(fg.ones(4, 3, dtype=fg.bool_), 0.0), ["(4, 3)", "(3, 4)"]),
    (lambda x: x[fg.tensor([0, 1]), fg.tensor([0, 1, 2])], ["(2,)", "(3,)"]),
])
def test_indexing_shape_errors(fn: Callable[[Any], Any], needles: list[str]) -> None:
    with pytest.raises(fg.ShapeError) as err:
        fn(fg.ones(3, 4))
    for needle in needles:
        assert needle in str(err.value)


def test_bad_index_types() -> None:
    x = fg.ones(3, 4)
    with pytest.raises(IndexError):
        x[fg.tensor([0.5])]
    with pytest.raises((IndexError, TypeError)):
        x["a"]
    with pytest.raises(IndexError):
        x[fg.ones(2, 4, dtype=fg.bool_)]  # a mask must match the shape of the dims it covers
