"""Gradient hooks with torch's names: `register_post_accumulate_grad_hook` (what DistributedDataParallel uses to
learn that backward has finished a parameter's gradient) and the handle that removes a hook."""
from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tensor import Tensor

# id(leaf) -> its hooks by handle id (tensors compare elementwise, so no WeakKeyDictionary: a finalizer drops them)
_POST_ACCUMULATE_GRAD_HOOKS: dict[int, dict[int, Callable[[Tensor], None]]] = {}


class RemovableHandle:
    """What registering a hook returns (torch.utils.hooks.RemovableHandle): `remove()` unregisters the hook."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict[int, Any]):
        self.hooks, self.id = hooks, next(RemovableHandle._next_id)

    def remove(self) -> None:
        """Unregister the hook (again: nothing)."""
        self.hooks.pop(self.id, None)


def run_post_accumulate_grad_hooks(leaves: Sequence[Tensor]) -> None:
    """Call the hooks of these leaves, whose `.grad` backward has just accumulated."""
    for t in leaves:
        for hook in list(_POST_ACCUMULATE_GRAD_HOOKS.get(id(t), {}).values()):
            hook(t)


class HooksMixin:
    """Tensor.register_post_accumulate_grad_hook."""

    def register_post_accumulate_grad_hook(self: Tensor, hook: Callable[[Tensor], None]) -> RemovableHandle:
        """Call `hook(self)` whenever backward() has accumulated a gradient into this leaf's `.grad` (after every
        leaf of that backward has its gradient); `.remove()` on the returned handle unregisters it."""
        if self._ctx is not None or not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors that require grad get one")
        if id(self) not in _POST_ACCUMULATE_GRAD_HOOKS:
            weakref.finalize(self, _POST_ACCUMULATE_GRAD_HOOKS.pop, id(self), None)
        hooks = _POST_ACCUMULATE_GRAD_HOOKS.setdefault(id(self), {})
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle
