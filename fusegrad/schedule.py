"""Cut a graph into kernels: fuse every elementwise and movement op into its consumer, realize the rest.

A kernel computes one node into a new buffer; everything unrealized below it is inlined, except the nodes that must
be buffers of their own (realization points): reductions (each kernel has at most one, with its elementwise
prologue fused in), MATMUL results, MATMUL operands that are not plain strided views of a buffer, GATHER
sources, and a max reduction's operand computed with libm. Inlined subgraphs shared by several kernels are
recomputed (they are elementwise, so that is cheap); within one kernel each node is computed once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .graph import ELEMENTWISE, MOVEMENT, REDUCE, Node, Op, prod, toposort
from .view import View, batch_stride, matrix_layout

MAX_FUSED_DEPTH = 512


@dataclass
class ScheduleItem:
    """One unit of work: compute `out` into its own buffer, reading the realized nodes in `inputs`."""

    out: Node
    kind: str  # "kernel" (fused loop nest), "matmul" (BLAS-style library call), "view" (same memory, new shape)
    inputs: list[Node] = field(default_factory=list)
    offset: int = 0  # a view's first element in its base buffer (in elements)
    rows: list[Node] = field(default_factory=list)  # reductions a row kernel computes per row first (`_row_groups`)

    def __repr__(self) -> str:
        rows = f" with {len(self.rows)} row reductions" if self.rows else ""
        return (f"<{self.kind} {self.out.op.name} {self.out.shape} {self.out.dtype.name} reads {len(self.inputs)}"
                f"{rows}>")


def strided_view(node: Node, ready: set[int] = frozenset()) -> tuple[Node, View] | None:
    """If `node` is movement ops over a realized buffer expressible as one unmasked View, that buffer and View.
    Nodes in `ready` (ids) count as realized: outputs of earlier items, when planning before anything runs."""
    chain = []
    while not node.realized and id(node) not in ready and node.op in MOVEMENT:
        chain.append(node)
        node = node.srcs[0]
    if not node.realized and id(node) not in ready:
        return None
    view: View | None = View.contiguous(node.shape)
    for n in reversed(chain):
        view = _apply_view(view, n)
        if view is None or view.mask is not None:
            return None
    return node, view


# each movement primitive as the View method that does the same index arithmetic
VIEW_OPS = {Op.RESHAPE: View.reshape, Op.PERMUTE: View.permute, Op.EXPAND: View.expand, Op.PAD: View.pad,
            Op.SHRINK: View.shrink, Op.FLIP: View.flip, Op.STRIDE: View.stride, Op.UNFOLD: View.unfold}


def _apply_view(view: View, n: Node) -> View | None:
    return VIEW_OPS[n.op](view, n.arg)


def _view_base(node: Node) -> Node:
    """The node to realize so that MATMUL operand `node` reads it as a strided view: the deepest one under its chain
    of movement ops through which the chain is one View a BLAS library reads as it is (`blas_view`), else `node`
    itself. The im2col patch matrix of a conv and its transpose (the weight gradient's operand) so share one
    buffer, and a broadcast weight is not copied."""
    best, chain = node, []
    while node.op in MOVEMENT and not node.realized:
        chain.append(node)
        node = node.srcs[0]
        if node.realized:
            break
        view: View | None = View.contiguous(node.shape)
        for m in reversed(chain):
            view = _apply_view(view, m)
            if view is None or view.mask is not None:
                break
        else:
            if blas_view(view):
                best = node
    return best


def blas_view(view: View) -> bool:
    """Whether a (..., rows, cols) operand view is what BLAS libraries take without a copy: matrices with a
    `matrix_layout` at one `batch_stride` progression in memory."""
    return matrix_layout(*view.shape[-2:], *view.strides[-2:]) is not None and batch_stride(view) is not None


def _contiguous_alias(node: Node, boundary: set[int]) -> tuple[Node, int] | None:
    """(base, offset): the buffer node of which `node` is one dense row-major block, so it can share that memory."""
    base = node
    reshapes_only = True
    while base.op in MOVEMENT and not base.realized and (base is node or id(base) not in boundary):
        reshapes_only = reshapes_only and base.op is Op.RESHAPE
        base = base.srcs[0]
    if base is node or not (base.realized or id(base) in boundary):
        return None
    if reshapes_only:  # the common case (a flatten, a squeeze, a keepdim=False): no View arithmetic needed
        return base, 0
    view: View | None = View.contiguous(base.shape)
    chain = []
    n = node
    while n is not base:
        chain.append(n)
        n = n.srcs[0]
    for m in reversed(chain):
        view = _apply_view(view, m)
        if view is None:
            return None
    dense = View(view.shape, View.contiguous(view.shape).strides, view.offset)
    return (base, view.offset) if view == dense else None


EXPENSIVE = {Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.IDIV, Op.MOD}
BROADCAST_CUT = 16  # a computed value broadcast this many times over is computed once, into its own buffer


def _computed_once(n: Node, boundary: set[int]) -> bool:
    """True if `n` (the source of an EXPAND) is arithmetic on stored values only that is worth computing once rather
    than at every element it is broadcast to: more than a few ops, or a transcendental one (e.g. Adam's
    lr / (1 - beta1**step) over a whole tensor). Values computed from other kernels stay fused (softmax's max)."""
    count, stack, seen = 0, [n], set()
    found = False
    while stack:
        m = stack.pop()
        if m.realized or id(m) in seen:
            continue
        if m.op in REDUCE or m.op is Op.MATMUL:
            return False
        if id(m) in boundary and m is not n:  # computed by another kernel (e.g. a step counter updated this step)
            continue
        seen.add(id(m))
        if len(seen) > 256:  # bounded work per EXPAND: a big subgraph is not a scalar formula
            return False
        if m.op in ELEMENTWISE:
            count += 1
            found = found or m.op in EXPENSIVE or count > 3
        stack.extend(m.srcs)
    return found


LIBM = {Op.EXP2, Op.LOG2, Op.SIN}  # results may differ in the last bit between a vector and a scalar loop


def _uses_libm(node: Node, boundary: set[int]) -> bool:
    """Whether computing `node` inline calls a libm function. A max reduction's operand that does is computed once
    into a buffer: its gradient compares the operand with the max for equality, which recomputation (vectorized in
    one kernel, scalar in another) could break, leaving no element equal to the max."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        m = stack.pop()
        if m.realized or id(m) in seen or (id(m) in boundary and m is not node):
            continue
        seen.add(id(m))
        if m.op in LIBM or len(seen) > 256:
            return True
        stack.extend(m.srcs)
    return False


def _boundaries(order: list[Node], roots: list[Node]) -> set[int]:
    """ids of the nodes that get their own buffer."""
    out = {id(r) for r in roots}
    depth: dict[int, int] = {}
    for n in order:
        if n.realized:
            continue
        if n.op is Op.EXPAND and prod(n.shape) >= BROADCAST_CUT * prod(n.srcs[0].shape):
            src = n.srcs[0]
            while src.op in MOVEMENT and not src.realized:
                src = src.srcs[0]
            if not src.realized and _computed_once(src, out):
                out.add(id(src))
        # a very deep fused chain becomes a buffer: bounded kernel size keeps compiling (and lowering) cheap
        deepest = 0
        for s in n.srcs:
            if id(s) not in out:
                deepest = max(deepest, depth.get(id(s), 0))
        depth[id(n)] = deepest + 1
        if deepest >= MAX_FUSED_DEPTH:
            out.add(id(n))
        if n.op is Op.SUM or n.op is Op.REDUCE_MAX or n.op is Op.MATMUL:
            out.add(id(n))
        if n.op is Op.REDUCE_MAX:
            src = n.srcs[0]
            while src.op in MOVEMENT and not src.realized:
                src = src.srcs[0]
            if not src.realized and _uses_libm(src, out):
                out.add(id(src))
        if n.op is Op.MATMUL:
            out.update(id(_view_base(s)) for s in n.srcs if strided_view(s) is None)
        if n.op is Op.GATHER and not n.srcs[0].realized:  # the data-dependent read needs a plain buffer
            out.add(id(n.srcs[0]))
    return out


SHARED_CUT = 10  # elementwise ops: a subgraph this big that several kernels would inline is computed once instead
SHARED_COPY_CUT = 4  # the same where one of those kernels only copies it into a new layout (a matmul operand)


def _shared_work(order: list[Node], boundary: set[int]) -> set[int]:
    """Nodes that more than one kernel would recompute (inlined subgraphs are per kernel) and that carry at least
    SHARED_CUT elementwise ops below them: computing them once bounds the work of graphs like an unrolled LSTM's
    backward, where each step's gates feed several kernels."""
    roots = [n for n in order if not n.realized and id(n) in boundary]
    if len(roots) < 2:  # one kernel recomputes nothing
        return set()
    kernels: dict[int, int] = {}
    copied: set[int] = set()  # nodes some kernel merely lays out anew: the others may as well read that copy's source
    for root in roots:
        m = root
        while m.op in MOVEMENT and not m.realized and (m is root or id(m) not in boundary):
            m = m.srcs[0]
        if m is not root and not m.realized and id(m) not in boundary:
            copied.add(id(m))
        seen: set[int] = set()
        stack = list(root.srcs)
        while stack:
            m = stack.pop()
            if m.realized or id(m) in boundary or id(m) in seen or m.op is Op.COPY:
                continue
            seen.add(id(m))
            kernels[id(m)] = kernels.get(id(m), 0) + 1
            stack.extend(m.srcs)
    work: dict[int, int] = {}
    extra: set[int] = set()
    for n in order:
        if n.realized or id(n) in boundary:
            continue
        below = sum(work.get(id(s), 0) for s in n.srcs if id(s) not in extra)
        work[id(n)] = min(below + (n.op in ELEMENTWISE), 1 << 20)
        cut = SHARED_COPY_CUT if id(n) in copied else SHARED_CUT
        if kernels.get(id(n), 0) >= 2 and work[id(n)] >= cut and n.op not in MOVEMENT:
            extra.add(id(n))
    return extra


def kernel_inputs(node: Node, is_boundary: set[int] | None = None) -> list[Node]:
    """The realized (or separately computed) nodes that the kernel computing `node` reads, in first-use order."""
    seen: set[int] = set()
    found: list[Node] = []
    stack = list(reversed(node.srcs))
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.realized or (is_boundary is not None and id(n) in is_boundary) or n.op is Op.COPY:
            found.append(n)
            continue
        stack.extend(reversed(n.srcs))
    return found


ROW_MAX = 1 << 16  # elements of a row: a row kernel's passes over it read it from cache, not memory
ROW_MIN = 32  # shorter rows (a pooling window, ten logits) run faster as whole-tensor kernels that vectorize
ROW_MIN_ROWS = 16  # rows needed to keep the threads busy (a sum over everything is one row, on one thread)


def _row_axes(head: Node, r: Node) -> frozenset[int] | None:
    """The axes reduction `r` reduces, if a row kernel computing `head` can compute it per row: r reduces
    head's iteration shape over axes that include the contiguous one, in rows that fit in cache."""
    shape = r.srcs[0].shape
    if (head.srcs[0].shape if head.op in REDUCE else head.shape) != shape or 0 in shape:
        return None
    if head.op not in REDUCE and head.op not in ELEMENTWISE:
        return None
    axes = frozenset(d for d in r.arg if shape[d] != 1)
    if head.op in REDUCE and axes != frozenset(d for d in head.arg if shape[d] != 1):
        return None
    real = [d for d, n in enumerate(shape) if n != 1]
    row = prod(tuple(shape[d] for d in axes))
    if not axes or real[-1] not in axes or not ROW_MIN <= row <= ROW_MAX or prod(shape) // row < ROW_MIN_ROWS:
        return None
    return axes


def _reaches(start: Node, members: set[int], boundary: set[int], seen: set[int]) -> bool:
    """Whether the subgraph a kernel inlines below `start` reads one of `members`."""
    stack = [start]
    while stack:
        n = stack.pop()
        if n.realized or id(n) in seen:
            continue
        seen.add(id(n))
        if id(n) in members:
            return True
        if id(n) not in boundary:
            stack.extend(n.srcs)
    return False


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _rows_flow(head: Node, members: list[Node], boundary: set[int]) -> bool:
    """Whether every read of a member is at the row the kernel is computing: through elementwise ops of the row
    shape (and reshapes that only add or drop size-1 dims) and one EXPAND back to the full shape. Any other
    movement between a member and its reader could index another row."""
    ids = {id(m) for m in members}
    full = head.srcs[0] if head.op in REDUCE else head
    shape = full.shape
    axes = set(members[0].arg)
    row = tuple(1 if d in axes else n for d, n in enumerate(shape))
    stack = [(full, True)] + [(m.srcs[0], True) for m in members]
    seen: set[tuple[int, bool]] = set()
    opaque: set[int] = set()
    while stack:
        n, at_full = stack.pop()
        if n.realized or (id(n), at_full) in seen:
            continue
        seen.add((id(n), at_full))
        if id(n) in ids:
            if at_full:
                return False
            continue
        if id(n) in boundary and n is not full:
            continue
        if n.op in ELEMENTWISE:
            stack.extend((s, at_full) for s in n.srcs)
        elif at_full and n.op is Op.EXPAND and n.srcs[0].shape == row:
            stack.append((n.srcs[0], False))
        elif not at_full and n.op is Op.RESHAPE and _squeezed(n.srcs[0].shape) == _squeezed(row):
            stack.append((n.srcs[0], False))
        elif _reaches(n, ids, boundary, opaque):
            return False
    return True


def _row_groups(order: list[Node], roots: list[Node], boundary: set[int]) -> dict[int, list[Node]]:
    """Row kernels: a kernel whose reads of reductions are all per row of its own shape computes those reductions
    itself, row by row, before its elements (softmax: the max, the sum of exps, then the outputs; layer norm: the
    mean, the variance, then the outputs), so the input is read from memory once instead of once per kernel.
    Returns the reductions each such kernel's output computes, dependencies first; they are no longer buffers."""
    kernels = [n for n in order if not n.realized and id(n) in boundary]
    if not any(n.op in REDUCE for n in kernels[:-1]):
        return {}
    readers: dict[int, list[Node]] = {}
    for k in kernels:
        for i in kernel_inputs(k, boundary):
            readers.setdefault(id(i), []).append(k)
    owner: dict[int, Node] = {}
    groups: dict[int, list[Node]] = {}
    axes: dict[int, frozenset[int]] = {}
    is_root = {id(r) for r in roots}
    for n in reversed(kernels):
        if n.op not in REDUCE or id(n) in is_root or not readers.get(id(n)):
            continue
        heads = {id(owner.get(id(k), k)): owner.get(id(k), k) for k in readers[id(n)]}
        if len(heads) != 1:
            continue
        (head,) = heads.values()
        a = _row_axes(head, n)
        if a is None or axes.setdefault(id(head), a) != a:
            continue
        owner[id(n)] = head
        groups.setdefault(id(head), []).append(n)
    heads = {id(n): n for n in kernels}
    return {h: members[::-1] for h, members in groups.items()
            if _rows_flow(heads[h], members, boundary - {id(m) for m in members})}


def graph_signature(roots: list[Node], order: list[Node] | None = None) -> tuple[tuple, list[Node]]:
    """(key, nodes): the structure of the unrealized graph below `roots` as a hashable key (ops, args, shapes, dtypes
    and sources by position; realized nodes are leaves known by shape and dtype, constants and random nodes by
    everything but their values), and its nodes in key order (`toposort(roots)`, walked here unless given). Graphs
    with equal keys schedule alike."""
    order = toposort(roots) if order is None else order
    number = {id(n): i for i, n in enumerate(order)}
    key = tuple([(n.shape, n.dtype) if n.buffer is not None else (n.op, None if n.op in _VALUE_LEAVES else n.arg,
                 n.shape, n.dtype, tuple([number[id(s)] for s in n.srcs])) for n in order])
    return (key, tuple([number[id(r)] for r in roots])), order


_VALUE_LEAVES = (Op.CONST, Op.RAND)  # their values are launch arguments, not part of a kernel's structure


def schedule_kernels(roots: list[Node], row_kernels: bool = False) -> list[ScheduleItem]:
    """The kernels that compute `roots` (unrealized ones only), in an order where inputs come first. With
    `row_kernels` (the cpu device), a kernel may compute reductions of its rows itself (`_row_groups`)."""
    roots = [r for r in roots if not r.realized]
    order = toposort(roots)
    boundary = _boundaries(order, roots)
    boundary |= _shared_work(order, boundary)
    groups = _row_groups(order, roots, boundary) if row_kernels else {}
    for members in groups.values():
        boundary -= {id(m) for m in members}
    items = []
    for n in order:
        if n.realized or id(n) not in boundary:
            continue
        alias = _contiguous_alias(n, boundary)
        if alias is not None:
            items.append(ScheduleItem(n, "view", [alias[0]], alias[1]))
        elif n.op is Op.MATMUL:
            items.append(ScheduleItem(n, "matmul", [s for s in n.srcs]))
        else:
            items.append(ScheduleItem(n, "kernel", kernel_inputs(n, boundary), rows=groups.get(id(n), [])))
    return items
