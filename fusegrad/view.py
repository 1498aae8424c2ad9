"""Zero-copy index arithmetic for movement ops (reshape, permute, pad, ...).

A :class:`View` maps a logical index tuple ``idx`` of shape ``shape`` onto a flat
1-D buffer at ``offset + sum(idx[i] * strides[i])``; positions outside ``mask``
read as zero (padding).  Every movement op returns a new ``View`` without
touching memory; only ``reshape`` may fail (``None``) when the caller must copy.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Mask = tuple[tuple[int, int], ...]


def _as_shape(shape: Sequence[int], what: str = "shape") -> tuple[int, ...]:
    """Convert ``shape`` to a tuple of non-negative ints or raise ValueError."""
    try:
        dims = tuple(operator.index(s) for s in shape)
    except TypeError as e:
        raise ValueError(f"{what} {shape!r} must be a sequence of ints") from e
    if any(d < 0 for d in dims):
        raise ValueError(f"{what} {dims} has negative sizes")
    return dims


def _as_pairs(pairs: Sequence[Sequence[int]], ndim: int, what: str,
              shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Convert per-dim (a, b) pairs to int tuples, checking the rank matches."""
    try:
        out = tuple((operator.index(a), operator.index(b)) for a, b in pairs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} {pairs!r} must be (int, int) pairs") from e
    if len(out) != ndim:
        raise ValueError(f"{what} {out} has {len(out)} entries for shape {shape}")
    return out


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides for ``shape`` (size-1 dims get the canonical 0)."""
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc if s != 1 else 0)
        acc *= s
    return tuple(reversed(strides))


def _range_to_box(start: int, end: int, dims: Sequence[int]) -> Mask | None:
    """Express flat range [start, end) over row-major ``dims`` as a box, or None."""
    def digits(x: int) -> list[int]:
        out = []
        for d in reversed(dims):
            x, r = divmod(x, d)
            out.append(r)
        return out[::-1]

    lo, hi = digits(start), digits(end - 1)
    # the first differing digit may span a range; all later digits must be full
    j = next((k for k in range(len(dims)) if lo[k] != hi[k]), len(dims))
    if any(lo[k] != 0 or hi[k] != dims[k] - 1 for k in range(j + 1, len(dims))):
        return None
    return tuple((lo[k], hi[k] + 1) for k in range(len(dims)))


@dataclass(frozen=True)
class View:
    """How a logical tensor of ``shape`` reads a flat buffer (see module docstring).

    ``mask`` holds a valid ``[start, end)`` range per dim, or ``None`` when every
    element is valid.  Construction canonicalizes: strides of size-1 dims become 0,
    a full mask becomes ``None``, and empty or fully masked views drop their strides,
    so views that read the same elements compare equal more often.
    """

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0
    mask: Mask | None = None

    def __post_init__(self) -> None:
        """Validate fields and canonicalize them (frozen, so via object.__setattr__)."""
        shape = _as_shape(self.shape)
        try:
            strides = tuple(operator.index(s) for s in self.strides)
        except TypeError as e:
            raise ValueError(f"strides {self.strides!r} must be ints") from e
        if len(strides) != len(shape):
            raise ValueError(f"strides {strides} do not match shape {shape}")
        offset = operator.index(self.offset)
        mask = None
        if self.mask is not None:
            pairs = _as_pairs(self.mask, len(shape), "mask", shape)
            mask = tuple((max(a, 0), min(b, s)) for (a, b), s in zip(pairs, shape))
        strides = tuple(0 if s == 1 else st for s, st in zip(shape, strides))
        if 0 in shape:  # no elements: layout is irrelevant
            strides, offset, mask = (0,) * len(shape), 0, None
        elif mask is not None and any(b <= a for a, b in mask):  # nothing valid
            strides, offset, mask = (0,) * len(shape), 0, ((0, 0),) * len(shape)
        elif mask is not None and all(m == (0, s) for m, s in zip(mask, shape)):
            mask = None
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "mask", mask)

    @staticmethod
    def contiguous(shape: Sequence[int]) -> View:
        """Row-major view of a fresh buffer of ``shape``, offset 0, no mask."""
        shape = _as_shape(shape)
        return View(shape, _contiguous_strides(shape))

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of logical elements."""
        return math.prod(self.shape)

    @property
    def is_contiguous(self) -> bool:
        """True if this is exactly the row-major layout of the buffer start."""
        return (self.offset == 0 and self.mask is None
                and self.strides == _contiguous_strides(self.shape))

    @property
    def _all_masked(self) -> bool:
        """True if every element is padding (canonical form: all-(0, 0) mask)."""
        return self.mask is not None and len(self.mask) > 0 and self.mask[0] == (0, 0)

    def _full_mask(self) -> Mask:
        """The mask with implicit ``None`` spelled out."""
        return self.mask if self.mask is not None else tuple((0, s) for s in self.shape)

    def reshape(self, new_shape: Sequence[int]) -> View | None:
        """Reinterpret as ``new_shape`` (same element count) without copying.

        Returns ``None`` when no single view can express the result; the caller
        must then materialize a contiguous copy first.  Raises ValueError when the
        element counts differ.
        """
        new_shape = _as_shape(new_shape, "new shape")
        if math.prod(new_shape) != self.size:
            raise ValueError(f"cannot reshape {self.shape} to {new_shape}: "
                             "element counts differ")
        if new_shape == self.shape:
            return self
        if self.size == 0:
            return View.contiguous(new_shape)
        if self._all_masked:  # a 0-d view cannot say "padding", so that one fails
            return View(new_shape, (0,) * len(new_shape), 0,
                        ((0, 0),) * len(new_shape)) if new_shape else None
        # size-1 dims carry stride 0 and a full mask, so they can be dropped/added
        old = [(s, st, m) for s, st, m in
               zip(self.shape, self.strides, self._full_mask()) if s != 1]
        new_dims = [s for s in new_shape if s != 1]
        out_strides: list[int] = []
        out_mask: list[tuple[int, int]] = []
        i = j = 0
        while i < len(old):
            # grow the smallest group of old and new dims with equal products
            a, c = i, j
            po, pn = old[i][0], new_dims[j]
            i, j = i + 1, j + 1
            while po != pn:
                if po < pn:
                    po, i = po * old[i][0], i + 1
                else:
                    pn, j = pn * new_dims[j], j + 1
            group = old[a:i]
            if any(group[k][1] != group[k + 1][1] * group[k + 1][0]
                   for k in range(len(group) - 1)):
                return None  # the group does not walk memory with one stride
            acc = group[-1][1]
            strides = []
            for d in reversed(new_dims[c:j]):
                strides.append(acc)
                acc *= d
            out_strides.extend(reversed(strides))
            box = self._regroup_mask([m for _, _, m in group],
                                     [s for s, _, _ in group], new_dims[c:j])
            if box is None:
                return None
            out_mask.extend(box)
        it_s, it_m = iter(out_strides), iter(out_mask)
        strides_full = tuple(0 if s == 1 else next(it_s) for s in new_shape)
        mask_full = tuple((0, 1) if s == 1 else next(it_m) for s in new_shape)
        return View(new_shape, strides_full, self.offset,
                    mask_full if self.mask is not None else None)

    @staticmethod
    def _regroup_mask(masks: list[tuple[int, int]], old: list[int],
                      new: list[int]) -> Mask | None:
        """Map a box mask on ``old`` dims onto ``new`` dims of one reshape group."""
        if len(old) == 1 and len(new) == 1:
            return (masks[0],)
        if all(m == (0, s) for m, s in zip(masks, old)):
            return tuple((0, s) for s in new)
        # the box is a flat range iff every dim after the first non-singleton is full
        k = next((k for k, (a, b) in enumerate(masks) if b - a > 1), len(masks))
        if any(masks[q] != (0, old[q]) for q in range(k + 1, len(masks))):
            return None
        start = end = 0
        for (a, b), s in zip(masks, old):
            start, end = start * s + a, end * s + (b - 1)
        return _range_to_box(start, end + 1, new)

    def permute(self, order: Sequence[int]) -> View:
        """Reorder dims: result dim ``i`` is input dim ``order[i]``."""
        order = tuple(operator.index(o) for o in order)
        if sorted(order) != list(range(self.ndim)):
            raise ValueError(f"{order} is not a permutation of dims of {self.shape}")
        mask = None if self.mask is None else tuple(self.mask[o] for o in order)
        return View(tuple(self.shape[o] for o in order),
                    tuple(self.strides[o] for o in order), self.offset, mask)

    def expand(self, new_shape: Sequence[int]) -> View:
        """Broadcast size-1 dims to ``new_shape`` (stride 0); other dims must match."""
        new_shape = _as_shape(new_shape, "new shape")
        if len(new_shape) != self.ndim or any(
                s != n and s != 1 for s, n in zip(self.shape, new_shape)):
            raise ValueError(f"cannot expand {self.shape} to {new_shape}")
        if self.mask is None:
            mask = None
        else:  # broadcast dims were full (or the view is fully masked)
            mask = tuple(m if s == n else (0, n if m[1] > m[0] else 0)
                         for m, s, n in zip(self.mask, self.shape, new_shape))
        strides = tuple(st if s == n else 0
                        for st, s, n in zip(self.strides, self.shape, new_shape))
        return View(new_shape, strides, self.offset, mask)

    def pad(self, padding: Sequence[Sequence[int]]) -> View:
        """Add ``(before, after)`` zeros per dim; combines with an existing mask."""
        padding = _as_pairs(padding, self.ndim, "padding", self.shape)
        if any(b < 0 or a < 0 for b, a in padding):
            raise ValueError(f"padding {padding} for shape {self.shape} is negative")
        if all(p == (0, 0) for p in padding):
            return self
        shape = tuple(s + b + a for s, (b, a) in zip(self.shape, padding))
        offset = self.offset - sum(b * st for (b, _), st in zip(padding, self.strides))
        mask = tuple((ms + b, me + b)
                     for (ms, me), (b, _) in zip(self._full_mask(), padding))
        if self.size == 0:  # padding nothing: every element is padding
            mask = ((0, 0),) * self.ndim
        return View(shape, self.strides, offset, mask)

    def shrink(self, bounds: Sequence[Sequence[int]]) -> View:
        """Keep ``[start, end)`` per dim; shifts the offset and intersects the mask."""
        bounds = _as_pairs(bounds, self.ndim, "bounds", self.shape)
        if any(not 0 <= b <= e <= s for (b, e), s in zip(bounds, self.shape)):
            raise ValueError(f"shrink {bounds} out of range for shape {self.shape}")
        shape = tuple(e - b for b, e in bounds)
        offset = self.offset + sum(b * st for (b, _), st in zip(bounds, self.strides))
        mask = None
        if self.mask is not None:
            mask = tuple((min(max(ms - b, 0), n), min(max(me - b, 0), n))
                         for (ms, me), (b, _), n in zip(self.mask, bounds, shape))
        return View(shape, self.strides, offset, mask)

    def flip(self, axes: Sequence[int]) -> View:
        """Reverse the given dims (negative axes allowed) via negative strides."""
        norm = []
        for ax in axes:
            ax = operator.index(ax)
            if not -self.ndim <= ax < self.ndim:
                raise ValueError(f"flip axis {ax} out of range for shape {self.shape}")
            norm.append(ax % self.ndim)
        if len(set(norm)) != len(norm):
            raise ValueError(f"repeated flip axes {tuple(axes)} for shape {self.shape}")
        shape, strides, mask = self.shape, list(self.strides), list(self._full_mask())
        offset = self.offset
        for ax in norm:
            s = shape[ax]
            offset += (s - 1) * strides[ax] if s > 0 else 0
            strides[ax] = -strides[ax]
            mask[ax] = (s - mask[ax][1], s - mask[ax][0])
        return View(shape, tuple(strides), offset,
                    None if self.mask is None else tuple(mask))

    def stride(self, steps: Sequence[int]) -> View:
        """Take every ``steps[i]``-th element per dim, like ``x[::s0, ::s1, ...]``."""
        steps = tuple(operator.index(k) for k in steps)
        if len(steps) != self.ndim or any(k <= 0 for k in steps):
            raise ValueError(f"steps {steps} need one positive int per dim of "
                             f"{self.shape}")
        shape = tuple(-(-s // k) for s, k in zip(self.shape, steps))
        strides = tuple(st * k for st, k in zip(self.strides, steps))
        mask = None
        if self.mask is not None:  # new index j is valid iff ms <= j*k < me
            mask = tuple((-(-ms // k), -(-me // k))
                         for (ms, me), k in zip(self.mask, steps))
        return View(shape, strides, self.offset, mask)

    def unfold(self, arg: Sequence[int]) -> View | None:
        """Windows of `size` every `step` along dim `d` as a new last dim (overlapping strides, no copy); None where
        dim d is padded, since validity would then depend on two dims."""
        d, size, step = (operator.index(k) for k in arg)
        if not 0 <= d < self.ndim or size < 1 or step < 1 or size > self.shape[d]:
            raise ValueError(f"unfold ({d}, {size}, {step}) does not fit {self.shape}")
        if self.mask is not None and self.mask[d] != (0, self.shape[d]):
            return None
        shape = self.shape[:d] + ((self.shape[d] - size) // step + 1,) + self.shape[d + 1:] + (size,)
        strides = self.strides[:d] + (self.strides[d] * step,) + self.strides[d + 1:] + (self.strides[d],)
        mask = None if self.mask is None else self.mask + ((0, size),)
        return View(shape, strides, self.offset, mask)

    def flat_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Buffer index (int64) and validity (bool) per element, both of ``shape``.

        Invalid (padding) positions get index 0 so the result can index a buffer.
        """
        idx = np.full(self.shape, self.offset, dtype=np.int64)
        valid = np.ones(self.shape, dtype=bool)
        for d, (s, st, (ms, me)) in enumerate(zip(self.shape, self.strides,
                                                  self._full_mask())):
            ar = np.arange(s, dtype=np.int64).reshape((s,) + (1,) * (self.ndim - d - 1))
            idx = idx + ar * st
            valid = valid & (ar >= ms) & (ar < me)
        return np.where(valid, idx, 0), valid

    def render_index(self, idx_names: Sequence[str]) -> tuple[str, str]:
        """C-like ``(buffer index, validity)`` expressions over per-dim index names.

        The index is affine in the names, so it never needs ``/`` or ``%``; the
        condition joins parenthesized comparisons with ``&`` (valid in C and
        Python) and is ``"1"`` when always valid, ``"0"`` when never valid.
        """
        if len(idx_names) != self.ndim:
            raise ValueError(f"got {len(idx_names)} index names for shape {self.shape}")
        terms = [(n if abs(st) == 1 else f"{n}*{abs(st)}", st < 0)
                 for n, st in zip(idx_names, self.strides) if st != 0]
        if self.offset != 0 or not terms:
            terms.append((str(abs(self.offset)), self.offset < 0))
        expr = "".join(("-" if neg else "+" if k else "") + t
                       for k, (t, neg) in enumerate(terms))
        if not (expr.isidentifier() or expr.isdigit()):  # keep it atomic when embedded
            expr = f"({expr})"
        if self.size == 0 or self._all_masked:
            return expr, "0"
        conds = []
        for n, s, (ms, me) in zip(idx_names, self.shape, self._full_mask()):
            conds += [f"({n}>={ms})"] if ms > 0 else []
            conds += [f"({n}<{me})"] if me < s else []
        return expr, "&".join(conds) if conds else "1"


# ---- how matrix libraries (CBLAS, cuBLAS) read a strided operand without a copy ----

def matrix_layout(rows: int, cols: int, s_rows: int, s_cols: int) -> tuple[bool, int] | None:
    """(transposed, leading dimension) of a strided rows x cols matrix as a row-major BLAS reads it: not transposed
    when each row is contiguous (ld = the row stride), transposed when each column is (ld = the column stride);
    None when neither. A size-1 dim's stride never matters, so it takes whichever value makes a layout valid."""
    for r in ([s_rows] if rows != 1 else [max(cols, 1), 1]):
        for c in ([s_cols] if cols != 1 else [1, max(rows, 1)]):
            if c == 1 and r >= max(cols, 1):
                return False, r
            if r == 1 and c >= max(rows, 1):
                return True, c
    return None


def batch_stride(view: View) -> tuple[int, int] | None:
    """(count, stride) of the batch dims of a (..., rows, cols) view when its matrices lie at one arithmetic
    progression in memory (stride 0 broadcasts one matrix), else None."""
    dims = [(n, s) for n, s in zip(view.shape[:-2], view.strides[:-2]) if n != 1]
    count = math.prod(n for n, _ in dims)
    if not dims:
        return count, 0
    expect = dims[-1][1]
    for n, s in reversed(dims):
        if s != expect:
            return None
        expect = s * n
    return count, dims[-1][1]
