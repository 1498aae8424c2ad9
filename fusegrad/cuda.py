"""`fusegrad.cuda`: the `torch.cuda` questions a training script asks before it picks a device.

```python
device = fg.device("cuda" if fg.cuda.is_available() else "cpu")
```
"""
from __future__ import annotations

from .runtime import available_devices
from .runtime import synchronize as _synchronize

__all__ = ["device_count", "is_available", "synchronize"]


def is_available() -> bool:
    """True when the `cuda` device is registered: cuda-bindings imports and the driver reports a GPU."""
    return "cuda" in available_devices()


def device_count() -> int:
    """The number of CUDA devices fusegrad can use: 1 when `is_available()` (fusegrad drives one GPU, chosen by
    $FUSEGRAD_CUDA_DEVICE), else 0."""
    return 1 if is_available() else 0


def synchronize() -> None:
    """Wait until everything enqueued on the GPU has finished (`torch.cuda.synchronize`); nothing without one."""
    if is_available():
        _synchronize("cuda")
