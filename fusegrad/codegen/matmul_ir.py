"""MATMUL as loop-IR kernels: a broadcast multiply summed over k, so any device that prints the IR can contract.

out[..., i, j] = sum_k a[..., i, k] * b[..., k, j]. The operands' views (transposes, strided slices, broadcast
batches) fold into the index arithmetic as for any fused kernel, so no copies are made. Adjacent outputs differ in j,
so adjacent threads read adjacent elements of b. float16 is multiplied and summed in float32 and rounded once at the
end (as PyTorch and the numpy device do), which takes a second, elementwise kernel. This is the general path; a
device may send common float cases to a library (cuBLAS) or a tuned kernel instead.
"""
from __future__ import annotations

from ..dtype import float16, float32
from ..graph import Node, Op, make_node
from ..schedule import ScheduleItem, kernel_inputs


def matmul_kernels(node: Node, boundary: set[int]) -> tuple[list[ScheduleItem], Node]:
    """The kernel items computing MATMUL `node` and the node whose buffer holds the result (same layout as
    `node`). `boundary` holds the ids of nodes realized by earlier items, which the kernels read as buffers."""
    a, b = node.srcs
    *batch, m, k = a.shape
    n = b.shape[-1]
    half = node.dtype == float16
    if half:
        a, b = make_node(Op.CAST, (a,), float32), make_node(Op.CAST, (b,), float32)
    full = (*batch, m, k, n)
    a_full = make_node(Op.EXPAND, (make_node(Op.RESHAPE, (a,), (*batch, m, k, 1)),), full)
    b_full = make_node(Op.EXPAND, (make_node(Op.RESHAPE, (b,), (*batch, 1, k, n)),), full)
    total = make_node(Op.SUM, (make_node(Op.MUL, (a_full, b_full)),), (len(batch) + 1,))
    items = [ScheduleItem(total, "kernel", kernel_inputs(total, boundary))]
    if not half:
        return items, total
    rounded = make_node(Op.CAST, (total,), float16)
    items.append(ScheduleItem(rounded, "kernel", [total]))
    return items, rounded
