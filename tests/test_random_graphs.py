"""Random expression graphs: the same graph built with fusegrad, NumPy and torch must agree (forward and gradients).

A graph is drawn top-down from the output shape: every op picks input shapes that produce the shape asked of it,
so each graph is valid by construction and covers broadcasting, size-1 dims, movement ops and matmul shapes.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusegrad as fg

Shape = tuple[int, ...]
MAX_NDIM = 5
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclass
class Expr:
    """One node: an op name, its static argument, its operand expressions and its output shape."""

    op: str
    arg: Any
    kids: tuple[Expr, ...]
    shape: Shape


# ---------------------------------------------------------------- ops in three libraries
# each entry: fn(lib, arg, *operands) where lib is "fg", "torch" or "np"

def _pad(lib: str, arg: tuple[int, ...], x: Any) -> Any:
    if lib == "np":  # arg is (left, right) of the last dim first, as in torch.nn.functional.pad
        pairs = [(0, 0)] * (x.ndim - len(arg) // 2) + [(arg[i], arg[i + 1]) for i in range(len(arg) - 2, -1, -2)]
        return np.pad(x, pairs)
    return x.pad(arg) if lib == "fg" else torch.nn.functional.pad(x, arg)


def _cat(lib: str, dim: int, a: Any, b: Any) -> Any:
    return {"fg": fg.cat, "torch": torch.cat, "np": np.concatenate}[lib]([a, b], dim)


def _where(lib: str, arg: None, c: Any, a: Any, b: Any) -> Any:
    return (np.where if lib == "np" else fg.where if lib == "fg" else torch.where)(c > 0, a, b)


def _reduce(kind: str) -> Callable[..., Any]:
    def run(lib: str, arg: tuple[int, bool], x: Any) -> Any:
        dim, keep = arg
        if lib == "np":
            return (np.sum if kind == "sum" else np.max)(x, axis=dim, keepdims=keep)
        return x.sum(dim, keepdim=keep) if kind == "sum" else x.amax(dim, keepdim=keep)
    return run


def _np_or(np_fn: Callable[..., Any], tensor_fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda lib, arg, *xs: np_fn(*xs) if lib == "np" else tensor_fn(*xs)


UNARY = {
    "neg": _np_or(np.negative, lambda x: -x),
    "exp": _np_or(lambda x: np.exp(np.clip(x, -3, 3)), lambda x: x.clamp(-3, 3).exp()),
    "log": _np_or(lambda x: np.log(x * x + 0.5), lambda x: (x * x + 0.5).log()),
    "sqrt": _np_or(lambda x: np.sqrt(np.abs(x) + 0.1), lambda x: (x.abs() + 0.1).sqrt()),
    "tanh": _np_or(np.tanh, lambda x: x.tanh()),
    "sigmoid": _np_or(lambda x: 1 / (1 + np.exp(-x)), lambda x: x.sigmoid()),
    "relu": _np_or(lambda x: np.maximum(x, 0), lambda x: x.relu()),
}
BINARY = {
    "add": _np_or(np.add, lambda a, b: a + b),
    "sub": _np_or(np.subtract, lambda a, b: a - b),
    "mul": _np_or(np.multiply, lambda a, b: a * b),
    "div": _np_or(lambda a, b: a / (np.abs(b) + 0.5), lambda a, b: a / (b.abs() + 0.5)),
    "maximum": _np_or(np.maximum, lambda a, b: a.maximum(b)),
}
OPS: dict[str, Callable[..., Any]] = {
    **UNARY, **BINARY,
    "where": _where,
    "sum": _reduce("sum"),
    "max": _reduce("max"),
    "reshape": lambda lib, shape, x: x.reshape(shape),
    "permute": lambda lib, perm, x: x.transpose(perm) if lib == "np" else x.permute(*perm),
    "slice": lambda lib, index, x: x[index],
    "flip": lambda lib, dims, x: np.flip(x, dims) if lib == "np" else x.flip(dims),
    "pad": _pad,
    "cat": _cat,
    "matmul": lambda lib, arg, a, b: a @ b,
}


# ---------------------------------------------------------------- drawing graphs


def _broadcastable(rnd: random.Random, shape: Shape) -> Shape:
    """A shape that broadcasts to `shape`: leading dims may go, others may shrink to 1."""
    keep = rnd.randint(0, len(shape))
    return tuple(1 if rnd.random() < 0.5 else s for s in shape[len(shape) - keep:])


def _draw(rnd: random.Random, shape: Shape, depth: int) -> Expr:
    """An expression whose output has exactly `shape`."""
    n = len(shape)
    if depth == 0 or rnd.random() < 0.1:
        return Expr("leaf", None, (), shape)
    others = ["where", "reshape", "matmul", "sum", "max"] + ["permute", "slice", "flip", "pad"] * (n > 0)
    others += ["cat"] * any(s >= 2 for s in shape)
    op = rnd.choice(rnd.choice([list(UNARY), list(BINARY), list(BINARY), others, others]))  # not mostly unary
    sub = lambda s: _draw(rnd, s, depth - 1)  # noqa: E731
    if op in UNARY:
        return Expr(op, None, (sub(shape),), shape)
    if op in BINARY:
        if rnd.randint(0, 3) == 0:  # one subexpression used twice: a diamond in the graph
            shared = sub(shape)
            return Expr(op, None, (shared, shared), shape)
        kids = [sub(shape), sub(_broadcastable(rnd, shape))]
        return Expr(op, None, tuple(kids[::-1] if rnd.random() < 0.5 else kids), shape)
    if op == "where":
        return Expr(op, None, (sub(_broadcastable(rnd, shape)), sub(shape), sub(_broadcastable(rnd, shape))), shape)
    if op in ("sum", "max"):
        keep = rnd.random() < 0.5 and 1 in shape
        if not keep and n >= MAX_NDIM:
            return Expr("leaf", None, (), shape)
        if keep:
            dim = rnd.choice([i for i, s in enumerate(shape) if s == 1])
            src = shape[:dim] + (rnd.randint(1, 3),) + shape[dim + 1:]
        else:
            dim = rnd.randint(0, n)
            src = shape[:dim] + (rnd.randint(1, 3),) + shape[dim:]
        return Expr(op, (dim, keep), (sub(src),), shape)
    if op == "reshape":
        numel = int(np.prod(shape))
        options = [(numel,), tuple(reversed(shape)), ((1,) + shape)[:MAX_NDIM]]
        if n >= 2:
            options.append((shape[0] * shape[1],) + shape[2:])
        src = rnd.choice([o for o in options if int(np.prod(o)) == numel])
        return Expr(op, shape, (sub(src),), shape)
    if op == "permute":
        perm = tuple(rnd.sample(range(n), n))
        src = [0] * n
        for i, p in enumerate(perm):
            src[p] = shape[i]
        return Expr(op, perm, (sub(tuple(src)),), shape)
    if op == "slice":
        dim, start, step = rnd.randint(0, n - 1), rnd.randint(0, 2), rnd.randint(1, 2)
        stop = start + (shape[dim] - 1) * step + 1
        src = shape[:dim] + (stop + rnd.randint(0, 1),) + shape[dim + 1:]
        return Expr(op, (slice(None),) * dim + (slice(start, stop, step),), (sub(src),), shape)
    if op == "flip":
        dims = tuple(sorted(rnd.sample(range(n), rnd.randint(1, n))))
        return Expr(op, dims, (sub(shape),), shape)
    if op == "pad":
        pads, src = [], list(shape)
        for d in range(n - 1, n - 1 - rnd.randint(1, min(2, n)), -1):
            left, right = rnd.randint(0, 1), rnd.randint(0, 1)
            if shape[d] - left - right < 1:
                left = right = 0
            pads += [left, right]
            src[d] = shape[d] - left - right
        return Expr(op, tuple(pads), (sub(tuple(src)),), shape)
    if op == "cat":
        dim = rnd.choice([i for i, s in enumerate(shape) if s >= 2])
        first = rnd.randint(1, shape[dim] - 1)
        parts = [shape[:dim] + (k,) + shape[dim + 1:] for k in (first, shape[dim] - first)]
        return Expr(op, dim, (sub(parts[0]), sub(parts[1])), shape)
    k = rnd.randint(1, 3)  # matmul: vector.vector, vector @ matrix, or batched matrices
    if n == 0:
        a, b = (k,), (k,)
    elif n == 1:
        a, b = (k,), (k, shape[0])
    else:
        a = shape[:-1] + (k,)
        b = (shape[:-2] if rnd.random() < 0.5 else ()) + (k, shape[-1])
    return Expr(op, None, (sub(a), sub(b)), shape)


@st.composite
def graphs(draw: Callable, max_depth: int = 6) -> tuple[Expr, list[np.ndarray]]:
    """A random graph and float64 data for its leaves (in drawing order)."""
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))  # a seeded Random: structure uniform, not biased to tiny
    shape = tuple(rnd.randint(1, 3) for _ in range(rnd.randint(0, 4)))
    expr = _draw(rnd, shape, rnd.randint(3, max_depth))
    rng = np.random.default_rng(rnd.randint(0, 2**32 - 1))
    leaves = [rng.standard_normal(e.shape) for e in _leaves(expr)]
    return expr, leaves


def _leaves(e: Expr) -> list[Expr]:
    """The distinct leaves in first-visit order (the order `evaluate` consumes inputs)."""
    found: dict[int, Expr] = {}

    def visit(x: Expr) -> None:
        if x.op == "leaf":
            found.setdefault(id(x), x)
        for k in x.kids:
            visit(k)
    visit(e)
    return list(found.values())


def evaluate(e: Expr, lib: str, inputs: list[Any], scale: list[float] | None = None) -> Any:
    """Run the graph in one library; leaves take `inputs` in order. `scale` collects the largest magnitude seen."""
    it = iter(inputs)
    done: dict[int, Any] = {}  # a shared subexpression is built once and its tensor used twice

    def run(x: Expr) -> Any:
        if id(x) not in done:
            out = next(it) if x.op == "leaf" else OPS[x.op](lib, x.arg, *[run(k) for k in x.kids])
            if scale is not None:
                scale.append(float(np.abs(out).max(initial=0)))
            done[id(x)] = out
        return done[id(x)]
    return run(e)


def _describe(e: Expr) -> str:
    return f"{e.shape}" if e.op == "leaf" else f"{e.op}[{e.arg}]({', '.join(_describe(k) for k in e.kids)})"


# ---------------------------------------------------------------- properties


@SETTINGS
@given(case=graphs())
def test_random_graph_forward_matches_numpy(device: str, case: tuple[Expr, list[np.ndarray]]) -> None:
    expr, leaves = case
    sizes: list[float] = []
    want = evaluate(expr, "np", leaves, sizes)
    got = evaluate(expr, "fg", [fg.tensor(a, device=device) for a in leaves])
    assert got.shape == expr.shape == np.shape(want), _describe(expr)
    assert got.dtype == fg.float64 and got.device == device
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-11 * max(1.0, *sizes), err_msg=_describe(expr))


@SETTINGS
@given(case=graphs(max_depth=5))
def test_random_graph_gradients_match_torch(device: str, case: tuple[Expr, list[np.ndarray]]) -> None:
    expr, leaves = case
    fx = [fg.tensor(a, device=device, requires_grad=True) for a in leaves]
    tx = [torch.tensor(a, requires_grad=True) for a in leaves]
    sizes: list[float] = []
    evaluate(expr, "np", leaves, sizes)
    f_out, t_out = evaluate(expr, "fg", fx), evaluate(expr, "torch", tx)
    up = np.random.default_rng(len(leaves)).standard_normal(expr.shape)
    (f_out * fg.tensor(up, device=device)).sum().backward()
    (t_out * torch.tensor(up)).sum().backward()
    np.testing.assert_allclose(f_out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-11 * max(1.0, *sizes))
    for i, (f, t) in enumerate(zip(fx, tx)):
        if t.grad is None:  # only read as a where condition: no gradient at all, as in torch
            assert f.grad is None, f"leaf {i} should get no gradient in {_describe(expr)}"
            continue
        want = t.grad.numpy()
        assert f.grad is not None, f"leaf {i} got no gradient in {_describe(expr)}"
        np.testing.assert_allclose(f.grad.numpy(), want, rtol=1e-7, atol=1e-9 * max(1.0, *sizes, np.abs(want).max()),
                                   err_msg=f"gradient of leaf {i} in {_describe(expr)}")
