"""`fg.save` / `fg.load` (safetensors checkpoints): PyTorch interop in both directions, every dtype, optimizer state
that resumes training bit-for-bit, combined checkpoints, exact rebuilding of nested structure, atomic writes under
injected failures, and clear errors (naming the file) for missing, truncated, corrupt, foreign and unsavable data."""
from __future__ import annotations

import json
import math
import os
import pathlib
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import safetensors.numpy as st_numpy
import safetensors.torch as st_torch
import torch

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.io import CheckpointError
from fusegrad.io.safetensors_io import CHECKSUM_KEY, STRUCTURE_KEY, _checksum
from tests.helpers import TORCH_DTYPES, assert_close, randn

FG_DTYPES = [fg.float16, fg.float32, fg.float64, fg.int32, fg.int64, fg.uint8, fg.bool_]


# ---------------------------------------------------------------- helpers


def _values(dtype: fg.DType, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Distinctive values of a dtype: signed, fractional, extreme, NaN/inf for floats."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dtype == fg.bool_:
        return (rng.random(n) < 0.5).reshape(shape)
    if dtype.is_floating_point:
        a = (rng.standard_normal(n) * 100).astype(dtype.np)
        special = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dtype.np).max, np.finfo(dtype.np).tiny],
                           dtype=dtype.np)
        a[: min(n, 6)] = special[: min(n, 6)]
        return a.reshape(shape)
    info = np.iinfo(dtype.np)
    a = rng.integers(info.min, info.max, n, dtype=dtype.np, endpoint=True)
    a[: min(n, 2)] = [info.min, info.max][: min(n, 2)]
    return a.reshape(shape)


