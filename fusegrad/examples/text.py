"""What the character-level examples (char_rnn, char_gpt) share: the shipped text, a character vocabulary, random
training windows, sampling with a temperature, and the training loop around a `step(x, y) -> loss` function.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fusegrad as fg
from fusegrad import nn, optim

from .training import plot_losses, progress

TEXT_NAME = "alice_in_wonderland.txt"  # public domain; origin and license in data/text/README.md


def default_text_path() -> Path:
    """`data/text/alice_in_wonderland.txt` of the source checkout this fusegrad is imported from."""
    return Path(__file__).resolve().parents[2] / "data" / "text" / TEXT_NAME


def load_text(path: str | os.PathLike | None = None) -> str:
    """The text at `path` (None: the shipped one), read as UTF-8 with any line endings turned into '\\n'.

    A missing file raises FileNotFoundError naming the path it looked at; an empty one raises ValueError.
    """
    file = default_text_path() if path is None else Path(path).expanduser()
    if not file.is_file():
        hint = ("the default text ships with a source checkout of fusegrad (data/text/); pass --text PATH to use "
                "another file") if path is None else "--text must name an existing UTF-8 text file"
        raise FileNotFoundError(f"text file not found: {file} ({hint})")
    text = file.read_text(encoding="utf-8")
    if not text:
        raise ValueError(f"text file {file} is empty")
    return text


@dataclass(frozen=True)
class CharVocab:
    """The distinct characters of a text, sorted; a character's id is its position."""

    chars: str

    @classmethod
    def of(cls, text: str) -> CharVocab:
        """The vocabulary of every character in `text`."""
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of the characters of `text`; a character outside the vocabulary raises ValueError."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"characters {''.join(unknown)!r} are not in the text's vocabulary of {len(self)}")
        return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Any) -> str:
        """The characters of a sequence of ids."""
        return "".join(self.chars[int(i)] for i in ids)


