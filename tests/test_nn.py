"""`nn.Module` machinery (registration, traversal, modes, state_dict, repr) and the layers (Linear, activations,
Flatten, Identity, Dropout, `nn.init`, `nn.utils.clip_grad_norm_`) against PyTorch, with weights copied from torch."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from tests.helpers import assert_close, compare, randn


def _from_torch(model: nn.Module, tmodel: torch.nn.Module) -> nn.Module:
    """Load a torch model's weights into `model` (through NumPy, the way users convert checkpoints)."""
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    return model


def _mlp(lib: object) -> object:
    return lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.ReLU(), lib.nn.Linear(8, 3))


class _Block:
    """The same nested architecture for both libraries: a shared child, a tied weight, buffers, a list and a dict."""

    @staticmethod
    def build(lib: object) -> object:
        class Block(lib.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.enc = lib.nn.Sequential(lib.nn.Linear(3, 5), lib.nn.Tanh())
                self.shared = lib.nn.Linear(5, 5)
                self.again = self.shared  # the same child under two names
                self.heads = lib.nn.ModuleList([lib.nn.Linear(5, 2), lib.nn.Linear(5, 2, bias=False)])
                self.extra = lib.nn.ModuleDict({"b": lib.nn.Linear(2, 2), "a": lib.nn.Identity()})
                self.register_buffer("count", lib.zeros(2, dtype=lib.int64))
                self.register_buffer("scratch", lib.ones(3), persistent=False)
                self.tied = lib.nn.Linear(5, 5, bias=False)
                self.tied.weight = self.shared.weight  # a tied parameter

            def forward(self, x: object) -> object:
                h = self.again(self.shared(self.enc(x)))
                h = self.tied(h)
                return self.extra["b"](self.heads[0](h) + self.heads[1](h))

        return Block()


# ---- registration and traversal ----

def test_named_parameters_dotted_shared_once() -> None:
    m, t = _Block.build(fg), _Block.build(torch)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert len(list(m.parameters())) == len(list(t.parameters())) == 9
    assert m.tied.weight is m.shared.weight
    assert [n for n, _ in m.named_parameters(prefix="model")] == [n for n, _ in t.named_parameters(prefix="model")]
    assert [n for n, _ in m.enc.named_parameters(recurse=False)] == []
    assert [n for n, _ in m.shared.named_parameters(recurse=False)] == ["weight", "bias"]
    assert all(p.requires_grad for p in m.parameters())


def test_buffers_and_non_persistent() -> None:
    m, t = _Block.build(fg), _Block.build(torch)
    assert [n for n, _ in m.named_buffers()] == [n for n, _ in t.named_buffers()] == ["count", "scratch"]
    assert "scratch" not in m.state_dict() and "count" in m.state_dict()
    assert m.count.dtype == fg.int64 and m.scratch.shape == (3,)
    m.count = fg.ones(2, dtype=fg.int64)  # assigning to a buffer name replaces the buffer
    assert m.state_dict()["count"].tolist() == [1, 1] and "count" not in m.__dict__
    assert not any(isinstance(b, nn.Parameter) for b in m.buffers())


def test_children_and_modules() -> None:
    m, t = _Block.build(fg), _Block.build(torch)
    assert [n for n, _ in m.named_children()] == [n for n, _ in t.named_children()]
    assert [n for n, _ in m.named_modules()] == [n for n, _ in t.named_modules()]
    assert [type(x).__name__ for x in m.modules()] == [type(x).__name__ for x in t.modules()]
    assert [type(x).__name__ for x in m.children()] == [type(x).__name__ for x in t.children()]
    assert [n for n, _ in m.named_modules(remove_duplicate=False)] == \
        [n for n, _ in t.named_modules(remove_duplicate=False)]


def test_apply_order_and_train_eval() -> None:
    m, t = _Block.build(fg), _Block.build(torch)
    seen, tseen = [], []
    assert m.apply(lambda x: seen.append(type(x).__name__)) is m
    t.apply(lambda x: tseen.append(type(x).__name__))
    assert seen == tseen
    assert m.eval() is m and not any(x.training for x in m.modules())
    t.eval()
    m.heads.train()
    t.heads.train()
    assert [x.training for x in m.modules()] == [x.training for x in t.modules()]
    assert m.heads[1].training and not m.enc[0].training
    m.train()
    assert all(x.training for x in m.modules())


def test_deepcopy_after_training_steps_owns_its_memory(device: str) -> None:
    import copy

    from fusegrad import optim
    model = nn.Sequential(nn.Linear(4, 8, device=device), nn.ReLU(), nn.Linear(8, 3, device=device))
    x = fg.tensor(np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32), device=device)
    model(x).sum().backward()  # the parameters have been kernel inputs: the cpu device knows their addresses
    want = model(x).numpy()
    twin = copy.deepcopy(model)
    opt = optim.SGD(model.parameters(), lr=1.0)
    for _ in range(3):  # the original's old parameter memory is freed and reused
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    np.testing.assert_array_equal(twin(x).numpy(), want)
    assert not np.array_equal(model(x).numpy(), want)


