"""`fg.jit`: run a function normally once, trace it once, check a second trace, then replay a compiled program.

A replay runs no Python of the function: arguments and the tensors it reads are bound to the program's inputs, the
whole step (forward, backward, optimizer update) runs as one program, the tensors it rebinds (parameters, optimizer
state, `.grad`) are pointed at the program's persistent buffers, and its outputs come back as tensors over static
buffers that the next call overwrites (read them, e.g. with `.item()`, before calling again).
"""
from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any

from ..frontend import creation, grad_mode
from ..frontend.tensor import Tensor
from ..graph import Node
from ..realize import realize
from ..runtime import get_device
from ..runtime.cpu import CpuDevice
from ..runtime.gpu_device import GpuDevice
from .cpu_program import CpuProgram, UnsupportedStepError
from .gpu_program import GpuProgram
from .graph_program import GraphProgram
from .memory_plan import MemoryPlan
from .trace import Captured, JitError, Trace, capture_graph, describe_difference, fingerprint


def _flatten(tree: Any, leaves: list[Any]) -> Any:
    """Collect the leaves of nested tuples/lists/dicts; returns the structure with leaves replaced by None."""
    if isinstance(tree, (tuple, list)):
        structure = [_flatten(x, leaves) for x in tree]
        return (type(tree), tuple(structure)) if not hasattr(tree, "_fields") else (type(tree), tuple(structure))
    if isinstance(tree, dict):
        return (dict, tuple((k, _flatten(v, leaves)) for k, v in tree.items()))
    leaves.append(tree)
    return None


def _unflatten(structure: Any, leaves: Any) -> Any:
    if structure is None:
        return next(leaves)
    kind, parts = structure
    if kind is dict:
        return {k: _unflatten(v, leaves) for k, v in parts}
    items = [_unflatten(p, leaves) for p in parts]
    return kind(*items) if hasattr(kind, "_fields") else kind(items)


def _static_key(value: Any) -> Any:
    """How a non-tensor argument enters the signature (by value when hashable)."""
    try:
        hash(value)
        return ("value", type(value).__name__, value)
    except TypeError:
        return ("object", id(value))


def compile_step(captured: Captured) -> CpuProgram | GpuProgram | GraphProgram:
    """The fastest program that runs a captured step on its device: one C function on `cpu`, fixed launches (a
    CUDA graph on `cuda`) on the accelerators, else a replay of the graph through `realize`."""
    device = get_device(captured.roots[0].device if captured.roots else "numpy")
    if any(n.device != device.name for n in captured.roots + captured.inputs):
        return GraphProgram(captured)
    try:
        if isinstance(device, CpuDevice) and device.fallback is None:
            return CpuProgram(captured)
        if isinstance(device, GpuDevice):
            return GpuProgram(captured, device)
    except UnsupportedStepError:
        pass
    return GraphProgram(captured)


class _Capture:
    """One signature's captured step: the program, where each input comes from, and what it rebinds."""

    def __init__(self, captured: Captured, prints: list[tuple], out_structure: Any, out_leaves: list[Any]):
        self.captured, self.prints = captured, prints
        self.out_structure, self.out_leaves = out_structure, out_leaves
        self.checked = False
        self.program = compile_step(captured)
        self.bound_states: list[Node | None] = [None] * len(captured.states)
        self.grad_tensors: list[Tensor | None] = [None] * len(captured.states)

    def bind(self, args: list[Tensor]) -> list[Any]:
        """The buffer of every input for this call, checked against what was captured."""
        bound = []
        cap = self.captured
        for node, (kind, src) in zip(cap.inputs, cap.sources):
            if kind == "arg":  # the signature already matched its shape, dtype and device
                bound.append(args[src]._node.buffer)
                continue
            if kind == "state":
                state = cap.states[src][0]
                current = state.current()
                if current is not None and current is self.bound_states[src]:  # still what the last call left
                    bound.append(current.buffer)
                    continue
                if current is None:
                    raise JitError(f"fg.jit: a tensor the captured step updates (shape {node.shape}) is gone or its "
                                   ".grad is None now; it held a value when the step was captured")
                if current.buffer is None:
                    realize([current])
            else:
                current = node
                for ref in src:
                    t = ref()
                    if t is not None and t._node is not node:  # rebound outside the function: read its new value
                        current = t.realize()._node
                        break
            if (current.shape, current.dtype, current.device) != (node.shape, node.dtype, node.device):
                raise JitError(f"fg.jit: an input of the captured step was {node.shape} {node.dtype.name} on "
                               f"'{node.device}' and is now {current.shape} {current.dtype.name} on "
                               f"'{current.device}'")
            bound.append(current.buffer)
        return bound

    def run(self, args: list[Tensor], bound: list[Any] | None = None) -> Any:
        """Run the program on this call's inputs, rebind the state, and build the outputs."""
        cap = self.captured
        if bound is None:
            bound = self.bind(args)
        rng = creation._rng["seed"], creation._rng["counter"]
        results = self.program.run(bound, rng)
        creation._rng["counter"] += cap.rng_used
        for k, (state, _) in enumerate(cap.states):
            node = self.program.state_value(k, results)
            if node is self.bound_states[k] and state.current() is node:  # the compiled step wrote it in place
                continue
            if state.attr == "_grad" and (self.grad_tensors[k] is None or self.grad_tensors[k]._node is not node):
                self.grad_tensors[k] = Tensor(node)
            state.bind(node, self.grad_tensors[k])
            self.bound_states[k] = node
        outs = iter([Tensor(results[i]) for i in cap.outputs])
        leaves = iter([next(outs) if isinstance(x, Tensor) else x for x in self.out_leaves])
        return _unflatten(self.out_structure, leaves)