def split_ids(ids: np.ndarray, val_fraction: float, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the last `val_fraction` of the text is held out; each part must hold a window."""
    cut = len(ids) - int(len(ids) * val_fraction)
    train, val = ids[:cut], ids[cut:]
    if len(train) <= seq_len or len(val) <= seq_len:
        raise ValueError(f"the text has {len(ids)} characters: too short for windows of {seq_len + 1} characters "
                         f"in both its training part and its validation part ({val_fraction:.0%})")
    return train, val


def random_windows(ids: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator
                   ) -> tuple[fg.Tensor, fg.Tensor]:
    """`batch_size` random windows: inputs x and targets y (x shifted by one character), int64 (batch, seq_len)."""
    starts = rng.integers(0, len(ids) - seq_len, size=batch_size)
    windows = ids[starts[:, None] + np.arange(seq_len + 1)]
    return fg.tensor(windows[:, :-1]), fg.tensor(windows[:, 1:])


def fixed_windows(ids: np.ndarray, batch_size: int, seq_len: int, batches: int) -> list[tuple[fg.Tensor, fg.Tensor]]:
    """`batches` batches of evenly spaced windows (the same every time), for a comparable validation loss."""
    count = batch_size * batches
    starts = np.linspace(0, len(ids) - seq_len - 1, count).astype(np.int64).reshape(batches, batch_size)
    out = []
    for row in starts:
        windows = ids[row[:, None] + np.arange(seq_len + 1)]
        out.append((fg.tensor(windows[:, :-1]), fg.tensor(windows[:, 1:])))
    return out


def sample_index(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """An index drawn from softmax(logits / temperature); temperature 0 takes the most likely one."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature <= 0:
        return int(logits.argmax())
    z = (logits - logits.max()) / temperature
    p = np.exp(z)
    return int(rng.choice(len(p), p=p / p.sum()))


def next_token_loss(logits: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
    """Mean cross-entropy (nats per character) of logits (batch, seq_len, vocab) against targets (batch, seq_len)."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@dataclass
class Result:
    """What a training run measured."""

    losses: list[float]  # training loss of every step
    val_loss: float  # on the held-out end of the text, after training
    sample: str  # generated after training
    times: list[float]  # wall time of every step, reading its loss included (not evaluation or sampling)

    WARMUP = 3  # under fg.jit the first calls run eagerly, trace and compile: not the steady speed

    @property
    def steps_per_second(self) -> float:
        """Steady speed: steps per second after the first WARMUP steps (over all of them if there are no more)."""
        times = self.times[self.WARMUP:] or self.times
        return len(times) / sum(times) if sum(times) else math.inf


def train_chars(model: nn.Module, opt: optim.Optimizer, ids: np.ndarray, generate: Callable[[], str], *,
                steps: int, batch_size: int, seq_len: int, seed: int, jit: bool, clip: float = 1.0,
                val_fraction: float = 0.1, samples: int = 2, title: str = "", plot: str | None = None) -> Result:
    """Train `model` (int64 (batch, seq_len) -> logits (batch, seq_len, vocab)) on random windows of `ids`.

    Each step is one call of `step(x, y) -> loss` (forward, zero_grad, backward, clipping, update) on fixed shapes,
    replayed as one compiled program under `fg.jit` when `jit`. The learning rate decays along a cosine. A sample
    from `generate()` is printed `samples` times, evenly spaced (the last after training), with the validation loss.
    """
    train_ids, val_ids = split_ids(ids, val_fraction, seq_len)
    val_count = max(1, min(8, len(val_ids) // (batch_size * seq_len)))  # up to 8 batches, overlapping only if short
    val_batches = fixed_windows(val_ids, batch_size, seq_len, val_count)
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=opt.param_groups[0]["lr"] / 10)

    def step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = next_token_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)  # one bad window must not blow up the recurrence
        opt.step()
        return loss

    def eval_loss(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        with fg.no_grad():
            return next_token_loss(model(x), y)

    train_step, eval_step = (fg.jit(step), fg.jit(eval_loss)) if jit else (step, eval_loss)

    def validate() -> float:
        model.eval()
        total = sum(eval_step(x, y).item() for x, y in val_batches) / len(val_batches)
        model.train()
        return total

    rng = np.random.default_rng(seed)
    show_at = {round(steps * (k + 1) / samples) for k in range(samples)} if samples else set()
    losses: list[float] = []
    times: list[float] = []
    val, text = float("nan"), ""
    bar = progress(range(1, steps + 1), desc=title or "training", unit="step", mininterval=1.0)
    for i in bar:
        x, y = random_windows(train_ids, batch_size, seq_len, rng)
        start = time.perf_counter()
        loss = train_step(x, y)
        losses.append(loss.item())
        times.append(time.perf_counter() - start)
        schedule.step()
        if i % 10 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        if i in show_at:
            val, text = validate(), generate()
            write = bar.write if hasattr(bar, "write") else print
            write(f"\n--- step {i}: train loss {np.mean(losses[-20:]):.3f}, validation loss {val:.3f} nats/char; "
                  f"sample ---\n{text}\n---")
    if not show_at:
        val = validate()
    if plot:
        plot_losses(losses, plot, title)
    return Result(losses, val, text, times)


def report(result: Result, batch_size: int, seq_len: int, jit: bool) -> None:
    """Print the run's final metrics: first and last training loss, validation loss, speed."""
    head, tail = result.losses[:10], result.losses[-50:]
    print(f"training loss {result.losses[0]:.3f} at the first step, {np.mean(head):.3f} -> {np.mean(tail):.3f} "
          f"nats/char (mean of the first 10 and last {len(tail)} steps); validation loss {result.val_loss:.3f} "
          f"nats/char ({result.val_loss / math.log(2):.2f} bits/char)")
    speed = result.steps_per_second
    print(f"{len(result.losses)} steps in {sum(result.times):.1f} s, of which the first {Result.WARMUP} took "
          f"{sum(result.times[:Result.WARMUP]):.1f} s; then {speed:.2f} steps/s ({speed * batch_size * seq_len:.0f} "
          f"characters/s) on device '{fg.default_device()}'{' with fg.jit' if jit else ''}")