def test_to_dtype_keeps_parameter_identity() -> None:
    m = _Block.build(fg)
    params = list(m.parameters())
    assert m.to(fg.float64) is m
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]
    assert all(p.dtype == fg.float64 and p.requires_grad for p in params)
    assert m.count.dtype == fg.int64 and m.scratch.dtype == fg.float64  # like torch: only floating tensors cast
    m.to(dtype=fg.float32)
    assert all(p.dtype == fg.float32 for p in m.parameters())
    m.enc[0].weight.grad = fg.ones(5, 3)
    assert m.double().to("numpy") is m and m.enc[0].weight.grad.dtype == fg.float64  # gradients follow
    assert all(p.device == "numpy" for p in m.parameters()) and m.count.dtype == fg.int64
    with pytest.raises(TypeError, match="floating"):
        m.to(fg.int64)
    assert not nn.Parameter(fg.ones(2), requires_grad=False).requires_grad


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none: bool) -> None:
    m = _mlp(fg)
    m(fg.ones(2, 4)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=set_to_none)
    for p in m.parameters():
        if set_to_none:
            assert p.grad is None
        else:
            assert p.grad.shape == p.shape and not p.grad.numpy().any()


def test_setattr_before_init_and_delattr() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(fg.ones(2))

    with pytest.raises(AttributeError, match="super"):
        Bad()
    m = _mlp(fg)
    m[0].weight = nn.Parameter(fg.zeros(8, 4))
    assert m[0].weight.numpy().sum() == 0
    del m[0].bias
    assert "0.bias" not in m.state_dict()
    with pytest.raises(AttributeError, match="nope"):
        m.nope  # noqa: B018


def test_registration_errors_like_torch() -> None:
    m, t = nn.Linear(2, 3), torch.nn.Linear(2, 3)
    for lib_m, tensor in ((m, fg.ones(3)), (t, torch.ones(3))):
        with pytest.raises(TypeError, match="bias"):
            lib_m.bias = tensor  # a plain tensor cannot take a parameter's slot
        with pytest.raises(KeyError, match="already exists"):
            lib_m.register_buffer("weight", tensor)
        with pytest.raises(KeyError, match=r'"\."'):
            lib_m.register_parameter("a.b", None)
        lib_m.bias = None  # None keeps the slot, so the key disappears from the state_dict
        assert list(lib_m.state_dict()) == ["weight"] and lib_m.bias is None
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential().add_module("x", 3)


