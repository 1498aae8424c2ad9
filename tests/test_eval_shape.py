"""`fg.eval_shape`: output shapes and dtypes of any function, computing nothing and leaving outside tensors alone."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.runtime import device as device_registry
from fusegrad.runtime import get_device

S = fg.Spec
F32, F64, I64, B = fg.float32, fg.float64, fg.int64, fg.bool_


def forbid_compute(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    """From now on any realization on `device` fails the test."""
    def refuse(self: Any, nodes: list, order: list | None = None) -> None:
        raise AssertionError(f"eval_shape computed something: {nodes}")
    monkeypatch.setattr(type(get_device(device)), "realize", refuse)


@pytest.fixture
def no_compute(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test runs on `device` (the default for new tensors and Specs) with computation forbidden."""
    monkeypatch.setattr(device_registry, "_default", [device])
    forbid_compute(monkeypatch, device)


def real(*shape: int, seed: int = 0, requires_grad: bool = False, device: str | None = None) -> fg.Tensor:
    """A realized float32 tensor made outside eval_shape."""
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return fg.tensor(data, requires_grad=requires_grad, device=device)


def on(x: Any, device: str) -> Any:
    """Specs (in any nesting) moved to `device`."""
    if isinstance(x, S):
        return dataclasses.replace(x, device=device)
    if isinstance(x, (list, tuple)):
        return type(x)(on(v, device) for v in x)
    return {k: on(v, device) for k, v in x.items()} if isinstance(x, dict) else x


# (function, input specs, expected output spec(s)); each is checked against running the function for real
CASES: dict[str, tuple[Callable, tuple[S, ...], Any]] = {
    "add_broadcast": (lambda a, b: a + b, (S((2, 1, 3)), S((4, 1))), S((2, 4, 3))),
    "promote_int_float": (lambda a, b: a * b, (S((3,), I64), S((3,), F64)), S((3,), F64)),
    "int_scalar": (lambda a: a * 2 + 1, (S((3,), I64),), S((3,), I64)),
    "int_true_div": (lambda a: a / 2, (S((3,), I64),), S((3,), F32)),
    "compare": (lambda a, b: a < b, (S((2, 3)), S((3,))), S((2, 3), B)),
    "where": (lambda c, a, b: fg.where(c, a, b), (S((2, 1), B), S((1, 3)), S(())), S((2, 3))),
    "unary_chain": (lambda a: a.exp().log1p().tanh().sigmoid().relu(), (S((0, 5), F64),), S((0, 5), F64)),
    "matmul": (lambda a, b: a @ b, (S((5, 2, 3)), S((3, 4))), S((5, 2, 4))),
    "matvec": (lambda a, b: a @ b, (S((2, 3)), S((3,))), S((2,))),
    "einsum": (lambda a, b: fg.einsum("bij,bjk->bki", a, b), (S((2, 3, 4)), S((2, 4, 5))), S((2, 5, 3))),
    "sum_keepdim": (lambda a: a.sum(1, keepdim=True), (S((2, 3, 4)),), S((2, 1, 4))),
    "int_sum": (lambda a: a.sum(), (S((2, 3), B),), S((), I64)),
    "mean_dims": (lambda a: a.mean((0, 2)), (S((2, 3, 4)),), S((3,))),
    "argmax": (lambda a: a.argmax(-1), (S((2, 3)),), S((2,), I64)),
    "softmax": (lambda a: a.log_softmax(-1), (S((2, 3)),), S((2, 3))),
    "getitem": (lambda a: a[None, 1, ::2, ..., -1], (S((3, 5, 4, 6)),), S((1, 3, 4))),
    "gather": (lambda a, i: a.gather(1, i), (S((3, 5)), S((3, 2), I64)), S((3, 2))),
    "tensor_index": (lambda a, i: a[i, :, i], (S((4, 5, 4)), S((2, 3), I64)), S((2, 3, 5))),
    "reshape_permute": (lambda a: a.reshape(3, -1).T.unsqueeze(0), (S((3, 2, 2)),), S((1, 4, 3))),
    "cat_stack": (lambda a, b: fg.stack([fg.cat([a, b], 1)] * 3, -1), (S((2, 1)), S((2, 4))), S((2, 5, 3))),
    "pad_flip": (lambda a: a.pad((1, 2)).flip(0), (S((2, 3)),), S((2, 6))),
    "max_dim": (lambda a: a.max(1), (S((2, 3)),), (S((2,)), S((2,), I64))),
    "nested": (lambda a, b: {"sum": a + b, "pair": (a.sum(), [b.long(), 7]), "none": None},
               (S((2,)), S((2,))), {"sum": S((2,)), "pair": (S(()), [S((2,), I64), 7]), "none": None}),
    "cast": (lambda a: a.to(F64).half(), (S((2,)),), S((2,), fg.float16)),
}


