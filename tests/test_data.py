"""fusegrad.data: IDX decoding of the real MNIST / Fashion-MNIST files and of corrupt ones, file lookup and download
(through a fake URL opener: no network here), and Dataset / DataLoader / default_collate checked against
torch.utils.data."""
from __future__ import annotations

import gzip
import hashlib
import io
import struct
import time
from collections import namedtuple
from pathlib import Path
from urllib.error import HTTPError, URLError

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import fusegrad as fg
import fusegrad.data.download as download_module
from fusegrad.data.vision import FASHION_MNIST, MNIST
from tests.helpers import assert_close

REPO_MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist"
SHARED = Path("/work/shared/data")
FASHION = SHARED / "fashion-mnist"
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST files not present in {FASHION}")
# published facts: per-class counts, first labels, the md5 of the uncompressed original train-images file
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_RAW_MD5 = "6bbc9ace898e44ae57da46a324031adb"


@pytest.fixture(scope="module")
def mnist_train() -> fg.data.ImageDataset:
    return fg.data.mnist("train")


@pytest.fixture(scope="module")
def mnist_test() -> fg.data.ImageDataset:
    return fg.data.mnist("test")


# ---- the real files ----

def test_repo_files_are_the_published_ones() -> None:
    for name, md5 in MNIST.md5.items():
        assert hashlib.md5((REPO_MNIST / name).read_bytes()).hexdigest() == md5, name


def test_mnist_train(mnist_train: fg.data.ImageDataset) -> None:
    ds = mnist_train
    assert len(ds) == 60000 and ds.images.shape == (60000, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (60000,)
    assert np.bincount(ds.labels).tolist() == MNIST_TRAIN_COUNTS
    assert ds.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    header = struct.pack(">4I", 0x00000803, 60000, 28, 28)  # the decoded array is the original file, byte for byte
    assert hashlib.md5(header + ds.images.tobytes()).hexdigest() == MNIST_TRAIN_RAW_MD5
    pixels = ds.images / 255.0
    assert round(pixels.mean(), 4) == 0.1307 and round(pixels.std(), 4) == 0.3081  # the usual Normalize constants
    x, y = ds[0]
    assert isinstance(x, fg.Tensor) and x.shape == (1, 28, 28) and x.dtype == fg.float32
    assert y == 5 and isinstance(y, int)
    np.testing.assert_array_equal(x.numpy()[0], ds.images[0].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds[-1][0].numpy()[0], ds.images[-1] / np.float32(255))
    assert ds.classes[3] == "3 - three"


def test_mnist_test(mnist_test: fg.data.ImageDataset) -> None:
    assert mnist_test.images.shape == (10000, 28, 28)
    assert np.bincount(mnist_test.labels).tolist() == MNIST_TEST_COUNTS
    assert mnist_test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@needs_fashion
def test_fashion_mnist() -> None:
    train, test = fg.data.fashion_mnist("train", root=FASHION), fg.data.fashion_mnist("test", root=str(FASHION))
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert round((train.images / 255.0).mean(), 3) == 0.286 and train.classes[9] == "Ankle boot"


def test_bad_split() -> None:
    with pytest.raises(ValueError, match="split must be"):
        fg.data.mnist("validation")


# ---- IDX decoding, valid and corrupt ----

def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 8, np.int8: 9, np.int16: 11, np.int32: 12, np.float32: 13, np.float64: 14}[arr.dtype.type]
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(
        arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 2, 4), (0, 3), (2, 1, 1, 3)])
@pytest.mark.parametrize("compressed", [False, True])
def test_idx_roundtrip(tmp_path: Path, dtype: type, shape: tuple, compressed: bool) -> None:
    arr = (np.arange(np.prod(shape)).reshape(shape) * 37 - 50).astype(dtype)
    data = idx_bytes(arr)
    (tmp_path / "x").write_bytes(gzip.compress(data) if compressed else data)
    got = fg.data.read_idx(tmp_path / "x")
    assert got.shape == shape and got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