def test_containers_like_torch() -> None:
    def build(lib: object) -> tuple:
        seq = lib.nn.Sequential(OrderedDict([("fc", lib.nn.Linear(2, 3)), ("act", lib.nn.ReLU())]))
        seq.append(lib.nn.Linear(3, 1))
        ml = lib.nn.ModuleList([lib.nn.Tanh()])
        ml.extend([lib.nn.Linear(1, 1)])
        ml.append(lib.nn.Identity())
        md = lib.nn.ModuleDict({"z": lib.nn.ReLU()})
        md["a"] = lib.nn.Linear(1, 2)
        return seq, ml, md

    (seq, ml, md), (tseq, tml, tmd) = build(fg), build(torch)
    for a, b in ((seq, tseq), (ml, tml), (md, tmd)):
        assert repr(a) == repr(b) and list(a.state_dict()) == list(b.state_dict()) and len(a) == len(b)
    assert repr(seq[1:]) == repr(tseq[1:]) and repr(ml[:2]) == repr(tml[:2])
    assert type(seq[-1]).__name__ == "Linear" and seq.fc is seq[0]
    assert list(md) == list(tmd) == ["z", "a"] and "a" in md and list(md.keys()) == ["z", "a"]
    assert [type(v).__name__ for v in md.values()] == ["ReLU", "Linear"]


# ---- repr and state_dict keys ----

@pytest.mark.parametrize("build", [
    _mlp,
    lambda lib: lib.nn.ModuleList([lib.nn.Linear(1, 2) for _ in range(3)] + [lib.nn.ReLU(), lib.nn.ReLU()]),
    lambda lib: lib.nn.ModuleDict({"x": lib.nn.Linear(2, 3, bias=False), "y": lib.nn.Flatten(0, 1)}),
    lambda lib: lib.nn.Sequential(lib.nn.Dropout(0.2), lib.nn.GELU("tanh"), lib.nn.LeakyReLU(0.2),
                                  lib.nn.Softmax(dim=1), lib.nn.ELU(), lib.nn.Softplus(2.0), lib.nn.Identity(),
                                  lib.nn.Sequential(lib.nn.SiLU(), lib.nn.LogSoftmax(-1))),
    lambda lib: lib.nn.Sequential(lib.nn.MSELoss(), lib.nn.CrossEntropyLoss(), lib.nn.ReLU(inplace=True)),
    _Block.build,
], ids=["mlp", "modulelist", "moduledict", "activations", "losses", "nested"])
def test_repr_and_state_dict_keys_match_torch(build: object) -> None:
    m, t = build(fg), build(torch)
    assert list(m.state_dict()) == list(t.state_dict())
    if build is not _Block.build:  # a user-defined class prints its own name; the rest print like torch
        assert repr(m) == repr(t)
    assert all(not v.requires_grad for v in m.state_dict().values())


def test_state_dict_keeps_shared_names() -> None:
    m, t = _Block.build(fg), _Block.build(torch)
    assert "again.weight" in m.state_dict() and "tied.weight" in m.state_dict()
    assert list(m.state_dict(prefix="p.")) == list(t.state_dict(prefix="p."))


# ---- load_state_dict ----

