"""Reductions (sum mean var std amax amin max min argmax argmin prod logsumexp softmax log_softmax cumsum all any)
against PyTorch: values, dtypes and gradients, over dim/keepdim variants, 0-d, size-1, empty and transposed inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusegrad as fg
from tests.helpers import assert_close, compare, randn

pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0")  # torch warns for var over <= 1 item

INF, NAN = float("inf"), float("nan")

# (shape, dim): dims are None, ints, negative ints and tuples, on 0-d, size-1 and ordinary shapes
SHAPE_DIMS = [
    ((), None), ((), 0), ((), -1),
    ((5,), None), ((5,), 0), ((5,), -1),
    ((3, 4), None), ((3, 4), 0), ((3, 4), 1), ((3, 4), -2), ((3, 4), (0, 1)), ((3, 4), (-1, 0)),
    ((2, 1, 4), 1), ((2, 1, 4), (0, 2)), ((2, 3, 4), (-2,)), ((2, 3, 4), (2, 0)), ((1, 1), None), ((1, 1), 0),
]
def _t(t: object) -> object:
    """A transposed (non-contiguous) view for tensors of 2+ dims, else the tensor itself."""
    return t.transpose(0, -1) if t.ndim > 1 else t


INT_DIMS = [(s, d) for s, d in SHAPE_DIMS if not isinstance(d, tuple)]

# name -> f(x, dim, keepdim), the same call for both libraries (var/std/logsumexp have no dim=None form here)
TUPLE_DIM_OPS = {
    "sum": lambda x, d, k: x.sum() if d is None and not k else x.sum(d, keepdim=k),
    "mean": lambda x, d, k: x.mean() if d is None and not k else x.mean(d, keepdim=k),
    "amax": lambda x, d, k: x.amax() if d is None and not k else x.amax(d, keepdim=k),
    "amin": lambda x, d, k: x.amin() if d is None and not k else x.amin(d, keepdim=k),
    "var": lambda x, d, k: x.var(d, keepdim=k),
    "var_biased": lambda x, d, k: x.var(d, unbiased=False, keepdim=k),
    "var_corr0": lambda x, d, k: x.var(d, keepdim=k, correction=0),
    "std": lambda x, d, k: x.std(d, keepdim=k),
    "std_corr0": lambda x, d, k: x.std(d, keepdim=k, correction=0),
    "std_biased": lambda x, d, k: x.std(d, unbiased=False, keepdim=k),
    "logsumexp": lambda x, d, k: x.logsumexp(tuple(range(x.ndim)) if d is None else d, keepdim=k),
}
INT_DIM_OPS = {
    "prod": lambda x, d, k: x.prod() if d is None else x.prod(d, keepdim=k),
    "argmax": lambda x, d, k: x.argmax(d, keepdim=k),
    "argmin": lambda x, d, k: x.argmin(d, keepdim=k),
    "max_dim": lambda x, d, k: x.max() if d is None else tuple(x.max(d, keepdim=k)),
    "min_dim": lambda x, d, k: x.min() if d is None else tuple(x.min(d, keepdim=k)),
}

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape,dim", SHAPE_DIMS)
@pytest.mark.parametrize("name", list(TUPLE_DIM_OPS))
def test_reduce_dims_float64(device: str, name: str, shape: tuple[int, ...], dim: object, keepdim: bool) -> None:
    fn = TUPLE_DIM_OPS[name]
    compare(lambda x: fn(x, dim, keepdim), None, randn(*shape, seed=1), device=device, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape,dim", INT_DIMS)
@pytest.mark.parametrize("name", list(INT_DIM_OPS))
def test_reduce_int_dims_float64(device: str, name: str, shape: tuple[int, ...], dim: object, keepdim: bool) -> None:
    fn = INT_DIM_OPS[name]
    compare(lambda x: fn(x, dim, keepdim), None, randn(*shape, seed=2), device=device, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("dim", [None, 0, -1, 1])
@pytest.mark.parametrize("name", list(TUPLE_DIM_OPS) + list(INT_DIM_OPS))
def test_reduce_float32_transposed(device: str, name: str, dim: object) -> None:
    fn = {**TUPLE_DIM_OPS, **INT_DIM_OPS}[name]
    compare(lambda x: fn(x.T, dim, False), None, randn(4, 3, dtype=np.float32, seed=3), device=device,
            atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("correction", [0, 1, 2])
@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1)])
def test_var_std_correction(device: str, correction: int, dim: object) -> None:
    x = randn(3, 5, seed=4)
    compare(lambda t: t.var(dim, correction=correction), None, x, device=device, atol=1e-10, rtol=1e-8)
    compare(lambda t: t.std(dim, correction=correction, keepdim=True), None, x, device=device, atol=1e-10, rtol=1e-8)


def test_std_of_constant_has_zero_gradient(device: str) -> None:
    x = np.array([[2.0, 2.0, 2.0], [1.0, -1.0, 0.5]])
    compare(lambda t: (t.std(1), t.std(1, correction=0), t.var(1)), None, x, device=device)


def test_var_dof_nonpositive(device: str) -> None:
    compare(lambda x: (x.var(1, correction=3), x.var(1), x.std(0)), None, np.array([[1.0, 2.0]]), device=device,
            grad=False)


# ---- empty tensors: sum 0, mean/var NaN, prod 1, logsumexp -inf, all True, any False; max must raise ----

EMPTY = [((0,), None), ((0,), 0), ((2, 0), 1), ((2, 0), -1), ((2, 0), 0), ((0, 3), 1), ((0, 3), 0), ((2, 0, 3), (0, 1))]


@pytest.mark.parametrize("shape,dim", EMPTY)
@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "logsumexp"])
def test_reduce_empty(device: str, name: str, shape: tuple[int, ...], dim: object) -> None:
    compare(lambda x: TUPLE_DIM_OPS[name](x, dim, False), None, randn(*shape), device=device)


@pytest.mark.parametrize("shape,dim", [(s, d) for s, d in EMPTY if not isinstance(d, tuple)])
def test_prod_cumsum_empty(device: str, shape: tuple[int, ...], dim: object) -> None:
    compare(lambda x: x.prod(dim) if dim is not None else x.prod(), None, randn(*shape), device=device)
    if dim is not None:
        compare(lambda x: x.cumsum(dim), None, randn(*shape), device=device)


@pytest.mark.parametrize("shape,dim", EMPTY)
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_all_any_empty(device: str, shape: tuple[int, ...], dim: object, dtype: type) -> None:
    compare(lambda x: (x.all(), x.any()) if dim is None else (x.all(dim), x.any(dim)), None,
            np.zeros(shape, dtype), device=device)


@pytest.mark.parametrize("op", ["amax", "amin", "argmax", "argmin", "max", "min"])
@pytest.mark.parametrize("shape,dim", [((0,), 0), ((2, 0), 1), ((2, 0), -1), ((0, 3), 0), ((2, 0, 3), (0, 1))])
def test_max_over_empty_dim_raises(device: str, op: str, shape: tuple[int, ...], dim: object) -> None:
    if isinstance(dim, tuple) and op not in ("amax", "amin"):
        return
    x = fg.zeros(shape, device=device)
    with pytest.raises(fg.ShapeError, match=r"empty"):
        getattr(x, op)(dim)


@pytest.mark.parametrize("op", ["amax", "amin", "argmax", "max", "min"])
def test_max_of_empty_tensor_raises(device: str, op: str) -> None:
    with pytest.raises(fg.ShapeError, match=r"empty"):
        getattr(fg.zeros((2, 0), device=device), op)()


@pytest.mark.parametrize("op", ["amax", "argmax", "max_dim"])
def test_max_over_nonempty_dim_of_empty_tensor(device: str, op: str) -> None:
    compare(lambda x: tuple(x.max(1)) if op == "max_dim" else getattr(x, op)(1), None, randn(0, 3), device=device)


# ---- integer and bool inputs ----

INT_INPUTS = {
    "int32": np.array([[3, -7, 2], [5, 0, -1]], np.int32),
    "int64": np.array([[2**40, -3, 7], [11, 2**33, -5]], np.int64),
    "uint8": np.array([[200, 0, 7], [255, 3, 9]], np.uint8),
    "bool": np.array([[True, False, True], [False, False, True]]),
}


@pytest.mark.parametrize("kind", list(INT_INPUTS))
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_sum_cumsum_of_ints(device: str, kind: str, dim: object) -> None:
    """sum and cumsum of int32/uint8/bool give int64 (exact), like torch."""
    x = INT_INPUTS[kind]
    compare(lambda t: t.sum() if dim is None else (t.sum(dim), t.sum(dim, keepdim=True)), None, x, device=device)
    if dim is not None:
        compare(lambda t: t.cumsum(dim), None, x, device=device)


@pytest.mark.parametrize("kind", ["int32", "int64", "uint8"])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_max_min_arg_of_ints(device: str, kind: str, dim: object) -> None:
    x = INT_INPUTS[kind]
    ops = (lambda t: (t.amax(), t.amin(), t.argmax(), t.argmin(), t.max(), t.min()) if dim is None else
           (t.amax(dim), t.amin(dim), t.argmax(dim), t.argmin(dim, keepdim=True), *t.max(dim), *t.min(dim)))
    compare(ops, None, x, device=device)


def test_max_min_of_bool(device: str) -> None:
    compare(lambda t: (t.amax(), t.amin(0), t.amax(1, keepdim=True), t.any(1), t.all(0)), None, INT_INPUTS["bool"],
            device=device)


def test_float_ops_of_ints(device: str) -> None:
    """logsumexp of ints is a float32 result, like torch."""
    compare(lambda t: (t.logsumexp(1), t.logsumexp(0, keepdim=True)), None, INT_INPUTS["int32"], device=device)
    compare(lambda t: t.float().var(1), None, INT_INPUTS["int32"], device=device)


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_float16(device: str, dim: object) -> None:
    """Half precision sums accumulate in float32 and round once, as torch does on CPU."""
    x = randn(8, 64, dtype=np.float16, seed=10)
    compare(lambda t: (t.sum(), t.mean(), t.amax(), t.prod()) if dim is None else
            (t.sum(dim), t.mean(dim), t.amax(dim), t.softmax(dim), t.logsumexp(dim), t.cumsum(dim)), None, x,
            device=device, grad=False, atol=2e-2, rtol=2e-3)


def test_eval_shape_of_reductions() -> None:
    """Shape-only runs infer the same shapes and dtypes as real ones, without computing."""
    out = fg.eval_shape(lambda t: (t.sum((0, 2)), t.max(1), t.argmin(-1, keepdim=True), t.int().cumsum(0),
                                   t.var(1, correction=0), t.softmax(0), t.prod(2), t.any(1)), fg.Spec((2, 3, 4)))
    got = [(o.shape, o.dtype) for o in _flat(out)]
    assert got == [((3,), fg.float32), ((2, 4), fg.float32), ((2, 4), fg.int64), ((2, 3, 1), fg.int64),
                   ((2, 3, 4), fg.int64), ((2, 4), fg.float32), ((2, 3, 4), fg.float32), ((2, 3), fg.float32),
                   ((2, 4), fg.bool_)]


def _flat(x: object) -> list:
    return [v for item in x for v in _flat(item)] if isinstance(x, (tuple, list)) else [x]


def test_prod_of_ints_exact(device: str) -> None:
    """Products of large integers must not go through float: 3**39 needs all 63 bits."""
    big = np.array([3**13, 3**13, 3**13], np.int64)
    compare(lambda t: (t.prod(), t.prod(0, keepdim=True)), None, big, device=device)
    compare(lambda t: (t.prod(), t.prod(1), t.prod(0)), None, INT_INPUTS["int32"], device=device)
    compare(lambda t: (t.prod(), t.prod(1)), None, INT_INPUTS["bool"], device=device)
    compare(lambda t: (t.prod(), t.prod(0)), None, INT_INPUTS["uint8"], device=device)
    compare(lambda t: t.prod(1, dtype=fg.float64), lambda t: t.prod(1, dtype=torch.float64), INT_INPUTS["int32"],
            device=device)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
def test_sum_dtype_argument(device: str, dtype: str) -> None:
    for x in (INT_INPUTS["int32"], INT_INPUTS["bool"], randn(3, 4, dtype=np.float32)):
        compare(lambda t: t.sum(dtype=getattr(fg, dtype)), lambda t: t.sum(dtype=getattr(torch, dtype)), x,
                device=device, grad=False)
        compare(lambda t: t.sum(1, dtype=getattr(fg, dtype)), lambda t: t.sum(1, dtype=getattr(torch, dtype)), x,
                device=device, grad=False)
    compare(lambda t: t.sum(0, dtype=fg.float64), lambda t: t.sum(0, dtype=torch.float64),
            randn(3, 4, dtype=np.float32), device=device)  # the gradient flows back through the cast


def test_mean_of_ints_needs_dtype(device: str) -> None:
    x = fg.tensor(INT_INPUTS["int64"], device=device)
    with pytest.raises((TypeError, RuntimeError), match="floating"):
        x.mean()
    compare(lambda t: t.mean(1, dtype=fg.float64), lambda t: t.mean(1, dtype=torch.float64), INT_INPUTS["int64"],
            device=device)


@pytest.mark.parametrize("kind", ["float", "nan", "int32", "int64", "uint8", "bool"])
@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1), -1])
def test_all_any(device: str, kind: str, dim: object) -> None:
    """all/any of floats (NaN is truthy) and ints give bool; of uint8 give uint8, as in torch."""
    x = {"float": np.array([[0.0, 1.5, -2.0], [0.0, 0.0, 3.0]]), "nan": np.array([[NAN, 0.0, 1.0], [NAN, NAN, 0.0]]),
         **INT_INPUTS}[kind]
    compare(lambda t: (t.all(), t.any()) if dim is None else (t.all(dim), t.any(dim), t.any(dim, keepdim=True)),
            None, x, device=device)


# ---- max/min with indices, ties, NaN ----

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_min_dim_first_index_on_ties(device: str, dim: int) -> None:
    """Indices are of the first extreme; the values' gradient goes only to that element, as in torch."""
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, -5.0, 4.0, -5.0]])
    compare(lambda t: (*t.max(dim), *t.min(dim, keepdim=True), t.argmax(dim), t.argmin(dim)), None, x,
            device=device)


