"""The Optimizer base: parameter groups, per-parameter state, zero_grad and state_dict, like torch.optim."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import fusegrad as fg
from fusegrad import Tensor


def _shape_only() -> bool:
    """True inside `fg.eval_shape`, found with the public API: no tensor's values can be read there."""
    try:
        _PROBE.numpy()
    except fg.ShapeOnlyError:
        return True
    return False


_PROBE = fg.tensor(0.0, device="numpy")  # already realized, so reading it computes nothing


class ParamGroup(dict):
    """A parameter group (a dict, as in torch) that also keeps its numeric hyper-parameters as 0-d float64 tensors.

    Update rules read the tensors, so a captured step (`fg.jit`) sees a learning rate changed later by a scheduler
    or by hand: setting a key rewrites its tensor at once.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tensors: dict[tuple[str, str], Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        for (k, device), t in self.tensors.items():
            if k == key:
                self._write(t, value, device)

    def update(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102 - dict.update, through __setitem__
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    @staticmethod
    def _write(t: Any, value: Any, device: str) -> None:
        with fg.no_grad():
            if isinstance(t, tuple):
                for ti, vi in zip(t, value):
                    ti.copy_(fg.tensor(float(vi), dtype=fg.float64, device=device))
            else:
                t.copy_(fg.tensor(float(value), dtype=fg.float64, device=device))

    def tensor(self, key: str, device: str) -> Any:
        """The hyper-parameter `key` as a 0-d float64 tensor on `device` (a tuple of them for tuples like betas)."""
        value = self[key]
        t = self.tensors.get((key, device))
        if t is None:
            make = lambda v: fg.tensor(float(v), dtype=fg.float64, device=device)  # noqa: E731
            t = self.tensors[(key, device)] = tuple(map(make, value)) if isinstance(value, tuple) else make(value)
        return t


class Optimizer:
    """Holds parameter groups; subclasses implement `_update(p, grad, group, state)` returning p's new value.

    Updates rebind each parameter to its new value (the graph's in-place write); one realize at the end of a step
    computes every parameter and state tensor together. `state` is keyed by parameter, like torch.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got a Tensor")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for group in params if isinstance(params[0], dict) else [{"params": params}]:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add parameters with their own hyper-parameters (missing ones come from the defaults)."""
        group = dict(group)
        group["params"] = [group["params"]] if isinstance(group["params"], Tensor) else list(group["params"])
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.is_floating_point():
                raise TypeError(f"optimizer can only optimize floating-point tensors, got {p!r:.60}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in group["params"]}) != len(group["params"]) or \
                existing & {id(p) for p in group["params"]}:
            raise ValueError("some parameters appear in more than one parameter group")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.param_groups.append(ParamGroup(group))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter (to None, or to zeros when set_to_none is False)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none or p.grad is None else fg.zeros_like(p.grad)

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def _hyper(group: ParamGroup, p: Tensor) -> Callable[[str], Any]:
        """`h(key)`: a group's hyper-parameter as a tensor on p's device (values stay out of the compiled code)."""
        return lambda key: group.tensor(key, p.device)

    @staticmethod
    def _store(state: dict[str, Any], key: str, value: Tensor) -> Tensor:
        """Set a state tensor; after the first step it is the same tensor updated in place (as in torch), so state
        dicts, checkpoints and `fg.jit` captures keep seeing it."""
        old = state.get(key)
        if isinstance(old, Tensor) and old.shape == value.shape:
            return old.assign(value)
        state[key] = value
        return value

    def _step_count(self, state: dict[str, Any], p: Tensor) -> Tensor:
        """Advance the per-parameter step counter (a float32 tensor, like torch's) and return it as float64."""
        count = state.get("step")
        if not isinstance(count, Tensor):  # first step, or a state dict that stored a number
            count = fg.tensor(float(count or 0), device=p.device)
        return self._store(state, "step", count + 1).double()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Apply one update to every parameter that has a gradient.

        Inside `fg.eval_shape` the parameters are restored by eval_shape itself and `state` is restored here, so a
        shape check of a training step leaves no shape-only state behind.
        """
        loss = None
        if closure is not None:
            with fg.enable_grad():
                loss = closure()
        saved = {p: dict(s) for p, s in self.state.items()} if _shape_only() else None
        try:
            touched: list[Tensor] = []
            with fg.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is None:
                            continue
                        state = self.state.setdefault(p, {})
                        grad = -p.grad if group.get("maximize") else p.grad
                        p.assign(self._update(p.detach(), grad, group, state))
                        touched.append(p)
                        touched.extend(v for v in state.values() if isinstance(v, Tensor))
            fg.realize(*touched)
        finally:
            if saved is not None:
                self.state.clear()
                self.state.update(saved)
        return loss

    def _index(self) -> dict[int, int]:
        ids = [id(p) for g in self.param_groups for p in g["params"]]
        return {pid: i for i, pid in enumerate(ids)}

    def state_dict(self) -> dict[str, Any]:
        """{'state': {param index: {name: value}}, 'param_groups': [{hyper-parameters, 'params': [indices]}]}:
        torch's layout. Tensors in it are snapshots: later steps rebind the optimizer's state, not these."""
        index = self._index()
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        state = {index[id(p)]: {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict` (same groups and parameter order); state
        tensors are moved to their parameter's device and floating ones cast to its dtype, like torch."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(len(a["params"]) != len(b["params"])
                                                        for a, b in zip(groups, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameter groups or parameters")
        by_index = {i: p for saved, g in zip(groups, self.param_groups) for i, p in zip(saved["params"], g["params"])}
        new_state: dict[Tensor, dict[str, Any]] = {}
        for i, s in state_dict["state"].items():
            if i not in by_index:
                raise ValueError(f"loaded state refers to parameter {i}, which no saved parameter group holds")
            p = by_index[i]
            new_state[p] = {k: self._cast_state(v, p) for k, v in s.items()}
        for saved, group in zip(groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state

    @staticmethod
    def _cast_state(value: Any, p: Tensor) -> Any:
        if not isinstance(value, Tensor):
            return value
        if value.shape == p.shape and value.is_floating_point():
            return value.to(device=p.device, dtype=p.dtype)
        return value.to(p.device)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])