@pytest.mark.parametrize("build,shape", [(_mlp, (5, 4)), (_Block.build, (2, 3))], ids=["mlp", "nested"])
def test_load_state_dict_from_torch_gives_same_outputs(build: object, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    t = build(torch).double()
    t.count.fill_(7) if hasattr(t, "count") else None
    m = _from_torch(build(fg).to(fg.float64), t)
    x = randn(*shape, seed=3)
    assert_close(m(fg.tensor(x)), t(torch.tensor(x)), atol=1e-12)
    if hasattr(m, "count"):
        assert m.count.tolist() == [7, 7] and m.count.dtype == fg.int64
    # the fusegrad state_dict loads back into torch too
    t2 = build(torch).double()
    t2.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    assert_close(m(fg.tensor(x)), t2(torch.tensor(x)), atol=1e-12)


def test_load_state_dict_casts_to_parameter_dtype() -> None:
    t = _mlp(torch).double()
    m = _from_torch(_mlp(fg), t)
    assert all(p.dtype == fg.float32 for p in m.parameters())
    assert_close(m[0].weight, t[0].weight.float(), atol=0)


def test_load_state_dict_strict() -> None:
    m = _mlp(fg)
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    missing = {k: v for k, v in sd.items() if k != "2.bias"}
    extra = {**sd, "3.weight": np.zeros(2, np.float32)}
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*2\.bias"):
        m.load_state_dict(missing)
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*3\.weight"):
        m.load_state_dict(extra)
    before = m[2].bias.numpy().copy()
    result = m.load_state_dict({**missing, "3.weight": np.zeros(2, np.float32)}, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["3.weight"]
    np.testing.assert_array_equal(m[2].bias.numpy(), before)


def test_load_state_dict_non_persistent_buffer_is_unexpected() -> None:
    m = _Block.build(fg)
    sd = {**{k: v.numpy() for k, v in m.state_dict().items()}, "scratch": np.zeros(3, np.float32)}
    with pytest.raises(RuntimeError, match="scratch"):
        m.load_state_dict(sd)
    m.load_state_dict(sd, strict=False)
    assert m.scratch.tolist() == [1, 1, 1]  # not loaded, like torch


def test_load_state_dict_shape_mismatch_names_key_and_shapes() -> None:
    m = _mlp(fg)
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    sd["0.weight"] = np.zeros((8, 5), np.float32)
    for strict in (True, False):
        with pytest.raises(fg.ShapeError, match=r"0\.weight.*\(8, 5\).*\(8, 4\)"):
            m.load_state_dict(sd, strict=strict)


# ---- layers: weights copied from torch, forward and every gradient ----

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(5,), (2, 3), (2, 1, 3), (0,), ()], ids=str)
def test_linear_forward_and_gradients(device: str, lead: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(1)
    t = torch.nn.Linear(4, 3, bias=bias).double()
    m = _from_torch(nn.Linear(4, 3, bias=bias, dtype=fg.float64, device=device), t)
    assert m.weight.device == device and (m.bias is None) == (not bias)
    x, up = randn(*lead, 4, seed=2), randn(*lead, 3, seed=4)
    fx, tx = fg.tensor(x, device=device, requires_grad=True), torch.tensor(x, requires_grad=True)
    fy, ty = m(fx), t(tx)
    assert_close(fy, ty, atol=1e-12)
    (fy * fg.tensor(up, device=device)).sum().backward()
    (ty * torch.tensor(up)).sum().backward()
    assert_close(fx.grad, tx.grad, atol=1e-12, what="input grad")
    assert_close(m.weight.grad, t.weight.grad, atol=1e-12, what="weight grad")
    if bias:
        assert_close(m.bias.grad, t.bias.grad, atol=1e-12, what="bias grad")


def test_linear_float32_and_non_contiguous_input(device: str) -> None:
    torch.manual_seed(2)
    t = torch.nn.Linear(4, 6)
    m = _from_torch(nn.Linear(4, 6, device=device), t)
    x = randn(4, 5, dtype=np.float32, seed=5)
    out = m(fg.tensor(x, device=device).T)  # a transposed (non-contiguous) input
    assert out.dtype == fg.float32
    assert_close(out, t(torch.tensor(x).T), atol=1e-5)


def test_linear_functional_gradients(device: str) -> None:
    F, TF = nn.functional, torch.nn.functional  # noqa: N806
    compare(F.linear, TF.linear, randn(2, 3, 4, seed=1), randn(5, 4, seed=2), randn(5, seed=3), device=device,
            atol=1e-12)
    compare(F.linear, TF.linear, randn(4, seed=1), randn(5, 4, seed=2), device=device, atol=1e-12)


def test_linear_bad_input_shape_raises() -> None:
    with pytest.raises(fg.ShapeError, match=r"\(2, 5\).*4"):
        nn.Linear(4, 3)(fg.ones(2, 5))


# (module name, constructor args, input shape): defaults and non-default options
ACTIVATIONS = [
    ("ReLU", (), (3, 4)), ("LeakyReLU", (), (3, 4)), ("LeakyReLU", (0.2,), (5,)), ("ELU", (), (3, 4)),
    ("ELU", (0.5,), (2, 3, 2)), ("GELU", (), (3, 4)), ("GELU", ("tanh",), (3, 4)), ("SiLU", (), (3, 4)),
    ("Sigmoid", (), (3, 4)), ("Tanh", (), ()), ("Softplus", (), (3, 4)), ("Softplus", (2.0, 1.0), (3, 4)),
    ("Softmax", (1,), (3, 4)), ("Softmax", (-1,), (2, 3, 4)), ("Softmax", (0,), (5,)), ("LogSoftmax", (1,), (3, 4)),
    ("LogSoftmax", (0,), (3, 4)), ("Identity", (), (3, 4)), ("Flatten", (), (2, 3, 4)), ("Flatten", (0, 1), (2, 3, 4)),
    ("Flatten", (-2,), (2, 3, 4, 1)), ("ReLU", (), (2, 0)), ("Tanh", (), (1, 1)),
]


@pytest.mark.parametrize("name,args,shape", ACTIVATIONS, ids=lambda v: str(v).replace(" ", ""))
def test_activation_modules(device: str, name: str, args: tuple, shape: tuple[int, ...]) -> None:
    m, t = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    assert repr(m) == repr(t)
    x = randn(*shape, seed=7) * 3
    tol = 1e-6 if name == "GELU" else 1e-10  # fg's erf is a rational approximation, absolute error < 5e-7
    compare(m, t, x, device=device, atol=tol, rtol=1e-8)
    compare(m, t, x.astype(np.float32), device=device, grad=False, atol=1e-5)
    if x.ndim > 1:  # a transposed (non-contiguous) input
        compare(lambda v: m(v.transpose(0, -1)), lambda v: t(v.transpose(0, -1)), x, device=device, atol=tol,
                rtol=1e-8)


@pytest.mark.parametrize("name,shape", [("Softmax", (3, 4)), ("LogSoftmax", (5,)), ("Softmax", (2, 3, 4))])
def test_softmax_without_dim_uses_torch_legacy_dim(device: str, name: str, shape: tuple[int, ...]) -> None:
    with pytest.warns(UserWarning):
        compare(getattr(nn, name)(), getattr(torch.nn, name)(), randn(*shape, seed=1), device=device, atol=1e-10)


def test_dropout_eval_is_identity_and_train_drops_p(device: str) -> None:
    d = nn.Dropout(0.3)
    x = fg.ones(200, 100, device=device)
    assert d.eval()(x) is x
    y = d.train()(x).numpy()
    kept = y != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert not nn.Dropout(1.0)(x).numpy().any()
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)


