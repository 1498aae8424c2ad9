"""Recurrent layers (RNN tanh/relu, LSTM with and without projection, GRU, and the cells) against PyTorch with
weights copied from torch: outputs, final states and the gradients of the input, the initial states and every
parameter; state_dict round trips; initialisation; reprs; errors; and an LSTM that learns a toy task."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn
from tests.helpers import assert_close, randn

IN, HID, BATCH = 4, 5, 3
LAYERS = {  # id -> (class name, extra constructor kwargs)
    "rnn_tanh": ("RNN", {}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "lstm_proj": ("LSTM", {"proj_size": 3}),
    "gru": ("GRU", {}),
}


def _from_torch(model: nn.Module, tmodel: torch.nn.Module) -> nn.Module:
    """Load torch's weights into `model` through NumPy, checking the key order is torch's."""
    state = tmodel.state_dict()
    assert list(model.state_dict()) == list(state)
    model.load_state_dict({k: v.detach().numpy() for k, v in state.items()})
    return model


def _pair(layer: str, device: str, seed: int = 0, **kwargs: object) -> tuple[nn.Module, torch.nn.Module]:
    """The same float64 layer in both libraries, fusegrad's holding torch's weights."""
    name, extra = LAYERS[layer]
    torch.manual_seed(seed)
    t = getattr(torch.nn, name)(IN, HID, **extra, **kwargs).double()
    m = getattr(nn, name)(IN, HID, **extra, **kwargs, dtype=fg.float64, device=device)
    return _from_torch(m, t), t


def _state_shapes(m: torch.nn.RNNBase, batch: tuple[int, ...]) -> list[tuple[int, ...]]:
    lead = (m.num_layers * (2 if m.bidirectional else 1), *batch)
    h = (*lead, m.proj_size or m.hidden_size)
    return [h, (*lead, m.hidden_size)] if isinstance(m, torch.nn.LSTM) else [h]


def _flat(x: object) -> list:
    return [v for item in x for v in _flat(item)] if isinstance(x, (tuple, list)) else [x]


def _check_grads(m: nn.Module, t: torch.nn.Module, f_leaves: list, t_leaves: list, f_outs: list, t_outs: list,
                 device: str, atol: float) -> None:
    """Backpropagate the same random upstream gradients through both; compare leaves' and parameters' gradients."""
    rng = np.random.default_rng(7)
    f_total, t_total = None, None
    for f, tt in zip(f_outs, t_outs):
        up = rng.standard_normal(tt.shape)
        fs, ts = (f * fg.tensor(up, device=device)).sum(), (tt * torch.tensor(up)).sum()
        f_total, t_total = (fs, ts) if f_total is None else (f_total + fs, t_total + ts)
    f_total.backward()
    t_total.backward()
    for i, (f, tt) in enumerate(zip(f_leaves, t_leaves)):
        assert_close(f.grad, tt.grad, atol=atol, rtol=1e-8, what=f"gradient of leaf {i}")
    tparams = dict(t.named_parameters())
    assert [n for n, _ in m.named_parameters()] == list(tparams)
    for name, p in m.named_parameters():
        want = tparams[name].grad if tparams[name].grad is not None else torch.zeros_like(tparams[name])
        got = p.grad if p.grad is not None else fg.zeros(p.shape, dtype=p.dtype)
        assert_close(got, want, atol=atol, rtol=1e-8, what=f"gradient of {name}")


def _run_layer(m: nn.Module, t: torch.nn.Module, device: str, x: np.ndarray, with_hx: bool, batch: tuple[int, ...],
               atol: float = 1e-10) -> None:
    """Forward both layers (with random initial states or none), compare output and final states, then all grads."""
    states = [randn(*s, seed=10 + i) for i, s in enumerate(_state_shapes(t, batch))] if with_hx else []
    fx, tx = fg.tensor(x, device=device, requires_grad=True), torch.tensor(x, requires_grad=True)
    fs = [fg.tensor(s, device=device, requires_grad=True) for s in states]
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    lstm = isinstance(t, torch.nn.LSTM)
    f_hx = (tuple(fs) if lstm else fs[0]) if with_hx else None
    t_hx = (tuple(ts) if lstm else ts[0]) if with_hx else None
    f_outs, t_outs = _flat(m(fx, f_hx)), _flat(t(tx, t_hx))
    assert len(f_outs) == len(t_outs) == (3 if lstm else 2)
    for i, (f, tt) in enumerate(zip(f_outs, t_outs)):
        assert f.device == device
        assert_close(f, tt, atol=atol, rtol=1e-8, what=["output", "h_n", "c_n"][i])
    _check_grads(m, t, [fx, *fs], [tx, *ts], f_outs, t_outs, device, atol)


# ---- sequence layers: outputs, final states and every gradient ----

# (num_layers, bidirectional, seq_len, batch_first, initial states given): every pair of option values occurs
CASES = [(1, False, 7, False, True), (1, True, 1, True, False), (2, False, 7, True, True),
         (2, True, 7, False, False), (2, True, 1, False, True), (1, False, 1, True, False)]


def _case_id(case: tuple) -> str:
    layers, bi, seq_len, batch_first, with_hx = case
    kind = f"l{layers}-{'bi' if bi else 'uni'}-L{seq_len}"
    return f"{kind}-{'bf' if batch_first else 'tm'}-{'hx' if with_hx else 'zeros'}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_matches_torch(device: str, layer: str, case: tuple) -> None:
    num_layers, bidirectional, seq_len, batch_first, with_hx = case
    m, t = _pair(layer, device, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    x = randn(*((BATCH, seq_len) if batch_first else (seq_len, BATCH)), IN, seed=1)
    _run_layer(m, t, device, x, with_hx, (BATCH,))


@pytest.mark.parametrize("case", [(2, True, False, True), (1, False, True, False)],
                         ids=["l2-bi-tm-hx", "l1-uni-bf-zeros"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_unbatched_input(device: str, layer: str, case: tuple) -> None:
    num_layers, bidirectional, batch_first, with_hx = case
    m, t = _pair(layer, device, seed=1, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    _run_layer(m, t, device, randn(6, IN, seed=2), with_hx, ())


@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_without_bias_and_batch_of_one(device: str, layer: str) -> None:
    m, t = _pair(layer, device, seed=2, num_layers=2, bias=False, bidirectional=True)
    assert not any("bias" in n for n, _ in m.named_parameters()) and not hasattr(m, "bias_ih_l0")
    _run_layer(m, t, device, randn(5, 1, IN, seed=3), True, (1,))


@pytest.mark.parametrize("layer", ["lstm", "gru", "rnn_tanh"])
def test_layer_float32(device: str, layer: str) -> None:
    name, extra = LAYERS[layer]
    torch.manual_seed(3)
    t = getattr(torch.nn, name)(IN, HID, num_layers=2, **extra)
    m = _from_torch(getattr(nn, name)(IN, HID, num_layers=2, **extra, device=device), t)
    x = randn(7, 2, IN, dtype=np.float32, seed=4)
    for f, tt in zip(_flat(m(fg.tensor(x, device=device))), _flat(t(torch.tensor(x)))):
        assert f.dtype == fg.float32
        assert_close(f, tt, atol=2e-6)


def test_long_sequence_output_is_ordered(device: str) -> None:
    """An odd, longer sequence exercises every branch of the tree that joins the time steps."""
    m, t = _pair("gru", device, seed=4)
    _run_layer(m, t, device, randn(11, 2, IN, seed=5), True, (2,))


# ---- dropout between layers ----

def test_dropout_one_in_training_matches_torch(device: str) -> None:
    """p=1 zeroes the first layer's output in both libraries, so training mode is comparable exactly."""
    m, t = _pair("lstm", device, seed=5, num_layers=2, dropout=1.0)
    assert m.training and t.training
    _run_layer(m, t, device, randn(4, 2, IN, seed=6), True, (2,))
    out_a = m(fg.tensor(randn(4, 2, IN, seed=6), device=device))[0]
    out_b = m(fg.zeros(4, 2, IN, dtype=fg.float64, device=device))[0]
    assert np.array_equal(out_a.numpy(), out_b.numpy())  # the last layer never sees the input


