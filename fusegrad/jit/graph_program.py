"""Replay by re-realizing a private copy of the captured graph: works on every device (the reference path).

Devices without a whole-step compiled program (`numpy`, and any device the compiled program cannot express) replay
this way: inputs are bound to placeholder nodes, the copy's memo buffers are cleared, and the device realizes the
roots as in eager mode, minus the Python that built the graph.
"""
from __future__ import annotations

from ..graph import Node, Op, source_node, toposort
from ..realize import realize
from ..runtime.device import Buffer
from .memory_plan import MemoryPlan
from .trace import Captured


class GraphProgram:
    """A captured step replayed through the devices' own `realize` (new buffers every call)."""

    def __init__(self, captured: Captured):
        copies: dict[int, Node] = {}
        self.placeholders = []
        for n in captured.inputs:
            copies[id(n)] = source_node(Op.LOAD, None, n.shape, n.dtype, n.device)
            self.placeholders.append(copies[id(n)])
        self.internal: list[Node] = []
        for n in toposort(captured.roots):
            if id(n) not in copies:
                copies[id(n)] = Node(n.op, tuple(copies[id(s)] for s in n.srcs), n.arg, n.shape, n.dtype, n.device)
                self.internal.append(copies[id(n)])
        self.roots = [copies[id(r)] for r in captured.roots]
        self.rand = [(copies[id(n)], offset) for n, offset in captured.rand]
        self.state_roots = [root for _, root in captured.states]

    def run(self, bound: list[Buffer], rng: tuple[int, int]) -> list[Node]:
        """Compute the roots from the `bound` input buffers; random nodes draw from `rng` = (seed, counter)."""
        for node, buf in zip(self.placeholders, bound):
            node.buffer = buf
        for n in self.internal:
            n.buffer = None
        seed, counter = rng
        for n, offset in self.rand:
            n.arg = (seed, counter + offset)
        realize(self.roots)
        out = []
        for r in self.roots:
            node = source_node(Op.LOAD, r.buffer, r.shape, r.dtype, r.device)
            node.buffer = r.buffer
            out.append(node)
        return out

    def state_value(self, k: int, results: list[Node]) -> Node:
        """The node state k holds after a run: the root computed for it this call."""
        return results[self.state_roots[k]]

    def memory_plan(self) -> MemoryPlan:
        """No plan: every call allocates through the device, as eager mode does."""
        return MemoryPlan()
