"""Tests for fusegrad.view.View: every movement op is checked against NumPy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusegrad.view import View, batch_stride, matrix_layout

# ---------------------------------------------------------------- helpers


def base(n: int) -> np.ndarray:
    """Flat buffer with distinct non-zero values, so padding zeros stand out."""
    return np.arange(1, n + 1, dtype=np.int64)


def materialize(view: View, buf: np.ndarray) -> np.ndarray:
    """Read ``buf`` through ``view``, asserting valid reads stay in bounds."""
    idx, valid = view.flat_indices()
    assert idx.shape == view.shape and valid.shape == view.shape
    assert idx.dtype == np.int64 and valid.dtype == np.bool_
    # numpy would silently wrap negative indices, so bound-check explicitly
    assert np.all((idx[valid] >= 0) & (idx[valid] < buf.size))
    safe = np.where(valid, idx, 0)
    return np.where(valid, buf[safe] if buf.size else 0, 0)


def check(view: View, buf: np.ndarray, expected: np.ndarray) -> None:
    """Assert the view reads exactly ``expected`` and renders consistently."""
    got = materialize(view, buf)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if view.size <= 256:
        check_render(view)


def check_render(view: View) -> None:
    """Evaluate render_index strings over all index tuples against flat_indices."""
    names = [f"i{d}" for d in range(view.ndim)]
    idx_expr, valid_expr = view.render_index(names)
    # the C expressions use '/' and '%' only on non-negative operands
    to_py = {ord("/"): "//"}
    idx_code = compile(idx_expr.translate(to_py), "<idx>", "eval")
    valid_code = compile(valid_expr.translate(to_py), "<valid>", "eval")
    idx, valid = view.flat_indices()
    for t in itertools.product(*(range(s) for s in view.shape)):
        env = dict(zip(names, t))
        ok = bool(eval(valid_code, {}, env))
        assert ok == bool(valid[t]), (t, valid_expr)
        if ok:
            assert eval(idx_code, {}, env) == idx[t], (t, idx_expr)


def np_apply(arr: np.ndarray, op: str, arg: object) -> np.ndarray:
    """Apply a movement op to a numpy array (the reference semantics)."""
    if op == "reshape":
        return arr.reshape(arg)
    if op == "permute":
        return arr.transpose(arg)
    if op == "expand":
        return np.broadcast_to(arr, arg)
    if op == "pad":
        return np.pad(arr, arg) if arr.ndim else arr
    if op == "shrink":
        return arr[tuple(slice(b, e) for b, e in arg)]
    if op == "flip":
        return np.flip(arr, tuple(arg))
    if op == "stride":
        return arr[tuple(slice(None, None, k) for k in arg)]
    raise AssertionError(op)


def view_apply(view: View, op: str, arg: object) -> View | None:
    """Apply the same movement op to a View."""
    return getattr(view, op)(arg)


def run_chain(shape: tuple[int, ...], ops: list[tuple[str, object]]) -> View:
    """Apply ``ops`` to a contiguous view and numpy, checking after every step."""
    buf = base(math.prod(shape))
    arr, view = buf.reshape(shape), View.contiguous(shape)
    check(view, buf, arr)
    for op, arg in ops:
        arr, view = np_apply(arr, op, arg), view_apply(view, op, arg)
        assert view is not None, (op, arg)
        check(view, buf, arr)
    return view


# ---------------------------------------------------------------- basics


def test_contiguous_and_canonical_strides() -> None:
    v = View.contiguous((2, 1, 3))
    assert v.strides == (3, 0, 1) and v.offset == 0 and v.mask is None
    assert v.is_contiguous
    assert View((2, 1, 3), (3, 3, 1)) == v
    assert hash(View((2, 1, 3), (3, 99, 1))) == hash(v)
    assert View.contiguous([4, 5]) == View((4, 5), (5, 1))
    assert not v.permute((2, 1, 0)).is_contiguous
    assert not View.contiguous((4,)).shrink(((1, 3),)).is_contiguous


def test_frozen() -> None:
    v = View.contiguous((2, 3))
    with pytest.raises(AttributeError):
        v.offset = 3  # type: ignore[misc]


def test_full_mask_is_none_and_roundtrip_equal() -> None:
    v = View.contiguous((3, 4))
    assert View((3, 4), (4, 1), 0, ((0, 3), (0, 4))) == v
    back = v.pad(((1, 2), (0, 3))).shrink(((1, 4), (0, 4)))
    assert back == v and back.is_contiguous
    assert v.flip((0, 1)).flip((1, 0)) == v


# ---------------------------------------------------------------- each op


@pytest.mark.parametrize("shape,ops", [
    ((4, 6), [("reshape", (2, 2, 6))]),
    ((4, 6), [("reshape", (24,))]),
    ((4, 6), [("reshape", (1, 4, 1, 6, 1))]),
    ((4, 6), [("permute", (1, 0))]),
    ((2, 3, 4), [("permute", (2, 0, 1))]),
    ((1, 3), [("expand", (5, 3))]),
    ((3, 1), [("expand", (3, 4))]),
    ((3, 4), [("pad", ((1, 2), (0, 3)))]),
    ((5, 6), [("shrink", ((1, 4), (2, 6)))]),
    ((3, 4), [("flip", (0,))]),
    ((3, 4), [("flip", (0, 1))]),
    ((7, 5), [("stride", (2, 3))]),
    ((4, 6), [("permute", (1, 0)), ("reshape", (3, 2, 4))]),
    ((6, 6), [("shrink", ((1, 5), (0, 6))), ("reshape", (2, 2, 6))]),
    ((6, 6), [("shrink", ((1, 5), (0, 6))), ("reshape", (2, 2, 3, 2))]),
    ((1, 6), [("expand", (4, 6)), ("reshape", (2, 2, 6))]),
    ((1, 6), [("expand", (4, 6)), ("reshape", (2, 2, 3, 2))]),
    ((3, 4), [("flip", (1,)), ("reshape", (3, 2, 2))]),
    ((3, 4), [("flip", (0, 1)), ("reshape", (12,))]),
    ((8,), [("stride", (2,)), ("reshape", (2, 2))]),
    ((2, 3), [("pad", ((1, 1), (0, 0))), ("reshape", (12,))]),
    ((2, 3), [("pad", ((2, 0), (0, 0))), ("reshape", (2, 2, 3))]),
    ((2, 3), [("pad", ((0, 0), (1, 0))), ("reshape", (1, 2, 1, 4))]),
    ((2, 3), [("pad", ((1, 0), (0, 0))), ("reshape", (9, 1))]),
    ((4, 3), [("pad", ((0, 0), (0, 1))), ("shrink", ((2, 3), (0, 4))),
              ("reshape", (1, 4, 1))]),
    ((4, 6), [("pad", ((2, 2), (0, 0))), ("reshape", (4, 2, 6))]),
    ((4, 6), [("pad", ((4, 0), (0, 0))), ("reshape", (2, 4, 6))]),
    ((3, 4), [("pad", ((1, 0), (2, 1))), ("pad", ((0, 2), (1, 1)))]),
    ((3, 4), [("pad", ((1, 1), (2, 2))), ("shrink", ((0, 3), (1, 7)))]),
    ((3, 4), [("pad", ((1, 1), (2, 2))), ("shrink", ((0, 1), (0, 8)))]),
    ((3, 4), [("pad", ((1, 1), (2, 2))), ("flip", (1,)),
              ("stride", (2, 3))]),
    ((5, 4), [("pad", ((1, 1), (0, 0))), ("stride", (3, 1))]),
    ((3, 4), [("pad", ((1, 1), (2, 2))), ("permute", (1, 0)),
              ("shrink", ((1, 6), (1, 4))), ("pad", ((1, 0), (0, 2)))]),
    ((3, 1), [("pad", ((1, 0), (0, 0))), ("expand", (4, 5))]),
    ((6, 5), [("flip", (0,)), ("stride", (4, 2)), ("shrink", ((0, 2), (1, 3)))]),
])
def test_chains_match_numpy(shape: tuple[int, ...], ops: list) -> None:
    run_chain(shape, ops)


@pytest.mark.parametrize("shape,ops", [
    ((4, 6), [("permute", (1, 0)), ("reshape", (24,))]),
    ((4, 6), [("permute", (1, 0)), ("reshape", (4, 6))]),
    ((1, 6), [("expand", (4, 6)), ("reshape", (24,))]),
    ((6, 6), [("shrink", ((0, 6), (1, 5))), ("reshape", (24,))]),
    ((8,), [("stride", (3,)), ("pad", ((0, 1),)), ("reshape", (2, 2))]),
    ((2, 3), [("pad", ((0, 0), (1, 0))), ("reshape", (8,))]),
    ((2, 3), [("pad", ((1, 1), (0, 0))), ("reshape", (3, 4))]),
    ((2, 3), [("pad", ((1, 1), (0, 0))), ("reshape", (2, 2, 3))]),
    ((4, 6), [("pad", ((2, 2), (0, 0))), ("reshape", (2, 4, 6))]),
])
def test_reshape_needs_copy(shape: tuple[int, ...], ops: list) -> None:
    view = run_chain(shape, ops[:-1])
    _, arg = ops[-1]
    assert view.reshape(arg) is None


# ---------------------------------------------------------------- edge shapes


def test_empty_dims() -> None:
    run_chain((0, 3), [("reshape", (3, 0)), ("permute", (1, 0)),
                       ("flip", (0,)), ("stride", (2, 2)), ("reshape", (0,))])
    run_chain((1, 3), [("expand", (0, 3)), ("pad", ((2, 0), (0, 1)))])
    run_chain((2, 3), [("shrink", ((1, 1), (0, 3))), ("reshape", (0, 5, 7))])
    run_chain((0,), [("pad", ((1, 2),)), ("reshape", (3, 1)), ("expand", (3, 2))])
    assert View.contiguous((0, 3)) == View((0, 3), (7, 9), 5)


def test_zero_dim() -> None:
    v = View.contiguous(())
    assert v.shape == () and v.strides == () and v.is_contiguous and v.size == 1
    idx, valid = v.flat_indices()
    assert idx.shape == () and int(idx) == 0 and bool(valid)
    assert v.render_index([]) == ("0", "1")
    run_chain((), [("reshape", (1, 1)), ("expand", (2, 3)),
                   ("shrink", ((1, 2), (2, 3))), ("reshape", ())])
    run_chain((), [("permute", ()), ("flip", ()), ("stride", ()), ("pad", ()),
                   ("shrink", ()), ("expand", ())])
    assert View.contiguous((1,)).pad(((0, 0),)).reshape(()) == v
    # a 0-d view cannot be padding, so an all-padding (1,) view cannot become 0-d
    assert View.contiguous((0,)).pad(((1, 0),)).reshape(()) is None


def test_size_one_dims() -> None:
    run_chain((1, 1, 1), [("permute", (2, 0, 1)), ("flip", (1,)),
                          ("stride", (3, 1, 2)), ("expand", (2, 1, 3)),
                          ("reshape", (3, 2)), ("reshape", (1, 6))])
    run_chain((3, 1, 4), [("pad", ((0, 0), (1, 1), (0, 0))),
                          ("shrink", ((0, 3), (1, 2), (0, 4))), ("reshape", (12,))])


# ---------------------------------------------------------------- render_index


def test_render_contiguous_has_no_div_mod() -> None:
    for shape in [(4, 64), (2, 3, 5), (7,), (1, 8, 1, 3)]:
        names = [f"i{d}" for d in range(len(shape))]
        idx, valid = View.contiguous(shape).render_index(names)
        assert "/" not in idx and "%" not in idx and valid == "1"
        check_render(View.contiguous(shape))
    assert View.contiguous((4, 64)).render_index(["i0", "i1"]) == ("(i0*64+i1)", "1")


def test_split_dims_merge_back_in_index_expressions() -> None:
    from fusegrad.codegen.symbolic import var
    c, j, i = var("c", 2), var("j", 192), var("i", 10)
    q = c * 2 + j // 32  # a row of 384 taken as 2 pieces of 192, read through a (3, 4, 32) view of it
    assert (c * 128 + (q // 4) * 128 + (q % 4) * 32 + j % 32).render() == "(c*192+j)"
    for x in range(10):  # the fold keeps values, and leaves non-matching coefficients alone
        for e, want in [((i * 3 + 5) % 4 * 7 + (i * 3 + 5) // 4 * 28, (x * 3 + 5) * 7),
                        ((i % 4) * 2 + (i // 4) * 4, (x % 4) * 2 + (x // 4) * 4)]:
            assert eval(e.render().replace("/", "//"), {"i": x}) == want  # noqa: S307 - our own C arithmetic
    assert "%" in ((i % 4) * 2 + (i // 4) * 4).render()


def test_render_masked_and_negative() -> None:
    v = View.contiguous((3, 4)).flip((1,)).pad(((1, 0), (2, 1)))
    idx, valid = v.render_index(["a", "b"])
    assert "/" not in idx and "%" not in idx and valid != "1"
    check_render(v)
    empty = View.contiguous((2,)).pad(((0, 0),)).shrink(((1, 1),)).pad(((2, 0),))
    assert empty.render_index(["x"])[1] == "0"
    with pytest.raises(ValueError, match=r"\(4, 7\)"):
        v.render_index(["a"])


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("fn,pattern", [
    (lambda v: v.reshape((5, 5)), r"\(4, 6\).*\(5, 5\)"),
    (lambda v: v.reshape((-4, -6)), r"\(-4, -6\)"),
    (lambda v: v.permute((0, 0)), r"\(0, 0\).*\(4, 6\)"),
    (lambda v: v.permute((0,)), r"\(4, 6\)"),
    (lambda v: v.expand((4, 7)), r"\(4, 6\).*\(4, 7\)"),
    (lambda v: v.expand((4,)), r"\(4, 6\).*\(4,\)"),
    (lambda v: v.pad(((1, 1),)), r"\(4, 6\)"),
    (lambda v: v.pad(((1, -1), (0, 0))), r"\(4, 6\)"),
    (lambda v: v.shrink(((0, 5), (0, 6))), r"\(4, 6\)"),
    (lambda v: v.shrink(((3, 2), (0, 6))), r"\(4, 6\)"),
    (lambda v: v.shrink(((0, 4),)), r"\(4, 6\)"),
    (lambda v: v.flip((2,)), r"\(4, 6\)"),
    (lambda v: v.flip((1, -1)), r"\(4, 6\)"),
    (lambda v: v.stride((0, 1)), r"\(4, 6\)"),
    (lambda v: v.stride((1,)), r"\(4, 6\)"),
])
def test_validation(fn, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        fn(View.contiguous((4, 6)))


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="negative"):
        View.contiguous((2, -1))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        View((2, 3), (1,))
    with pytest.raises(ValueError):
        View.contiguous((2.5,))  # type: ignore[arg-type]


# ---------------------------------------------------------------- property test


def numpy_can_view(view: View, new_shape: tuple[int, ...]) -> bool:
    """Whether NumPy can reshape an unmasked, non-empty view without copying."""
    idx, _ = view.flat_indices()
    lo, hi = int(idx.min()), int(idx.max())
    buf = np.arange(lo, hi + 1, dtype=np.int64)
    arr = np.lib.stride_tricks.as_strided(
        buf[view.offset - lo:], view.shape, tuple(8 * s for s in view.strides))
    try:
        np.reshape(arr, new_shape, copy=False)
    except ValueError:
        return False
    return True


@st.composite
def reshape_target(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A new shape of equal size: merge/split neighbours, toggle 1s, or refactor."""
    n = math.prod(shape)
    kind = draw(st.sampled_from(["merge", "split", "ones", "refactor"]))
    dims = list(shape)
    if kind == "merge" and len(dims) >= 2:
        i = draw(st.integers(0, len(dims) - 2))
        dims[i:i + 2] = [dims[i] * dims[i + 1]]
    elif kind == "split" and dims:
        i = draw(st.integers(0, len(dims) - 1))
        divs = [d for d in range(1, dims[i] + 1) if dims[i] % d == 0] or [0]
        d = draw(st.sampled_from(divs))
        dims[i:i + 1] = [d, dims[i] // d] if d else [0, draw(st.integers(0, 3))]
    elif kind == "ones":
        dims = [d for d in dims if d != 1 or draw(st.booleans())]
        for _ in range(draw(st.integers(0, 2))):
            dims.insert(draw(st.integers(0, len(dims))), 1)
    elif n == 0:
        dims = draw(st.lists(st.integers(0, 4), max_size=3).filter(lambda x: 0 in x))
    else:
        factors = [p for p in range(2, n + 1) for _ in range(_multiplicity(n, p))]
        factors = draw(st.permutations(factors))
        cuts = sorted(draw(st.lists(st.integers(0, len(factors)), max_size=4)))
        bounds = [0, *cuts, len(factors)]
        dims = [math.prod(factors[a:b]) for a, b in itertools.pairwise(bounds)]
    assert math.prod(dims) == n
    return tuple(dims)


def _multiplicity(n: int, p: int) -> int:
    """How often prime ``p`` divides ``n`` (0 for composite ``p``)."""
    if any(p % q == 0 for q in range(2, p)):
        return 0
    k = 0
    while n % p == 0:
        n, k = n // p, k + 1
    return k


def draw_op(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[str, object]:
    """Draw a random valid movement op for ``shape``."""
    nd = len(shape)
    op = draw(st.sampled_from(["reshape", "reshape", "permute", "expand", "pad",
                               "shrink", "flip", "stride"]))
    if op == "reshape":
        return op, draw(reshape_target(shape))
    if op == "permute":
        return op, tuple(draw(st.permutations(range(nd))))
    if op == "expand":
        return op, tuple(draw(st.integers(0, 3)) if s == 1 else s for s in shape)
    if op == "pad":
        return op, tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2)))
                         for _ in shape)
    if op == "shrink":
        bounds = []
        for s in shape:
            b = draw(st.integers(0, s))
            bounds.append((b, draw(st.integers(b, s))))
        return op, tuple(bounds)
    if op == "flip":
        return op, tuple(d for d in range(nd) if draw(st.booleans()))
    return op, tuple(draw(st.integers(1, 3)) for _ in shape)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_random_chains(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3), label="shape"))
    buf = base(math.prod(shape))
    arr, view = buf.reshape(shape), View.contiguous(shape)
    for _ in range(data.draw(st.integers(0, 6), label="n_ops")):
        if view.size > 2000:  # keep chains small and fast
            break
        op, arg = draw_op(data.draw, view.shape)
        new = view_apply(view, op, arg)
        if op == "reshape":
            if view.is_contiguous:
                assert new is not None and new.is_contiguous
            if view.mask is None and view.size > 0:
                # the stride-merging rule must be exactly as strong as NumPy's
                assert (new is not None) == numpy_can_view(view, arg)
            if [d for d in view.shape if d != 1] == [d for d in arg if d != 1]:
                assert new is not None or (arg == () and view.mask is not None)
            if new is None:
                continue  # a real caller would copy; skip this op
        assert new is not None
        arr, view = np_apply(arr, op, arg), new
        check(view, buf, arr)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_contiguous_reshape_chains_never_fail(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(0, 5), max_size=4), label="shape"))
    buf = base(math.prod(shape))
    view = View.contiguous(shape)
    for _ in range(6):
        target = data.draw(reshape_target(view.shape))
        new = view.reshape(target)
        assert new is not None and new == View.contiguous(target)
        view = new
        check(view, buf, buf.reshape(target))


