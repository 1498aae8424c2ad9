"""Tracing one call of a function: every realize is deferred, so the whole step becomes one graph.

While a `Trace` records, tensors build their graph as usual but nothing is computed. The trace learns which
existing tensors the step reads (through `Tensor._apply`) and which it rebinds (through the mutation journal of
`grad_mode`): those are the step's state. `capture_graph` then turns the finished call into a `Captured`: the
roots to compute (outputs and the new state values), the inputs they read, and where each input comes from.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from ..dtype import float32
from ..frontend import creation
from ..frontend.tensor import Tensor
from ..graph import Node, Op, toposort
from ..realize import realize


class JitError(RuntimeError):
    """A function cannot be captured or replayed by `fg.jit` (the message says why and what to change)."""


JitError.__module__ = "fusegrad"


class Trace:
    """What one traced call did to existing tensors: reads of realized values, rebinds of `_node` and `_grad`."""

    def __init__(self) -> None:
        self.readers: dict[int, tuple[Node, list[weakref.ref]]] = {}
        self._seen: set[tuple[int, int]] = set()
        self.rebinds: dict[int, tuple[weakref.ref, str, Any]] = {}  # (id(obj), attr) order kept: first old value
        self.rng_start = (creation._rng["seed"], creation._rng["counter"])
        self.first_serial = Node(Op.CONST, (), 0, (), float32, "numpy").serial

    def read(self, srcs: tuple[Tensor, ...]) -> None:
        """`srcs` are about to be used by an op: remember the tensors that hold already-computed values."""
        for s in srcs:
            node = s._node
            if node.buffer is None and node.serial < self.first_serial:
                realize([node])  # a lazy value from before the call: an input, so rebinding it later is seen
            if node.buffer is None or (id(node), id(s)) in self._seen:
                continue
            self._seen.add((id(node), id(s)))
            self.readers.setdefault(id(node), (node, []))[1].append(weakref.ref(s))

    def mutated(self, obj: object, attr: str, old: Any) -> None:
        """A tensor's value (`_node`) or gradient (`_grad`) is being rebound; keep the value it had first."""
        if attr in ("_node", "_grad") and isinstance(obj, Tensor):
            self.rebinds.setdefault((id(obj), attr), (weakref.ref(obj), attr, old))

    def value_read_error(self, t: Tensor) -> JitError:
        """The error for reading a value that the traced step has not computed yet."""
        return JitError(f"fg.jit: a value computed inside the jitted function was read (.item(), .numpy(), bool(), "
                        f"printing; shape {t.shape}) while it is traced. Replays run no Python, so the function may "
                        "not branch on tensor values: return the tensor and read it outside the function")


@dataclass
class State:
    """A tensor (or a tensor's `.grad`) the step rebinds: `initial` is what it held before, `final` after."""

    owner: weakref.ref
    attr: str  # "_node": the tensor's value; "_grad": its gradient
    initial: Node | None
    final: Node

    def current(self) -> Node | None:
        """The node it holds now (None: the owner is gone, or its gradient is None)."""
        t = self.owner()
        if t is None:
            return None
        if self.attr == "_node":
            return t._node
        return t._grad._node if t._grad is not None else None

    def bind(self, node: Node, grad_tensor: Tensor | None) -> None:
        """Point the owner at `node` (a gradient is set to `grad_tensor`, a tensor over it, reused every call)."""
        t = self.owner()
        if t is None:
            return
        if self.attr == "_node":
            t._node = node
        else:
            t._grad = grad_tensor


@dataclass
class Captured:
    """One traced call as a graph: compute `roots` from `inputs`; `sources[i]` says where input i comes from."""

    roots: list[Node]
    outputs: list[int]  # root index of every tensor output, in flattening order
    states: list[tuple[State, int]]  # each state with the root index of its final value
    inputs: list[Node]  # realized leaves the roots read
    sources: list[tuple[str, Any]] = field(default_factory=list)  # ("arg", i) | ("state", k) | ("owners", [refs])
    rand: list[tuple[Node, int]] = field(default_factory=list)  # RAND nodes with their offset from the call's start
    rng_used: int = 0


