"""The device interface every backend implements, and the registry that finds them by name."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from ..dtype import DType
from ..graph import Node, Shape

_DEBUG = int(os.environ.get("DEBUG", "0") or 0)  # read once: every realize asks


def debug_level() -> int:
    """$DEBUG as it was when fusegrad was imported, as an int (0 when unset): 1 prints kernels and time per realize,
    2 each kernel, 3 the source."""
    return _DEBUG


class Buffer:
    """Memory owned by a device: `handle` is whatever that device needs (an ndarray, a pointer, ...)."""

    __slots__ = ("device", "shape", "dtype", "handle", "address")

    def __init__(self, device: str, shape: Shape, dtype: DType, handle: object):
        self.device, self.shape, self.dtype, self.handle = device, shape, dtype, handle
        self.address: int | None = None  # the data's host address, for kernels that take pointers: set on first use

    def __deepcopy__(self, memo: dict[int, object]) -> Buffer:
        """New memory on the same device with the same contents (copy.deepcopy of a model), through the host: a
        device handle may not copy itself, and a copied `address` would still point at the original."""
        device = get_device(self.device)
        return device.from_numpy(device.to_numpy(self), self.dtype)

    def __repr__(self) -> str:
        return f"<Buffer {self.device} {self.shape} {self.dtype.name}>"


class Device(ABC):
    """A backend: owns buffers and computes graph nodes into them."""

    name: str

    @abstractmethod
    def from_numpy(self, array: np.ndarray, dtype: DType) -> Buffer:
        """Copy host data into a new buffer on this device."""

    @abstractmethod
    def to_numpy(self, buffer: Buffer) -> np.ndarray:
        """Copy a buffer back to the host (a fresh array the caller may keep)."""

    @abstractmethod
    def realize(self, nodes: list[Node], order: list[Node] | None = None) -> None:
        """Compute every node in `nodes` and set its `.buffer`; sources already realized are read as they are.
        `order` is `toposort(nodes)` when the caller has already walked the graph."""

    def synchronize(self) -> None:  # noqa: B027 - a default: a device that computes within `realize` waits for nothing
        """Wait until everything enqueued has finished."""



_FACTORIES: dict[str, Callable[[], Device]] = {}
_INSTANCES: dict[str, Device] = {}
_default: list[str] = []


def register_device(name: str, factory: Callable[[], Device]) -> None:
    """Make a backend available under `name`; it is constructed on first use."""
    _FACTORIES[name] = factory


def get_device(name: str) -> Device:
    """The backend called `name` (one instance per process)."""
    if name not in _INSTANCES:
        if name not in _FACTORIES:
            raise ValueError(f"unknown device {name!r}; available: {sorted(_FACTORIES)}")
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def available_devices() -> list[str]:
    """Names of every registered backend."""
    return sorted(_FACTORIES)


def canonical_device(name: str | None) -> str:
    """Validate a device name; None means the default device."""
    if name is None:
        return default_device()
    name = str(name)
    if name not in _FACTORIES:
        raise ValueError(f"unknown device {name!r}; available: {sorted(_FACTORIES)}")
    return name


def default_device() -> str:
    """The device new tensors go to: `set_default_device`, else $FUSEGRAD_DEVICE, else cpu (compiled C; it computes
    with NumPy, after one warning, where no C compiler exists)."""
    if not _default:
        _default.append(canonical_device(os.environ.get("FUSEGRAD_DEVICE") or "cpu"))
    return _default[0]


def synchronize(device: str | None = None) -> None:
    """Wait until every kernel and copy enqueued on `device` (default: the default device) has finished, as
    `torch.cuda.synchronize` does: GPU work runs asynchronously, so time it up to here. A no-op on `numpy` and `cpu`."""
    name = canonical_device(device)
    if name in _INSTANCES:  # a device never used has nothing enqueued
        _INSTANCES[name].synchronize()


def set_default_device(name: str) -> None:
    """Change the device new tensors are created on."""
    name = canonical_device(name)
    _default[:] = [name]