def test_dropout_only_in_training(device: str) -> None:
    m, t = _pair("gru", device, seed=6, num_layers=3, dropout=0.5)
    x = fg.tensor(randn(6, 4, IN, seed=7), device=device)
    fg.manual_seed(0)
    train_a = m(x)[0].numpy()
    fg.manual_seed(0)
    assert np.array_equal(train_a, m(x)[0].numpy())  # reproducible under a seed
    train_b = m(x)[0].numpy()
    m.eval()
    t.eval()
    eval_out = m(x)[0]
    assert_close(eval_out, t(torch.tensor(randn(6, 4, IN, seed=7)))[0], atol=1e-10)
    assert not np.allclose(train_a, eval_out.numpy()) and not np.allclose(train_a, train_b)
    m.train()
    out, h = m(x)
    out.sum().backward()  # the masked graph differentiates
    assert np.isfinite(m.weight_ih_l0.grad.numpy()).all() and m.weight_ih_l0.grad.numpy().any()


# ---- cells ----

CELLS = {"rnn_tanh": ("RNNCell", {}), "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}),
         "lstm": ("LSTMCell", {}), "gru": ("GRUCell", {})}


@pytest.mark.parametrize(("batch", "with_hx", "bias"), [((BATCH,), True, True), ((1,), False, False),
                                                      ((), True, False), ((), False, True)],
                         ids=["batch3-hx-bias", "batch1-zeros-nobias", "unbatched-hx-nobias", "unbatched-zeros-bias"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_matches_torch(device: str, cell: str, batch: tuple[int, ...], with_hx: bool, bias: bool) -> None:
    name, extra = CELLS[cell]
    torch.manual_seed(7)
    t = getattr(torch.nn, name)(IN, HID, bias=bias, **extra).double()
    m = _from_torch(getattr(nn, name)(IN, HID, bias=bias, **extra, dtype=fg.float64, device=device), t)
    assert (m.bias_ih is None) == (not bias)
    lstm = name == "LSTMCell"
    states = [randn(*batch, HID, seed=20 + i) for i in range(2 if lstm else 1)] if with_hx else []
    x = randn(*batch, IN, seed=8)
    fx, tx = fg.tensor(x, device=device, requires_grad=True), torch.tensor(x, requires_grad=True)
    fs = [fg.tensor(s, device=device, requires_grad=True) for s in states]
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    f_hx = (tuple(fs) if lstm else fs[0]) if with_hx else None
    t_hx = (tuple(ts) if lstm else ts[0]) if with_hx else None
    f_outs, t_outs = _flat(m(fx, f_hx)), _flat(t(tx, t_hx))
    assert len(f_outs) == len(t_outs)
    for f, tt in zip(f_outs, t_outs):
        assert_close(f, tt, atol=1e-12, rtol=1e-10)
    _check_grads(m, t, [fx, *fs], [tx, *ts], f_outs, t_outs, device, 1e-12)


def test_cells_unrolled_equal_the_layer(device: str) -> None:
    """LSTMCell stepped by hand gives LSTM's output when they hold the same weights."""
    layer = nn.LSTM(IN, HID, dtype=fg.float64, device=device)
    cell = nn.LSTMCell(IN, HID, dtype=fg.float64, device=device)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = fg.tensor(randn(5, 2, IN, seed=9), device=device)
    out, (h_n, c_n) = layer(x)
    h = c = fg.zeros(2, HID, dtype=fg.float64, device=device)
    for step in range(5):
        h, c = cell(x[step], (h, c))
        assert_close(h, out[step].numpy(), atol=1e-12)
    assert_close(h, h_n[0].numpy(), atol=1e-12)
    assert_close(c, c_n[0].numpy(), atol=1e-12)


# ---- state_dict, initialisation, repr ----

@pytest.mark.parametrize("layer", list(LAYERS))
def test_state_dict_round_trip_with_torch(device: str, layer: str) -> None:
    """fusegrad's own initial weights load into torch (same keys and shapes) and give torch's outputs; back again."""
    name, extra = LAYERS[layer]
    kwargs = dict(num_layers=2, bidirectional=True, **extra)
    fg.manual_seed(1)
    m = getattr(nn, name)(IN, HID, **kwargs, dtype=fg.float64, device=device)
    t = getattr(torch.nn, name)(IN, HID, **kwargs).double()
    sd = m.state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [(k, tuple(v.shape)) for k, v in t.state_dict().items()]
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in sd.items()})
    x = randn(6, 2, IN, seed=10)
    for f, tt in zip(_flat(m(fg.tensor(x, device=device))), _flat(t(torch.tensor(x)))):
        assert_close(f, tt, atol=1e-10)
    m2 = _from_torch(getattr(nn, name)(IN, HID, **kwargs, dtype=fg.float64, device=device), t)
    for (k, a), b in zip(m2.state_dict().items(), sd.values()):
        assert_close(a, b.numpy(), atol=0, rtol=0, what=k)


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_state_dict_keys_and_shapes(cell: str) -> None:
    name, extra = CELLS[cell]
    m, t = getattr(nn, name)(IN, HID, **extra), getattr(torch.nn, name)(IN, HID, **extra)
    assert [(k, v.shape) for k, v in m.state_dict().items()] == [(k, tuple(v.shape)) for k, v in t.state_dict().items()]
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_default_init_is_uniform_within_one_over_sqrt_hidden(name: str) -> None:
    hidden = 64
    m = getattr(nn, name)(48, hidden, **({"num_layers": 2} if not name.endswith("Cell") else {}))
    bound = 1 / math.sqrt(hidden)
    values = [p.numpy() for p in m.parameters()]
    assert len(values) == len(list(getattr(torch.nn, name)(48, hidden).parameters())) * \
        (1 if name.endswith("Cell") else 2)
    for v in values:
        assert v.dtype == np.float32 and np.abs(v).max() <= bound
    weight = values[0]  # U(-b, b): std b / sqrt(3), the whole range used
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.05 * bound and np.abs(weight).max() > 0.95 * bound
    assert not np.array_equal(values[0][:4, :4], values[1][:4, :4])


