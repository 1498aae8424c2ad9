"""a * b + c rounded once, in NumPy (which has no fma): the reference for the MULADD primitive.

float16 and float32 operands multiply exactly in float64; their sum is rounded to odd there, so that rounding it
again to the operands' type is the single correct rounding (float16 is computed in float32, as every device does).
float64 splits the product into two doubles (Dekker) and adds the three terms with one rounding (Boldo and
Melquiond's sum by rounding to odd); products beyond about 1e290 or below 1e-290 are rounded twice instead.
"""
from __future__ import annotations

import numpy as np


def _two_sum(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s, e) with s = x + y rounded and s + e = x + y exactly."""
    s = x + y
    back = s - x
    return s, (x - (s - back)) + (y - back)


def _sum_rounded_to_odd(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x + y rounded to the neighbour whose last bit is 1 when it is not exact (float64)."""
    s, e = _two_sum(x, y)
    even = (s.view(np.int64) & 1) == 0
    nudge = (e != 0) & even & np.isfinite(s)
    return np.where(nudge, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x as high + low halves of 26 bits each (Veltkamp)."""
    t = x * 134217729.0  # 2^27 + 1
    high = t - (t - x)
    return high, x - high


def _fma64(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl  # p + e = a * b exactly
    uh, ul = _two_sum(e, c)
    th, tl = _two_sum(p, uh)
    out = th + _sum_rounded_to_odd(tl, ul)
    # an exact product (signed zeros too) or inf, NaN and overflow: the plain formula rounds once or is right
    return np.where(np.isfinite(out) & np.isfinite(e) & (e != 0), out, p + c)


def fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c with one rounding to the operands' floating dtype (float16 rounds via float32, as computed)."""
    dtype = np.result_type(a, b, c)
    with np.errstate(all="ignore"):
        if dtype == np.float64:
            return _fma64(*(np.asarray(x, np.float64) for x in (a, b, c)))
        wide = [np.asarray(x, np.float64) for x in (a, b, c)]
        single = _sum_rounded_to_odd(wide[0] * wide[1], wide[2]).astype(np.float32)
        return single.astype(dtype)
