"""Normalization layers (BatchNorm1d/2d, LayerNorm, GroupNorm, RMSNorm) and Embedding against PyTorch, with weights
copied from torch: outputs, gradients of the input and every parameter, running statistics over several training
steps, eval mode after training, state_dict round trips in both directions, reprs and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from tests.helpers import assert_close, check_module_step, compare, randn

F, TF = nn.functional, torch.nn.functional


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread() -> object:
    """torch's tiny batch-norm kernels spin their thread pool: on a busy machine one call took 100 ms, one thread
    takes 0.1 ms. Restored afterwards, so other test files are not affected."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _from_torch(model: nn.Module, tmodel: torch.nn.Module) -> nn.Module:
    """Load torch's weights and buffers into `model` through NumPy."""
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    return model


def _to_torch(tmodel: torch.nn.Module, model: nn.Module) -> torch.nn.Module:
    tmodel.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
    return tmodel


def _randomize(tmodel: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial parameters (the defaults 1 and 0 would hide a swapped or missing weight/bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tmodel.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return tmodel


def _step(m: nn.Module, t: torch.nn.Module, x: np.ndarray, device: str, atol: float, seed: int = 9) -> None:
    """One forward/backward of both models: the outputs, the input's gradient and every parameter's gradient."""
    check_module_step(m, t, x, device, atol, seed)


def _same_state(m: nn.Module, t: torch.nn.Module, atol: float = 1e-12) -> None:
    fs, ts = m.state_dict(), t.state_dict()
    assert list(fs) == list(ts)
    for k in ts:
        assert_close(fs[k], ts[k], atol=atol, rtol=atol, what=k)


# ---- batch norm ----

BN_CASES = [
    ("BatchNorm1d", (5, 3)), ("BatchNorm1d", (2, 3, 4)), ("BatchNorm1d", (1, 3, 5)), ("BatchNorm1d", (7, 1)),
    ("BatchNorm2d", (2, 3, 4, 5)), ("BatchNorm2d", (1, 2, 3, 3)), ("BatchNorm2d", (3, 4, 1, 1)),
]
BN_OPTIONS = [
    {}, {"momentum": None}, {"momentum": 0.5, "eps": 1e-3}, {"affine": False}, {"bias": False},
    {"track_running_stats": False}, {"momentum": None, "affine": False, "track_running_stats": False},
]


@pytest.mark.parametrize("opts", BN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("name,shape", BN_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_batchnorm_training_steps_then_eval(device: str, name: str, shape: tuple[int, ...], opts: dict) -> None:
    c = shape[1]
    t = _randomize(getattr(torch.nn, name)(c, **opts).double(), seed=1)
    m = _from_torch(getattr(nn, name)(c, **opts, dtype=fg.float64, device=device), t)
    assert repr(m) == repr(t)
    buffers = {n: id(b) for n, b in m.named_buffers()}
    for step in range(3):  # each step: batch statistics, gradients, and the running update
        _step(m, t, randn(*shape, seed=10 + step) * (step + 1) + step, device, atol=1e-10)
        _same_state(m, t)
    assert {n: id(b) for n, b in m.named_buffers()} == buffers  # updated in place: a jit can hold on to them
    if t.track_running_stats:
        assert m.num_batches_tracked.dtype == fg.int64 and m.num_batches_tracked.item() == 3
        assert not np.allclose(m.running_mean.numpy(), 0)  # the running stats did move
    m.eval()
    t.eval()
    _step(m, t, randn(*shape, seed=20) + 1, device, atol=1e-10)  # eval: running stats (or batch ones untracked)
    _same_state(m, t)  # eval leaves the buffers alone
    m.train()
    t.train()
    _step(m, t, randn(*shape, seed=21), device, atol=1e-10)
    _same_state(m, t)


def test_batchnorm_state_dict_round_trips(device: str) -> None:
    t = _randomize(torch.nn.BatchNorm2d(3).double(), seed=2)
    t(torch.randn(4, 3, 2, 2, dtype=torch.float64) * 3 + 1)  # running stats that are not the defaults
    t(torch.randn(4, 3, 2, 2, dtype=torch.float64))
    m = _from_torch(nn.BatchNorm2d(3, dtype=fg.float64, device=device), t)
    assert m.num_batches_tracked.item() == 2 and m.num_batches_tracked.dtype == fg.int64
    m.eval()
    t.eval()
    x = randn(2, 3, 4, 4, seed=3)
    assert_close(m(fg.tensor(x, device=device)), t(torch.tensor(x)), atol=1e-12)
    # fusegrad trains on, and its state loads back into a fresh torch module
    m.train()
    m(fg.tensor(randn(3, 3, 2, 2, seed=4) * 2, device=device))
    t.train()
    t(torch.tensor(randn(3, 3, 2, 2, seed=4) * 2))
    t2 = _to_torch(torch.nn.BatchNorm2d(3).double(), m)
    _same_state(m, t2)
    assert t2.num_batches_tracked.item() == 3 and t2.num_batches_tracked.dtype == torch.int64
    t2.eval()
    m.eval()
    assert_close(m(fg.tensor(x, device=device)), t2(torch.tensor(x)), atol=1e-12)
    assert_close(t2(torch.tensor(x)), t.eval()(torch.tensor(x)), atol=1e-12)


@pytest.mark.parametrize("build", [
    lambda lib: lib.nn.BatchNorm1d(4), lambda lib: lib.nn.BatchNorm2d(2, momentum=None, affine=False),
    lambda lib: lib.nn.BatchNorm2d(5, 1e-3, 0.3, track_running_stats=False),
    lambda lib: lib.nn.BatchNorm1d(3, bias=False),
    lambda lib: lib.nn.LayerNorm(5), lambda lib: lib.nn.LayerNorm((2, 3), elementwise_affine=False),
    lambda lib: lib.nn.LayerNorm([4], eps=1e-3, bias=False), lambda lib: lib.nn.GroupNorm(2, 4),
    lambda lib: lib.nn.GroupNorm(3, 6, 1e-4, affine=False), lambda lib: lib.nn.GroupNorm(1, 2, bias=False),
    lambda lib: lib.nn.RMSNorm(3), lambda lib: lib.nn.RMSNorm([2, 3], eps=1e-3, elementwise_affine=False),
    lambda lib: lib.nn.Embedding(10, 3), lambda lib: lib.nn.Embedding(10, 3, padding_idx=-1),
    lambda lib: lib.nn.Embedding(7, 2, 0, 1.0, 1.0, True, True),
])
def test_repr_state_dict_keys_and_default_init_match_torch(build: object) -> None:
    m, t = build(fg), build(torch)
    assert repr(m) == repr(t)
    assert list(m.state_dict()) == list(t.state_dict())
    assert [n for n, _ in m.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [(n, p.shape) for n, p in m.named_parameters()] == [(n, tuple(p.shape)) for n, p in t.named_parameters()]
    if not isinstance(t, torch.nn.Embedding):  # deterministic defaults: ones, zeros, running stats
        for k, v in t.state_dict().items():
            assert_close(m.state_dict()[k], v, atol=0, what=k)
    assert all(p.dtype == fg.float32 and p.requires_grad for p in m.parameters())


def test_batchnorm_functional_updates_running_stats_in_place(device: str) -> None:
    x, w, b = randn(6, 3, 4, seed=1), randn(3, seed=2), randn(3, seed=3)
    frm, frv = fg.tensor(randn(3, seed=4), device=device), fg.tensor(randn(3, seed=5, low=0.5), device=device)
    trm, trv = torch.tensor(frm.numpy()), torch.tensor(frv.numpy())
    ids = id(frm), id(frv)
    for momentum in (0.1, 0.7):
        compare(lambda *a, m=momentum: F.batch_norm(a[0], frm, frv, a[1], a[2], True, m, 1e-4),
                lambda *a, m=momentum: TF.batch_norm(a[0], trm, trv, a[1], a[2], True, m, 1e-4), x, w, b,
                device=device, atol=1e-10)
    assert (id(frm), id(frv)) == ids
    # compare ran each function twice per momentum (forward, then again for the gradients): 4 updates each
    assert_close(frm, trm, atol=1e-12, what="running_mean")
    assert_close(frv, trv, atol=1e-12, what="running_var")
    compare(lambda *a: F.batch_norm(a[0], frm, frv, a[1], a[2]), lambda *a: TF.batch_norm(a[0], trm, trv, a[1], a[2]),
            x, w, b, device=device, atol=1e-10)  # eval: the running stats normalize
    compare(lambda v: F.batch_norm(v, None, None, training=True), lambda v: TF.batch_norm(v, None, None, training=True),
            randn(2, 5, seed=6), device=device, atol=1e-10)


def test_batchnorm_errors_like_torch(device: str) -> None:
    for lib, make, kw in ((nn, lambda s: fg.ones(*s, device=device), {"device": device}),
                          (torch.nn, lambda s: torch.ones(*s), {})):
        with pytest.raises(ValueError, match="expected 2D or 3D input"):
            lib.BatchNorm1d(3, **kw)(make((2, 3, 4, 5)))
        with pytest.raises(ValueError, match="expected 4D input"):
            lib.BatchNorm2d(3, **kw)(make((2, 3, 4)))
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            lib.BatchNorm1d(3, **kw)(make((1, 3)))
        lib.BatchNorm1d(3, **kw).eval()(make((1, 3)))  # one sample is fine with running statistics
    with pytest.raises(fg.ShapeError, match=r"\(4,\)"):
        nn.BatchNorm1d(4, device=device)(fg.ones(2, 3, device=device))
    with pytest.raises(ValueError, match="eps"):
        F.batch_norm(fg.ones(2, 3, device=device), None, None, training=True, eps=0.0)


def test_batchnorm_float32_and_float16(device: str) -> None:
    t = _randomize(torch.nn.BatchNorm2d(4), seed=5)
    m = _from_torch(nn.BatchNorm2d(4, device=device), t)
    for _ in range(2):
        _step(m, t, randn(3, 4, 2, 3, seed=6, dtype=np.float32) * 4 + 2, device, atol=1e-4)
    _same_state(m, t, atol=1e-5)
    x16 = randn(3, 4, 2, 2, seed=7, dtype=np.float16)
    m.eval().half()
    out = m(fg.tensor(x16, device=device))
    assert out.dtype == fg.float16
    assert_close(out, t.eval()(torch.tensor(x16).float()).half(), atol=2e-2, rtol=1e-2)


def test_batchnorm_inside_eval_shape_leaves_buffers_alone(device: str) -> None:
    m = nn.BatchNorm1d(3, device=device)
    before = [b.numpy().copy() for b in m.buffers()]
    spec = fg.eval_shape(m, fg.Spec((4, 3), device=device))
    assert spec.shape == (4, 3)
    for b, old in zip(m.buffers(), before):
        np.testing.assert_array_equal(b.numpy(), old)


def test_batchnorm_trains_in_a_model_like_torch(device: str) -> None:
    """Linear -> BatchNorm1d -> ReLU -> Linear trained with SGD: weights and running stats follow torch's."""
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                            torch.nn.Linear(6, 2)).double()
    m = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).to(fg.float64).to(device)
    _from_torch(m, t)
    opt, topt = fg.optim.SGD(m.parameters(), lr=0.1), torch.optim.SGD(t.parameters(), lr=0.1)
    for step in range(4):
        x, y = randn(8, 4, seed=step), randn(8, 2, seed=50 + step)
        loss = F.mse_loss(m(fg.tensor(x, device=device)), fg.tensor(y, device=device))
        tloss = TF.mse_loss(t(torch.tensor(x)), torch.tensor(y))
        assert_close(loss, tloss, atol=1e-12)
        opt.zero_grad()
        topt.zero_grad()
        loss.backward()
        tloss.backward()
        opt.step()
        topt.step()
    _same_state(m, t, atol=1e-10)
    x = randn(5, 4, seed=99)
    assert_close(m.eval()(fg.tensor(x, device=device)), t.eval()(torch.tensor(x)), atol=1e-10)


# ---- layer, group and RMS norm ----

@pytest.mark.parametrize("shape,normalized", [
    ((2, 5), 5), ((3, 4, 5), (5,)), ((2, 3, 4), (3, 4)), ((1, 1, 7), [7]), ((4,), 4), ((2, 3, 1), 1),
])
def test_layer_norm_functional(device: str, shape: tuple[int, ...], normalized: object) -> None:
    ns = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    x, w, b = randn(*shape, seed=1) * 3 + 1, randn(*ns, seed=2), randn(*ns, seed=3)
    compare(lambda *a: F.layer_norm(a[0], normalized, a[1], a[2]),
            lambda *a: TF.layer_norm(a[0], ns, a[1], a[2]), x, w, b, device=device, atol=1e-10)
    compare(lambda *a: F.layer_norm(a[0], normalized, a[1], eps=1e-2),
            lambda *a: TF.layer_norm(a[0], ns, a[1], eps=1e-2), x, w, device=device, atol=1e-10)
    compare(lambda v: F.layer_norm(v, normalized), lambda v: TF.layer_norm(v, ns), x, device=device, atol=1e-10)


@pytest.mark.parametrize("opts", [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 0.1}], ids=str)
@pytest.mark.parametrize("shape,normalized", [((3, 6), 6), ((2, 3, 4, 5), (4, 5))], ids=str)
def test_layer_norm_module(device: str, shape: tuple[int, ...], normalized: object, opts: dict) -> None:
    t = _randomize(torch.nn.LayerNorm(normalized, **opts).double(), seed=4)
    m = _from_torch(nn.LayerNorm(normalized, **opts, dtype=fg.float64, device=device), t)
    _step(m, t, randn(*shape, seed=5) * 2 - 1, device, atol=1e-10)
    _same_state(_to_torch(torch.nn.LayerNorm(normalized, **opts).double(), m), t)


@pytest.mark.parametrize("shape,groups", [((2, 4), 2), ((2, 6, 3), 3), ((1, 6, 2, 3), 1), ((3, 4, 5), 4),
                                          ((2, 4, 1, 2, 2), 2)], ids=str)
def test_group_norm(device: str, shape: tuple[int, ...], groups: int) -> None:
    c = shape[1]
    x, w, b = randn(*shape, seed=1) * 2 + 3, randn(c, seed=2), randn(c, seed=3)
    compare(lambda *a: F.group_norm(a[0], groups, a[1], a[2], 1e-3), lambda *a: TF.group_norm(a[0], groups, a[1],
            a[2], 1e-3), x, w, b, device=device, atol=1e-10)
    compare(lambda v: F.group_norm(v, groups), lambda v: TF.group_norm(v, groups), x, device=device, atol=1e-10)
    for opts in ({}, {"affine": False}, {"bias": False}):
        t = _randomize(torch.nn.GroupNorm(groups, c, **opts).double(), seed=4)
        m = _from_torch(nn.GroupNorm(groups, c, **opts, dtype=fg.float64, device=device), t)
        _step(m, t, x, device, atol=1e-10)


def test_group_and_layer_norm_errors(device: str) -> None:
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(3, 4)
    with pytest.raises(fg.ShapeError, match="divisible"):
        F.group_norm(fg.ones(2, 4, device=device), 3)
    with pytest.raises(ValueError, match="more than 1 value"):
        F.group_norm(fg.ones(1, 2, device=device), 2)
    with pytest.raises(fg.ShapeError, match=r"normalized_shape=\[4\]"):
        nn.LayerNorm(4)(fg.ones(2, 3, device=device))
    with pytest.raises(fg.ShapeError, match="weight"):
        F.layer_norm(fg.ones(2, 3, device=device), 3, fg.ones(4, device=device))
    with pytest.raises(fg.ShapeError, match="normalized_shape"):
        F.rms_norm(fg.ones(2, 3, device=device), (3, 2))


@pytest.mark.parametrize("shape,normalized", [((2, 5), 5), ((2, 3, 4), (3, 4)), ((6,), [6]), ((1, 3, 1), 1)], ids=str)
@pytest.mark.parametrize("eps", [None, 1e-2])
def test_rms_norm(device: str, shape: tuple[int, ...], normalized: object, eps: float | None) -> None:
    ns = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    x, w = randn(*shape, seed=1) * 2 + 0.5, randn(*ns, seed=2)
    compare(lambda *a: F.rms_norm(a[0], normalized, a[1], eps), lambda *a: TF.rms_norm(a[0], ns, a[1], eps), x, w,
            device=device, atol=1e-10)
    for affine in (True, False):
        t = _randomize(torch.nn.RMSNorm(normalized, eps, affine).double(), seed=3)
        m = _from_torch(nn.RMSNorm(normalized, eps, affine, dtype=fg.float64, device=device), t)
        _step(m, t, x, device, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rms_norm_default_eps_is_torchs(device: str, dtype: type) -> None:
    """eps=None is the epsilon of the computing type: float32's for float16, which a tiny input makes visible."""
    x = np.full((2, 4), 1e-4 if dtype != np.float16 else 1e-3, dtype=dtype)
    compare(lambda v: F.rms_norm(v, 4), lambda v: TF.rms_norm(v, [4]), x, device=device, grad=False, atol=1e-3,
            rtol=1e-3)


@pytest.mark.parametrize("dtype,atol", [(np.float32, 1e-5), (np.float16, 1e-2)])
def test_norms_float32_float16(device: str, dtype: type, atol: float) -> None:
    x, w, b = randn(3, 4, 5, seed=1, dtype=dtype) * 3, randn(5, seed=2, dtype=dtype), randn(5, seed=3, dtype=dtype)
    wc, bc = randn(4, seed=4, dtype=dtype), randn(4, seed=5, dtype=dtype)
    grad = dtype == np.float32  # torch has no float16 gradients for every one of these on CPU
    compare(lambda *a: F.layer_norm(a[0], 5, a[1], a[2]), lambda *a: TF.layer_norm(a[0], [5], a[1], a[2]), x, w, b,
            device=device, atol=atol, rtol=atol, grad=grad)
    compare(lambda *a: F.group_norm(a[0], 2, a[1], a[2]), lambda *a: TF.group_norm(a[0], 2, a[1], a[2]), x, wc, bc,
            device=device, atol=atol, rtol=atol, grad=grad)
    compare(lambda *a: F.rms_norm(a[0], 5, a[1]), lambda *a: TF.rms_norm(a[0], [5], a[1]), x, w,
            device=device, atol=atol, rtol=atol, grad=grad)


# ---- embedding ----

@pytest.mark.parametrize("idx_shape", [(5,), (2, 3), (), (1, 1), (4, 0)], ids=str)
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
def test_embedding_functional(device: str, idx_shape: tuple[int, ...], padding_idx: int | None,
                              idx_dtype: type) -> None:
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 6, idx_shape).astype(idx_dtype)
    if idx.size > 1:
        idx.flat[:2] = [2, 5]  # the padding row (both spellings) and repeats are read
    w = randn(6, 3, seed=1)
    compare(lambda i, v: F.embedding(i, v, padding_idx), lambda i, v: TF.embedding(i, v, padding_idx), idx, w,
            device=device, atol=1e-12)


def test_embedding_padding_row_gets_zero_gradient_and_keeps_its_value(device: str) -> None:
    weight = randn(5, 4, seed=2)  # a nonzero padding row: the forward still reads it, as torch does
    t = torch.nn.Embedding.from_pretrained(torch.tensor(weight), freeze=False, padding_idx=1)
    m = nn.Embedding.from_pretrained(fg.tensor(weight, device=device), freeze=False, padding_idx=1)
    idx = np.array([[1, 0, 1], [4, 1, 0]])
    fy, ty = m(fg.tensor(idx, device=device)), t(torch.tensor(idx))
    assert_close(fy, ty, atol=0)
    up = randn(2, 3, 4, seed=3)
    (fy * fg.tensor(up, device=device)).sum().backward()
    (ty * torch.tensor(up)).sum().backward()
    assert_close(m.weight.grad, t.weight.grad, atol=1e-12)
    assert not m.weight.grad.numpy()[1].any() and m.weight.grad.numpy()[0].any()


def test_embedding_module_init_and_round_trip(device: str) -> None:
    fg.manual_seed(0)  # the statistics below hold for this stream (test order must not matter)
    m = nn.Embedding(300, 40, padding_idx=3, device=device)
    w = m.weight.numpy()
    assert m.weight.requires_grad and w.dtype == np.float32
    assert not w[3].any() and abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # N(0, 1), the padding row zero
    t = _to_torch(torch.nn.Embedding(300, 40, padding_idx=3), m)
    _same_state(m, t, atol=0)
    t2 = _randomize(torch.nn.Embedding(300, 40, padding_idx=3).double(), seed=4)
    m2 = _from_torch(nn.Embedding(300, 40, padding_idx=3, dtype=fg.float64, device=device), t2)
    idx = np.random.default_rng(1).integers(0, 300, (7, 5))
    idx[0, :2] = 3
    _step_embedding(m2, t2, idx, device)


def _step_embedding(m: nn.Module, t: torch.nn.Module, idx: np.ndarray, device: str) -> None:
    fy, ty = m(fg.tensor(idx, device=device)), t(torch.tensor(idx))
    assert_close(fy, ty, atol=0)
    up = randn(*ty.shape, seed=5, dtype=idx.dtype if idx.dtype.kind == "f" else np.float64)
    (fy * fg.tensor(up, dtype=fy.dtype, device=device)).sum().backward()
    (ty * torch.tensor(up, dtype=ty.dtype)).sum().backward()
    assert_close(m.weight.grad, t.weight.grad, atol=1e-12)


def test_embedding_from_pretrained_and_frozen_lookup(device: str) -> None:
    weight = randn(8, 3, seed=6)
    frozen = nn.Embedding.from_pretrained(fg.tensor(weight, device=device))
    tfrozen = torch.nn.Embedding.from_pretrained(torch.tensor(weight))
    assert repr(frozen) == repr(tfrozen) and not frozen.weight.requires_grad
    idx = np.array([[7, 0], [3, 3]])
    assert_close(frozen(fg.tensor(idx, device=device)), tfrozen(torch.tensor(idx)), atol=0)
    trainable = nn.Embedding.from_pretrained(fg.tensor(weight, device=device), freeze=False, padding_idx=2)
    assert trainable.weight.requires_grad and trainable.padding_idx == 2
    np.testing.assert_array_equal(trainable.weight.numpy(), weight)  # the padding row is kept as given
    with fg.no_grad():
        assert_close(trainable(fg.tensor(idx, device=device)), tfrozen(torch.tensor(idx)), atol=0)
    with pytest.raises(AssertionError, match="2-dimensional"):
        nn.Embedding.from_pretrained(fg.ones(3, device=device))


@pytest.mark.parametrize("bad", [6, -1, 100])
def test_embedding_index_out_of_range_is_an_index_error(device: str, bad: int) -> None:
    """As in torch, with or without a gradient and in a jitted step (negative indices do not count from the end)."""
    m = nn.Embedding(6, 3, device=device)
    idx = fg.tensor(np.array([[0, bad], [5, 1]]), device=device)
    with pytest.raises(IndexError, match="out of bounds for dim 0 with size 6"):
        m(idx).sum().backward()
    with pytest.raises(IndexError), fg.no_grad():
        m(idx).numpy()
    step = fg.jit(lambda i: m(i).sum())
    good = fg.tensor(np.array([[0, 2], [5, 1]]), device=device)
    for _ in range(3):
        step(good)
    with pytest.raises(IndexError):
        step(idx).item()


def test_embedding_in_a_model_trains_like_torch(device: str) -> None:
    """Embedding -> LayerNorm -> mean over tokens -> Linear with Adam: the weights follow torch's."""
    torch.manual_seed(1)
    temb, tln, tlin = torch.nn.Embedding(50, 8, padding_idx=0), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3)
    tparams = [*temb.parameters(), *tln.parameters(), *tlin.parameters()]
    emb = _from_torch(nn.Embedding(50, 8, padding_idx=0, device=device), temb)
    ln, lin = _from_torch(nn.LayerNorm(8, device=device), tln), _from_torch(nn.Linear(8, 3, device=device), tlin)
    params = [*emb.parameters(), *ln.parameters(), *lin.parameters()]
    opt, topt = fg.optim.Adam(params, lr=0.05), torch.optim.Adam(tparams, lr=0.05)
    rng = np.random.default_rng(2)
    for _ in range(3):
        idx, y = rng.integers(0, 50, (6, 5)), rng.integers(0, 3, 6)
        idx[:, -1] = 0
        loss = F.cross_entropy(lin(ln(emb(fg.tensor(idx, device=device))).mean(1)), fg.tensor(y, device=device))
        tloss = TF.cross_entropy(tlin(tln(temb(torch.tensor(idx))).mean(1)), torch.tensor(y))
        assert_close(loss, tloss, atol=1e-5)
        opt.zero_grad()
        topt.zero_grad()
        loss.backward()
        tloss.backward()
        opt.step()
        topt.step()
    _same_state(emb, temb, atol=1e-5)
    _same_state(lin, tlin, atol=1e-5)


def test_embedding_errors(device: str) -> None:
    w = fg.randn(4, 2, device=device, requires_grad=True)
    with pytest.raises(AssertionError, match="Padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(AssertionError, match="Padding_idx"):
        F.embedding(fg.tensor([0], device=device), w, padding_idx=-5)
    with pytest.raises(RuntimeError, match="Long, Int"):
        F.embedding(fg.tensor([0.0], device=device), w)
    with pytest.raises((IndexError, RuntimeError)):
        F.embedding(fg.tensor([4], device=device), w).numpy()
    with pytest.raises((IndexError, RuntimeError)):
        F.embedding(fg.tensor([4], device=device), w.detach()).numpy()
    with pytest.raises(NotImplementedError):
        nn.Embedding(4, 2, max_norm=1.0)(fg.tensor([0], device=device))
    with pytest.raises(AssertionError, match="Shape of weight"):
        nn.Embedding(4, 3, _weight=fg.ones(4, 2))