def test_repr_matches_torch() -> None:
    specs = [("RNN", (3, 4), {"nonlinearity": "relu"}), ("RNN", (3, 4, 2), {"dropout": 0.5}),
             ("LSTM", (3, 4), {"num_layers": 2, "proj_size": 2, "bidirectional": True, "batch_first": True,
                               "bias": False}),
             ("GRU", (3, 4), {}), ("RNNCell", (3, 4), {"nonlinearity": "relu", "bias": False}),
             ("LSTMCell", (3, 4), {}), ("GRUCell", (3, 4), {"bias": False})]
    for name, args, kwargs in specs:
        assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args, **kwargs))


def test_attributes_like_torch() -> None:
    m, t = nn.LSTM(3, 4, 2, bidirectional=True), torch.nn.LSTM(3, 4, 2, bidirectional=True)
    for attr in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "proj_size", "_flat_weights_names", "_all_weights"):
        assert getattr(m, attr) == getattr(t, attr), attr
    assert [[p.shape for p in ps] for ps in m.all_weights] == [[tuple(p.shape) for p in ps] for ps in t.all_weights]
    assert m.all_weights[1][0] is m.weight_ih_l0_reverse
    m.flatten_parameters()
    assert nn.RNN(3, 4, nonlinearity="relu").nonlinearity == "relu" and nn.RNNCell(3, 4).nonlinearity == "tanh"