GZIP_MAGIC = b"\x1f\x8b"
GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 2, 2))
CORRUPT = {  # name -> (file bytes, what the message must say)
    "empty": (b"", "too short"),
    "html page": (b"<html><body>Not Found</body></html>", "magic number"),
    "wrong magic": (b"\x01" + GOOD[1:], "magic number"),
    "unknown type": (GOOD[:2] + b"\x07" + GOOD[3:], "type code 0x07"),
    "zero dims": (GOOD[:3] + b"\x00" + GOOD[4:], "0 dims"),
    "header cut": (GOOD[:9], "truncated"),
    "data cut": (GOOD[:-1], "truncated"),
    "trailing bytes": (GOOD + b"\x00", "trailing"),
    "dims say more": (GOOD[:4] + struct.pack(">I", 4) + GOOD[8:], "truncated"),
    "gzip cut": (gzip.compress(GOOD)[:-6], "gzip"),
    "gzip bad crc": (gzip.compress(GOOD)[:-8] + b"\0\0\0\0" + gzip.compress(GOOD)[-4:], "gzip"),
    "gzip garbage": (b"\x1f\x8b" + bytes(range(40)), "gzip"),
    "gzip of a bad idx": (gzip.compress(GOOD[:-3]), "truncated"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_idx_corrupt_raises_naming_file(tmp_path: Path, case: str) -> None:
    data, says = CORRUPT[case]
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if data[:2] == GZIP_MAGIC else ""))
    path.write_bytes(data)
    with pytest.raises(ValueError, match=says) as err:
        fg.data.read_idx(path)
    assert str(path) in str(err.value)


def test_mnist_from_raw_files(tmp_path: Path, mnist_test: fg.data.ImageDataset) -> None:
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(gzip.decompress((REPO_MNIST / f"{stem}.gz").read_bytes()))
    ds = fg.data.mnist("test", root=tmp_path)
    np.testing.assert_array_equal(ds.images, mnist_test.images)
    np.testing.assert_array_equal(ds.labels, mnist_test.labels)


@pytest.mark.parametrize("images, labels, culprit, says", [
    (np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8), "labels", "expected 4 uint8 labels"),
    (np.zeros((4, 28, 27), np.uint8), np.zeros(4, np.uint8), "images", r"shape \(N, 28, 28\)"),
    (np.zeros((4, 28, 28), np.float32), np.zeros(4, np.uint8), "images", "uint8 images"),
    (np.zeros((2, 28, 28), np.uint8), np.array([3, 10], np.uint8), "labels", "label 10 is out of range"),
])
def test_mnist_wrong_contents(tmp_path: Path, images: np.ndarray, labels: np.ndarray, culprit: str,
                              says: str) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(ValueError, match=says) as err:
        fg.data.mnist("test", root=tmp_path)
    assert str(tmp_path / f"t10k-{culprit}-idx") in str(err.value)


# ---- lookup and download ----

def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert fg.data.cache_dir("mnist") == tmp_path / "fusegrad" / "datasets" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fg.data.cache_dir("fashion-mnist") == tmp_path / "home/.cache/fusegrad/datasets/fashion-mnist"


