"""User-facing errors: every ShapeError path names the op, both shapes and the user's line, and is raised while the
graph is built (nothing is computed); IndexError for dims out of range; clear dtype, device and item() errors."""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import pytest

import fusegrad as fg
import fusegrad.nn as nn
from fusegrad.runtime import device as device_registry
from fusegrad.runtime.numpy_device import NumpyDevice

HERE = os.path.basename(__file__)
I64 = fg.int64


def forbid_compute(monkeypatch: pytest.MonkeyPatch, device: str = "numpy") -> None:
    """From now on any realization fails the test: shape errors must come while the graph is built."""
    def refuse(self: Any, nodes: list, order: list | None = None) -> None:
        raise AssertionError(f"something was computed: {nodes}")
    monkeypatch.setattr(type(device_registry.get_device(device)), "realize", refuse)


@pytest.fixture
def no_compute(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole test runs on `device` (the default for new tensors) with computation forbidden."""
    monkeypatch.setattr(device_registry, "_default", [device])
    forbid_compute(monkeypatch, device)


LINEAR = nn.Linear(4, 2)  # built here: nn.init computes the initial weights


def lazy(*shape: int, dtype: fg.DType = fg.float32, device: str | None = None) -> fg.Tensor:
    """An unrealized tensor (ones times a 0-d one), so an error cannot come from computing it."""
    t = fg.ones(*shape, dtype=dtype, device=device) * fg.ones((), dtype=dtype, device=device)
    assert not t._node.realized
    return t


# id -> (build from x (2, 3) and y (4, 3), op name in the message, texts that must all appear in the message)
SHAPE_ERRORS: dict[str, tuple[Callable, str, tuple[str, ...]]] = {
    "add": (lambda x, y: x + y, "add", ("(2, 3)", "(4, 3)")),
    "radd_scalar_first": (lambda x, y: 1 + x + y, "add", ("(2, 3)", "(4, 3)")),
    "sub": (lambda x, y: x - y, "sub", ("(2, 3)", "(4, 3)")),
    "mul": (lambda x, y: x * y, "mul", ("(2, 3)", "(4, 3)")),
    "div": (lambda x, y: x / y, "div", ("(2, 3)", "(4, 3)")),
    "floordiv": (lambda x, y: x // y, "floor_divide", ("(2, 3)", "(4, 3)")),
    "remainder": (lambda x, y: x % y, "remainder", ("(2, 3)", "(4, 3)")),
    "fmod": (lambda x, y: x.fmod(y), "fmod", ("(2, 3)", "(4, 3)")),
    "pow": (lambda x, y: x ** y, "pow", ("(2, 3)", "(4, 3)")),
    "maximum": (lambda x, y: x.maximum(y), "maximum", ("(2, 3)", "(4, 3)")),
    "minimum": (lambda x, y: x.minimum(y), "minimum", ("(2, 3)", "(4, 3)")),
    "eq": (lambda x, y: x == y, "eq", ("(2, 3)", "(4, 3)")),
    "ne": (lambda x, y: x != y, "ne", ("(2, 3)", "(4, 3)")),
    "lt": (lambda x, y: x < y, "lt", ("(2, 3)", "(4, 3)")),
    "le": (lambda x, y: x <= y, "le", ("(2, 3)", "(4, 3)")),
    "gt": (lambda x, y: x > y, "gt", ("(2, 3)", "(4, 3)")),
    "ge": (lambda x, y: x >= y, "ge", ("(2, 3)", "(4, 3)")),
    "logical_and": (lambda x, y: x.logical_and(y), "logical_and", ("(2, 3)", "(4, 3)")),
    "logical_or": (lambda x, y: x.logical_or(y), "logical_or", ("(2, 3)", "(4, 3)")),
    "logical_xor": (lambda x, y: x.logical_xor(y), "logical_xor", ("(2, 3)", "(4, 3)")),
    "iadd": (lambda x, y: x.__iadd__(y), "add", ("(2, 3)", "(4, 3)")),
    "where": (lambda x, y: fg.where(x > 0, x, y), "where", ("(2, 3)", "(4, 3)")),
    "where_cond": (lambda x, y: fg.where(lazy(5) > 0, x, x), "where", ("(5,)", "(2, 3)")),
    "masked_fill": (lambda x, y: x.masked_fill(y > 0, 0.0), "masked_fill", ("(2, 3)", "(4, 3)")),
    "broadcast_to": (lambda x, y: x.broadcast_to(3, 3), "broadcast_to", ("(2, 3)", "(3, 3)")),
    "expand": (lambda x, y: x.expand(4, 3), "expand", ("(2, 3)", "(4, 3)")),
    "expand_fewer_dims": (lambda x, y: x.expand(3), "expand", ("(2, 3)", "(3,)")),
    "matmul": (lambda x, y: x @ y, "matmul", ("(2, 3)", "(4, 3)")),
    "matmul_vectors": (lambda x, y: lazy(3) @ lazy(4), "matmul", ("(3,)", "(4,)")),
    "matmul_batch": (lambda x, y: lazy(2, 2, 3) @ lazy(3, 3, 1), "matmul", ("(2,)", "(3,)")),
    "matmul_0d": (lambda x, y: x @ lazy(), "matmul", ("(2, 3)", "()")),
    "mm": (lambda x, y: x.mm(y), "m", ("(2, 3)", "(4, 3)")),
    "bmm": (lambda x, y: lazy(2, 3, 4).bmm(lazy(3, 4, 5)), "bmm", ("(2, 3, 4)", "(3, 4, 5)")),
    "dot": (lambda x, y: lazy(3).dot(lazy(4)), "dot", ("(3,)", "(4,)")),
    "einsum": (lambda x, y: fg.einsum("ij,jk->ik", x, y), "einsum", ("(2, 3)", "(4, 3)")),
    "reshape": (lambda x, y: x.reshape(4, 2), "reshape", ("(2, 3)", "(4, 2)")),
    "reshape_infer": (lambda x, y: x.reshape(4, -1), "reshape", ("(2, 3)", "(4, -1)")),
    "view": (lambda x, y: x.view(5), "reshape", ("(2, 3)", "(5,)")),
    "unflatten": (lambda x, y: x.unflatten(1, (2, 2)), "unflatten", ("(2, 3)", "(2, 2)")),
    "cat": (lambda x, y: fg.cat([x, lazy(2, 4)]), "cat", ("(2, 3)", "(2, 4)")),
    "cat_rank": (lambda x, y: fg.cat([x, lazy(3)], 0), "cat", ("(2, 3)", "(3,)")),
    "stack": (lambda x, y: fg.stack([x, y]), "stack", ("(2, 3)", "(4, 3)")),
    "permute_repeat": (lambda x, y: x.permute(0, 0), "permute", ("(2, 3)", "(0, 0)")),
    "permute_count": (lambda x, y: x.permute(1, 0, 2), "permute", ("(2, 3)", "(1, 0, 2)")),
    "gather": (lambda x, y: x.gather(0, fg.zeros(3, 4, dtype=I64)), "gather", ("(2, 3)", "(3, 4)")),
    "gather_rank": (lambda x, y: x.gather(1, fg.zeros(3, dtype=I64)), "gather", ("(2, 3)", "(3,)")),
    "index_select": (lambda x, y: x.index_select(0, fg.zeros(2, 2, dtype=I64)), "index_select", ("(2, 2)",)),
    "pad_odd": (lambda x, y: x.pad((1, 2, 3)), "pad", ("(2, 3)", "(1, 2, 3)")),
    "pad_too_many": (lambda x, y: x.pad((1, 1, 1, 1, 1, 1)), "pad", ("(2, 3)", "(1, 1, 1, 1, 1, 1)")),
    "pad_crop": (lambda x, y: x.pad((-5, 0)), "pad", ("(2, 3)", "(-5, 0)")),
    "narrow": (lambda x, y: x.narrow(1, 2, 2), "narrow", ("(2, 3)", "start 2", "length 2")),
    "split": (lambda x, y: x.split([1, 3], 1), "split", ("(2, 3)", "[1, 3]")),
    "repeat": (lambda x, y: x.repeat(2), "repeat", ("(2, 3)", "(2,)")),
    "unfold": (lambda x, y: x.unfold(1, 5, 1), "unfold", ("(2, 3)", "size 5")),
    "backward_gradient": (lambda x, y: x.requires_grad_().exp().backward(y), "backward", ("(2, 3)", "(4, 3)")),
    "linear": (lambda x, y: LINEAR(x), "linear", ("(2, 3)", "(2, 4)")),
    "mse_loss": (lambda x, y: nn.functional.mse_loss(x, y), "mse_loss", ("(2, 3)", "(4, 3)")),
}


@pytest.mark.parametrize("name", SHAPE_ERRORS)
def test_shape_error(no_compute: None, name: str) -> None:
    build, op, texts = SHAPE_ERRORS[name]
    x, y = lazy(2, 3), lazy(4, 3)
    with pytest.raises(fg.ShapeError) as info:
        build(x, y)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.startswith(op), msg
    for text in texts:
        assert text in msg, f"{text!r} missing from {msg!r}"
    assert f"{HERE}:{build.__code__.co_firstlineno})" in msg, f"the user's line is missing from {msg!r}"
    assert not x._node.realized and not y._node.realized


def test_shape_error_points_at_user_line_through_layers(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(4, 2)).to(device)
    forbid_compute(monkeypatch, device)
    x = lazy(7, 3, device=device)
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(fg.ShapeError) as info:
        model(x)  # the error names this line, not a line inside fusegrad
    assert f"{HERE}:{line})" in str(info.value)
    assert "(7, 5)" in str(info.value)


@pytest.mark.parametrize("build", [
    lambda x: x.squeeze(2), lambda x: x.unsqueeze(3), lambda x: x.unsqueeze(-4), lambda x: x.transpose(0, 2),
    lambda x: x.sum(2), lambda x: x.flip(-3), lambda x: x.movedim(0, 5), lambda x: x.softmax(2),
    lambda x: x.narrow(2, 0, 1), lambda x: x.split(1, 2), lambda x: x.cumsum(-3), lambda x: x.size(2),
], ids=["squeeze", "unsqueeze", "unsqueeze_neg", "transpose", "sum", "flip", "movedim", "softmax", "narrow",
        "split", "cumsum", "size"])
def test_dim_out_of_range_is_index_error(no_compute: None, build: Callable) -> None:
    x = lazy(2, 3)
    with pytest.raises(IndexError, match=r"dim -?\d is out of range for a tensor of shape \(2, 3\)"):
        build(x)


@pytest.mark.parametrize("index", [5, -3, (0, 3), (slice(None), 0, 0)], ids=["row", "neg_row", "col", "too_many"])
def test_index_out_of_range(no_compute: None, index: object) -> None:
    with pytest.raises(IndexError, match=r"\(2, 3\)|too many"):
        lazy(2, 3)[index]


# ---------------------------------------------------------------- dtypes


def test_float_index_errors(no_compute: None) -> None:
    x = lazy(2, 3)
    with pytest.raises(IndexError, match="integer or bool.*float32"):
        x[lazy(2)]
    with pytest.raises(IndexError, match="float"):
        x[1.5]
    with pytest.raises(fg.ShapeError, match="gather: index must be int32/int64, got float32"):
        x.gather(0, lazy(2, 3))
    with pytest.raises(fg.ShapeError, match="index_select: index must be int32/int64, got float32"):
        x.index_select(0, lazy(2))


def test_dtype_errors(no_compute: None) -> None:
    x = lazy(2, 3)
    with pytest.raises(fg.ShapeError, match=r"matmul.*float32.*float64"):
        x @ lazy(3, 2, dtype=fg.float64)
    with pytest.raises(TypeError, match="bool"):
        x & x
    with pytest.raises(TypeError, match="unknown dtype 'float128'"):
        fg.zeros(2, dtype="float128")
    with pytest.raises(TypeError, match="mean"):
        lazy(3, dtype=fg.int64).mean()
    with pytest.raises(TypeError, match="unsupported operand"):
        x + "a"
    with pytest.raises(TypeError, match="subtraction of bool"):
        lazy(2, dtype=fg.bool_) - lazy(2, dtype=fg.bool_)


# ---------------------------------------------------------------- devices and values


def test_unknown_device(no_compute: None) -> None:
    for make in (lambda: fg.ones(2, device="tpu"), lambda: fg.tensor([1.0], device="tpu"),
                 lambda: lazy(2).to("tpu"), lambda: fg.set_default_device("tpu")):
        with pytest.raises(ValueError, match=r"unknown device 'tpu'; available: \[.*'numpy'"):
            make()
    assert fg.default_device() in fg.available_devices()


def test_mixed_devices(device: str, no_compute: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(device_registry._FACTORIES, "numpy_b", NumpyDevice)
    x, y = lazy(2, 3), lazy(2, 3, device="numpy_b")
    names = ", ".join(repr(d) for d in sorted([device, "numpy_b"]))
    with pytest.raises(fg.ShapeError, match=rf"add: tensors are on different devices \[{names}\]"):
        x + y
    with pytest.raises(fg.ShapeError, match="different devices"):
        x @ y.T
    assert (x + y.to(device)).device == device


@pytest.mark.parametrize("shape", [(2, 3), (0,), (2,)])
def test_item_needs_one_element(device: str, shape: tuple[int, ...]) -> None:
    x = fg.ones(*shape, device=device)
    with pytest.raises(RuntimeError, match=rf"one element.*{len(shape) and shape[0]}"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    assert fg.ones(1, 1, device=device).item() == 1.0
    assert isinstance(fg.ones((), dtype=fg.int64, device=device).item(), int)


def test_valid_graph_builds_without_computing(no_compute: None) -> None:
    """The sentinel works: a correct graph builds lazily, and only asking for values computes."""
    x, y = lazy(2, 3), lazy(4, 3)
    out = (x @ y.T).relu().sum(0) + fg.cat([x, y]).amax()
    assert out.shape == (4,)
    with pytest.raises(AssertionError, match="something was computed"):
        out.numpy()
