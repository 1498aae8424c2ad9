"""Composite expansions (erf, gelu, softmax) are built once per operand signature and copied afterwards: the copy
must be the graph a fresh build gives, on new nodes, with the same values and gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad.frontend import expansions
from fusegrad.graph import toposort
from fusegrad.schedule import graph_signature

CASES = {
    "gelu": (lambda t: t.gelu(), lambda t: torch.nn.functional.gelu(t)),
    "erf": (lambda t: t.erf(), torch.erf),
    "softmax_last": (lambda t: t.softmax(-1), lambda t: t.softmax(-1)),
    "softmax_first": (lambda t: t.softmax(0), lambda t: t.softmax(0)),  # the dim lives in the closure
    "log_softmax": (lambda t: t.log_softmax(1), lambda t: t.log_softmax(1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_copied_expansion_is_a_fresh_build(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    fn, tfn = CASES[name]
    rng = np.random.default_rng(0)
    first, second = (rng.standard_normal((6, 9)).astype(np.float32) for _ in range(2))
    y1 = fn(fg.tensor(first))  # builds the template
    x2 = fg.tensor(second, requires_grad=True)
    y2 = fn(x2)  # a copy
    with monkeypatch.context() as m:
        m.setattr(expansions, "_key", lambda fn, srcs: None)
        fresh = fn(fg.tensor(second))
    assert graph_signature([y2._node])[0] == graph_signature([fresh._node])[0]
    assert not {id(n) for n in toposort([y1._node])} & {id(n) for n in toposort([y2._node]) if not n.realized}
    np.testing.assert_allclose(y2.detach().numpy(), tfn(torch.from_numpy(second)).numpy(), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal((6, 9)).astype(np.float32)
    y2.backward(fg.tensor(g))
    tx = torch.tensor(second, requires_grad=True)
    tfn(tx).backward(torch.from_numpy(g))
    np.testing.assert_allclose(x2.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_expansions_are_per_shape_dtype_and_device() -> None:
    for shape, dtype, device in [((3,), np.float32, "numpy"), ((2, 5), np.float64, "cpu"), ((2, 5), np.float16, "cpu"),
                                 ((0, 4), np.float32, "cpu"), ((), np.float32, "cpu")]:
        x = np.linspace(-3, 3, int(np.prod(shape))).astype(dtype).reshape(shape)
        got = fg.tensor(x, device=device).gelu()
        assert got.shape == shape and got.device == device and got.numpy().dtype == dtype
        want = torch.nn.functional.gelu(torch.from_numpy(x.astype(np.float32))).numpy().astype(dtype)
        np.testing.assert_allclose(got.numpy(), want, rtol=2e-3 if dtype == np.float16 else 1e-5, atol=1e-6)


def test_expansions_under_eval_shape_and_jit() -> None:
    spec = fg.eval_shape(lambda t: t.gelu().softmax(-1), fg.Spec((4, 7), fg.float32))
    assert spec.shape == (4, 7)
    step = fg.jit(lambda t: t.gelu().sum())
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    want = torch.nn.functional.gelu(torch.from_numpy(x)).sum().item()
    for _ in range(3):
        assert step(fg.tensor(x)).item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("pick", [0, 1])
def test_an_expansion_may_return_an_operand_or_repeat_a_subgraph(pick: int) -> None:
    rng = np.random.default_rng(pick)
    for _ in range(2):  # the first call records the recipe, the second copies it
        a, b = (fg.tensor(rng.standard_normal((3, 4)).astype(np.float32)) for _ in range(2))
        assert expansions.expand(lambda a, b: (a, b)[pick], (a, b))._node is (a, b)[pick]._node
        got = expansions.expand(lambda a, b: (a * b) + (a * b).exp() * pick, (a, b))  # a*b twice: two nodes
        ta, tb = torch.from_numpy(a.numpy()), torch.from_numpy(b.numpy())
        np.testing.assert_allclose(got.numpy(), (ta * tb + (ta * tb).exp() * pick).numpy(), rtol=1e-6)