def _concrete(spec: S) -> fg.Tensor:
    """Real data for a spec: small non-negative integers (valid as indices), or uniform floats."""
    rng = np.random.default_rng(1)
    if spec.dtype.is_floating_point:
        return fg.tensor(rng.uniform(0.5, 1.5, spec.shape).astype(spec.dtype.np), device=spec.device)
    return fg.tensor(rng.integers(0, 2, spec.shape).astype(spec.dtype.np), device=spec.device)


@pytest.mark.parametrize("name", CASES)
def test_eval_shape_outputs(device: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fn, specs, want = CASES[name]
    specs, want = on(specs, device), on(want, device)
    monkeypatch.setattr(device_registry, "_default", [device])
    concrete = fn(*[_concrete(s) for s in specs])  # the function on real data gives what eval_shape promises
    assert fg.eval_shape(lambda: concrete) == want
    forbid_compute(monkeypatch, device)
    assert fg.eval_shape(fn, *specs) == want


def test_spec_normalizes_and_passes_other_arguments(no_compute: None) -> None:
    spec = S([2, np.int64(3)], "float64", requires_grad=True)
    assert spec.shape == (2, 3) and spec.dtype == F64
    out = fg.eval_shape(lambda a, n, scale=1.0, b=None: (a.reshape(n, -1) * scale + b.sum()).sum(0),
                        spec, 3, scale=2.0, b=S((4,)))
    assert out == S((2,), F64, requires_grad=True)
    assert fg.eval_shape(lambda: 5) == 5


def _train_step(w: fg.Tensor, b: fg.Tensor) -> Callable:
    def step(x: fg.Tensor, y: fg.Tensor) -> tuple:
        loss = ((x @ w + b).tanh() - y).square().mean()
        loss.backward()
        with fg.no_grad():
            w.sub_(0.1 * w.grad)
            b.sub_(0.1 * b.grad)
            w.grad.zero_()
        return loss, w.grad, b.grad, w
    return step


def test_training_step_shapes_and_outside_tensors_untouched(no_compute: None) -> None:
    w, b = real(3, 4, requires_grad=True), real(4, seed=1, requires_grad=True)
    w_node, b_node = w._node, b._node
    b.grad = real(4, seed=2)  # an existing gradient must survive as it was
    b_grad = b.grad
    out = fg.eval_shape(_train_step(w, b), S((8, 3)), S((8, 4)))
    assert out == (S((), requires_grad=True), S((3, 4)), S((4,)), S((3, 4), requires_grad=True))
    assert w._node is w_node and b._node is b_node
    assert w.grad is None and b.grad is b_grad
    assert w.is_leaf and b.is_leaf and w.requires_grad and b.requires_grad


def test_training_step_then_real_step_matches_plain_run(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_registry, "_default", [device])
    w, b = real(3, 4, requires_grad=True), real(4, seed=1, requires_grad=True)
    w2, b2 = real(3, 4, requires_grad=True), real(4, seed=1, requires_grad=True)
    x, y = real(8, 3, seed=3), real(8, 4, seed=4)
    fg.eval_shape(_train_step(w, b), S((8, 3)), S((8, 4)))
    loss = _train_step(w, b)(x, y)[0].item()
    loss2 = _train_step(w2, b2)(x, y)[0].item()
    assert loss == loss2
    np.testing.assert_array_equal(w.numpy(), w2.numpy())
    np.testing.assert_array_equal(b.grad.numpy(), b2.grad.numpy())


@pytest.mark.parametrize("make_opt", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.01)],
                         ids=["sgd_momentum", "adam"])
