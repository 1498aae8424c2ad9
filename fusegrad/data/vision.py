"""MNIST and Fashion-MNIST: find (or download) the IDX files and wrap them in an array-backed `ImageDataset`."""
from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import fusegrad as fg

from .dataset import Dataset
from .download import cache_dir, fetch
from .idx import read_idx


class ImageDataset(Dataset):
    """uint8 images with integer labels; a sample is `(float32 tensor (C, H, W) scaled to [0, 1], int label)`.

    `images` is uint8 of shape (N, H, W) (one channel) or (N, C, H, W); `labels` is converted to int64 of shape (N,).
    Both stay available as NumPy arrays (`.images`, `.labels`); `get_batch` makes a whole batch with one fancy index.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: Sequence[str] = (), name: str = "images"):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"{name}: images must be uint8 of shape (N, H, W) or (N, C, H, W), got "
                             f"{images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
            raise ValueError(f"{name}: labels must be integers of shape ({len(images)},), got {labels.dtype} "
                             f"{labels.shape}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.classes = list(classes)
        self.name = name

    def __len__(self) -> int:
        return len(self.images)

    def _to_float(self, images: np.ndarray) -> np.ndarray:
        """(B, [C,] H, W) uint8 -> (B, C, H, W) float32 in [0, 1], divided like torchvision's ToTensor."""
        x = images.astype(np.float32) / np.float32(255)
        return x[:, None] if self.images.ndim == 3 else x

    def __getitem__(self, index: int) -> tuple[fg.Tensor, int]:
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: index {i} is out of range for {len(self)} samples")
        return fg.tensor(self._to_float(self.images[i][None])[0]), int(self.labels[i])

    def get_batch(self, indices: np.ndarray) -> tuple[fg.Tensor, fg.Tensor]:
        """Images (B, C, H, W) float32 and labels (B,) int64 at `indices`."""
        indices = np.asarray(indices, dtype=np.int64)
        return fg.tensor(self._to_float(self.images[indices])), fg.tensor(self.labels[indices])

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.images.shape[1:]))
        return f"ImageDataset({self.name}: {len(self)} images of {shape}, {len(self.classes)} classes)"


@dataclass(frozen=True)
class _Source:
    """Where a dataset's files live and what they must be."""

    title: str
    folder: str  # name under data/ in a checkout and under the cache
    mirrors: tuple[str, ...]
    md5: dict[str, str]  # .gz file name -> published md5
    classes: tuple[str, ...]


_SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
           "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

MNIST = _Source(
    "MNIST", "mnist",
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
     "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
     "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
     "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven", "8 - eight",
     "9 - nine"))

FASHION_MNIST = _Source(
    "Fashion-MNIST", "fashion-mnist",
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
     "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
     "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
     "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"))


def _search_dirs(source: _Source, root: str | os.PathLike | None) -> list[Path]:
    """`root` alone when given; else `data/<folder>` of a source checkout, then the user cache."""
    if root is not None:
        return [Path(root).expanduser()]
    dirs = []
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():  # running from a checkout, not an installed wheel
        dirs.append(checkout / "data" / source.folder)
    return [*dirs, cache_dir(source.folder)]


def _find(folder: Path, stem: str) -> Path | None:
    """`stem.gz` or the raw `stem` in folder."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load(source: _Source, split: str = "train", root: str | os.PathLike | None = None,
         download_missing: bool = False) -> ImageDataset:
    """One split of an MNIST-format dataset, found (or downloaded) as described in `mnist`."""
    if split not in _SPLITS:
        raise ValueError(f"{source.title}: split must be 'train' or 'test', got {split!r}")
    stems = _SPLITS[split]
    dirs = _search_dirs(source, root)
    for folder in dirs:
        found = [_find(folder, stem) for stem in stems]
        if all(found):
            break
    else:
        if not download_missing:
            looked = ", ".join(str(d) for d in dirs)
            raise FileNotFoundError(f"{source.title} {split!r} files not found: looked for {stems[0]}[.gz] and "
                                    f"{stems[1]}[.gz] in {looked}. Pass download=True to fetch them into "
                                    f"{dirs[-1]} (or root= a folder that holds them).")
        folder = dirs[-1]  # the explicit root, else the cache: never write into a checkout
        found = [_find(folder, stem) or fetch(source.mirrors, stem + ".gz", folder, source.md5[stem + ".gz"])
                 for stem in stems]
    images_path, labels_path = found
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
                         f"{images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{labels_path}: expected {len(images)} uint8 labels to match {images_path.name}, got "
                         f"{labels.dtype} {labels.shape}")
    if labels.size and labels.max() >= len(source.classes):
        raise ValueError(f"{labels_path}: label {labels.max()} is out of range for {len(source.classes)} classes")
    return ImageDataset(images, labels, source.classes, name=f"{source.title} {split}")


def mnist(split: str = "train", root: str | os.PathLike | None = None, download: bool = False) -> ImageDataset:
    """The MNIST handwritten digits: 60,000 'train' or 10,000 'test' samples `(image (1, 28, 28) float32 in [0, 1],
    label int)`, with the raw arrays as `.images` (uint8 (N, 28, 28)) and `.labels` (int64 (N,)).

    Files (`train-images-idx3-ubyte.gz` and friends, gzip or raw) are looked for in `root` when given; otherwise in
    `data/mnist/` of a source checkout, then in `$XDG_CACHE_HOME/fusegrad/datasets/mnist` (default
    `~/.cache/fusegrad/datasets/mnist`). `download=True` fetches missing files from the official mirrors into
    `root` (or that cache), checking the published md5s.
    """
    return load(MNIST, split, root, download)


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None,
                  download: bool = False) -> ImageDataset:
    """Zalando's Fashion-MNIST (10 clothing classes, same format and sizes as MNIST): looked for in `root` when
    given, else in `data/fashion-mnist/` of a source checkout, then `$XDG_CACHE_HOME/fusegrad/datasets/fashion-mnist`
    (default `~/.cache/...`); `download=True` fetches missing files from Zalando's mirror, checking their md5s."""
    return load(FASHION_MNIST, split, root, download)
