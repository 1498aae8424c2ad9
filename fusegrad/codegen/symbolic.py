"""Integer index expressions with bounds, simplified as they are built, so fused movement ops cost little arithmetic.

An expression is a linear combination of atoms plus a constant; atoms are loop variables or the floor division /
modulo of an expression by a positive constant. Bounds (inclusive min and max) let `//` and `%` vanish where they
cannot change the value: e.g. (i*8 + j) // 8 becomes i when 0 <= j < 8.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Var:
    """A loop variable ranging over [0, size)."""

    name: str
    size: int

    @property
    def bounds(self) -> tuple[int, int]:
        return 0, max(self.size - 1, 0)


@dataclass(frozen=True)
class DivMod:
    """floor(expr / divisor) or expr mod divisor, for divisor > 0 (C's / and % agree while expr >= 0)."""

    expr: Index
    divisor: int
    is_mod: bool

    @property
    def bounds(self) -> tuple[int, int]:
        lo, hi = self.expr.bounds
        if self.is_mod:
            return (0, self.divisor - 1) if lo >= 0 else (-(self.divisor - 1), self.divisor - 1)
        return lo // self.divisor, hi // self.divisor


Atom = Var | DivMod


@dataclass(frozen=True)
class Index:
    """sum(coeff * atom) + const."""

    terms: tuple[tuple[Atom, int], ...]
    const: int = 0

    @property
    def bounds(self) -> tuple[int, int]:
        lo = hi = self.const
        for atom, c in self.terms:
            a, b = atom.bounds
            lo, hi = lo + min(a * c, b * c), hi + max(a * c, b * c)
        return lo, hi

    def __add__(self, other: Index | int) -> Index:
        other = const(other) if isinstance(other, int) else other
        acc: dict[Atom, int] = dict(self.terms)
        for atom, c in other.terms:
            acc[atom] = acc.get(atom, 0) + c
        for atom, c in acc.items():  # (e % m)*c + (e // m)*(c*m) is e*c: a view's split dims merged back
            if isinstance(atom, DivMod) and atom.is_mod and c and atom.expr.bounds[0] >= 0:
                quotient = DivMod(atom.expr, atom.divisor, False)
                if acc.get(quotient) == c * atom.divisor:
                    rest = tuple((a, k) for a, k in acc.items() if k and a != atom and a != quotient)
                    return Index(rest, self.const + other.const) + atom.expr * c
        return Index(tuple((a, c) for a, c in acc.items() if c), self.const + other.const)

    __radd__ = __add__

    def __neg__(self) -> Index:
        return self * -1

    def __sub__(self, other: Index | int) -> Index:
        return self + (-(const(other) if isinstance(other, int) else other))

    def __rsub__(self, other: int) -> Index:
        return const(other) - self

    def __mul__(self, k: int) -> Index:
        if k == 0:
            return const(0)
        return Index(tuple((a, c * k) for a, c in self.terms), self.const * k)

    __rmul__ = __mul__

    def __floordiv__(self, d: int) -> Index:
        return self._divmod(d, False)

    def __mod__(self, d: int) -> Index:
        return self._divmod(d, True)

    def _divmod(self, d: int, is_mod: bool) -> Index:
        if d == 1:
            return const(0) if is_mod else self
        # the multiple-of-d part of each positive coefficient leaves the remainder alone and divides exactly
        whole = Index(tuple((a, c // d * d) for a, c in self.terms if c >= d or c % d == 0),
                      self.const - self.const % d)
        rest = Index(tuple((a, c if c < 0 else c % d) for a, c in self.terms if c % d), self.const % d)
        lo, hi = rest.bounds
        if lo >= 0 and hi < d:
            return rest if is_mod else Index(tuple((a, c // d) for a, c in whole.terms), whole.const // d)
        if lo < 0:  # C's / and % truncate negative numerators: keep the whole expression (guarded if negative)
            return Index(((DivMod(self, d, is_mod), 1),))
        if is_mod:
            return Index(((DivMod(rest, d, True), 1),))
        quotient = Index(tuple((a, c // d) for a, c in whole.terms), whole.const // d)
        return quotient + Index(((DivMod(rest, d, False), 1),))

    @property
    def is_const(self) -> bool:
        return not self.terms

    def render(self) -> str:
        """C (and CUDA/OpenCL) source for the expression."""
        parts = []
        for atom, c in self.terms:
            s = atom.name if isinstance(atom, Var) else \
                f"({atom.expr.render()}{'%' if atom.is_mod else '/'}{atom.divisor})"
            parts.append(s if c == 1 else f"{s}*{c}" if c > 0 else f"{s}*({c})")
        if self.const or not parts:
            parts.append(str(self.const))
        return "(" + "+".join(parts) + ")" if len(parts) > 1 else parts[0]


def const(v: int) -> Index:
    """A constant index."""
    return Index((), v)


def var(name: str, size: int) -> Index:
    """A loop variable over [0, size); a size-1 dim has no loop, its index is 0."""
    return const(0) if size == 1 else Index(((Var(name, size), 1),))


@dataclass(frozen=True)
class Cond:
    """A conjunction of `lo <= expr < hi` facts: where a padded view holds real data."""

    ranges: tuple[tuple[Index, int, int], ...] = ()
    never: bool = False

    def add(self, e: Index, lo: int, hi: int) -> Cond:
        """And `lo <= e < hi`, dropping facts the bounds already prove."""
        a, b = e.bounds
        if a >= lo and b < hi:
            return self
        if b < lo or a >= hi:
            return Cond((), True)
        return Cond(self.ranges + ((e, lo, hi),), self.never)

    def __and__(self, other: Cond) -> Cond:
        out = self
        for e, lo, hi in other.ranges:
            out = out.add(e, lo, hi)
        return Cond((), True) if other.never or out.never else out

    @property
    def always(self) -> bool:
        return not self.never and not self.ranges

    def render(self) -> str:
        """C source: 1, 0, or the conjunction."""
        if self.never:
            return "0"
        if not self.ranges:
            return "1"
        facts = []
        for e, lo, hi in self.ranges:
            a, b = e.bounds
            s = e.render()
            if a < lo:
                facts.append(f"({s}>={lo})")
            if b >= hi:
                facts.append(f"({s}<{hi})")
        return "&&".join(facts)