def test_dropout_gradient_masks_like_forward(device: str) -> None:
    x = fg.ones(50, 40, device=device, requires_grad=True)
    y = nn.functional.dropout(x, 0.5, training=True)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())  # d(sum)/dx = the mask scaled by 1/(1-p)


# ---- nn.init ----

@pytest.mark.parametrize("name,param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
    ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None),
])
def test_calculate_gain(name: str, param: float | None) -> None:
    assert nn.init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)


def test_calculate_gain_unknown_raises() -> None:
    with pytest.raises(ValueError, match="nope"):
        nn.init.calculate_gain("nope")


def _bounded_uniform(t: fg.Tensor, bound: float) -> None:
    """Values lie in [-bound, bound], fill it (max near bound), and have a uniform's std bound / sqrt(3)."""
    v = t.numpy()
    assert np.abs(v).max() <= bound * (1 + 1e-6) and np.abs(v).max() > 0.98 * bound
    assert abs(v.std() / (bound / math.sqrt(3)) - 1) < 0.03 and abs(v.mean()) < 0.03 * bound


@pytest.mark.parametrize("shape", [(200, 300), (64, 8, 3, 3)], ids=str)
def test_init_statistics(shape: tuple[int, ...]) -> None:
    fg.manual_seed(0)  # the statistics below hold for this stream (test order must not matter)
    fan_in, fan_out = math.prod(shape[1:]), shape[0] * math.prod(shape[2:])
    tt = torch.empty(shape)
    assert nn.init._calculate_fan_in_and_fan_out(fg.empty(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(tt) == (fan_in, fan_out)
    w = fg.empty(*shape)
    assert nn.init.kaiming_uniform_(w) is w
    _bounded_uniform(w, math.sqrt(2) * math.sqrt(3 / fan_in))  # a=0: the leaky_relu gain is sqrt(2)
    _bounded_uniform(nn.init.kaiming_uniform_(w, a=0, mode="fan_out", nonlinearity="relu"),
                     math.sqrt(2) * math.sqrt(3 / fan_out))
    _bounded_uniform(nn.init.xavier_uniform_(w, gain=2.0), 2.0 * math.sqrt(6 / (fan_in + fan_out)))
    _bounded_uniform(nn.init.uniform_(w, -0.5, 0.5), 0.5)
    assert abs(nn.init.uniform_(w, 2, 4).numpy().mean() - 3) < 0.02
    for fn, std in [(lambda: nn.init.xavier_normal_(w, 0.5), 0.5 * math.sqrt(2 / (fan_in + fan_out))),
                    (lambda: nn.init.kaiming_normal_(w, nonlinearity="relu"), math.sqrt(2 / fan_in)),
                    (lambda: nn.init.normal_(w, 1.0, 0.1), 0.1)]:
        v = fn().numpy()
        assert abs(v.std() / std - 1) < 0.03
    assert abs(w.numpy().mean() - 1.0) < 0.01
    assert (nn.init.constant_(w, 0.25).numpy() == 0.25).all()
    assert not nn.init.zeros_(w).numpy().any() and (nn.init.ones_(w).numpy() == 1).all()
    assert w.shape == shape and w.dtype == fg.float32


def test_init_keeps_parameter_and_dtype() -> None:
    p = nn.Parameter(fg.empty(30, 20, dtype=fg.float64))
    assert nn.init.xavier_uniform_(p) is p
    assert p.dtype == fg.float64 and p.requires_grad and p.grad is None
    with pytest.raises(ValueError, match="2 dims"):
        nn.init.xavier_uniform_(fg.empty(5))


@pytest.mark.parametrize("fan_in,out", [(1000, 400), (3, 500)])
def test_linear_default_init_has_torch_bounds(fan_in: int, out: int) -> None:
    m = nn.Linear(fan_in, out)
    _bounded_uniform(m.weight, 1 / math.sqrt(fan_in))
    b = m.bias.numpy()
    assert np.abs(b).max() <= 1 / math.sqrt(fan_in) and b.std() > 0.4 / math.sqrt(fan_in)
    assert m.weight.requires_grad and m.bias.requires_grad


# ---- nn.utils.clip_grad_norm_ ----

@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (100.0, 2.0), (0.3, 1.0), (0.2, float("inf")),
                                                (1.0, 3)])
