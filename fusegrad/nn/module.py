"""`Module` and `Parameter`: PyTorch's model containers, with the same registration, traversal and state_dict keys."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

import fusegrad as fg
from fusegrad import Tensor


class Parameter(Tensor):
    """A tensor that is a model weight: requires grad by default and is registered by the Module holding it."""

    __slots__ = ()

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        data = fg.zeros(0) if data is None else data
        super().__init__((data if isinstance(data, Tensor) else fg.tensor(data))._node)
        if requires_grad:
            self.requires_grad_()

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: assign Parameters, Modules and buffers as attributes and they are tracked."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- registration ----

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() in {type(self).__name__}.__init__ before assigning {name}")
        if isinstance(value, Parameter):
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            self._modules[name] = value
        elif name in self._parameters:  # like torch: a parameter slot takes only a Parameter or None
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(nn.Parameter or None expected)")
            self._parameters[name] = None
        elif name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' "
                                "(nn.Module or None expected)")
            self._modules[name] = None
        elif name in self._buffers:  # assigning a tensor to a registered buffer name replaces the buffer
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' (Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        """Drop `name` from every table and the instance dict before it is registered anew."""
        self.__dict__.pop(name, None)
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name: str) -> Any:
        for table in ("_parameters", "_modules", "_buffers"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._modules, self._buffers):
            if name in table:
                del table[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def _check_name(self, name: str, table: dict[str, Any], kind: str) -> None:
        """torch's rules: a plain string without dots that is not already some other attribute."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f'{kind} name must be a non-empty string without ".", got {name!r}')
        if hasattr(self, name) and name not in table:
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (None reserves the name, like a Linear without bias)."""
        self._check_name(name, self._parameters, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter '{name}' (nn.Parameter or None "
                            "expected)")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add state that is not a parameter (e.g. BatchNorm running stats); persistent ones go in state_dict."""
        self._check_name(name, self._buffers, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer '{name}' (Tensor or None expected)")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under `name`."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_name(name, self._modules, "module")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The descendant at a dotted path ("" is self)."""
        mod = self
        for part in target.split(".") if target else []:
            if not isinstance(mod._modules.get(part), Module):
                raise AttributeError(f"{type(mod).__name__} has no submodule `{part}` (looking up {target!r})")
            mod = mod._modules[part]
        return mod

    # ---- traversal ----

    def named_modules(self, memo: set[int] | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """This module and every descendant with dotted names; a module reachable twice comes once unless
        remove_duplicate is False."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, each once."""
        return (m for _, m in self.named_modules())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct children with their names, each child once."""
        seen: set[int] = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        """Direct children."""
        return (m for _, m in self.named_children())

    def _named_members(self, table: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mod_prefix, mod in modules:
            for name, value in getattr(mod, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """Every parameter (shared ones once unless remove_duplicate is False) with its dotted name."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter (shared ones once)."""
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        """Every buffer with its dotted name."""
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """Every buffer."""
        return (b for _, b in self.named_buffers(recurse=recurse))

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call fn on every submodule (children first) and on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- modes, devices, gradients ----

    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch statistics used) here and below."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode."""
        return self.train(False)

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Move every parameter and buffer (`.to("numpy")`), and/or cast the floating-point ones (`.to(fg.float64)`),
        in place: parameters keep their identity, like torch. Takes what `Tensor.to` takes."""
        if not fg.zeros(0).to(*args, **kwargs).is_floating_point():
            raise TypeError(f"Module.to only accepts floating point dtypes, got {args} {kwargs}")

        def convert(t: Tensor) -> Tensor:
            moved = t.to(*args, **kwargs)
            return moved if t.is_floating_point() else t.to(moved.device)  # integer state only moves
        return self._apply_to_tensors(convert)

    def _apply_to_tensors(self, fn: Callable[[Tensor], Tensor]) -> Module:
        """Rebind every parameter, its gradient and every buffer to fn(value), keeping the objects."""
        with fg.no_grad():
            for t in list(self.parameters()) + list(self.buffers()):
                t.data = fn(t.detach())
                if t.grad is not None:
                    t.grad = fn(t.grad)
        return self

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32."""
        return self.to(fg.float32)

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64."""
        return self.to(fg.float64)

    def half(self) -> Module:
        """Cast floating-point parameters and buffers to float16."""
        return self.to(fg.float16)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Turn gradient recording on or off for every parameter (e.g. to freeze a part of a model)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (to None, or to zeros when set_to_none is False)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = fg.zeros_like(p.grad)

    # ---- state ----

    def _state_items(self, prefix: str = "") -> Iterator[tuple[str, Module, str, bool]]:
        """(key, module, name, is_parameter) for every state_dict entry; shared modules and tied weights appear
        under every name, like torch."""
        for mod_prefix, mod in self.named_modules(prefix=prefix, remove_duplicate=False):
            dot = f"{mod_prefix}." if mod_prefix else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    yield dot + name, mod, name, True
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent:
                    yield dot + name, mod, name, False

    def state_dict(self, *, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name (PyTorch's keys), detached unless keep_vars."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for key, mod, name, is_param in self._state_items(prefix.rstrip(".")):
            value = (mod._parameters if is_param else mod._buffers)[name]
            out[key] = value if keep_vars else value.detach()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values (Tensors, NumPy arrays, nested lists) into parameters and persistent buffers, cast to their
        dtypes; returns (missing_keys, unexpected_keys). Nothing is changed when an error is raised."""
        targets = {key: (mod, name, is_param) for key, mod, name, is_param in self._state_items()}
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        updates = []
        for key, value in state_dict.items():
            if key not in targets:
                continue
            mod, name, is_param = targets[key]
            target = (mod._parameters if is_param else mod._buffers)[name]
            value = value if isinstance(value, Tensor) else fg.tensor(np.asarray(value))
            if value.shape != target.shape:
                raise fg.ShapeError(f"load_state_dict: size mismatch for {key}: shape {value.shape} in the state "
                                    f"dict, but {target.shape} in the model")
            updates.append((target, value))
        if strict and (missing or unexpected):
            msgs = ([f"Missing key(s) in state_dict: {', '.join(map(repr, missing))}."] if missing else []) + \
                ([f"Unexpected key(s) in state_dict: {', '.join(map(repr, unexpected))}."] if unexpected else [])
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(msgs))
        with fg.no_grad():
            for target, value in updates:
                target.data = value.detach().to(device=target.device, dtype=target.dtype)
        return IncompatibleKeys(missing, unexpected)

    # ---- printing ----

    def extra_repr(self) -> str:
        """The part inside the parentheses of this module's repr."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        """torch's layout: one-line extra_repr inline; children (and multi-line extras) one per indented line."""
        extra = self.extra_repr().split("\n") if self.extra_repr() else []
        children = [f"({key}): " + _addindent(repr(m), 2) for key, m in self._modules.items()]
        return _layout(self._get_name(), extra, children)


def _addindent(s: str, n: int) -> str:
    """Indent every line but the first by n spaces."""
    return s.replace("\n", "\n" + " " * n)


def _layout(name: str, extra: list[str], children: list[str]) -> str:
    lines = extra + children
    if not lines:
        return f"{name}()"
    if len(extra) == 1 and not children:
        return f"{name}({extra[0]})"
    return f"{name}(\n  " + "\n  ".join(lines) + "\n)"


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict` did not match: keys the model has that the dict lacks, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def bind_options(name: str, defaults: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A generated module's constructor arguments: positional in the order of `defaults`, unknown names rejected."""
    if len(args) > len(defaults) or set(kwargs) - set(defaults):
        raise TypeError(f"{name}() takes the arguments {list(defaults)}, got {args} {kwargs}")
    return dict(defaults) | dict(zip(defaults, args)) | kwargs
