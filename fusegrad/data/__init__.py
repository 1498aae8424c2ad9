"""`fusegrad.data`: datasets and batching with torch.utils.data's names, plus MNIST and Fashion-MNIST.

```python
for x, y in fg.data.DataLoader(fg.data.mnist("train"), batch_size=64, shuffle=True, drop_last=True):
    ...  # x: float32 (64, 1, 28, 28) in [0, 1], y: int64 (64,)
```
"""
from .dataset import Dataset, Subset, TensorDataset, make_rng, random_split
from .download import cache_dir
from .idx import parse_idx, read_idx
from .loader import DataLoader, default_collate
from .sampler import DistributedSampler
from .vision import ImageDataset, fashion_mnist, mnist

__all__ = ["DataLoader", "Dataset", "DistributedSampler", "ImageDataset", "Subset", "TensorDataset", "cache_dir",
           "default_collate", "fashion_mnist", "make_rng", "mnist", "parse_idx", "random_split", "read_idx"]
