"""`fusegrad.io`: checkpoints as safetensors files (`fg.save` / `fg.load`), interchangeable with PyTorch's.

```python
fg.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}, "ckpt.safetensors")
ckpt = fg.load("ckpt.safetensors")
model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["optim"])
```
"""
from .safetensors_io import CheckpointError, load, save

__all__ = ["CheckpointError", "load", "save"]
