"""A character-level LSTM language model trained on Alice's Adventures in Wonderland, then sampled.

Run: python -m fusegrad.examples.char_rnn [--steps 1500] [--text PATH] [--plot loss.png] [--no-jit]
"""
from __future__ import annotations

import argparse

import numpy as np

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.examples.text import CharVocab, Result, load_text, report, sample_index, train_chars


class CharLSTM(nn.Module):
    """Embedding -> LSTM -> Linear: the logits of the next character after every position."""

    def __init__(self, vocab_size: int, embed: int = 64, hidden: int = 128, layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x: fg.Tensor, state: tuple[fg.Tensor, fg.Tensor] | None = None
                ) -> tuple[fg.Tensor, tuple[fg.Tensor, fg.Tensor]]:
        """x int64 (batch, seq_len) -> (logits (batch, seq_len, vocab), (h, c) after the last position)."""
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


class Logits(nn.Module):
    """The model seen by the training loop: only the logits (the final state is not needed there)."""

    def __init__(self, model: CharLSTM):
        super().__init__()
        self.model = model

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        return self.model(x)[0]


class Sampler:
    """Samples text from a CharLSTM one character at a time, carrying the LSTM state.

    Every call of the one-character step has the same shapes, so under `jit` it compiles once and then replays.
    """

    def __init__(self, model: CharLSTM, vocab: CharVocab, seed: int = 0, jit: bool = True):
        self.model, self.vocab = model, vocab
        self.rng = np.random.default_rng(seed)  # one stream for every sample, so each sample differs
        self.advance = fg.jit(self.one_char) if jit else self.one_char

    def one_char(self, x: fg.Tensor, h: fg.Tensor, c: fg.Tensor) -> tuple[fg.Tensor, fg.Tensor, fg.Tensor]:
        """Logits (vocab,) of the character after x (1, 1), and the new state."""
        with fg.no_grad():
            logits, (h, c) = self.model(x, (h, c))
        return logits.reshape(-1), h, c

    def __call__(self, prompt: str, length: int, temperature: float = 0.8) -> str:
        """`length` characters sampled after `prompt` (which must be non-empty)."""
        if not prompt:
            raise ValueError("the prompt must hold at least one character")
        ids = list(self.vocab.encode(prompt))
        lstm = self.model.lstm
        h = c = fg.zeros(lstm.num_layers, 1, lstm.hidden_size)
        self.model.eval()
        out: list[int] = []
        for char in ids[:-1]:  # read the prompt into the state
            _, h, c = self.advance(fg.tensor([[char]]), h, c)
            h, c = fg.tensor(h.numpy()), fg.tensor(c.numpy())  # a replay's outputs are overwritten by the next one
        char = ids[-1]
        while len(out) < length:
            logits, h, c = self.advance(fg.tensor([[char]]), h, c)
            char = sample_index(logits.numpy(), temperature, self.rng)
            out.append(char)
            h, c = fg.tensor(h.numpy()), fg.tensor(c.numpy())
        self.model.train()
        return self.vocab.decode(out)


def train(steps: int = 1500, batch_size: int = 32, seq_len: int = 64, embed: int = 64, hidden: int = 128,
          layers: int = 1, lr: float = 3e-3, seed: int = 0, text_path: str | None = None, prompt: str = "Alice ",
          sample_length: int = 300, temperature: float = 0.8, samples: int = 2, plot: str | None = None,
          jit: bool = True) -> tuple[Result, CharVocab]:
    """Train a CharLSTM with Adam on random windows of the text; returns the run's result and the vocabulary."""
    fg.manual_seed(seed)
    text = load_text(text_path)
    vocab = CharVocab.of(text)
    vocab.encode(prompt)  # a prompt character missing from the text fails now, not after training
    model = CharLSTM(len(vocab), embed, hidden, layers)
    opt = optim.Adam(model.parameters(), lr=lr)
    print(f"{len(text)} characters, vocabulary of {len(vocab)}; LSTM {embed}->{hidden} x{layers}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    sampler = Sampler(model, vocab, seed, jit)
    result = train_chars(Logits(model), opt, vocab.encode(text),
                         lambda: prompt + sampler(prompt, sample_length, temperature),
                         steps=steps, batch_size=batch_size, seq_len=seq_len, seed=seed, jit=jit, samples=samples,
                         title=f"char-LSTM {hidden}", plot=plot)
    return result, vocab


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64, help="characters per training window (unrolled steps)")
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
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
    result, _ = train(args.steps, args.batch_size, args.seq_len, args.embed, args.hidden, args.layers, args.lr,
                      args.seed, args.text, args.prompt, args.sample_length, args.temperature, plot=args.plot,
                      jit=not args.no_jit)
    report(result, args.batch_size, args.seq_len, not args.no_jit)


if __name__ == "__main__":
    main()
