"""Movement ops (reshape, permute, expand, cat, split, pad, unfold, ...) against PyTorch: values and gradients."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn.functional import pad as torch_pad

import fusegrad as fg
from tests.helpers import assert_close, compare, randn

Fn = Callable[[Any], Any]


def same(fn: Fn) -> tuple[Fn, None]:
    """A case whose code is identical for fusegrad and torch tensors."""
    return fn, None


# (id, (fusegrad fn, torch fn or None for the same), input shapes); float64 inputs, forward and gradients
UNARY_CASES: list[tuple[str, tuple[Fn, Fn | None], list[tuple[int, ...]]]] = [
    ("reshape", same(lambda x: x.reshape(6, 4)), [(2, 3, 4)]),
    ("reshape_tuple", same(lambda x: x.reshape((4, 3, 2))), [(2, 3, 4)]),
    ("reshape_neg1", same(lambda x: x.reshape(4, -1, 2)), [(2, 3, 4)]),
    ("reshape_flat", same(lambda x: x.reshape(-1)), [(2, 3, 4), (), (0, 3)]),
    ("reshape_0d", same(lambda x: x.reshape(())), [(1,), (1, 1)]),
    ("reshape_empty", same(lambda x: x.reshape(2, 0, 3)), [(0, 6)]),
    ("reshape_noncontig", same(lambda x: x.transpose(0, 1).reshape(12)), [(3, 4)]),
    ("view", same(lambda x: x.view(3, 8)), [(2, 3, 4)]),
    ("view_neg1", same(lambda x: x.view(-1, 4)), [(2, 3, 4)]),
    ("view_as", same(lambda x: x.view_as(x.reshape(4, 6))), [(2, 3, 4)]),
    ("reshape_as", same(lambda x: x.reshape_as(x.reshape(24))), [(2, 3, 4)]),
    ("flatten", same(lambda x: x.flatten()), [(2, 3, 4), (), (5,), (2, 0, 3)]),
    ("flatten_start", same(lambda x: x.flatten(1)), [(2, 3, 4), (2, 1)]),
    ("flatten_range", same(lambda x: x.flatten(1, 2)), [(2, 3, 4, 5)]),
    ("flatten_neg", same(lambda x: x.flatten(-3, -2)), [(2, 3, 4, 5)]),
    ("flatten_same", same(lambda x: x.flatten(1, 1)), [(2, 3, 4)]),
    ("unflatten", same(lambda x: x.unflatten(1, (2, 3))), [(4, 6)]),
    ("unflatten_neg1", same(lambda x: x.unflatten(-1, (2, -1, 1))), [(4, 6)]),
    ("squeeze", same(lambda x: x.squeeze()), [(1, 3, 1, 2), (1, 1), (), (3,), (1, 0)]),
    ("squeeze_dim", same(lambda x: x.squeeze(0)), [(1, 3), (2, 3), (1,)]),
    ("squeeze_neg", same(lambda x: x.squeeze(-2)), [(3, 1, 2)]),
    ("squeeze_tuple", same(lambda x: x.squeeze((0, 2))), [(1, 3, 1, 2), (1, 3, 4)]),
    ("squeeze_0d", same(lambda x: x.squeeze(0)), [()]),
    ("unsqueeze", same(lambda x: x.unsqueeze(0)), [(2, 3), ()]),
    ("unsqueeze_mid", same(lambda x: x.unsqueeze(1)), [(2, 3)]),
    ("unsqueeze_neg", same(lambda x: x.unsqueeze(-1)), [(2, 3), ()]),
    ("unsqueeze_neg_first", same(lambda x: x.unsqueeze(-3)), [(2, 3)]),
    ("permute", same(lambda x: x.permute(2, 0, 1)), [(2, 3, 4), (2, 0, 4)]),
    ("permute_tuple_neg", same(lambda x: x.permute((-1, 0, 1))), [(2, 3, 4)]),
    ("permute_0d", same(lambda x: x.permute(())), [()]),
    ("transpose", same(lambda x: x.transpose(0, -1)), [(2, 3, 4)]),
    ("transpose_same", same(lambda x: x.transpose(1, 1)), [(2, 3)]),
    ("swapaxes", same(lambda x: x.swapaxes(0, 1)), [(2, 3)]),
    ("T", same(lambda x: x.T), [(2, 3), (1, 4), (0, 2)]),
    ("T_3d", (lambda x: x.T, lambda x: x.permute(2, 1, 0)), [(2, 3, 4)]),  # torch deprecates .T off 2-D
    ("mT", same(lambda x: x.mT), [(2, 3), (5, 2, 3)]),
    ("movedim", same(lambda x: x.movedim(0, -1)), [(2, 3, 4)]),
    ("movedim_back", same(lambda x: x.movedim(-1, 0)), [(2, 3, 4)]),
    ("movedim_tuple", same(lambda x: x.movedim((0, 1), (2, 0))), [(2, 3, 4)]),
    ("movedim_tuple_neg", same(lambda x: x.movedim((-1, 0), (1, -1))), [(2, 3, 4, 5)]),
    ("expand", same(lambda x: x.expand(3, 4)), [(3, 1), (1, 4), (4,), ()]),
    ("expand_neg1", same(lambda x: x.expand(-1, 5, -1)), [(3, 1, 2)]),
    ("expand_lead", same(lambda x: x.expand(2, 3, 5, 4)), [(3, 1, 4)]),
    ("expand_lead_neg1", same(lambda x: x.expand(2, -1, 5, -1)), [(3, 1, 4)]),
    ("expand_tuple", same(lambda x: x.expand((2, 3))), [(3,)]),
    ("expand_zero", same(lambda x: x.expand(0, 3)), [(1, 3)]),
    ("expand_noncontig", same(lambda x: x.T.expand(2, 3, 4)), [(4, 3)]),
    ("broadcast_to", same(lambda x: x.broadcast_to((2, 3, 4))), [(3, 1), (4,), ()]),
    ("repeat", same(lambda x: x.repeat(2, 3)), [(2, 3)]),
    ("repeat_lead", same(lambda x: x.repeat(2, 1, 3)), [(3,), ()]),
    ("repeat_ones", same(lambda x: x.repeat(1, 1)), [(2, 3)]),
    ("repeat_zero", same(lambda x: x.repeat(0, 2)), [(2, 3)]),
    ("repeat_noncontig", same(lambda x: x.T.repeat(2, 2)), [(2, 3)]),
    ("flip", same(lambda x: x.flip(0)), [(3, 4), (5,), (0, 2)]),
    ("flip_multi", same(lambda x: x.flip(0, 2)), [(2, 3, 4)]),
    ("flip_tuple_neg", same(lambda x: x.flip((-1, -2))), [(2, 3, 4)]),
    ("flip_noncontig", same(lambda x: x[:, ::2].flip(1)), [(3, 5)]),
    ("narrow", same(lambda x: x.narrow(1, 1, 2)), [(3, 4)]),
    ("narrow_neg_start", same(lambda x: x.narrow(-1, -3, 2)), [(3, 4)]),
    ("narrow_empty", same(lambda x: x.narrow(0, 3, 0)), [(3, 4)]),
    ("contiguous", same(lambda x: x.T.contiguous()), [(3, 4)]),
    ("clone", same(lambda x: x.clone()), [(3, 4), ()]),
    ("clone_then_mul", same(lambda x: x.clone() * x), [(3, 4)]),
]

# F.pad style padding: (left, right) of the last dim first; negative amounts crop
PAD_CASES: list[tuple[tuple[int, ...], tuple[int, ...], float]] = [
    ((3, 4), (1, 2), 0.0),
    ((3, 4), (1, 2, 0, 1), 0.0),
    ((3, 4), (0, 0), 0.0),
    ((3, 4), (0, 0, 0, 0), 0.0),
    ((3, 4), (-1, 1), 0.0),
    ((3, 4), (-1, -2, 2, -1), 0.0),
    ((3, 4), (1, -4), 0.0),
    ((2, 3, 4), (1, 1, 1, 1, 1, 1), 0.0),
    ((2, 3, 4), (2, 1, -1, 0), 2.5),
    ((3, 4), (1, 1), -1.0),
    ((3, 4), (-1, -1), 7.0),  # pure crop with a nonzero value: nothing is filled
    ((0, 4), (1, 1), 3.0),
    ((5,), (2, 3), 1.0),
]

UNFOLD_CASES: list[tuple[tuple[int, ...], int, int, int]] = [
    ((10,), 0, 3, 1),
    ((10,), 0, 3, 2),
    ((10,), 0, 4, 3),
    ((10,), 0, 10, 1),
    ((10,), 0, 1, 4),
    ((3, 7), 1, 2, 2),
    ((3, 7), 0, 2, 1),
    ((3, 7), -1, 7, 5),
    ((2, 6, 3), 1, 3, 2),
    ((2, 6, 3), 2, 1, 1),
    ((), 0, 1, 1),
    ((4, 0), 0, 2, 1),
]


@pytest.mark.parametrize("name,fns,shapes", UNARY_CASES, ids=[c[0] for c in UNARY_CASES])
def test_unary_movement(device: str, name: str, fns: tuple[Fn, Fn | None], shapes: list[tuple[int, ...]]) -> None:
    for k, shape in enumerate(shapes):
        compare(fns[0], fns[1], randn(*shape, seed=k), device=device)


@pytest.mark.parametrize("name,fns,shapes", [c for c in UNARY_CASES if c[0] in
                                             ("reshape_neg1", "permute", "expand_lead", "repeat", "flip_multi",
                                              "squeeze", "movedim", "narrow")], ids=lambda v: v if isinstance(v, str)
                         else "")
@pytest.mark.parametrize("np_dtype", [np.float32, np.int32, np.int64, np.bool_])
def test_movement_keeps_dtype(device: str, name: str, fns: tuple[Fn, Fn | None], shapes: list[tuple[int, ...]],
                              np_dtype: Any) -> None:
    data = (randn(*shapes[0], seed=3) * 5).astype(np_dtype)
    compare(fns[0], fns[1], data, device=device)


@pytest.mark.parametrize("shape,pad,value", PAD_CASES)
def test_pad(device: str, shape: tuple[int, ...], pad: tuple[int, ...], value: float) -> None:
    compare(lambda x: x.pad(pad, value=value), lambda x: torch_pad(x, pad, value=value), randn(*shape), device=device)


def test_pad_noncontig_and_int(device: str) -> None:
    compare(lambda x: x.T.pad((1, 0, 2, 1)), lambda x: torch_pad(x.T, (1, 0, 2, 1)), randn(3, 4), device=device)
    ints = np.arange(12, dtype=np.int64).reshape(3, 4)
    compare(lambda x: x.pad((1, 1), value=-5), lambda x: torch_pad(x, (1, 1), value=-5), ints, device=device)


@pytest.mark.parametrize("shape,dim,size,step", UNFOLD_CASES)
def test_unfold(device: str, shape: tuple[int, ...], dim: int, size: int, step: int) -> None:
    compare(lambda x: x.unfold(dim, size, step), None, randn(*shape), device=device)


def test_unfold_noncontig(device: str) -> None:
    compare(lambda x: x.T.unfold(0, 3, 2), None, randn(4, 7), device=device)
    compare(lambda x: x.unfold(0, 2, 1), None, np.arange(5, dtype=np.int64), device=device)


def test_expand_as_and_view_as_other_tensor(device: str) -> None:
    a, b = randn(3, 1), randn(2, 3, 4, seed=1)
    compare(lambda x, y: x.expand_as(y) * y, None, a, b, device=device)
    compare(lambda x, y: x.view_as(y) + y, None, randn(4, 6), b, device=device)


# ---- joining and splitting ----

def _cat(lib: Any, dim: int) -> Callable[..., Any]:
    return lambda *xs: lib.cat(list(xs), dim)


@pytest.mark.parametrize("shapes,dim", [
    ([(2, 3), (4, 3)], 0),
    ([(2, 3), (2, 1), (2, 5)], 1),
    ([(2, 3), (2, 1), (2, 5)], -1),
    ([(2, 3, 4), (2, 3, 4), (2, 3, 4)], 1),
    ([(2, 3, 4), (2, 3, 1)], 2),
    ([(5,), (2,)], 0),
    ([(0, 3), (2, 3), (0, 3)], 0),
    ([(2, 0), (2, 3)], 1),
    ([(0, 3)], 0),
    ([(3, 2)], -2),
])
def test_cat(device: str, shapes: list[tuple[int, ...]], dim: int) -> None:
    arrays = [randn(*s, seed=k) for k, s in enumerate(shapes)]
    compare(_cat(fg, dim), _cat(torch, dim), *arrays, device=device)


def test_cat_method_aliases_and_noncontig(device: str) -> None:
    a, b = randn(3, 2), randn(2, 3, seed=1)
    compare(lambda x, y: fg.cat([x.T, y], dim=0), lambda x, y: torch.cat([x.T, y], dim=0), a, b, device=device)
    compare(lambda x, y: fg.concat((x, y[:, ::2]), 1), lambda x, y: torch.concat((x, y[:, ::2]), 1), b, b,
            device=device)


def test_cat_legacy_empty_1d(device: str) -> None:
    # torch still skips 1-D empty tensors when concatenating higher-rank ones
    compare(lambda x, y: fg.cat([x, y]), lambda x, y: torch.cat([x, y]), randn(0), randn(2, 3), device=device)


@pytest.mark.parametrize("dtypes", [(np.int64, np.float32), (np.int32, np.int64), (np.bool_, np.int32),
                                    (np.float32, np.float64), (np.bool_, np.bool_)])
def test_cat_promotes_dtype(device: str, dtypes: tuple[Any, Any]) -> None:
    a = (randn(2, 3) * 3).astype(dtypes[0])
    b = (randn(1, 3, seed=1) * 3).astype(dtypes[1])
    compare(_cat(fg, 0), _cat(torch, 0), a, b, device=device)


@pytest.mark.parametrize("shape,n,dim", [((2, 3), 3, 0), ((2, 3), 2, 1), ((2, 3), 2, -1), ((2, 3), 2, 2),
                                         ((2, 3), 4, -3), ((), 3, 0), ((0, 2), 2, 1)])
def test_stack(device: str, shape: tuple[int, ...], n: int, dim: int) -> None:
    arrays = [randn(*shape, seed=k) for k in range(n)]
    compare(lambda *xs: fg.stack(xs, dim), lambda *xs: torch.stack(xs, dim), *arrays, device=device)


def test_stack_int_and_noncontig(device: str) -> None:
    ints = [np.arange(6, dtype=np.int64).reshape(2, 3) * k for k in range(2)]
    compare(lambda *xs: fg.stack(xs, 1), lambda *xs: torch.stack(xs, 1), *ints, device=device)
    compare(lambda x, y: fg.stack([x.T, y]), lambda x, y: torch.stack([x.T, y]), randn(3, 2), randn(2, 3, seed=1),
            device=device)


@pytest.mark.parametrize("shape,arg,dim", [
    ((6, 2), 2, 0), ((7, 2), 3, 0), ((7, 2), 10, 0), ((2, 7), 3, -1), ((6, 2), [1, 2, 3], 0),
    ((6, 2), (0, 6), 0), ((2, 5), [2, 0, 3], 1), ((0, 3), 2, 0), ((6,), 1, 0),
])
def test_split(device: str, shape: tuple[int, ...], arg: Any, dim: int) -> None:
    compare(lambda x: x.split(arg, dim), None, randn(*shape), device=device)
    compare(lambda x: fg.split(x, arg, dim), lambda x: torch.split(x, arg, dim), randn(*shape), device=device)


@pytest.mark.parametrize("shape,chunks,dim", [
    ((6, 2), 3, 0), ((5, 2), 3, 0), ((6, 2), 4, 0), ((2, 7), 3, 1), ((2, 3), 5, -1), ((3,), 1, 0),
    ((0,), 3, 0), ((2, 0), 2, 1),
])
def test_chunk(device: str, shape: tuple[int, ...], chunks: int, dim: int) -> None:
    compare(lambda x: x.chunk(chunks, dim), None, randn(*shape), device=device)


@pytest.mark.parametrize("shape,dim", [((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((2, 3, 4), 1), ((0, 2), 1)])
def test_unbind(device: str, shape: tuple[int, ...], dim: int) -> None:
    compare(lambda x: x.unbind(dim), None, randn(*shape), device=device)


def test_split_pieces_feed_each_other(device: str) -> None:
    """Pieces recombined (a common pattern: swap halves) route every gradient back to its source element."""
    compare(lambda x: x.chunk(2, 1)[1].cat(x.chunk(2, 1)[0], dim=1) if isinstance(x, fg.Tensor)
            else torch.cat([x.chunk(2, 1)[1], x.chunk(2, 1)[0]], dim=1), None, randn(3, 4), device=device)


def test_float32_forward(device: str) -> None:
    x = randn(2, 3, 4, dtype=np.float32)
    compare(lambda t: t.permute(1, 0, 2).reshape(3, -1).flip(0).unfold(1, 3, 2), None, x, device=device)
    compare(_cat(fg, 1), _cat(torch, 1), x, x[:, :1], device=device)


# ---- errors: fg.ShapeError (a ValueError) naming the shapes ----

@pytest.mark.parametrize("fn,needles", [
    (lambda x: x.reshape(5, 5), ["(2, 3, 4)", "(5, 5)"]),
    (lambda x: x.reshape(-1, -1), ["(2, 3, 4)"]),
    (lambda x: x.reshape(5, -1), ["(2, 3, 4)"]),
    (lambda x: x[:0].reshape(0, -1), ["(0, 3, 4)"]),  # -1 next to a 0 is ambiguous
    (lambda x: x.view(7), ["(2, 3, 4)"]),
    (lambda x: x.expand(2, 5, 4), ["(2, 3, 4)", "(2, 5, 4)"]),
    (lambda x: x.expand(3, 4), ["(2, 3, 4)"]),
    (lambda x: x.expand(-1, 2, 3, 4), ["(2, 3, 4)"]),
    (lambda x: x.broadcast_to((3, 3, 4)), ["(2, 3, 4)", "(3, 3, 4)"]),
    (lambda x: x.permute(0, 1), ["(2, 3, 4)"]),
    (lambda x: x.permute(0, 1, 1), ["(2, 3, 4)"]),
    (lambda x: x.movedim((0, 1), (1, 1)), ["(2, 3, 4)"]),
    (lambda x: x.split([1, 1], 1), ["(2, 3, 4)", "[1, 1]"]),
    (lambda x: x.narrow(1, 2, 2), ["(2, 3, 4)"]),
    (lambda x: x.narrow(1, -1, 2), ["(2, 3, 4)"]),
    (lambda x: x.narrow(1, 0, -1), ["(2, 3, 4)"]),
    (lambda x: x.unflatten(1, (2, 2)), ["(2, 3, 4)"]),
    (lambda x: x.repeat(2, 2), ["(2, 3, 4)"]),
    (lambda x: x.unfold(1, 4, 1), ["(2, 3, 4)"]),
    (lambda x: x.pad((1, 2, 3)), ["(2, 3, 4)"]),
    (lambda x: x.pad((-3, -2)), ["(2, 3, 4)"]),
    (lambda x: x.flatten(2, 1), ["(2, 3, 4)"]),
    (lambda x: fg.cat([x, x.reshape(3, 2, 4)]), ["(2, 3, 4)", "(3, 2, 4)"]),
    (lambda x: fg.cat([x, x[0]]), ["(2, 3, 4)", "(3, 4)"]),
    (lambda x: fg.cat([x[0, 0, 0], x[0, 0, 0]]), ["zero-dim"]),
    (lambda x: fg.stack([x, x[:1]]), ["(2, 3, 4)", "(1, 3, 4)"]),
])
def test_shape_errors(fn: Fn, needles: list[str]) -> None:
    x = fg.ones(2, 3, 4)
    with pytest.raises(fg.ShapeError) as err:
        fn(x)
    assert isinstance(err.value, ValueError)
    for needle in needles:
        assert needle in str(err.value), f"{needle!r} not in {err.value}"


@pytest.mark.parametrize("fn", [lambda x: x.unsqueeze(4), lambda x: x.transpose(0, 3), lambda x: x.squeeze(-4),
                                lambda x: x.flip(3), lambda x: x.movedim(0, 3)])
def test_dim_out_of_range(fn: Fn) -> None:
    with pytest.raises(IndexError, match=r"\(2, 3, 4\)"):
        fn(fg.ones(2, 3, 4))


def test_empty_lists_and_bad_sizes() -> None:
    with pytest.raises(ValueError):
        fg.cat([])
    with pytest.raises(ValueError):
        fg.stack([])
    with pytest.raises(ValueError):
        fg.ones(4).split(0)
    with pytest.raises(ValueError):
        fg.ones(4).chunk(0)


def test_views_are_lazy_and_shape_checked_before_running() -> None:
    """Movement ops only build the graph: a bad reshape deep in a chain fails without computing anything."""
    x = fg.ones(4, 6)
    y = x.T.reshape(3, 8).unfold(1, 2, 2)
    assert y.shape == (3, 4, 2) and not y._node.realized
    with pytest.raises(fg.ShapeError):
        y.reshape(5, 5)


def test_cat_stack_module_level_match_methods(device: str) -> None:
    a = fg.tensor(randn(2, 3), device=device)
    b = fg.tensor(randn(2, 3, seed=1), device=device)
    assert_close(a.cat(b, dim=1), torch.cat([torch.tensor(randn(2, 3)), torch.tensor(randn(2, 3, seed=1))], 1))
    assert fg.stack([a, b], -1).shape == (2, 3, 2)


def test_a_block_of_a_buffer_reached_through_a_masked_view_keeps_its_offset(device: str) -> None:
    _check_block_offset(device, jit=False)


def test_a_jitted_block_of_a_buffer_reached_through_a_masked_view_keeps_its_offset(device: str) -> None:
    _check_block_offset(device, jit=True)


def _check_block_offset(device: str, jit: bool) -> None:
    # b's gradient is row 1 of a (2, 1) sum seen through a pad that a shrink removes again (the gradient of a
    # strided slice): the view must start at row 1, which the accelerators once lost (they read row 0)
    p = np.arange(6.0).reshape(2, 3)

    def grads(a: fg.Tensor, b: fg.Tensor, q: fg.Tensor) -> tuple[fg.Tensor, fg.Tensor]:
        y = fg.cat([a, b[0:1:2]], 0)
        return fg.grad((y * q).sum(), [a, b])

    step = fg.jit(grads) if jit else grads
    for _ in range(4 if jit else 1):  # eager, capture, check, replay
        a = fg.tensor(np.full((1, 1), 0.5), device=device, requires_grad=True)
        b = fg.tensor(np.full((1, 1), 0.7), device=device, requires_grad=True)
        ga, gb = step(a, b, fg.tensor(p, device=device))
        assert ga.tolist() == [[p[0].sum()]] and gb.tolist() == [[p[1].sum()]]
