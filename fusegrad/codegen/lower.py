"""Lower a scheduled kernel to the loop IR: its structure as a cache key with constants as launch arguments, and
the loop nest it takes (`nests.py`) around the values of its bodies (`values.py`)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from ..dtype import float32
from ..graph import REDUCE, Node, Op, prod
from ..schedule import MAX_FUSED_DEPTH, ScheduleItem
from . import ir
from .nests import PARALLEL_MIN_WORK, Dim, Nest, row_kernel, row_reduction, split_reduction
from .symbolic import Index, const
from .values import Lowerer, linearize


def _loop_root(out: Node, inputs: dict[int, str]) -> Node:
    """The node whose shape the loops run over: a reshape stores the same row-major order as its source, so loops
    over the source's dims write the same memory with no division or modulo to map the index (im2col, flatten)."""
    while out.op is Op.RESHAPE and id(out.srcs[0]) not in inputs and out.srcs[0].op not in REDUCE:
        out = out.srcs[0]
    return out


def _work(loop: ir.Loop) -> int:
    """Iterations of a loop nest's innermost bodies: a kernel's small loops (a split reduction's combining pass, a
    short cut piece) stay on one thread, where waking the others costs more than they save."""
    inner = [_work(s) for s in loop.body if isinstance(s, ir.Loop)]
    return loop.size * max(inner, default=1)


# ---- the structure of a kernel: what its code depends on, with constants as launch argument slots ----

def kernel_signature(item: ScheduleItem) -> tuple[tuple, list[Node]]:
    """(key, leaves): the kernel's structure as a hashable key (ops, args, shapes, dtypes, inputs by position), and
    its CONST and RAND nodes in a fixed order. Items with equal keys lower to the same code: only the leaves' values,
    the launch arguments, differ (`launch_args`)."""
    inputs = {id(n): i for i, n in enumerate(item.inputs)}
    number: dict[int, int] = {}
    key: list[tuple] = []
    leaves: list[Node] = []
    stack: list[tuple[Node, bool]] = [(item.out, False)]
    while stack:
        n, ready = stack.pop()
        if id(n) in number:
            continue
        if id(n) in inputs:
            number[id(n)] = len(key)
            key.append((inputs[id(n)], n.shape, n.dtype))
        elif not ready:
            stack.append((n, True))
            stack.extend((s, False) for s in reversed(n.srcs) if id(s) not in number)
        else:
            is_leaf = n.op is Op.CONST or n.op is Op.RAND
            if is_leaf:
                leaves.append(n)
            number[id(n)] = len(key)
            key.append((n.op, None if is_leaf else n.arg, n.shape, n.dtype, tuple([number[id(s)] for s in n.srcs])))
    return tuple(key), leaves


def _slots(leaves: list[Node]) -> dict[int, int]:
    """The first launch argument slot of each leaf: one per CONST, two (seed, offset) per RAND."""
    out, slot = {}, 0
    for n in leaves:
        out[id(n)] = slot
        slot += 2 if n.op is Op.RAND else 1
    return out


def launch_args(leaves: list[Node]) -> list[bool | int | float]:
    """The launch arguments of a kernel with these leaves, in slot order (floats for float constants, else ints)."""
    out: list[bool | int | float] = []
    for n in leaves:
        if n.op is Op.RAND:
            out += [int(n.arg[0]), int(n.arg[1])]
        else:
            out.append(float(n.arg) if n.dtype.is_floating_point else int(n.arg))
    return out


# ---- what a renderer accepts ----

@dataclass(frozen=True)
class Options:
    """What `lower` may build beyond one perfect loop nest with one store (which every renderer handles; GPU
    renderers map that nest onto threads). The C renderer takes both."""

    split_loops: bool = False  # cut loops where padding conditions change (several loops and stores per kernel)
    # reductions into `ir.Local` arrays: a row of accumulators where the contiguous axis is kept, partial results of
    # pieces run in parallel where everything is reduced to one value (`nests.row_reduction`, `split_reduction`)
    row_accumulators: bool = False


PORTABLE = Options()
CPU = Options(split_loops=True, row_accumulators=True)


def lower(item: ScheduleItem, name: str, options: Options = PORTABLE) -> ir.Kernel:
    """The loop IR of a kernel item: loops over the output, inner loops for a reduction, a store per element.

    Constants and random seeds become launch argument slots in `kernel_signature` order, so the code depends only
    on the kernel's structure. `options` (e.g. `CPU`) allows nests that only some renderers print."""
    out = item.out
    inputs = {id(n): f"in{i}" for i, n in enumerate(item.inputs)}
    params = [ir.Param("out", out.dtype, writable=True)] + [ir.Param(f"in{i}", n.dtype) for i, n in
                                                              enumerate(item.inputs)]
    _, leaves = kernel_signature(item)
    low = Lowerer(inputs, _slots(leaves))
    # fused chains are at most MAX_FUSED_DEPTH deep; each level costs a few Python frames while lowering
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 8 * MAX_FUSED_DEPTH + 1000))
    reduce = out.op in REDUCE
    root = out.srcs[0] if reduce else _loop_root(out, inputs)
    parallel = prod(root.shape) >= PARALLEL_MIN_WORK
    nest = Nest(low, root, options.split_loops)
    body = None
    if item.rows:
        body = row_kernel(low, out, item.rows)
    elif reduce and options.row_accumulators:  # the C renderer's reduction nests, where they apply
        body = row_reduction(low, out, parallel) or split_reduction(low, out)
    if body is None and reduce:
        axes = set(out.arg)
        dims = [Dim(d, s, "i") for d, s in enumerate(root.shape) if s != 1 and d not in axes]
        reduced = [Dim(d, s, "r") for d, s in enumerate(root.shape) if s != 1 and d in axes]
        count = iter(range(1 << 30))

        def reduction(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
            k = next(count)  # one accumulator per body: cut loops may put several in one C block
            acc = ir.Ref("acc" if k == 0 else f"acc{k}", out.dtype)

            def accumulate(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
                stmts, v = low.body(root, nest.full(idx))
                return [*stmts, ir.Accumulate(acc, out.op, v)]

            inner = nest.build(reduced, [], idx, accumulate, True, split)
            out_idx = tuple(const(0) if d in axes else i for d, i in enumerate(nest.full(idx)))
            return [ir.DeclareAcc(acc, out.op), *inner, ir.FinishAcc(acc, out.op),
                    ir.Store("out", linearize(out_idx, out.shape), acc)]

        body = nest.build(dims, reduced, {}, reduction, reduction=False)
    elif body is None:
        def store(idx: dict[int, Index], split: bool) -> list[ir.Stmt]:
            full = nest.full(idx)
            stmts, v = low.body(root, full)
            return [*stmts, ir.Store("out", linearize(full, root.shape), v)]

        body = nest.build([Dim(d, s, "i") for d, s in enumerate(root.shape) if s != 1], [], {}, store,
                          reduction=False)
    for s in body:
        if isinstance(s, ir.Loop) and not s.reduction:
            s.parallel = parallel and _work(s) >= PARALLEL_MIN_WORK
    if low.uses_error_flag:
        params.append(ir.Param("err", float32, writable=True))
    return ir.Kernel(name, params, body, low.uses_error_flag, launch_args(leaves), low.gathers)
