"""Realization: hand unrealized graph nodes to the device that owns them."""
from __future__ import annotations

from .graph import Node, Op, toposort
from .runtime import get_device


class ShapeOnlyError(RuntimeError):
    """A value was asked of a shape-only tensor (inside `fg.eval_shape`)."""


ShapeOnlyError.__module__ = "fusegrad"  # users see fusegrad.ShapeOnlyError in tracebacks


def realize(nodes: list[Node]) -> None:
    """Compute every node in `nodes`; cross-device copies are done first, then each device runs its part."""
    pending = [n for n in nodes if not n.realized]
    if not pending:
        return
    order = toposort(pending)
    copied = False
    for n in order:
        if n.op is Op.LOAD and n.buffer is None:
            raise ShapeOnlyError("this tensor has a shape but no data (it comes from fg.eval_shape); it cannot be "
                                 "computed, printed or converted")
        if n.op is Op.COPY and not n.realized:
            (src,) = n.srcs
            realize([src])
            host = get_device(src.device).to_numpy(src.buffer)
            n.buffer = get_device(n.device).from_numpy(host, n.dtype)
            copied = True
    by_device: dict[str, list[Node]] = {}
    for n in pending:
        by_device.setdefault(n.device, []).append(n)
    for device, group in by_device.items():
        # the walk above is the device's graph when it is the only device and no copy cut the graph
        get_device(device).realize(group, None if copied or len(by_device) > 1 else order)
