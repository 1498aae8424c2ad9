"""MULADD, a * b + c rounded once: the NumPy reference against exact rational arithmetic, every device against the
reference bit for bit, its gradients against torch, and the polynomials (erf, gelu) that use it."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import compare, randn

import fusegrad as fg
from fusegrad.runtime.exact_fma import fma

FLOATS = [np.float16, np.float32, np.float64]


def _rounded(exact: Fraction, dtype: type) -> float:
    """`exact` rounded to nearest-even in `dtype` (float16 through float32, as every device computes it)."""
    if dtype == np.float16:
        return float(np.float16(_rounded(exact, np.float32)))
    wide = float(exact)  # nearest float64
    if dtype == np.float64:
        return wide
    near = np.float32(wide)
    candidates = [np.nextafter(near, np.float32(-np.inf)), near, np.nextafter(near, np.float32(np.inf))]
    return float(min(candidates, key=lambda x: (abs(Fraction(float(x)) - exact), int(x.view(np.uint32)) & 1)))


def _hard_cases(dtype: type, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products over many magnitudes, half of them nearly cancelled by c (where one rounding matters most)."""
    rng = np.random.default_rng(seed)
    spread = {np.float16: 4, np.float32: 30, np.float64: 200}[dtype]
    a, b = ((rng.standard_normal(n) * 2.0 ** rng.integers(-spread, spread, n)).astype(dtype) for _ in range(2))
    c = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(n) * 1e-3)).astype(dtype)
    c[::2] = (rng.standard_normal(n // 2) * 2.0 ** rng.integers(-spread, spread, n // 2)).astype(dtype)
    return a, b, c


@pytest.mark.parametrize("dtype", FLOATS)
def test_reference_is_rounded_once(dtype: type) -> None:
    a, b, c = _hard_cases(dtype, 3000, seed=1)
    got = fma(a, b, c)
    assert got.dtype == dtype
    want = [_rounded(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)), dtype) for x, y, z in zip(a, b, c)]
    np.testing.assert_array_equal(got, np.array(want, dtype))
    assert (got != (a * b + c)).sum() > 100  # the cases do tell one rounding from two


@pytest.mark.parametrize("dtype", FLOATS)
def test_reference_special_values(dtype: type) -> None:
    inf, nan = np.inf, np.nan
    big = np.finfo(dtype).max
    a = np.array([inf, inf, nan, 1.0, big, 0.0, -0.0, 2.0, 1e-30 if dtype != np.float16 else 1e-4], dtype)
    b = np.array([1.0, 0.0, 1.0, 1.0, 2.0, -1.0, 1.0, 3.0, 1e-30 if dtype != np.float16 else 1e-4], dtype)
    c = np.array([-inf, 1.0, 1.0, nan, 0.0, 0.0, -0.0, -6.0, 0.0], dtype)
    with np.errstate(all="ignore"):
        want = a * b + c
    got = fma(a, b, c)
    np.testing.assert_array_equal(got[:8], want[:8])  # NaN, inf, overflow, signed zeros, an exact zero
    assert not np.signbit(got[5]) and np.signbit(got[6])  # -0 + 0 is +0, -0 + -0 is -0
    assert got[8] == _rounded(Fraction(float(a[8])) ** 2, dtype)  # an underflowing product, kept to the last bit


@pytest.mark.parametrize("dtype", FLOATS)
def test_every_device_matches_the_reference_bit_for_bit(device: str, dtype: type) -> None:
    a, b, c = _hard_cases(dtype, 2000, seed=2)
    got = fg.tensor(a, device=device)._muladd(fg.tensor(b, device=device), fg.tensor(c, device=device)).numpy()
    np.testing.assert_array_equal(got, fma(a, b, c))


SHAPES = [((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), ()), ((), (2, 3), (3,)), ((0, 3), (1, 3), (3,)),
          ((1,), (5,), (1,)), ((2, 1, 3), (4, 1), (3,))]


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_muladd_values_and_gradients_broadcast(device: str, shapes: tuple) -> None:
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    compare(lambda a, b, c: a._muladd(b, c), lambda a, b, c: torch.addcmul(c, a, b), *arrays, device=device,
            atol=1e-12, rtol=1e-12)


def test_muladd_scalars_and_dtypes() -> None:
    x = fg.tensor([1.5, -2.0], dtype=fg.float32)
    np.testing.assert_array_equal(x._muladd(2, 0.25).numpy(), np.array([3.25, -3.75], np.float32))
    assert x.half()._muladd(x.half(), 1).dtype == fg.float16
    with pytest.raises(fg.ShapeError, match="floating-point"):
        fg.tensor([1, 2])._muladd(3, 4)
    with pytest.raises(fg.ShapeError, match="broadcast"):
        x._muladd(fg.ones(3), 1.0)


def test_erf_polynomial_is_fused_multiply_adds_in_one_kernel() -> None:
    x = fg.tensor(np.linspace(-5, 5, 4001, dtype=np.float32), device="cpu")
    (item,) = fg.schedule(x.gelu())
    from fusegrad.runtime.cpu import compile_kernel
    assert compile_kernel(item)[1].count("fmaf(") == 10  # both polynomials of the rational fit, step by step
    np.testing.assert_array_equal(x.gelu().numpy(), x.to("numpy").gelu().numpy())  # the same roundings as numpy
    want = torch.nn.functional.gelu(torch.from_numpy(x.numpy()).double()).numpy()
    np.testing.assert_allclose(x.gelu().numpy(), want, atol=1e-6, rtol=0)
