"""Global autograd switches: grad mode (`no_grad`) and the shape-only journal used by `eval_shape`."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_state: dict[str, Any] = {"enabled": True, "journal": None, "shape_only": False, "trace": None}


def enabled() -> bool:
    """True when operations are being recorded for autograd."""
    return _state["enabled"]


class _GradMode:
    """A context manager and decorator that records with gradients on or off inside."""

    mode = True

    def __init__(self) -> None:
        self.prev: list[bool] = []

    def __enter__(self) -> None:
        self.prev.append(_state["enabled"])
        _state["enabled"] = self.mode

    def __exit__(self, *exc: object) -> None:
        _state["enabled"] = self.prev.pop()

    def __call__(self, fn: F) -> F:
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


class set_grad_enabled(_GradMode):  # noqa: N801 - PyTorch's name
    """Turn gradient recording on or off: as a context manager, a decorator, or a plain call that takes effect at
    once (`fg.set_grad_enabled(False)`), like torch.set_grad_enabled."""

    def __init__(self, mode: bool):
        super().__init__()
        self.mode = bool(mode)
        self.outer = _state["enabled"]
        _state["enabled"] = self.mode

    def __enter__(self) -> None:
        self.prev.append(self.outer if not self.prev else _state["enabled"])
        _state["enabled"] = self.mode

    def __call__(self, fn: F) -> F:
        _state["enabled"] = self.outer  # used as a decorator: only calls of fn change the mode
        return super().__call__(fn)


class _NoArgMode(_GradMode):
    """Usable as `with m():`, `@m()` and `@m` (no parentheses), like torch's."""

    def __new__(cls, fn: Callable[..., Any] | None = None) -> Any:
        self = super().__new__(cls)
        if fn is None:
            return self
        self.__init__()
        return self(fn)

    def __init__(self, fn: Callable[..., Any] | None = None) -> None:
        super().__init__()


class no_grad(_NoArgMode):  # noqa: N801 - PyTorch's name
    """Operations inside build no tape: `with fg.no_grad():`, `@fg.no_grad()` or `@fg.no_grad`."""

    mode = False


class enable_grad(_NoArgMode):  # noqa: N801 - PyTorch's name
    """Re-enable gradient recording inside a `no_grad` block (also a decorator)."""

    mode = True


class inference_mode(_NoArgMode):  # noqa: N801 - PyTorch's name
    """`no_grad` by torch's name: `with fg.inference_mode():`, `@fg.inference_mode()` or `@fg.inference_mode`;
    `inference_mode(False)` turns recording on inside, as torch's does."""

    mode = False

    def __new__(cls, mode: bool | Callable[..., Any] = True) -> Any:
        return super().__new__(cls, mode if callable(mode) else None)

    def __init__(self, mode: bool = True) -> None:
        super().__init__()
        self.mode = not mode


def is_grad_enabled() -> bool:
    """True when operations are being recorded for autograd."""
    return _state["enabled"]


def shape_only() -> bool:
    """True inside `fg.eval_shape`, where nothing may be computed."""
    return _state["shape_only"]


def journal(obj: object, attr: str, old: Any) -> None:
    """Remember an attribute's old value so `eval_shape` can undo every mutation the traced function made (and
    `fg.jit` can find the tensors a step writes)."""
    if _state["journal"] is not None:
        _state["journal"].append((obj, attr, old))
    if _state["trace"] is not None:
        _state["trace"].mutated(obj, attr, old)


def tracing() -> Any:
    """The `fg.jit` trace being recorded (realizes are deferred while it runs), or None."""
    return _state["trace"]


class recording_trace:  # noqa: N801 - used like a context manager function
    """Inside: realizes are deferred and tensor mutations and reads are reported to `trace` (used by `fg.jit`)."""

    def __init__(self, trace: Any):
        self.trace = trace

    def __enter__(self) -> None:
        if _state["trace"] is not None:
            raise RuntimeError("fg.jit: a function cannot be traced while another one is")
        _state["trace"] = self.trace

    def __exit__(self, *exc: object) -> None:
        _state["trace"] = None


def journal_dict(d: dict) -> None:
    """Remember a dict's contents (e.g. optimizer state) so `eval_shape` can restore them; call before changing it."""
    if _state["journal"] is not None:
        _state["journal"].append((d, None, dict(d)))


class recording_mutations:  # noqa: N801 - used like a context manager function
    """Inside: mutations of tensors (and journaled dicts) are recorded; on exit they are undone in reverse order.
    `shape_only` (eval_shape) also forbids computing anything inside."""

    def __init__(self, shape_only: bool = True):
        self.shape_only = shape_only

    def __enter__(self) -> None:
        self.outer = _state["journal"], _state["shape_only"]
        _state["journal"] = []
        _state["shape_only"] = self.shape_only or _state["shape_only"]

    def __exit__(self, *exc: object) -> None:
        entries, _state["journal"] = _state["journal"], None  # undoing is not itself recorded
        _state["shape_only"] = self.outer[1]
        try:
            for obj, attr, old in reversed(entries):
                if attr is None:
                    obj.clear()
                    obj.update(old)
                else:
                    object.__setattr__(obj, attr, old)
        finally:
            _state["journal"] = self.outer[0]