# ---- errors ----

def test_constructor_errors_like_torch() -> None:
    for kwargs, err in [({"dropout": 1.5}, ValueError), ({"dropout": True}, ValueError),
                        ({"num_layers": 0}, ValueError), ({"bias": 1}, TypeError), ({"batch_first": None}, TypeError)]:
        for lib in (nn, torch.nn):
            with pytest.raises(err):
                lib.GRU(3, 4, **kwargs)
    for args, kwargs in [((0, 4), {}), ((3, 0), {}), ((3, 4), {"proj_size": 4}), ((3, 4), {"proj_size": -1})]:
        for lib in (nn, torch.nn):
            with pytest.raises(ValueError):
                lib.LSTM(*args, **kwargs)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.2)


def test_forward_shape_errors(device: str) -> None:
    m = nn.LSTM(3, 4, 2, device=device)
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D"):
        m(fg.zeros(2, 2, 2, 3, device=device))
    with pytest.raises(fg.ShapeError, match="input_size. Expected 3, got 5"):
        m(fg.zeros(2, 2, 5, device=device))
    with pytest.raises(fg.ShapeError, match=r"Expected hidden\[0\] size \(2, 2, 4\), got \[2, 3, 4\]"):
        m(fg.zeros(5, 2, 3, device=device), (fg.zeros(2, 3, 4, device=device), fg.zeros(2, 2, 4, device=device)))
    with pytest.raises(fg.ShapeError, match="should also be 2-D"):
        m(fg.zeros(5, 3, device=device), (fg.zeros(2, 1, 4, device=device), fg.zeros(2, 1, 4, device=device)))
    with pytest.raises(ValueError, match=r"expects \(h_0, c_0\), got 1"):
        m(fg.zeros(5, 2, 3, device=device), (fg.zeros(2, 2, 4, device=device),))
    with pytest.raises(fg.ShapeError, match="larger than 0"):
        m(fg.zeros(0, 2, 3, device=device))
    with pytest.raises(ValueError, match="does not match weight dtype"):
        m(fg.zeros(5, 2, 3, dtype=fg.float64, device=device))
    g = nn.GRU(3, 4, device=device)
    with pytest.raises(fg.ShapeError, match=r"Expected hidden size \(1, 2, 4\), got \[1, 2, 5\]"):
        g(fg.zeros(5, 2, 3, device=device), fg.zeros(1, 2, 5, device=device))
    cell = nn.GRUCell(3, 4, device=device)
    with pytest.raises(ValueError, match="GRUCell: Expected input to be 1D or 2D, got 3D"):
        cell(fg.zeros(1, 2, 3, device=device))
    with pytest.raises(fg.ShapeError, match="input_size"):
        cell(fg.zeros(2, 5, device=device))
    with pytest.raises(fg.ShapeError, match="hidden"):
        cell(fg.zeros(2, 3, device=device), fg.zeros(3, 4, device=device))


# ---- it learns ----

def test_lstm_learns_a_toy_sequence_task(device: str) -> None:
    """Regress the mean of a random sequence from the last hidden state: needs the recurrence to integrate."""
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(1, 8, batch_first=True, device=device)
            self.head = nn.Linear(8, 1, device=device)

        def forward(self, x: fg.Tensor) -> fg.Tensor:
            out, (h_n, _) = self.lstm(x)
            return self.head(h_n[-1])

    fg.manual_seed(0)
    model = Model()
    opt = fg.optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    data = rng.uniform(-1, 1, (32, 5, 1)).astype(np.float32)
    x, y = fg.tensor(data, device=device), fg.tensor(data.mean(1), device=device)
    losses = []
    for _ in range(20):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
