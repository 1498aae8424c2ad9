"""A tiny decoder-only transformer (nanoGPT-style) trained on Alice's Adventures in Wonderland, character by
character, with AdamW; then sampled.

Run: python -m fusegrad.examples.char_gpt [--steps 1500] [--text PATH] [--plot loss.png] [--no-jit]
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.examples.text import CharVocab, Result, load_text, report, sample_index, train_chars

F = nn.functional


@dataclass(frozen=True)
class GPTConfig:
    """The model's sizes."""

    vocab_size: int
    block_size: int = 64  # the longest context: positions 0 .. block_size - 1
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions 0 .. t only."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd ({config.n_embd}) must be a multiple of n_head ({config.n_head})")
        self.n_head, self.dropout = config.n_head, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # query, key and value in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        B, T, C = x.shape  # noqa: N806 - batch, time, channels, as in nanoGPT
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size): each head attends separately
        q, k, v = (t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)  # the heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The position-wise feed-forward network: expand 4x, GELU, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token and position embeddings, n_layer blocks, a final LayerNorm and the logits of the next character."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for block in self.h:  # GPT-2: residual projections scaled down by the depth they accumulate over
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2's initialisation: weights N(0, 0.02), biases zero."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: fg.Tensor) -> fg.Tensor:
        """idx int64 (batch, T) with T <= block_size -> logits (batch, T, vocab_size)."""
        _, T = idx.shape  # noqa: N806
        if T > self.config.block_size:
            raise ValueError(f"GPT: a sequence of {T} is longer than block_size {self.config.block_size}")
        pos = fg.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def adamw(model: GPT, lr: float, weight_decay: float) -> optim.AdamW:
    """AdamW that decays the matrices (linear and embedding weights) but not biases and LayerNorm gains."""
    params = list(model.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                       lr=lr, betas=(0.9, 0.99))


class Sampler:
    """Samples text from a GPT one character at a time from the last block_size characters.

    The model always reads a full block (1, block_size): while the context is shorter the unused tail holds zeros,
    which causal attention keeps from affecting the logits at the context's last position. So every call has the
    same shapes and, under `jit`, compiles once and then replays.
    """

    def __init__(self, model: GPT, vocab: CharVocab, seed: int = 0, jit: bool = True):
        self.model, self.vocab = model, vocab
        self.rng = np.random.default_rng(seed)  # one stream for every sample, so each sample differs
        self.logits = fg.jit(self.block_logits) if jit else self.block_logits

    def block_logits(self, x: fg.Tensor) -> fg.Tensor:
        """The logits (block_size, vocab) after each position of x (1, block_size)."""
        with fg.no_grad():
            return self.model(x)[0]

    def __call__(self, prompt: str, length: int, temperature: float = 0.8) -> str:
        """`length` characters sampled after `prompt` (which must be non-empty)."""
        if not prompt:
            raise ValueError("the prompt must hold at least one character")
        block = self.model.config.block_size
        ids = list(self.vocab.encode(prompt))
        self.model.eval()
        out: list[int] = []
        while len(out) < length:
            context = ids[-block:]
            window = np.zeros((1, block), dtype=np.int64)
            window[0, :len(context)] = context
            logits = self.logits(fg.tensor(window)).numpy()[len(context) - 1]
            char = sample_index(logits, temperature, self.rng)
            ids.append(char)
            out.append(char)
        self.model.train()
        return self.vocab.decode(out)


def train(steps: int = 1500, batch_size: int = 32, block_size: int = 64, n_layer: int = 2, n_head: int = 4,
          n_embd: int = 64, dropout: float = 0.0, lr: float = 3e-3, weight_decay: float = 0.1, seed: int = 0,
          text_path: str | None = None, prompt: str = "Alice ", sample_length: int = 300, temperature: float = 0.8,
          samples: int = 2, plot: str | None = None, jit: bool = True) -> tuple[Result, CharVocab]:
    """Train a GPT with AdamW on random windows of block_size characters; returns the result and the vocabulary."""
    fg.manual_seed(seed)
    text = load_text(text_path)
    vocab = CharVocab.of(text)
    vocab.encode(prompt)  # a prompt character missing from the text fails now, not after training
    config = GPTConfig(len(vocab), block_size, n_layer, n_head, n_embd, dropout)
    model = GPT(config)
    opt = adamw(model, lr, weight_decay)
    print(f"{len(text)} characters, vocabulary of {len(vocab)}; GPT {n_layer} layers x {n_head} heads, width "
          f"{n_embd}, context {block_size}: {sum(p.numel() for p in model.parameters())} parameters")
    sampler = Sampler(model, vocab, seed, jit)
    result = train_chars(model, opt, vocab.encode(text), lambda: prompt + sampler(prompt, sample_length, temperature),
                         steps=steps, batch_size=batch_size, seq_len=block_size, seed=seed, jit=jit,
                         samples=samples, title=f"char-GPT {n_layer}x{n_embd}", plot=plot)
    return result, vocab


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", "--block-size", dest="block_size", type=int, default=64,
                        help="characters per training window, the model's context length")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--embd", type=int, default=64, help="the model's width")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text", metavar="PATH", help="train on this UTF-8 text file instead of the shipped one")
    parser.add_argument("--prompt", default="Alice ")
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--plot", metavar="PNG", help="write the loss curve to this file")
    parser.add_argument("--no-jit", action="store_true", help="run every step eagerly instead of with fg.jit")
    args = parser.parse_args(argv)
    try:  # the user's mistakes (a missing file, a prompt outside the text) as a usage error, not a traceback
        CharVocab.of(load_text(args.text)).encode(args.prompt)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    result, _ = train(args.steps, args.batch_size, args.block_size, args.layers, args.heads, args.embd, args.dropout,
                      args.lr, args.weight_decay, args.seed, args.text, args.prompt, args.sample_length,
                      args.temperature, plot=args.plot, jit=not args.no_jit)
    report(result, args.batch_size, args.block_size, not args.no_jit)


if __name__ == "__main__":
    main()
