"""The training benchmark's workloads, written for fusegrad, torch and JAX, with the same weights and batches.

fusegrad's and torch's models come from one source (`build_model(lib, ...)` with `lib` = `fusegrad` or `torch`),
so their architectures and `state_dict` keys are equal by construction; the JAX models are pure `jax.numpy`
functions of a dict keyed by those same names, with SGD and AdamW written out as torch computes them. Every
framework starts from the torch model's initial weights (`initial_weights`) and trains on the same pre-generated
batches (`make_batches`). A `Trainer` runs one optimizer step per call and returns the loss only once the step's
work is finished, so a timer around it measures the whole step.

Imports numpy, torch and fusegrad: `bench/train.py` sets thread counts before importing this module.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

import fusegrad as fg

try:  # optional: the JAX column and tests skip without it
    import jax
    import jax.numpy as jnp
except ImportError:
    jax = jnp = None

ADAMW = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}  # torch's AdamW defaults
SGD_LR = 0.01


@dataclass(frozen=True)
class GPTShape:
    """The tiny GPT's size: byte vocabulary, context (= the training sequence length), width, heads, layers."""

    vocab: int = 256
    context: int = 64
    dim: int = 128
    heads: int = 4
    layers: int = 4


@dataclass(frozen=True)
class Workload:
    """One benchmarked training step: which model, batch size and optimizer (and the GPT's size)."""

    name: str
    model: str  # "mlp", "lenet" or "gpt"
    batch: int
    optimizer: str  # "sgd" or "adamw"
    gpt: GPTShape = GPTShape()


WORKLOADS = {w.name: w for w in [
    Workload("mlp1", "mlp", 1, "sgd"),
    Workload("mlp64", "mlp", 64, "sgd"),
    Workload("mlp256", "mlp", 256, "sgd"),
    Workload("lenet64", "lenet", 64, "sgd"),
    Workload("gpt16", "gpt", 16, "adamw"),
]}


# ---- data ----

