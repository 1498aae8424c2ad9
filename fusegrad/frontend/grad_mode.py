"""Global autograd switches: grad mode (`no_grad`) and the shape-only journal used by `eval_shape`."""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_state: dict[str, Any] = {"enabled": True, "journal": None}


def enabled() -> bool:
    """True when operations are being recorded for autograd."""
    return _state["enabled"]


class set_grad_enabled:  # noqa: N801 - PyTorch's name
    """Context manager (and decorator) that turns gradient recording on or off."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self.prev: list[bool] = []

    def __enter__(self) -> None:
        self.prev.append(_state["enabled"])
        _state["enabled"] = self.mode

    def __exit__(self, *exc: object) -> None:
        _state["enabled"] = self.prev.pop()

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)(self.mode):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


class no_grad(set_grad_enabled):  # noqa: N801 - PyTorch's name
    """Operations inside build no tape: `with fg.no_grad():` or `@fg.no_grad()`."""

    def __init__(self, mode: bool = False):
        super().__init__(False)


class enable_grad(set_grad_enabled):  # noqa: N801 - PyTorch's name
    """Re-enable gradient recording inside a `no_grad` block."""

    def __init__(self, mode: bool = True):
        super().__init__(True)


def is_grad_enabled() -> bool:
    """True when operations are being recorded for autograd."""
    return _state["enabled"]


def shape_only() -> bool:
    """True inside `fg.eval_shape`, where nothing may be computed."""
    return _state["journal"] is not None


def journal(obj: object, attr: str, old: Any) -> None:
    """Remember an attribute's old value so `eval_shape` can undo every mutation the traced function made."""
    if _state["journal"] is not None:
        _state["journal"].append((obj, attr, old))


class recording_mutations:  # noqa: N801 - used like a context manager function
    """Inside: mutations of tensors are journaled; on exit they are undone in reverse order."""

    def __enter__(self) -> None:
        self.outer = _state["journal"]
        _state["journal"] = []

    def __exit__(self, *exc: object) -> None:
        for obj, attr, old in reversed(_state["journal"]):
            object.__setattr__(obj, attr, old)
        _state["journal"] = self.outer