def test_full_max_ties_share_gradient(device: str) -> None:
    """max()/amax over all (and amax over a dim) split the gradient evenly among ties, as torch does."""
    x = np.array([[1.0, 3.0, 3.0], [3.0, 0.0, -1.0]])
    compare(lambda t: (t.max(), t.min(), t.amax(1), t.amin(0)), None, x, device=device)
    compare(lambda t: (t.argmax(), t.argmin(), t.argmax(keepdim=True)), None, x, device=device)


@pytest.mark.parametrize("other_shape", [(2, 3), (3,), (), (2, 1)])
def test_max_min_with_other_tensor(device: str, other_shape: tuple[int, ...]) -> None:
    x = np.array([[1.0, 3.0, -2.0], [0.5, 0.0, 7.0]])
    y = np.full(other_shape, 0.5) if other_shape else np.array(0.5)
    compare(lambda a, b: (a.max(b), a.min(b), fg.max(a, b) if isinstance(a, fg.Tensor) else torch.max(a, b)), None,
            x, y, device=device)


def test_nan_propagation(device: str) -> None:
    """max/min/amax propagate NaN; argmax/argmin and max(dim) pick the first NaN; logsumexp is NaN."""
    x = np.array([[1.0, NAN, 3.0, NAN], [2.0, 5.0, 1.0, 0.0], [NAN, 1.0, 2.0, 3.0]])
    ops = lambda t: (t.max(), t.min(), t.amax(1), t.amin(0), t.argmax(1), t.argmin(1), t.argmax(), *t.max(1),  # noqa: E731
                     *t.min(0), t.logsumexp(1), t.softmax(1))
    compare(ops, None, x, device=device, grad=False)
    compare(lambda t: t.max(1)[1], None, x.T.copy(), device=device, grad=False)
    compare(lambda t: (*t.max(1), *t.min(0)), None, x, device=device)  # gradient goes to the first NaN