def test_missing_files_say_where_and_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download=True") as err:
        fg.data.mnist("train", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "train-images-idx3-ubyte" in str(err.value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download=True") as err:
        fg.data.fashion_mnist("test")
    assert str(tmp_path / "fusegrad" / "datasets" / "fashion-mnist") in str(err.value)


def test_lookup_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mnist_test: fg.data.ImageDataset) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = tmp_path / "fusegrad" / "datasets" / "mnist"
    cached.mkdir(parents=True)
    labels = np.zeros(10000, np.uint8)  # a different test split in the cache: the checkout's copy must win
    (cached / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(mnist_test.images))
    (cached / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(fg.data.mnist("test").labels, mnist_test.labels)
    np.testing.assert_array_equal(fg.data.mnist("test", root=cached).labels, labels)


class FakeWeb:
    """Stands in for urllib's urlopen: serves `files` by name, fails for URLs under a `down` prefix."""

    def __init__(self, files: dict[str, bytes], down: tuple[str, ...] = ()):
        self.files, self.down, self.requested = files, down, []

    def __call__(self, request: object, timeout: float | None = None) -> io.BytesIO:
        url = request.full_url
        self.requested.append(url)
        if url.startswith(self.down):
            raise URLError("unreachable")
        name = url.rsplit("/", 1)[1]
        if name not in self.files:
            raise HTTPError(url, 404, "Not Found", {}, None)
        return io.BytesIO(self.files[name])


def _serve(monkeypatch: pytest.MonkeyPatch, folder: Path, names: list[str], down: tuple[str, ...] = (),
           tamper: bool = False) -> FakeWeb:
    files = {n: (folder / n).read_bytes() + (b"x" if tamper else b"") for n in names}
    web = FakeWeb(files, down)
    monkeypatch.setattr(download_module, "urlopen", web)
    return web


TEST_FILES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@needs_fashion
def test_download_fashion_into_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    web = _serve(monkeypatch, FASHION, TEST_FILES)
    ds = fg.data.fashion_mnist("test", download=True)
    assert web.requested == [FASHION_MNIST.mirrors[0] + n for n in TEST_FILES]
    folder = tmp_path / "fusegrad" / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == TEST_FILES  # no temporary files left behind
    assert len(ds) == 10000 and np.bincount(ds.labels).tolist() == [1000] * 10
    web.files.clear()  # present now: found without asking the network again
    assert len(fg.data.fashion_mnist("test", download=True)) == 10000 and len(web.requested) == 2


def test_download_falls_back_to_the_next_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                mnist_test: fg.data.ImageDataset) -> None:
    web = _serve(monkeypatch, REPO_MNIST, TEST_FILES, down=(MNIST.mirrors[0],))
    ds = fg.data.mnist("test", root=tmp_path / "new", download=True)
    assert web.requested == [m + n for n in TEST_FILES for m in MNIST.mirrors]
    assert MNIST.mirrors[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist")
    np.testing.assert_array_equal(ds.images, mnist_test.images)


def test_download_wrong_md5_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    web = _serve(monkeypatch, REPO_MNIST, TEST_FILES, tamper=True)
    with pytest.raises(ValueError, match="md5"):
        fg.data.mnist("test", root=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == [] and len(web.requested) == 1  # a bad checksum is not retried elsewhere


def test_download_all_mirrors_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _serve(monkeypatch, REPO_MNIST, [], down=MNIST.mirrors)
    with pytest.raises(OSError, match="could not download t10k-images-idx3-ubyte.gz") as err:
        fg.data.mnist("test", root=tmp_path, download=True)
    assert all(m in str(err.value) for m in MNIST.mirrors) and list(tmp_path.iterdir()) == []


# ---- datasets ----

def test_tensor_dataset(device: str) -> None:
    x = fg.tensor(np.arange(12.0).reshape(6, 2), device=device)
    y = fg.tensor(np.arange(6), device=device)
    ds = fg.data.TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[-2]
    assert xi.tolist() == [8.0, 9.0] and yi.item() == 4
    bx, by = ds.get_batch(np.array([5, 0, -1]))
    assert bx.device == device and by.device == device and by.tolist() == [5, 0, 5] and bx.dtype == fg.float64
    with pytest.raises(IndexError):
        ds.get_batch(np.array([6]))


@pytest.mark.parametrize("tensors, says", [
    ((), "at least one"),
    ((np.zeros((3, 2)), np.zeros(4)), r"same size in dim 0.*\(3, 2\), \(4,\)"),
    ((np.zeros(3), np.float32(1.0)), "0-d"),
])
def test_tensor_dataset_errors(tensors: tuple, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        fg.data.TensorDataset(*[fg.tensor(t) for t in tensors])


def test_loader_batches_keep_gradients() -> None:
    w = fg.tensor(np.arange(8.0).reshape(4, 2), requires_grad=True)
    loader = fg.data.DataLoader(fg.data.TensorDataset(w), batch_size=3)
    total = sum((b.sum() * (k + 1) for k, (b,) in enumerate(loader)), fg.tensor(0.0, dtype=fg.float64))
    total.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[1, 1], [1, 1], [1, 1], [2, 2]])


def test_subset_and_random_split() -> None:
    ds = fg.data.TensorDataset(fg.tensor(np.arange(10)))
    parts = fg.data.random_split(ds, [0.5, 0.3, 0.2], generator=0)
    assert [len(p) for p in parts] == [5, 3, 2]
    assert sorted(np.concatenate([p.indices for p in parts]).tolist()) == list(range(10))
    odd = [len(p) for p in fg.data.random_split(range(11), [0.34, 0.33, 0.33])]
    want = [len(p) for p in tud.random_split(range(11), [0.34, 0.33, 0.33])]
    assert odd == want
    a, b = fg.data.random_split(ds, [7, 3], generator=np.random.default_rng(1))
    assert [a[i][0].item() for i in range(7)] == a.get_batch(np.arange(7))[0].tolist() == a.indices.tolist()
    with pytest.raises(ValueError, match="sum to"):
        fg.data.random_split(ds, [4, 4])
    sub = fg.data.Subset([(1, 2.0), (3, 4.0), (5, 6.0)], [2, 0])  # no get_batch below: collated sample by sample
    assert [t.tolist() for t in sub.get_batch(np.array([0, 1]))] == [[5, 1], [6.0, 2.0]]


def test_image_dataset_checks() -> None:
    with pytest.raises(ValueError, match="uint8"):
        fg.data.ImageDataset(np.zeros((2, 3, 3)), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="labels"):
        fg.data.ImageDataset(np.zeros((2, 3, 3), np.uint8), np.zeros(3, np.int64))
    ds = fg.data.ImageDataset(np.full((2, 3, 4, 4), 255, np.uint8), np.array([1, 0]))  # channels given
    assert ds[1][0].shape == (3, 4, 4) and ds[1][0].numpy().max() == 1.0 and ds[1][1] == 0
    with pytest.raises(IndexError):
        ds[2]


# ---- default_collate against torch's ----

Point = namedtuple("Point", "x y")


def _same(got: object, want: object) -> None:
    if isinstance(want, torch.Tensor):
        assert isinstance(got, fg.Tensor), f"got {type(got).__name__}, torch gives a tensor"
        assert_close(got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for k in want:
            _same(got[k], want[k])
    elif isinstance(want, (list, tuple)) and not isinstance(want[0], str):
        assert len(got) == len(want), f"{len(got)} fields, torch has {len(want)}"
        assert type(got) is type(want) or (type(want) is list and type(got) is tuple), type(got)  # torch: tuple->list
        for g, w in zip(got, want):
            _same(g, w)
    else:
        assert got == want


SAMPLES = {  # name -> a function of i making sample i
    "python ints": lambda i: i - 1,
    "python floats": lambda i: i / 3,
    "python bools": lambda i: i % 2 == 0,
    "numpy scalars": lambda i: np.float32(i) / 7,
    "numpy int32 scalars": lambda i: np.int32(i),
    "numpy arrays": lambda i: np.arange(6, dtype=np.float32).reshape(2, 3) * i,
    "numpy bool arrays": lambda i: np.arange(3) > i,
    "0-d arrays": lambda i: np.array(i, dtype=np.int64),
    "tuples": lambda i: (np.full(2, i, np.float64), i),
    "lists": lambda i: [i, float(i), [i, i + 1]],
    "dicts": lambda i: {"x": np.ones(2, np.float32) * i, "name": f"s{i}", "y": (i, i * 2)},
    "named tuples": lambda i: Point(np.ones(3, np.int64) * i, float(i)),
    "strings": lambda i: f"sample {i}",
}


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_default_collate_like_torch(kind: str) -> None:
    samples = [SAMPLES[kind](i) for i in range(4)]
    want = tud.default_collate(samples)
    got = fg.data.default_collate(samples)
    _same(got, want)


def test_default_collate_tensors_and_errors() -> None:
    rows = [np.arange(3.0) * i for i in range(4)]
    assert_close(fg.data.default_collate([fg.tensor(r) for r in rows]), tud.default_collate([torch.tensor(r)
                                                                                           for r in rows]))
    assert isinstance(fg.data.default_collate([(1, 2), (3, 4)]), tuple)  # torch gives a list here
    assert isinstance(fg.data.default_collate([[1, 2], [3, 4]]), list)
    with pytest.raises(ValueError, match="same length"):
        fg.data.default_collate([(1, 2), (3,)])
    with pytest.raises(TypeError):
        fg.data.default_collate([object(), object()])
    with pytest.raises(TypeError):
        fg.data.default_collate([np.array(["a"]), np.array(["b"])])


# ---- DataLoader ----

@pytest.mark.parametrize("n, batch_size", [(10, 3), (9, 3), (2, 5), (1, 1), (0, 4), (7, 7)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_batches_like_torch(n: int, batch_size: int, drop_last: bool) -> None:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    ours = fg.data.DataLoader(fg.data.TensorDataset(fg.tensor(x), fg.tensor(y)), batch_size, drop_last=drop_last)
    theirs = tud.DataLoader(tud.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size, drop_last=drop_last)
    samples = [(x[i], int(y[i])) for i in range(n)]  # a plain list: the sample-by-sample path
    slow = fg.data.DataLoader(samples, batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs) == len(slow)
    got, want, slow_got = list(ours), list(theirs), list(slow)
    assert len(got) == len(want) == len(slow_got) == len(ours)
    for (gx, gy), (sx, sy), (wx, wy) in zip(got, slow_got, want):
        assert_close(gx, wx), assert_close(gy, wy), assert_close(sx, wx), assert_close(sy, wy)


def _epoch(loader: fg.data.DataLoader) -> list[int]:
    return [i for (b,) in loader for i in b.tolist()]


def test_shuffle_reproducible_and_reshuffled() -> None:
    ds = fg.data.TensorDataset(fg.tensor(np.arange(50)))
    a = fg.data.DataLoader(ds, batch_size=8, shuffle=True, generator=123)
    b = fg.data.DataLoader(ds, batch_size=8, shuffle=True, generator=123)
    a1, a2, b1, b2 = _epoch(a), _epoch(a), _epoch(b), _epoch(b)
    assert a1 == b1 and a2 == b2 and a1 != a2  # same seed, same epochs; each epoch a new order
    assert sorted(a1) == sorted(a2) == list(range(50)) and a1 != list(range(50))
    assert _epoch(fg.data.DataLoader(ds, batch_size=8, shuffle=True, generator=124)) != a1
    rng = np.random.default_rng(5)  # a Generator is used as is
    assert _epoch(fg.data.DataLoader(ds, batch_size=50, shuffle=True, generator=rng)) == \
        np.random.default_rng(5).permutation(50).tolist()
    assert _epoch(fg.data.DataLoader(ds, batch_size=8)) == list(range(50))


def test_shuffle_follows_manual_seed() -> None:
    ds = fg.data.TensorDataset(fg.tensor(np.arange(40)))
    loader = fg.data.DataLoader(ds, batch_size=16, shuffle=True, drop_last=True)
    fg.manual_seed(7)
    first = [_epoch(loader), _epoch(loader)]
    fg.manual_seed(7)
    assert [_epoch(loader), _epoch(loader)] == first and first[0] != first[1] and len(first[0]) == 32
    fg.manual_seed(8)
    assert _epoch(loader) != first[0]


def test_loader_arguments() -> None:
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="batch_size"):
            fg.data.DataLoader([1, 2], batch_size=bad)
    with pytest.raises(TypeError, match="generator"):
        fg.data.DataLoader([1, 2], shuffle=True, generator="seed")
    ds = fg.data.TensorDataset(fg.tensor(np.arange(5)))
    assert list(fg.data.DataLoader(ds, batch_size=2, collate_fn=len)) == [2, 2, 1]  # collate_fn replaces get_batch


def test_mnist_loader_fast_and_consistent(mnist_train: fg.data.ImageDataset) -> None:
    loader = fg.data.DataLoader(mnist_train, batch_size=64, shuffle=True, drop_last=True, generator=0)
    start = time.perf_counter()
    batches = sum(1 for _ in loader)
    elapsed = time.perf_counter() - start
    assert batches == len(loader) == 937 and elapsed < 2.0, f"one MNIST epoch took {elapsed:.2f} s"
    fast = fg.data.DataLoader(mnist_train, batch_size=5, shuffle=True, generator=3)
    slow = fg.data.DataLoader(mnist_train, batch_size=5, shuffle=True, generator=3, collate_fn=fg.data.default_collate)
    for _, (fx, fy), (sx, sy) in zip(range(3), fast, slow):
        assert fx.shape == (5, 1, 28, 28) and fx.dtype == fg.float32 and fy.dtype == fg.int64
        np.testing.assert_array_equal(fx.numpy(), sx.numpy())
        np.testing.assert_array_equal(fy.numpy(), sy.numpy())