def capture_graph(trace: Trace, arg_tensors: list[Tensor], out_tensors: list[Tensor]) -> Captured:
    """Turn a finished traced call into a `Captured` graph (nothing is computed)."""
    arg_nodes = {id(t._node): i for i, t in enumerate(arg_tensors)}
    states: list[State] = []
    for (_, attr), (ref, _, old) in trace.rebinds.items():
        t = ref()
        if t is None or t._node.op is Op.LOAD and t._node.buffer is None:
            continue
        if attr == "_node":
            if old.buffer is None or t._node is old:  # made inside the call (a temporary), or unchanged
                continue
            if id(old) in arg_nodes:
                raise JitError("fg.jit: the jitted function updates one of its arguments in place; return the new "
                               "value instead")
            states.append(State(ref, attr, old, t._node))
        else:
            if t._grad is None or (old is not None and t._grad._node is old._node):
                continue
            initial = old._node if old is not None and old._node.buffer is not None else None
            states.append(State(ref, attr, initial, t._grad._node))
    roots: list[Node] = []
    index: dict[int, int] = {}

    def root(node: Node) -> int:
        if id(node) not in index:
            index[id(node)] = len(roots)
            roots.append(node)
        return index[id(node)]

    outputs = [root(t._node) for t in out_tensors]
    state_roots = [(s, root(s.final)) for s in states]
    order = toposort(roots)
    inputs = [n for n in order if n.buffer is not None]
    state_of = {id(s.initial): k for k, s in enumerate(states)
                if s.initial is not None and (s.initial.shape, s.initial.dtype) == (s.final.shape, s.final.dtype)}
    sources: list[tuple[str, Any]] = []
    for n in inputs:
        if id(n) in arg_nodes:
            sources.append(("arg", arg_nodes[id(n)]))
        elif id(n) in state_of:
            sources.append(("state", state_of[id(n)]))
        else:
            refs = trace.readers.get(id(n), (n, []))[1]
            sources.append(("owners", [r for r in refs if r() is not None]))
    seed, start = trace.rng_start
    rand = []
    for n in order:
        if n.op is Op.RAND and n.buffer is None:
            if n.arg[0] != seed:
                raise JitError("fg.jit: fg.manual_seed was called inside the jitted function; seed outside it")
            rand.append((n, n.arg[1] - start))
    return Captured(roots, outputs, state_roots, inputs, sources, rand, creation._rng["counter"] - start)


def fingerprint(roots: list[Node]) -> list[tuple]:
    """The structure of the graph below `roots`, node by node: what a second trace must reproduce exactly.

    Constants are part of it (a Python number that changes between calls would be frozen by replays); random
    nodes are compared by size only, since every call draws new numbers.
    """
    order = toposort(roots)
    pos = {id(n): i for i, n in enumerate(order)}
    out = []
    for n in order:
        if n.buffer is not None:
            out.append(("input", n.shape, n.dtype.name))
            continue
        arg = None if n.op is Op.RAND else n.arg
        out.append((n.op.name, n.shape, n.dtype.name, repr(arg), tuple(pos[id(s)] for s in n.srcs)))
    return out


def describe_difference(a: list[tuple], b: list[tuple]) -> str:
    """Where two fingerprints first differ, in words."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            if x[0] == y[0] == "CONST" and x[1:3] == y[1:3]:
                return (f"a constant changed from {x[3]} to {y[3]} (node {i}): a Python number that varies between "
                        "calls (a step counter, a learning rate) would be frozen by replays; keep it in a tensor "
                        "updated in place")
            return f"node {i} was {_node_words(x)} in the first trace and {_node_words(y)} in the second"
    return f"the first trace has {len(a)} graph nodes and the second {len(b)}"


def _node_words(entry: tuple) -> str:
    if entry[0] == "input":
        return f"an input of shape {entry[1]} ({entry[2]})"
    return f"{entry[0]} of shape {entry[1]} ({entry[2]})"