def _bits(a: np.ndarray) -> np.ndarray:
    """The raw bytes, so NaN payloads and -0.0 must survive too."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _assert_same_tree(got: Any, want: Any, where: str = "root") -> None:
    """Equal structure with equal types (tuple is not list, True is not 1, 1 is not 1.0) and bit-equal tensors."""
    assert type(got) is type(want) or (isinstance(want, fg.Tensor) and isinstance(got, fg.Tensor)), \
        f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, fg.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, f"{where}: {got.dtype}{got.shape}"
        np.testing.assert_array_equal(_bits(got.numpy()), _bits(want.numpy()), err_msg=where)
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            assert type(next(g for g in got if g == k)) is type(k), f"{where}: key {k!r} changed type"
            _assert_same_tree(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same_tree(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), where
    else:
        assert got == want and (not isinstance(want, float) or math.copysign(1, got) == math.copysign(1, want)), \
            f"{where}: {got!r} != {want!r}"


class _TorchNet(torch.nn.Module):
    """An MLP with an int64 step counter, a bool mask and a uint8 table as buffers (persistent)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(5, 7)
        self.act = torch.nn.Tanh()
        self.fc2 = torch.nn.Linear(7, 3)
        self.register_buffer("steps", torch.tensor(11, dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("table", torch.arange(6, dtype=torch.uint8).reshape(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x))) * self.mask


class _FgNet(nn.Module):
    """`_TorchNet` in fusegrad, same names and buffer dtypes."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 7, device=device)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(7, 3, device=device)
        self.register_buffer("steps", fg.tensor(0, dtype=fg.int64, device=device))
        self.register_buffer("mask", fg.tensor([False, True, False], device=device))
        self.register_buffer("table", fg.zeros(2, 3, dtype=fg.uint8, device=device))

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        return self.fc2(self.act(self.fc1(x))) * self.mask


def _cnn_arch() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 2, 3, stride=2, bias=False), torch.nn.Flatten(),
                               torch.nn.Linear(2 * 2 * 2, 5))


def _torch_cnn() -> torch.nn.Module:
    torch.manual_seed(1)
    net = _cnn_arch().train()
    net(torch.randn(2, 3, 5, 5))  # move BatchNorm's running stats and counter away from their initial values
    return net


# ---------------------------------------------------------------- torch interop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_file_loads_into_fusegrad_mlp(device: str, tmp_path: pathlib.Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    tnet = _TorchNet().to(dtype)
    path = tmp_path / "torch.safetensors"
    st_torch.save_file(tnet.state_dict(), path)
    fnet = _FgNet(device).to(fg.float64 if dtype == torch.float64 else fg.float32)
    fnet.load_state_dict(fg.load(path, device=device))  # strict: the same key names
    for key, tv in tnet.state_dict().items():
        got = fnet.state_dict()[key]
        assert got.device == device
        assert_close(got, tv, atol=0, rtol=0, what=key)
    x = randn(4, 5, seed=3).astype(np.float64 if dtype == torch.float64 else np.float32)
    assert_close(fnet(fg.tensor(x, device=device)), tnet(torch.tensor(x)).detach(), what="forward")


@pytest.mark.parametrize("dtype", [fg.float32, fg.float64])
def test_fusegrad_file_loads_into_torch_mlp(device: str, tmp_path: pathlib.Path, dtype: fg.DType) -> None:
    fg.manual_seed(0)
    fnet = _FgNet(device).to(dtype)
    with fg.no_grad():
        fnet.steps = fg.tensor(7, dtype=fg.int64, device=device)
        fnet.table = fg.tensor(np.array([[1, 2, 255], [0, 9, 8]], np.uint8), device=device)
    path = tmp_path / "fg.safetensors"
    fg.save(fnet.state_dict(), path)
    loaded = st_torch.load_file(path)
    assert sorted(loaded) == sorted(fnet.state_dict())
    tnet = _TorchNet().to(TORCH_DTYPES[np.dtype(dtype.np)])
    tnet.load_state_dict(loaded)  # strict
    for key, fv in fnet.state_dict().items():
        assert_close(fv, tnet.state_dict()[key], atol=0, rtol=0, what=key)
    assert tnet.steps.item() == 7 and tnet.table[0, 2].item() == 255
    x = randn(3, 5, seed=4).astype(dtype.np)
    assert_close(fnet(fg.tensor(x, device=device)), tnet(torch.tensor(x)).detach(), what="forward")


def test_fusegrad_own_file_keeps_state_dict_order_and_type(device: str, tmp_path: pathlib.Path) -> None:
    fnet = _FgNet(device)
    fg.save(fnet.state_dict(), tmp_path / "m.safetensors")
    back = fg.load(tmp_path / "m.safetensors", device=device)
    _assert_same_tree(back, fnet.state_dict())
    assert isinstance(back, OrderedDict) and list(back) == list(fnet.state_dict())


def test_cnn_state_dict_round_trips_both_ways(device: str, tmp_path: pathlib.Path) -> None:
    """Conv weights (4-d), BatchNorm running stats and its int64 0-d counter: torch -> fusegrad -> torch."""
    tnet = _torch_cnn()
    st_torch.save_file(tnet.state_dict(), tmp_path / "cnn_torch.safetensors")
    sd = fg.load(tmp_path / "cnn_torch.safetensors", device=device)
    assert set(sd) == set(tnet.state_dict())
    for key, tv in tnet.state_dict().items():
        assert sd[key].device == device
        assert_close(sd[key], tv, atol=0, rtol=0, what=key)
    assert sd["1.num_batches_tracked"].shape == () and sd["1.num_batches_tracked"].item() == 1
    fg.save(sd, tmp_path / "cnn_fg.safetensors")
    fresh = _cnn_arch()
    fresh.load_state_dict(st_torch.load_file(tmp_path / "cnn_fg.safetensors"))
    x = torch.randn(3, 3, 5, 5)
    tnet.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), tnet(x), atol=0, rtol=0)


def test_cnn_into_fusegrad_conv_layers(device: str, tmp_path: pathlib.Path) -> None:
    """The same file into fusegrad's own Conv2d model, when the layer exists."""
    if not hasattr(nn, "Conv2d"):
        pytest.skip("fusegrad.nn has no Conv2d yet")
    torch.manual_seed(2)
    tnet = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 2, 3, stride=2, bias=False), torch.nn.Flatten(),
                               torch.nn.Linear(8, 5))
    st_torch.save_file(tnet.state_dict(), tmp_path / "c.safetensors")
    fnet = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2, bias=False),
                         nn.Flatten(), nn.Linear(8, 5)).to(device)
    fnet.load_state_dict(fg.load(tmp_path / "c.safetensors", device=device))
    x = randn(2, 3, 5, 5, seed=5).astype(np.float32)
    assert_close(fnet(fg.tensor(x, device=device)), tnet(torch.tensor(x)).detach(), atol=1e-5, what="cnn forward")
    fg.save(fnet.state_dict(), tmp_path / "c2.safetensors")
    tnet.load_state_dict(st_torch.load_file(tmp_path / "c2.safetensors"))


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4), (1, 1, 5)])
@pytest.mark.parametrize("dtype", FG_DTYPES, ids=lambda d: d.name)
def test_every_dtype_round_trips_bit_exact_and_reads_in_torch(device: str, tmp_path: pathlib.Path,
                                                              dtype: fg.DType, shape: tuple[int, ...]) -> None:
    a = _values(dtype, shape)
    t = fg.tensor(a, dtype=dtype, device=device)
    fg.save({"x": t, "lazy": t[..., :1] if shape else t}, tmp_path / "d.safetensors")
    back = fg.load(tmp_path / "d.safetensors", device=device)
    assert back["x"].dtype == dtype and back["x"].shape == shape and back["x"].device == device
    np.testing.assert_array_equal(_bits(back["x"].numpy()), _bits(a))
    tback = st_torch.load_file(tmp_path / "d.safetensors")
    assert tback["x"].dtype == TORCH_DTYPES[np.dtype(dtype.np)]
    np.testing.assert_array_equal(_bits(tback["x"].numpy()), _bits(a))
    np.testing.assert_array_equal(back["lazy"].numpy(), a[..., :1] if shape else a)