@pytest.mark.parametrize("rows,cols,strides,want", [
    (3, 4, (4, 1), (False, 4)),  # row-major
    (3, 4, (8, 1), (False, 8)),  # rows of a wider buffer
    (3, 4, (1, 3), (True, 3)),  # a transposed buffer
    (3, 4, (0, 1), None),  # one row broadcast down: BLAS cannot read it in place
    (3, 4, (4, 2), None),  # no unit stride
    (1, 4, (0, 1), (False, 4)),  # a size-1 dim's stride never matters
    (3, 1, (1, 0), (False, 1)),  # a column of unit stride: rows of one element
    (1, 1, (0, 0), (False, 1)),
])
def test_matrix_layout_is_what_blas_reads(rows: int, cols: int, strides: tuple[int, int], want: object) -> None:
    assert matrix_layout(rows, cols, *strides) == want


def test_batch_stride_needs_one_progression() -> None:
    assert batch_stride(View((2, 3, 4, 5), (60, 20, 5, 1))) == (6, 20)
    assert batch_stride(View((2, 3, 4, 5), (0, 0, 5, 1))) == (6, 0)  # one matrix broadcast
    assert batch_stride(View((2, 3, 4, 5), (20, 40, 5, 1))) is None  # permuted batch dims
    assert batch_stride(View((4, 5), (5, 1))) == (1, 0)
