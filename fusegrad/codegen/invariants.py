"""Loop-invariant values of the loop IR: `Let`s an innermost loop computes the same way on every iteration.

Rendered before the loop they are computed once per row instead of once per element (a logsumexp's "max is
infinite" test, a softmax's reciprocal of its sum).
"""
from __future__ import annotations

import dataclasses

from . import ir
from .symbolic import Cond, Index, Var


def _index_names(e: Index) -> set[str]:
    out: set[str] = set()
    for atom, _ in e.terms:
        out |= {atom.name} if isinstance(atom, Var) else _index_names(atom.expr)
    return out


def _cond_names(c: Cond) -> set[str]:
    return set().union(*(_index_names(e) for e, _, _ in c.ranges))


def _reads(v: ir.Value) -> set[str] | None:
    """The loop variables and `Let`/accumulator names a value reads; None if it has a side effect (a gather
    writes the error flag) and must stay where it is."""
    if isinstance(v, ir.Ref):
        return {v.name}
    if isinstance(v, ir.Load):
        return _index_names(v.index) | _cond_names(v.cond)
    if isinstance(v, ir.Valid):
        return _cond_names(v.cond)
    if isinstance(v, ir.Rand):
        return _index_names(v.counter)
    if isinstance(v, ir.Apply):
        out: set[str] = set()
        for src in v.srcs:
            names = _reads(src)
            if names is None:
                return None
            out |= names
        return out
    if isinstance(v, ir.GatherLoad):
        return None
    return set()  # Const, Arg


def hoist_invariants(loop: ir.Loop) -> tuple[list[ir.Stmt], ir.Loop]:
    """Split an innermost, non-empty loop into the `Let`s that do not depend on it and the loop without them."""
    if loop.size == 0 or any(isinstance(s, ir.Loop) for s in loop.body):
        return [], loop
    variant = {loop.var} | {s.acc.name for s in loop.body if isinstance(s, ir.Accumulate)}
    hoisted: list[ir.Stmt] = []
    kept: list[ir.Stmt] = []
    for s in loop.body:
        names = _reads(s.value) if isinstance(s, ir.Let) else None
        if names is not None and not names & variant:
            hoisted.append(s)
        else:
            kept.append(s)
            if isinstance(s, ir.Let):
                variant.add(s.name)
    if not hoisted:
        return [], loop
    return hoisted, dataclasses.replace(loop, body=kept)