def test_module_and_optimizer_step_untouched(device: str, make_opt: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_registry, "_default", [device])
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    opt = make_opt(model.parameters())
    x, y = real(6, 3, seed=5), real(6, 2, seed=6)

    def step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    step(x, y)  # one real step first, so the optimizer has state to keep
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    state = {pid: dict(s) for pid, s in opt.state.items()}
    with monkeypatch.context() as m:
        forbid_compute(m, device)
        assert fg.eval_shape(step, S((6, 3)), S((6, 2))) == S((), requires_grad=True)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k].numpy()) for k in before)
    assert {pid: dict(s) for pid, s in opt.state.items()} == state
    assert all(p.grad is not None for p in model.parameters())
    step(x, y)  # the optimizer state is still real: a real step runs


def test_shape_errors_surface_and_undo(no_compute: None) -> None:
    w = real(3, 4, requires_grad=True)
    node = w._node

    def bad(x: fg.Tensor) -> fg.Tensor:
        with fg.no_grad():
            w.add_(1.0)  # changed before the error: must be undone anyway
        return x @ w.T
    with pytest.raises(fg.ShapeError, match=r"matmul: shapes \(5, 3\) and \(4, 3\)") as info:
        fg.eval_shape(bad, S((5, 3)))
    assert "test_eval_shape.py" in str(info.value)
    assert w._node is node and fg.is_grad_enabled()
    with pytest.raises(fg.ShapeError, match=r"add: shapes \(2, 3\) and \(4,\)"):
        fg.eval_shape(lambda a, b: a + b, S((2, 3)), S((4,)))


@pytest.mark.parametrize("read", [
    lambda t: t.item(), lambda t: t.numpy(), lambda t: print(t), lambda t: repr(t), lambda t: t.tolist(),
    lambda t: float(t), lambda t: bool(t > 0), lambda t: np.asarray(t), lambda t: t.realize().numpy(),
], ids=["item", "numpy", "print", "repr", "tolist", "float", "bool", "asarray", "realize_numpy"])
def test_reading_values_raises_shape_only_error(no_compute: None, read: Callable) -> None:
    with pytest.raises(fg.ShapeOnlyError, match="shape-only inside fg.eval_shape"):
        fg.eval_shape(lambda a: read(a.sum() * 2), S((3,)))
    outside = real(1)
    with pytest.raises(fg.ShapeOnlyError):  # real tensors cannot be read inside either: no data-dependent shapes
        fg.eval_shape(lambda: read(outside.sum()))


def test_data_dependent_shapes_are_refused(no_compute: None) -> None:
    with pytest.raises(fg.ShapeError, match="data-dependent"):
        fg.eval_shape(lambda a: a[a > 0], S((3,)))
    with pytest.raises(fg.ShapeOnlyError):
        fg.eval_shape(lambda a: a.nonzero(), S((3,)))


def test_shape_only_outputs_have_no_values(no_compute: None) -> None:
    leaked = []
    fg.eval_shape(lambda a: leaked.append(a * 2), S((2,)))
    with pytest.raises(fg.ShapeOnlyError, match="no data"):
        leaked[0].numpy()


def test_nested_eval_shape(no_compute: None) -> None:
    w = real(2, requires_grad=True)

    def outer(x: fg.Tensor) -> Any:
        inner = fg.eval_shape(lambda y: (y * w).sum().backward(), S((2,)))
        (x * w).sum().backward()
        return inner, w.grad
    assert fg.eval_shape(outer, S((2,))) == (None, S((2,)))
    assert w.grad is None


def test_random_stream_is_not_advanced(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_registry, "_default", [device])
    fg.manual_seed(3)
    fg.eval_shape(lambda a: fg.dropout(a, 0.5) + fg.randn(4, 4), S((4, 4)))
    drawn = fg.rand(5).numpy()
    fg.manual_seed(3)
    np.testing.assert_array_equal(drawn, fg.rand(5).numpy())