def test_torch_file_of_every_dtype_loads(device: str, tmp_path: pathlib.Path) -> None:
    arrays = {f"t_{d.name}": _values(d, (3, 2), seed=i) for i, d in enumerate(FG_DTYPES)}
    st_torch.save_file({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp_path / "t.safetensors",
                       metadata={"format": "pt"})  # Hugging Face's metadata does not make it a fusegrad file
    back = fg.load(tmp_path / "t.safetensors", device=device)
    assert type(back) is dict and set(back) == set(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == fg.dtype.to_dtype(a.dtype), k
        np.testing.assert_array_equal(_bits(back[k].numpy()), _bits(a), err_msg=k)


def test_default_device_and_path_types(tmp_path: pathlib.Path) -> None:
    fg.save(fg.arange(4), str(tmp_path / "a.safetensors"))
    back = fg.load(os.fsencode(str(tmp_path / "a.safetensors")).decode())
    assert back.device == fg.default_device() and back.tolist() == [0, 1, 2, 3] and back.dtype == fg.int64


def test_torch_load_keywords(tmp_path: pathlib.Path) -> None:
    """`torch.load(path, map_location=..., weights_only=...)` ports unchanged; a pickle is refused, never run."""
    model = nn.Linear(3, 2)
    fg.save(model.state_dict(), tmp_path / "m.pt")
    cases = [
        ({"map_location": "numpy"}, "numpy"),
        ({"map_location": fg.device("numpy")}, "numpy"),
        ({"weights_only": True}, fg.default_device()),
        ({"weights_only": False, "map_location": "numpy"}, "numpy"),
        ({"device": "numpy", "map_location": "numpy"}, "numpy"),
    ]
    for kw, want in cases:
        state = fg.load(tmp_path / "m.pt", **kw)
        assert list(state) == ["weight", "bias"], kw
        assert all(t.device == want for t in state.values()), kw
        np.testing.assert_array_equal(state["weight"].numpy(), model.weight.numpy())
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(fg.load(tmp_path / "m.pt", map_location=fg.device("cpu:0"), weights_only=True))
    np.testing.assert_array_equal(fresh.bias.numpy(), model.bias.numpy())
    with pytest.raises(ValueError, match="disagree"):
        fg.load(tmp_path / "m.pt", device="numpy", map_location="cpu")
    with pytest.raises(TypeError, match="map_location"):
        fg.load(tmp_path / "m.pt", map_location={"cuda:0": "cpu"})
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError):
        fg.load(tmp_path / "pickled.pt", weights_only=False)


# ---------------------------------------------------------------- structure


def test_nested_structure_is_rebuilt_exactly(device: str, tmp_path: pathlib.Path) -> None:
    t1, t2 = fg.tensor([1.0, 2.0], device=device), fg.tensor([[3]], device=device)
    obj = OrderedDict([
        ("ints", {0: t1, 1: {"n": 1, "b": True, "f": 1.0, "big": 2 ** 70, "neg": -3}}),
        ("floats", [0.1, -0.0, 1e-310, float("inf"), -float("inf"), float("nan"), 1e300]),
        ("strings", ["", "é ☃ \"quoted\" \\ \n", "a.b", "{\"tensor\": \"x\"}"]),
        ("tuples", (1, (2.5, None), [t2, (t1,)], ())),
        ("keys", {(1, "a"): "tuple key", 2.5: "float key", None: "none key", False: 0, "": {}}),
        ("empty", [[], {}, ()]),
        ("a.b", t2), ("a", {"b": t1}),  # two paths that spell the same dotted name
        ("tied", [t1, t1]),
    ])
    fg.save(obj, tmp_path / "n.safetensors")
    _assert_same_tree(fg.load(tmp_path / "n.safetensors", device=device), obj)


def test_bare_tensor_and_plain_values(tmp_path: pathlib.Path) -> None:
    for obj in [fg.tensor(3.5), 42, "text", None, [1, 2], (True,), {}]:
        fg.save(obj, tmp_path / "v.safetensors")
        _assert_same_tree(fg.load(tmp_path / "v.safetensors"), obj)


def test_combined_checkpoint_reads_in_torch_with_dotted_keys(tmp_path: pathlib.Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(fg.randn(2, 3)).sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3, "best": 0.25}
    fg.save(ckpt, tmp_path / "c.safetensors")
    back = fg.load(tmp_path / "c.safetensors")
    _assert_same_tree(back, ckpt)
    flat = st_torch.load_file(tmp_path / "c.safetensors")
    assert sorted(flat) == sorted([f"model.{k}" for k in model.state_dict()] +
                                  [f"optim.state.{i}.momentum_buffer" for i in range(4)])
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    tnet.load_state_dict({k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")})
    assert_close(tnet[0].weight.detach(), model[0].weight, atol=0, rtol=0)


# ---------------------------------------------------------------- optimizer resume


def _train(model: nn.Module, opt: optim.Optimizer, steps: range) -> None:
    device = next(model.parameters()).device
    for i in steps:
        x = fg.tensor(randn(6, 4, seed=100 + i), fg.float32, device=device)
        y = fg.tensor(randn(6, 2, seed=200 + i), fg.float32, device=device)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _net(seed: int, device: str) -> nn.Module:
    fg.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(device)


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: optim.SGD([{"params": ps[:2], "lr": 0.05}, {"params": ps[2:]}], lr=0.1, momentum=0.5),
    lambda ps: optim.Adam(ps, lr=0.05, betas=(0.8, 0.95)),
    lambda ps: optim.Adam(ps, lr=0.05, amsgrad=True, weight_decay=0.1),
], ids=["sgd_nesterov", "sgd_groups", "adam", "adam_amsgrad"])
def test_optimizer_resume_gives_identical_trajectory(device: str, tmp_path: pathlib.Path, make_opt: Any) -> None:
    straight = _net(0, device)
    opt = make_opt(list(straight.parameters()))
    _train(straight, opt, range(8))

    first = _net(0, device)
    opt1 = make_opt(list(first.parameters()))
    _train(first, opt1, range(4))
    fg.save({"model": first.state_dict(), "optim": opt1.state_dict(), "epoch": 4}, tmp_path / "ck.safetensors")
    _assert_same_tree(fg.load(tmp_path / "ck.safetensors")["optim"], opt1.state_dict())
    _train(first, opt1, range(4, 8))

    resumed = _net(1, device)  # different initial weights and a fresh optimizer: everything must come from the file
    opt2 = make_opt(list(resumed.parameters()))
    for group in opt2.param_groups:
        group["lr"] = 123.0  # hyper-parameters come from the file too
    ck = fg.load(tmp_path / "ck.safetensors", device=device)
    resumed.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optim"])
    assert ck["epoch"] == 4
    _train(resumed, opt2, range(ck["epoch"], 8))

    cold = _net(1, device)  # the test can fail: resuming with the weights but not the optimizer state diverges
    cold.load_state_dict(ck["model"])
    _train(cold, make_opt(list(cold.parameters())), range(4, 8))

    for (name, p), q, r in zip(straight.named_parameters(), first.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(q.numpy(), p.numpy(), err_msg=f"{name}: interrupted run without reload")
        np.testing.assert_array_equal(r.numpy(), p.numpy(), err_msg=f"{name}: resumed from checkpoint")
    assert any(not np.array_equal(c.numpy(), p.numpy()) for p, c in zip(straight.parameters(), cold.parameters()))


# ---------------------------------------------------------------- atomic writes


def _old_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "ck.safetensors"
    fg.save({"w": fg.tensor([1.0, 2.0]), "epoch": 1}, path)
    return path


def _assert_old_intact(path: pathlib.Path) -> None:
    back = fg.load(path)
    assert back["epoch"] == 1 and back["w"].tolist() == [1.0, 2.0]
    assert sorted(os.listdir(path.parent)) == [path.name], "a temporary file was left behind"


class _BoomError(Exception):
    pass


@pytest.mark.parametrize("failure", [_BoomError, KeyboardInterrupt])
def test_failure_while_writing_keeps_old_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                              failure: type[BaseException]) -> None:
    path = _old_file(tmp_path)
    written = []

    def half_write(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"w\": {")  # the first bytes of a file, then the failure
        written.append(filename)
        raise failure("disk on fire")

    monkeypatch.setattr(st_numpy, "save_file", half_write)
    with pytest.raises(failure, match="disk on fire"):
        fg.save({"w": fg.tensor([9.0]), "epoch": 2}, path)
    assert written and os.path.dirname(written[0]) == str(tmp_path) and written[0] != str(path)
    monkeypatch.undo()
    _assert_old_intact(path)


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_failing_sync_or_rename_keeps_old_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                               call: str) -> None:
    path = _old_file(tmp_path)

    def fail(*args: Any) -> None:
        raise OSError(5, f"{call} failed")

    monkeypatch.setattr(os, call, fail)
    with pytest.raises(OSError, match=f"{call} failed"):
        fg.save({"w": fg.tensor([9.0]), "epoch": 2}, path)
    monkeypatch.undo()
    _assert_old_intact(path)