class jit:  # noqa: N801 - used like a function, as torch.compile and jax.jit are
    """Compile a whole step: `step = fg.jit(fn)` or `@fg.jit`.

    The first call with a new signature (argument shapes, dtypes, devices, non-tensor values) runs `fn` normally;
    the second traces it into one graph, compiles it (on `cpu`: one C function for the whole step) and runs that;
    the third traces again and checks the graph is the same (else `JitError` says what differed); later calls only
    replay. Tensors `fn` reads or updates that are not arguments (parameters, optimizer state, running statistics)
    are captured; updates are written into them in place. Random numbers advance every call.
    """

    def __init__(self, fn: Callable[..., Any]):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.calls: dict[Any, int] = {}
        self.captures: dict[Any, _Capture] = {}
        self.last: _Capture | None = None

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self.__call__, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if grad_mode.tracing() is not None or grad_mode.shape_only():  # inside another trace or eval_shape: inline
            return self.fn(*args, **kwargs)
        if not kwargs and all(type(a) is Tensor for a in args):  # the common case, keyed without flattening
            tensors = list(args)
            key: Any = tuple((t._node.shape, t._node.dtype, t._node.device, t.requires_grad) for t in tensors)
        else:
            leaves: list[Any] = []
            structure = _flatten((args, kwargs), leaves)
            tensors = [x for x in leaves if isinstance(x, Tensor)]
            key = (repr(structure), tuple((t.shape, t.dtype.name, t.device, t.requires_grad)
                                          if isinstance(t, Tensor) else _static_key(t) for t in leaves))
        pending = [t for t in tensors if t._node.buffer is None]
        if pending:
            pending[0].realize(*pending[1:])

        cap = self.captures.get(key)
        if cap is None:
            count = self.calls[key] = self.calls.get(key, 0) + 1
            if count == 1:
                return self.fn(*args, **kwargs)
            cap = self.captures[key] = self._capture(args, kwargs, tensors)
            self.last = cap
            return cap.result
        self.last = cap
        if not cap.checked:
            self._check(cap, args, kwargs, tensors)
        return cap.run(tensors)

    def _capture(self, args: tuple, kwargs: dict, tensors: list[Tensor]) -> _Capture:
        trace = Trace()
        with grad_mode.recording_trace(trace):
            out = self.fn(*args, **kwargs)
        out_leaves: list[Any] = []
        out_structure = _flatten(out, out_leaves)
        out_tensors = [x for x in out_leaves if isinstance(x, Tensor)]
        del out
        gc.collect()  # temporaries of the call go, so only tensors that live on count as its state
        captured = capture_graph(trace, tensors, out_tensors)
        cap = _Capture(captured, fingerprint(captured.roots), out_structure, out_leaves)
        bound = [n.buffer for n in captured.inputs]
        creation._rng["counter"] = trace.rng_start[1]  # the program draws this call's numbers itself
        cap.result = cap.run(tensors, bound)
        return cap

    def _check(self, cap: _Capture, args: tuple, kwargs: dict, tensors: list[Tensor]) -> None:
        """Trace once more (undoing everything it rebinds) and require the same graph as the capture."""
        trace = Trace()
        with grad_mode.recording_mutations(shape_only=False), grad_mode.recording_trace(trace):
            grad_mode.journal_dict(creation._rng)
            out = self.fn(*args, **kwargs)
            out_leaves: list[Any] = []
            _flatten(out, out_leaves)
            again = capture_graph(trace, tensors, [x for x in out_leaves if isinstance(x, Tensor)])
            prints = fingerprint(again.roots)
        if prints != cap.prints:
            raise JitError("fg.jit: the function built a different graph on its third call than on its second, so "
                           "it cannot be replayed (Python control flow or Python numbers that change between calls): "
                           + describe_difference(cap.prints, prints))
        cap.checked = True

    def memory_plan(self) -> MemoryPlan:
        """The static memory plan of the most recently used capture: arena bytes against the sum of its buffers."""
        if self.last is None:
            raise RuntimeError("fg.jit: nothing captured yet (the second call of the function captures it)")
        return self.last.program.memory_plan()
