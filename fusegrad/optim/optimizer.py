"""The Optimizer base: parameter groups, per-parameter state, zero_grad and state_dict, like torch.optim."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import fusegrad as fg
from fusegrad import Tensor


class Optimizer:
    """Holds parameter groups; subclasses implement `_update(p, grad, group, state)` returning p's new value.

    Updates rebind each parameter to its new value (the graph's in-place write); one realize at the end of a step
    computes every parameter and state tensor together.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
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
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none or p.grad is None else fg.zeros_like(p.grad)

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Apply one update to every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with fg.enable_grad():
                loss = closure()
        touched: list[Tensor] = []
        with fg.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state.setdefault(id(p), {})
                    grad = -p.grad if group.get("maximize") else p.grad
                    p.assign(self._update(p.detach(), grad, group, state))
                    touched.append(p)
                    touched.extend(v for v in state.values() if isinstance(v, Tensor))
        fg.realize(*touched)
        return loss

    def _index(self) -> dict[int, int]:
        ids = [id(p) for g in self.param_groups for p in g["params"]]
        return {pid: i for i, pid in enumerate(ids)}

    def state_dict(self) -> dict[str, Any]:
        """{'state': {param index: {name: value}}, 'param_groups': [{hyper-parameters, 'params': [indices]}]}."""
        index = self._index()
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        state = {index[pid]: {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in s.items()}
                 for pid, s in self.state.items() if pid in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict` (same parameter order)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(len(a["params"]) != len(b["params"])
                                                        for a, b in zip(groups, self.param_groups)):
            raise ValueError("load_state_dict: the saved parameter groups do not match this optimizer's")
        params = [p for g in self.param_groups for p in g["params"]]
        for saved, group in zip(groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {k: (v.to(p.device) if isinstance(v, Tensor) else v) for k, v in s.items()}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])