def test_max_dim_with_infinities_gradient(device: str) -> None:
    x = np.array([[INF, 1.0, INF], [-INF, -INF, -INF], [0.0, -INF, 2.0]])
    compare(lambda t: (*t.max(1), *t.min(1), *t.max(0, keepdim=True)), None, x, device=device)


def test_logsumexp_infinities(device: str) -> None:
    x = np.array([[-INF, -INF, -INF], [-INF, 0.0, 1.0], [INF, 1.0, 2.0], [INF, -INF, 0.0]])
    compare(lambda t: (t.logsumexp(1), t.logsumexp(1, keepdim=True)), None, x, device=device, grad=False)
    compare(lambda t: t.logsumexp(1), None, x[1:2], device=device)  # -inf entries get zero gradient
    compare(lambda t: t.logsumexp(0), None, np.array([-INF, -INF]), device=device, grad=False)


@pytest.mark.parametrize("scale", [1.0, 1000.0, -1000.0])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_log_softmax_stable(device: str, scale: float, dim: int) -> None:
    x = randn(3, 5, seed=5) * scale
    compare(lambda t: (t.softmax(dim), t.log_softmax(dim), t.logsumexp(dim)), None, x, device=device,
            atol=1e-8, rtol=1e-7)
    compare(lambda t: (t.softmax(dim), t.log_softmax(dim)), None, x.astype(np.float32), device=device,
            atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape,dim", [((), 0), ((4,), 0), ((1, 3), 0), ((2, 3, 4), 1), ((2, 3, 4), -1), ((2, 0), 1)])
def test_softmax_shapes(device: str, shape: tuple[int, ...], dim: int) -> None:
    compare(lambda t: (t.softmax(dim), t.log_softmax(dim), _t(t).softmax(dim)), None, randn(*shape, seed=6),
            device=device, atol=1e-10, rtol=1e-8)


def test_softmax_dtype_and_neg_inf(device: str) -> None:
    x = np.array([[0.0, -INF, 1.0], [-INF, -INF, 2.0]], np.float32)
    compare(lambda t: (t.softmax(1), t.log_softmax(1)), None, x, device=device, grad=False)
    compare(lambda t: t.softmax(-1, dtype=fg.float64), lambda t: t.softmax(-1, dtype=torch.float64),
            randn(2, 3, dtype=np.float32), device=device)
    compare(lambda t: t.log_softmax(0, dtype=fg.float64), lambda t: t.log_softmax(0, dtype=torch.float64),
            randn(2, 3, dtype=np.float32), device=device)


# ---- prod and cumsum ----

@pytest.mark.parametrize("x", [
    np.array([[2.0, 0.0, 3.0, -1.5], [0.0, 0.0, 1.0, 2.0], [1.0, 2.0, -3.0, 0.5]]),  # one zero, two zeros, none
    np.array([[0.0, 4.0], [0.5, 0.0], [3.0, 2.0]]),
], ids=["3x4", "3x2"])
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_prod_with_zeros_gradient(device: str, x: np.ndarray, dim: object) -> None:
    compare(lambda t: t.prod() if dim is None else (t.prod(dim), t.T.prod(dim, keepdim=True)), None, x,
            device=device)


@pytest.mark.parametrize("shape", [(5,), (7,), (3, 4), (2, 3, 5), (1, 6)])
def test_prod_odd_sizes(device: str, shape: tuple[int, ...]) -> None:
    compare(lambda t: tuple(t.prod(d) for d in range(t.ndim)), None, randn(*shape, seed=7, low=0.5), device=device,
            rtol=1e-10)


@pytest.mark.parametrize("shape", [(), (1,), (6,), (3, 4), (2, 3, 4), (2, 1, 3)])
def test_cumsum_each_dim(device: str, shape: tuple[int, ...]) -> None:
    each_dim = lambda t: tuple(t.cumsum(d) for d in [*range(t.ndim), -1])  # noqa: E731
    compare(each_dim, None, randn(*shape, seed=8), device=device, atol=1e-10)
    compare(each_dim, None, (randn(*shape, seed=8) * 10).astype(np.int32), device=device)
    if len(shape) >= 2:
        compare(lambda t: _t(t).cumsum(0), None, randn(*shape, seed=8, dtype=np.float32), device=device, atol=1e-5)


def test_cumsum_dtype_argument(device: str) -> None:
    compare(lambda t: t.cumsum(1, dtype=fg.float64), lambda t: t.cumsum(1, dtype=torch.float64),
            randn(2, 3, dtype=np.float32), device=device)
    compare(lambda t: t.cumsum(0, dtype=fg.float32), lambda t: t.cumsum(0, dtype=torch.float32), INT_INPUTS["int32"],
            device=device)


# ---- module-level functions and argument errors ----

def test_module_level_functions(device: str) -> None:
    x = randn(3, 4, seed=9)
    compare(lambda t: fg.sum(t, 1), lambda t: torch.sum(t, 1), x, device=device)
    compare(lambda t: fg.logsumexp(t, 0), lambda t: torch.logsumexp(t, 0), x, device=device)
    compare(lambda t: fg.softmax(t, -1), lambda t: torch.softmax(t, -1), x, device=device)
    compare(lambda t: tuple(fg.max(t, 0)), lambda t: tuple(torch.max(t, 0)), x, device=device)
    compare(lambda t: fg.var(t, 1, correction=0), lambda t: torch.var(t, 1, correction=0), x, device=device)


@pytest.mark.parametrize("call", [
    lambda x: x.sum(2), lambda x: x.sum(-3), lambda x: x.mean((0, 0)), lambda x: x.amax((1, -1)),
    lambda x: x.argmax(5), lambda x: x.cumsum(2), lambda x: x.softmax(3), lambda x: x.prod(-3),
])
def test_bad_dims_raise(device: str, call: object) -> None:
    with pytest.raises((IndexError, fg.ShapeError)):
        call(fg.zeros((2, 3), device=device))


def test_max_dim_returns_named_tuple(device: str) -> None:
    out = fg.tensor([[1.0, 5.0], [7.0, 2.0]], device=device).max(1)
    assert_close(out.values, np.array([5.0, 7.0], np.float32))
    assert_close(out.indices, np.array([1, 0], np.int64))
    values, indices = out
    assert values.shape == indices.shape == (2,)