def test_clip_grad_norm(max_norm: float, norm_type: float) -> None:
    torch.manual_seed(0)
    t = _mlp(torch).double()
    m = _from_torch(_mlp(fg).to(fg.float64), t)
    x = randn(6, 4, seed=1)
    m(fg.tensor(x)).square().sum().backward()
    t(torch.tensor(x)).square().sum().backward()
    want = torch.nn.utils.clip_grad_norm_(t.parameters(), max_norm, norm_type)
    got = nn.utils.clip_grad_norm_(m.parameters(), max_norm, norm_type)
    assert_close(got, want, atol=1e-12)
    for p, tp in zip(m.parameters(), t.parameters()):
        assert_close(p.grad, tp.grad, atol=1e-12)


def test_clip_grad_norm_edge_cases() -> None:
    p, q = nn.Parameter(fg.ones(3)), nn.Parameter(fg.ones(2))
    p.grad = fg.tensor([3.0, 4.0, 0.0])
    total = nn.utils.clip_grad_norm_(p, 1.0)  # a single tensor; q has no grad and is skipped
    assert total.item() == pytest.approx(5.0) and p.grad.numpy() == pytest.approx([0.6, 0.8, 0.0], rel=1e-5)
    assert nn.utils.clip_grad_norm_([q], 1.0).item() == 0.0
    p.grad = fg.tensor([float("nan"), 1.0, 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