def test_failure_without_previous_file_leaves_nothing(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "no space left")))
    with pytest.raises(OSError, match="no space"):
        fg.save({"w": fg.ones(3)}, tmp_path / "new.safetensors")
    assert os.listdir(tmp_path) == []


def test_overwrite_replaces_contents_and_keeps_usual_permissions(tmp_path: pathlib.Path) -> None:
    path = _old_file(tmp_path)
    fg.save({"w": fg.tensor([5.0]), "epoch": 2}, path)
    assert fg.load(path)["epoch"] == 2 and sorted(os.listdir(tmp_path)) == [path.name]
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # a new file: the umask's mode, not a temp's 0600
        os.chmod(path, 0o640)
        fg.save({"w": fg.tensor([6.0]), "epoch": 3}, path)
        assert os.stat(path).st_mode & 0o777 == 0o640  # an overwrite keeps the old file's mode


def test_save_through_symlink_keeps_the_link(tmp_path: pathlib.Path) -> None:
    path = _old_file(tmp_path)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(path.name)
    fg.save({"w": fg.tensor([5.0]), "epoch": 2}, link)
    assert link.is_symlink() and fg.load(path)["epoch"] == 2


def test_save_to_bad_locations(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        fg.save({"w": fg.ones(1)}, tmp_path / "no_such_dir" / "x.safetensors")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        fg.save({"w": fg.ones(1)}, tmp_path)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- unsavable values


class _Thing:
    pass


@pytest.mark.parametrize("bad", [
    _Thing(), {1, 2}, b"bytes", 1 + 2j, np.zeros(3), np.int64(3), print, {"a": [1, {"b": object()}]},
    {frozenset([1]): 1}, {fg.tensor(1.0): 1}, nn.Linear(2, 2),
], ids=lambda b: type(b).__name__)
def test_unsupported_values_raise_type_error_and_write_nothing(tmp_path: pathlib.Path, bad: Any) -> None:
    path = _old_file(tmp_path)
    with pytest.raises(TypeError, match="cannot save"):
        fg.save({"ok": fg.ones(2), "bad": bad}, path)
    _assert_old_intact(path)


def test_module_hint_and_self_reference(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TypeError, match="state_dict"):
        fg.save(nn.Linear(2, 2), tmp_path / "m.safetensors")
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        fg.save({"loop": loop}, tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- unreadable files


def _small_file(tmp_path: pathlib.Path) -> bytes:
    fg.save({"w": fg.tensor([[1.0, -2.0]]), "state": {0: {"step": 3, "b": (0.9, 0.99)}}, "c": fg.tensor([7])},
            tmp_path / "good.safetensors")
    return (tmp_path / "good.safetensors").read_bytes()


def _assert_rejected(path: pathlib.Path, match: str | None = None) -> None:
    with pytest.raises(ValueError, match=match) as info:
        fg.load(path)
    assert isinstance(info.value, CheckpointError) and str(path) in str(info.value), str(info.value)


def test_missing_file_and_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        fg.load(tmp_path / "nope.safetensors")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        fg.load(tmp_path)


def test_every_truncation_is_rejected(tmp_path: pathlib.Path) -> None:
    data = _small_file(tmp_path)
    path = tmp_path / "cut.safetensors"
    for n in range(len(data)):
        path.write_bytes(data[:n])
        _assert_rejected(path)


def test_every_single_byte_corruption_is_rejected(tmp_path: pathlib.Path) -> None:
    """Header damage is caught by safetensors or by the structure; damage to tensor bytes by the checksum."""
    data = _small_file(tmp_path)
    path = tmp_path / "bad.safetensors"
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x5A
        path.write_bytes(bytes(damaged))
        _assert_rejected(path)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    _assert_rejected(path, "checksum")


@pytest.mark.parametrize("content", [
    b"", b"\x00", b"garbage" * 20, b'{"w": [1, 2, 3]}', b"\x89PNG\r\n\x1a\n" + bytes(64),
    b"\xff" * 8 + b"{}", (2).to_bytes(8, "little") + b"[]", (1 << 40).to_bytes(8, "little") + b"{}" + bytes(16),
    (33).to_bytes(8, "little") + b'{"w":{"dtype":"F32","shape":[2]}}' + bytes(8),
], ids=["empty", "nul", "text", "json", "png", "huge_len", "not_object", "oversized", "no_offsets"])
def test_garbage_is_rejected_naming_the_file(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    _assert_rejected(path, "not a valid safetensors file")


def test_empty_safetensors_file_is_an_empty_dict(tmp_path: pathlib.Path) -> None:
    (tmp_path / "e.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")  # valid: no tensors, no metadata
    assert fg.load(tmp_path / "e.safetensors") == {}


def test_numpy_and_pickle_files_are_rejected(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(10))
    _assert_rejected(tmp_path / "a.npy")
    torch.save({"w": torch.ones(2)}, tmp_path / "a.pt")
    _assert_rejected(tmp_path / "a.pt")


@pytest.mark.parametrize("tdtype", [torch.bfloat16, torch.int8, torch.int16])
def test_dtype_fusegrad_lacks_is_named(tmp_path: pathlib.Path, tdtype: torch.dtype) -> None:
    st_torch.save_file({"ok": torch.ones(2), "odd": torch.ones(2, dtype=tdtype)}, tmp_path / "o.safetensors")
    _assert_rejected(tmp_path / "o.safetensors", "tensor 'odd' has dtype")


def _forge(tmp_path: pathlib.Path, structure: str, arrays: dict[str, np.ndarray], checksum: str | None = None) -> \
        pathlib.Path:
    """A safetensors file with a chosen fusegrad structure string (and a valid checksum unless one is given)."""
    path = tmp_path / "forged.safetensors"
    st_numpy.save_file(arrays, path, metadata={STRUCTURE_KEY: structure,
                                               CHECKSUM_KEY: checksum or _checksum(structure, arrays)})
    return path


@pytest.mark.parametrize("tree,match", [
    ("{not json", "unreadable structure"),
    (json.dumps({"version": 99, "tree": None}), "version"),
    (json.dumps({"tree": None}), "version"),
    (json.dumps([1]), "version"),
    (json.dumps({"version": 1, "tree": {"tensor": "missing"}}), "does not hold"),
    (json.dumps({"version": 1, "tree": {"dict": []}}), "does not mention"),
    (json.dumps({"version": 1, "tree": {"pickle": "x"}}), "unknown entry"),
    (json.dumps({"version": 1, "tree": {"dict": [[[1], 2]], "x": 1}}), "malformed"),
    (json.dumps({"version": 1, "tree": {"dict": [[[1], 2]]}}), "unhashable"),
    (json.dumps({"version": 1, "tree": {"float": "1e999x"}}), "unknown entry"),
])
def test_malformed_structure_is_rejected(tmp_path: pathlib.Path, tree: str, match: str) -> None:
    _assert_rejected(_forge(tmp_path, tree, {"w": np.ones(2, np.float32)}), match)


def test_missing_or_wrong_checksum_is_rejected(tmp_path: pathlib.Path) -> None:
    structure = json.dumps({"version": 1, "tree": {"tensor": "w"}})
    arrays = {"w": np.ones(2, np.float32)}
    assert fg.load(_forge(tmp_path, structure, arrays)).tolist() == [1.0, 1.0]
    _assert_rejected(_forge(tmp_path, structure, arrays, checksum="00000000"), "checksum")
    path = tmp_path / "half.safetensors"
    st_numpy.save_file(arrays, path, metadata={STRUCTURE_KEY: structure})
    _assert_rejected(path, "checksum")
    st_numpy.save_file(arrays, path, metadata={CHECKSUM_KEY: _checksum(structure, arrays)})
    _assert_rejected(path, "checksum")