def make_batches(workload: Workload, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` (input, target) batches from a fixed seed: MNIST-shaped pixels in [0, 1) with labels 0..9 for the
    MLP and LeNet, random byte tokens with next-token targets for the GPT."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        if workload.model == "gpt":
            shape = (workload.batch, workload.gpt.context + 1)
            tokens = rng.integers(0, workload.gpt.vocab, size=shape, dtype=np.int64)
            out.append((tokens[:, :-1].copy(), tokens[:, 1:].copy()))
            continue
        shape = (workload.batch, 784) if workload.model == "mlp" else (workload.batch, 1, 28, 28)
        out.append((rng.random(shape, dtype=np.float32), rng.integers(0, 10, size=workload.batch, dtype=np.int64)))
    return out


# ---- fusegrad and torch models: one source, `lib` is the fusegrad or torch module ----

def _mlp(lib: ModuleType, workload: Workload) -> Any:
    nn = lib.nn
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def _lenet(lib: ModuleType, workload: Workload) -> Any:
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10))


def _gpt(lib: ModuleType, workload: Workload) -> Any:
    nn, functional = lib.nn, lib.nn.functional
    size = workload.gpt
    dim, heads = size.dim, size.heads

    class Block(nn.Module):
        """Pre-norm transformer block: causal self-attention, then a 4x GELU MLP, each with a residual."""

        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.qkv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.ln2, self.fc, self.out = nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

        def forward(self, x: Any) -> Any:
            b, t, _ = x.shape
            qkv = self.qkv(self.ln1(x)).reshape(b, t, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
            attn = functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
            x = x + self.proj(attn.transpose(1, 2).reshape(b, t, dim))
            return x + self.out(functional.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        """Token + learned position embeddings, the blocks, a final LayerNorm and a vocabulary head."""

        def __init__(self) -> None:
            super().__init__()
            self.tok, self.pos = nn.Embedding(size.vocab, dim), nn.Embedding(size.context, dim)
            self.blocks = nn.Sequential(*[Block() for _ in range(size.layers)])
            self.ln_f, self.head = nn.LayerNorm(dim), nn.Linear(dim, size.vocab, bias=False)

        def forward(self, idx: Any) -> Any:
            x = self.tok(idx) + self.pos(lib.arange(idx.shape[1], device=idx.device))
            return self.head(self.ln_f(self.blocks(x)))

    return GPT()


MODEL_BUILDERS: dict[str, Callable[[ModuleType, Workload], Any]] = {"mlp": _mlp, "lenet": _lenet, "gpt": _gpt}


def build_model(lib: ModuleType, workload: Workload) -> Any:
    """The workload's model as a `lib.nn.Module` (lib is `fusegrad` or `torch`), with lib's default init."""
    return MODEL_BUILDERS[workload.model](lib, workload)


def initial_weights(workload: Workload, seed: int = 0) -> dict[str, np.ndarray]:
    """The torch model's initial state_dict (seeded) as float32 arrays: every framework starts from these."""
    torch.manual_seed(seed)
    return {k: v.detach().numpy().copy() for k, v in build_model(torch, workload).state_dict().items()}


def _optimizer(lib: ModuleType, workload: Workload, params: Any) -> Any:
    if workload.optimizer == "sgd":
        return lib.optim.SGD(params, lr=SGD_LR)
    return lib.optim.AdamW(params, **ADAMW)


def _step_fn(lib: ModuleType, model: Any, opt: Any) -> Callable[[Any, Any], Any]:
    """The training step every framework runs: forward, cross-entropy (over every position for the GPT),
    backward, update; returns the loss."""
    cross_entropy = lib.nn.functional.cross_entropy

    def step(x: Any, y: Any) -> Any:
        logits = model(x)
        loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


# ---- trainers ----

@dataclass
class Trainer:
    """`step(i)`: one optimizer step on batch i (modulo the batch count), returning the loss as a float once all of
    the step's work (loss and updated parameters) is computed; `weights()`: the current parameters by name."""

    step: Callable[[int], float]
    weights: Callable[[], dict[str, np.ndarray]]


def torch_trainer(workload: Workload, weights: dict[str, np.ndarray], batches: list, device: str = "cpu") -> Trainer:
    """torch eager: synchronous on CPU, so the loss's `.item()` ends the step."""
    model = build_model(torch, workload).to(device)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
    step = _step_fn(torch, model, _optimizer(torch, workload, model.parameters()))
    data = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in batches]
    return Trainer(lambda i: step(*data[i % len(data)]).item(),
                   lambda: {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


def fusegrad_trainer(workload: Workload, weights: dict[str, np.ndarray], batches: list, device: str = "cpu",
                     jit: bool = False) -> Trainer:
    """fusegrad eager, or the same step under `fg.jit`. The optimizer realizes the updated parameters and state;
    `.item()` realizes the loss, so the step is finished when it returns."""
    model = build_model(fg, workload).to(device)
    model.load_state_dict(weights)
    step = _step_fn(fg, model, _optimizer(fg, workload, model.parameters()))
    if jit:
        step = fg.jit(step)
    data = [(fg.tensor(x, device=device).realize(), fg.tensor(y, device=device).realize()) for x, y in batches]
    return Trainer(lambda i: step(*data[i % len(data)]).item(),
                   lambda: {k: v.numpy() for k, v in model.state_dict().items()})


# ---- JAX: pure functions of a {state_dict key: array} dict ----

def _linear(p: dict, name: str, x: Any) -> Any:
    y = x @ p[f"{name}.weight"].T
    return y + p[f"{name}.bias"] if f"{name}.bias" in p else y


def _layer_norm(p: dict, name: str, x: Any, eps: float = 1e-5) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased, like torch
    return (x - mean) / jnp.sqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def _max_pool2(x: Any) -> Any:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def _conv(p: dict, name: str, x: Any) -> Any:
    y = jax.lax.conv_general_dilated(x, p[f"{name}.weight"], (1, 1), "VALID",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p[f"{name}.bias"][None, :, None, None]


def _jax_mlp(p: dict, x: Any, workload: Workload) -> Any:
    x = jax.nn.relu(_linear(p, "0", x))
    return _linear(p, "4", jax.nn.relu(_linear(p, "2", x)))


def _jax_lenet(p: dict, x: Any, workload: Workload) -> Any:
    x = _max_pool2(jax.nn.relu(_conv(p, "0", x)))
    x = _max_pool2(jax.nn.relu(_conv(p, "3", x))).reshape(x.shape[0], -1)
    x = jax.nn.relu(_linear(p, "9", jax.nn.relu(_linear(p, "7", x))))
    return _linear(p, "11", x)


def _causal_attention(q: Any, k: Any, v: Any) -> Any:
    t = q.shape[-2]
    scores = (q @ k.swapaxes(-1, -2)) / math.sqrt(q.shape[-1])
    scores = jnp.where(jnp.tril(jnp.ones((t, t), dtype=bool)), scores, -jnp.inf)
    return jax.nn.softmax(scores, axis=-1) @ v


def _jax_gpt(p: dict, idx: Any, workload: Workload) -> Any:
    b, t = idx.shape
    dim, heads = workload.gpt.dim, workload.gpt.heads
    x = p["tok.weight"][idx] + p["pos.weight"][:t]
    for i in range(workload.gpt.layers):
        blk = f"blocks.{i}"
        qkv = _linear(p, f"{blk}.qkv", _layer_norm(p, f"{blk}.ln1", x))
        qkv = qkv.reshape(b, t, 3, heads, dim // heads).transpose(2, 0, 3, 1, 4)
        attn = _causal_attention(qkv[0], qkv[1], qkv[2])
        x = x + _linear(p, f"{blk}.proj", attn.transpose(0, 2, 1, 3).reshape(b, t, dim))
        hidden = jax.nn.gelu(_linear(p, f"{blk}.fc", _layer_norm(p, f"{blk}.ln2", x)), approximate=False)
        x = x + _linear(p, f"{blk}.out", hidden)
    return _linear(p, "head", _layer_norm(p, "ln_f", x))


JAX_MODELS: dict[str, Callable[[dict, Any, Workload], Any]] = {"mlp": _jax_mlp, "lenet": _jax_lenet, "gpt": _jax_gpt}


def _jax_loss(workload: Workload) -> Callable[[dict, Any, Any], Any]:
    model = JAX_MODELS[workload.model]

    def loss(p: dict, x: Any, y: Any) -> Any:
        logits = model(p, x, workload)
        logp = jax.nn.log_softmax(logits.reshape(-1, logits.shape[-1]), axis=-1)
        return -jnp.take_along_axis(logp, y.reshape(-1, 1), axis=1).mean()
    return loss


def _jax_sgd(p: dict, g: dict, state: dict) -> tuple[dict, dict]:
    return {k: p[k] - SGD_LR * g[k] for k in p}, state


def _jax_adamw(p: dict, g: dict, state: dict) -> tuple[dict, dict]:
    """torch.optim.AdamW's update: decoupled decay, then Adam with bias corrections."""
    lr, (b1, b2), eps, wd = ADAMW["lr"], ADAMW["betas"], ADAMW["eps"], ADAMW["weight_decay"]
    step = state["step"] + 1
    m = {k: b1 * state["m"][k] + (1 - b1) * g[k] for k in p}
    v = {k: b2 * state["v"][k] + (1 - b2) * g[k] * g[k] for k in p}
    step_size, bc2_sqrt = lr / (1 - b1**step), jnp.sqrt(1 - b2**step)
    new = {k: p[k] * (1 - lr * wd) - step_size * m[k] / (jnp.sqrt(v[k]) / bc2_sqrt + eps) for k in p}
    return new, {"step": step, "m": m, "v": v}


def _jax_optimizer_state(workload: Workload, params: dict) -> dict:
    if workload.optimizer == "sgd":
        return {}
    def zeros() -> dict:  # m and v need distinct buffers: both are donated
        return {k: jnp.zeros_like(v) for k, v in params.items()}
    return {"step": jnp.zeros((), jnp.float32), "m": zeros(), "v": zeros()}


def jax_trainer(workload: Workload, weights: dict[str, np.ndarray], batches: list) -> Trainer:
    """`jax.jit` of value_and_grad plus the hand-written update, parameters and state donated (updated in place,
    as torch's are); each step blocks until parameters, optimizer state and loss are all computed."""
    if jax is None:
        raise ImportError("jax is not installed (pip install jax)")
    loss_fn = _jax_loss(workload)
    update = _jax_sgd if workload.optimizer == "sgd" else _jax_adamw

    def train_step(p: dict, state: dict, x: Any, y: Any) -> tuple[dict, dict, Any]:
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        return *update(p, grads, state), loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    # int64 targets become int32 (JAX's default without x64), which changes no value
    data = [(jax.device_put(x), jax.device_put(y.astype(np.int32))) for x, y in batches]
    carry = {"params": {k: jnp.asarray(v) for k, v in weights.items()}}
    carry["state"] = _jax_optimizer_state(workload, carry["params"])

    def step(i: int) -> float:
        params, state, loss = train_step(carry["params"], carry["state"], *data[i % len(data)])
        jax.block_until_ready((params, state, loss))
        carry["params"], carry["state"] = params, state
        return float(loss)

    return Trainer(step, lambda: {k: np.asarray(v) for k, v in carry["params"].items()})
