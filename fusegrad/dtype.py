"""Data types and PyTorch's type-promotion rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class DType:
    """A tensor element type: its name, NumPy twin and promotion category. The seven below are the only instances,
    so equality is identity (every op compares dtypes; a field-by-field __eq__ was a tenth of building a node)."""

    name: str
    np: type
    itemsize: int
    category: int  # 0 bool, 1 integer, 2 floating: promotion never goes down a category

    @property
    def is_floating_point(self) -> bool:
        """True for float16/32/64."""
        return self.category == 2

    @property
    def is_integer(self) -> bool:
        """True for the integer types (bool excluded)."""
        return self.category == 1

    def __repr__(self) -> str:
        return f"fusegrad.{self.name}"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return to_dtype, (self.name,)  # copies and deep copies (of modules) keep the one instance

    def __deepcopy__(self, memo: dict[int, Any]) -> DType:
        return self


bool_ = DType("bool", np.bool_, 1, 0)
uint8 = DType("uint8", np.uint8, 1, 1)
int32 = DType("int32", np.int32, 4, 1)
int64 = DType("int64", np.int64, 8, 1)
float16 = DType("float16", np.float16, 2, 2)
float32 = DType("float32", np.float32, 4, 2)
float64 = DType("float64", np.float64, 8, 2)

DTYPES: tuple[DType, ...] = (bool_, uint8, int32, int64, float16, float32, float64)
_BY_NAME = {d.name: d for d in DTYPES} | {"float": float32, "double": float64, "half": float16,
                                           "int": int32, "long": int64}
_BY_NP = {np.dtype(d.np): d for d in DTYPES}

default_float: DType = float32
default_int: DType = int64


def to_dtype(x: DType | str | type | np.dtype | None) -> DType | None:
    """Accept a fusegrad dtype, its name, a NumPy dtype or a Python type; None passes through."""
    if x is None or isinstance(x, DType):
        return x
    if isinstance(x, str):
        if x in _BY_NAME:
            return _BY_NAME[x]
        raise TypeError(f"unknown dtype {x!r}; expected one of {sorted(_BY_NAME)}")
    if x is bool:
        return bool_
    if x is int:
        return default_int
    if x is float:
        return default_float
    try:
        return _BY_NP[np.dtype(x)]
    except (TypeError, KeyError):
        raise TypeError(f"unsupported dtype {x!r}; fusegrad supports {[d.name for d in DTYPES]}") from None


def from_numpy_dtype(d: np.dtype) -> DType:
    """The fusegrad dtype of a NumPy array; float64/int64 stay what they are, like torch.from_numpy."""
    return to_dtype(d)


def promote_types(a: DType, b: DType) -> DType:
    """torch.promote_types for the supported dtypes."""
    if a == b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if a.category == 2:
        return float64 if float64 in (a, b) else float32 if float32 in (a, b) else float16
    return a if a.itemsize > b.itemsize else b  # integers: uint8 < int32 < int64


def scalar_dtype(v: bool | int | float) -> DType:
    """The dtype a bare Python scalar contributes to promotion."""
    if isinstance(v, (bool, np.bool_)):
        return bool_
    if isinstance(v, (int, np.integer)):
        return default_int
    return default_float


def result_type(*operands: tuple[DType, int]) -> DType:
    """torch.result_type: operands are (dtype, tier), tier 0 = tensor with dims, 1 = 0-d tensor, 2 = Python scalar.

    A lower tier wins inside the highest category present; a Python float meeting integer tensors gives the
    default float type, like PyTorch.
    """
    top = max(d.category for d, _ in operands)
    for tier in (0, 1, 2):
        cands = [d for d, t in operands if t == tier and d.category == top]
        if cands:
            out = cands[0]
            for d in cands[1:]:
                out = promote_types(out, d)
            if tier == 2 and top == 2:
                return default_float
            return out
    raise AssertionError("unreachable")
