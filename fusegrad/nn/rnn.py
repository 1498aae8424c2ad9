"""Recurrent layers: RNN (tanh/relu), LSTM, GRU and their single-step cells, with PyTorch's arguments, parameter
names, gate order and initialisation, so state_dicts interchange with torch.

Each layer and direction projects the whole input sequence in one matmul, then loops over time for the recurrent
part only; the per-step outputs are joined with a balanced tree of `cat`s.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import fusegrad as fg
from fusegrad import Tensor

from . import init
from .module import Module, Parameter

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- the math of one time step, shared by the layers and the cells ----

def _project(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """x @ w_ih.T (+ bias) over the last dim, as one 2-D matmul whatever the leading dims."""
    lead = x.shape[:-1]
    out = (x.reshape(-1, x.shape[-1]) @ w_ih.T).reshape(*lead, w_ih.shape[0])
    return out if bias is None else out + bias


def _step(mode: str, gi: Tensor, h: Tensor, c: Tensor | None, w_hh: Tensor, b_hh: Tensor | None,
          w_hr: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """One recurrent step from the input's projection `gi` (N, gates*H) and the state; returns (h', c').

    For RNN and LSTM `gi` may already hold b_hh (then pass b_hh=None); GRU needs b_hh inside r * (W_hn h + b_hn).
    """
    gh = h @ w_hh.T
    if b_hh is not None:
        gh = gh + b_hh
    if mode == "RNN_TANH":
        return (gi + gh).tanh(), None
    if mode == "RNN_RELU":
        return (gi + gh).relu(), None
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        return (h if w_hr is None else h @ w_hr.T), c
    ir, iz, in_ = gi.chunk(3, -1)
    hr, hz, hn = gh.chunk(3, -1)
    r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
    n = (in_ + r * hn).tanh()
    return n + z * (h - n), None  # (1 - z) * n + z * h with one multiply


def _unbind_time(x: Tensor) -> list[Tensor]:
    """x.unbind(0) as a balanced tree of halvings, so the backward pads each slice to its parent's length, not
    to the full sequence (which is L^2 work)."""
    if x.shape[0] <= 2:
        return list(x.unbind(0))
    mid = x.shape[0] // 2
    return _unbind_time(x[:mid]) + _unbind_time(x[mid:])


def _stack_time(steps: list[Tensor]) -> Tensor:
    """Stack along a new dim 0 as a balanced tree: a flat cat pads every piece to the full length (L^2 work)."""
    if len(steps) <= 2:
        return fg.stack(steps, 0)
    mid = len(steps) // 2
    return fg.cat([_stack_time(steps[:mid]), _stack_time(steps[mid:])], 0)


# ---- multi-layer, optionally bidirectional sequence layers ----

class RNNBase(Module):
    """What RNN, LSTM and GRU share: parameters per layer and direction (torch's names), checks, the time loop."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: str | None = None, dtype: Any = None):
        super().__init__()
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                             "being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          stacklevel=3)
        for name, value, kind in (("bias", bias, bool), ("batch_first", batch_first, bool),
                                  ("input_size", input_size, int), ("hidden_size", hidden_size, int)):
            if not isinstance(value, kind):
                raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        gate_size, directions = _GATES[mode] * hidden_size, 2 if bidirectional else 1
        real_hidden = proj_size or hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, real_hidden)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = [name + suffix for name in shapes]
                for name, shape in zip(names, shapes.values()):
                    setattr(self, name, Parameter(fg.empty(*shape, device=device, dtype=dtype)))
                self._flat_weights_names += names
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op, as in torch off cuDNN: parameters are separate tensors already."""

    @property
    def all_weights(self) -> list[list[Parameter]]:
        """Parameters grouped per layer and direction, in torch's order."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)

    # ---- forward machinery ----

    def _state_sizes(self) -> list[int]:
        """Last dim of each state: h (proj_size when projecting), then c for LSTM."""
        h = self.proj_size or self.hidden_size
        return [h, self.hidden_size] if self.mode == "LSTM" else [h]

    def _prepare(self, input: Tensor, hx: tuple[Tensor, ...] | None) -> tuple[Tensor, list[Tensor], bool]:
        """Check shapes and dtypes; return the input as (L, N, H_in), the states as (D*layers, N, H), is_batched."""
        kind = "RNN" if self.mode.startswith("RNN") else self.mode
        if input.ndim not in (2, 3):
            raise ValueError(f"{kind}: Expected input to be 2D or 3D, got {input.ndim}D "
                             f"{'tensor ' if kind == 'RNN' else ''}instead")
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). Convert "
                             f"input: input.to({weight.dtype}), or convert model: model.to({input.dtype})")
        batched = input.ndim == 3
        # unbatched is a batch of one, laid out time-major whatever batch_first says
        x = (input.transpose(0, 1) if self.batch_first else input) if batched else input.unsqueeze(1)
        if x.shape[-1] != self.input_size:
            raise fg.ShapeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                                f"{x.shape[-1]}")
        if x.shape[0] == 0:
            raise fg.ShapeError("Expected sequence length to be larger than 0 in RNN")
        lead = (self.num_layers * (2 if self.bidirectional else 1), x.shape[1])
        if hx is None:
            return x, [fg.zeros(*lead, size, dtype=x.dtype, device=x.device) for size in self._state_sizes()], batched
        if len(hx) != len(self._state_sizes()):
            raise ValueError(f"{kind} expects {'(h_0, c_0)' if self.mode == 'LSTM' else 'one h_0'}, got {len(hx)} "
                             "initial states")
        want = 3 if batched else 2
        if any(h.ndim != want for h in hx):
            dims = ", ".join(f"{h.ndim}-D" for h in hx)
            what = "hx" if len(hx) == 1 else "hx and cx"
            raise fg.ShapeError(f"For {'batched 3-D' if batched else 'unbatched 2-D'} input, {what} should also be "
                                f"{want}-D but got {dims if len(hx) == 1 else '(' + dims + ')'} "
                                f"tensor{'s' if len(hx) > 1 else ''}")
        states = [h if batched else h.unsqueeze(1) for h in hx]
        for i, (h, size) in enumerate(zip(states, self._state_sizes())):
            if h.shape != (*lead, size):
                which = "hidden" if len(states) == 1 else f"hidden[{i}]"
                raise fg.ShapeError(f"Expected {which} size {(*lead, size)}, got {list(h.shape)}")
        return x, states, batched

    def _direction(self, proj: Tensor, h: Tensor, c: Tensor | None, suffix: str,
                   reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        """Run one direction of one layer over the projected inputs (L, N, gates*H); (outputs, h_n, c_n)."""
        w_hh = getattr(self, "weight_hh" + suffix)
        b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
        w_hr = getattr(self, "weight_hr" + suffix) if self.proj_size else None
        steps = _unbind_time(proj)
        outs: list[Tensor] = [None] * len(steps)  # type: ignore[list-item]
        for t in (reversed(range(len(steps))) if reverse else range(len(steps))):
            h, c = _step(self.mode, steps[t], h, c, w_hh, b_hh if self.mode == "GRU" else None, w_hr)
            outs[t] = h
        return _stack_time(outs), h, c

    def _run(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Every layer and direction over x (L, N, H_in); returns the last layer's output and the final states."""
        directions = 2 if self.bidirectional else 1
        h0 = states[0].unbind(0)
        c0 = states[1].unbind(0) if len(states) > 1 else [None] * len(h0)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(directions):
                suffix, k = f"_l{layer}" + ("_reverse" if direction else ""), layer * directions + direction
                b_ih = getattr(self, "bias_ih" + suffix) if self.bias else None
                if b_ih is not None and self.mode != "GRU":  # fold b_hh into the one big projection
                    b_ih = b_ih + getattr(self, "bias_hh" + suffix)
                proj = _project(x, getattr(self, "weight_ih" + suffix), b_ih)
                out, h, c = self._direction(proj, h0[k], c0[k], suffix, reverse=direction == 1)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if directions == 1 else fg.cat(outs, -1)
            if layer < self.num_layers - 1:
                x = fg.dropout(x, self.dropout, self.training)
        finals = [fg.stack(h_n, 0)] + ([fg.stack(c_n, 0)] if len(states) > 1 else [])
        return x, finals

    def _forward(self, input: Tensor, hx: tuple[Tensor, ...] | None) -> tuple[Tensor, list[Tensor]]:
        x, states, batched = self._prepare(input, hx)
        out, finals = self._run(x, states)
        if not batched:
            return out.squeeze(1), [s.squeeze(1) for s in finals]
        return (out.transpose(0, 1) if self.batch_first else out), finals


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu, stacked num_layers deep.

    Input (L, N, H_in), (N, L, H_in) with batch_first, or unbatched (L, H_in); hx (D*num_layers, [N,] H).
    Returns (output (L, N, D*H), h_n (D*num_layers, N, H)).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: str | None = None, dtype: Any = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out, (h_n,) = self._forward(input, None if hx is None else (hx,))
        return out, h_n


class LSTM(RNNBase):
    """Long short-term memory, gates (i, f, g, o) stacked in weight_ih/weight_hh like torch; optional projection
    of h to proj_size (weight_hr). Returns (output, (h_n, c_n))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: str | None = None, dtype: Any = None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)

    def forward(self, input: Tensor,
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, (h_n, c_n) = self._forward(input, None if hx is None else tuple(hx))
        return out, (h_n, c_n)


class GRU(RNNBase):
    """Gated recurrent unit, gates (r, z, n) stacked like torch: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h. Returns (output, h_n)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: str | None = None, dtype: Any = None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out, (h_n,) = self._forward(input, None if hx is None else (hx,))
        return out, h_n


# ---- single-step cells ----

class RNNCellBase(Module):
    """What the cells share: weight_ih (chunks*H, H_in), weight_hh (chunks*H, H), optional biases, torch's init."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device: str | None = None,
                 dtype: Any = None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = Parameter(fg.empty(num_chunks * hidden_size, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(fg.empty(num_chunks * hidden_size, hidden_size, device=device, dtype=dtype))
        for name in ("bias_ih", "bias_hh"):
            self.register_parameter(name, Parameter(fg.empty(num_chunks * hidden_size, device=device, dtype=dtype))
                                    if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.bias is not True:
            s += ", bias={bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)

    def _prepare(self, input: Tensor, hx: tuple[Tensor, ...] | None, n_states: int) -> tuple[Tensor, list[Tensor],
                                                                                             bool]:
        """Check dims and sizes; return input (N, H_in), states (N, H) each (zeros when hx is None), is_batched."""
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        for i, h in enumerate(hx or ()):
            if h.ndim not in (1, 2):
                what = "hidden" if n_states == 1 else f"hx[{i}]"
                raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {h.ndim}D instead")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if x.shape[1] != self.input_size:
            raise fg.ShapeError(f"input has inconsistent input_size: got {x.shape[1]} expected {self.input_size}")
        if hx is None:
            zeros = fg.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            return x, [zeros] * n_states, batched
        states = [h if batched else h.unsqueeze(0) for h in hx]
        for i, h in enumerate(states):
            if h.shape != (x.shape[0], self.hidden_size):
                raise fg.ShapeError(f"hidden{'' if n_states == 1 else f'[{i}]'} has shape {list(h.shape)}, expected "
                                    f"{[x.shape[0], self.hidden_size]} for input batch {x.shape[0]}")
        return x, states, batched

    def _cell(self, mode: str, input: Tensor, hx: tuple[Tensor, ...] | None) -> list[Tensor]:
        n_states = 2 if mode == "LSTM" else 1
        x, states, batched = self._prepare(input, hx, n_states)
        gi = _project(x, self.weight_ih, self.bias_ih)
        h, c = _step(mode, gi, states[0], states[1] if n_states == 2 else None, self.weight_hh, self.bias_hh)
        out = [h, c][:n_states]
        return out if batched else [s.squeeze(0) for s in out]


class RNNCell(RNNCellBase):
    """One Elman step: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu. Input (N, H_in) or (H_in)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: str | None = None, dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        mode = "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"
        return self._cell(mode, input, None if hx is None else (hx,))[0]


class LSTMCell(RNNCellBase):
    """One LSTM step, gates (i, f, g, o); returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: str | None = None,
                 dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h, c = self._cell("LSTM", input, None if hx is None else tuple(hx))
        return h, c


class GRUCell(RNNCellBase):
    """One GRU step, gates (r, z, n); returns h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: str | None = None,
                 dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._cell("GRU", input, None if hx is None else (hx,))[0]
