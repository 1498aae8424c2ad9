"""Random sampling with PyTorch's names: randperm, bernoulli, multinomial, the in-place fills (uniform_, normal_,
bernoulli_, exponential_, random_, ...) and the global RNG state (seed, initial_seed, get/set_rng_state).

Everything draws from the counter-based stream of `creation._uniform` (24-bit uniforms, identical on every device),
so `fg.manual_seed` reproduces every draw on every device. Where 24 bits are too coarse (float64 fills, sort keys,
Gumbel keys) two draws make one 48-bit uniform. There is no `generator=` argument: fusegrad has one global stream.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import dtype as dt
from ..dtype import DType
from . import grad_mode

if TYPE_CHECKING:
    from .tensor import Tensor

RANDPERM_ON_DEVICE_MAX = 4096  # above this, randperm sorts its (reproducible) keys with NumPy: the device sort is n^2
_STATE_BYTES = 16  # get_rng_state: the seed and the stream position, 8 little-endian bytes each
_LARGEST = {dt.bool_: 1, dt.uint8: 255, dt.int32: 2**31 - 1, dt.int64: 2**63 - 1,  # random_()'s inclusive top
            dt.float16: 2**11, dt.float32: 2**24, dt.float64: 2**53}


def _creation() -> Any:
    """creation.py, imported on use: it imports tensor.py, which imports this module for RandomMixin."""
    from . import creation
    return creation


def _uniform(shape: tuple[int, ...], dtype: DType, device: str | None) -> Tensor:
    """The stream's next uniforms in [0, 1) (24 bits), as `dtype`."""
    return _creation()._uniform(shape, dtype, device)


def _uniform48(shape: tuple[int, ...], device: str | None) -> Tensor:
    """float64 uniforms in the open interval (0, 1) with 48 random bits (two 24-bit draws), never 0 nor 1."""
    hi, lo = _uniform(shape, dt.float64, device), _uniform(shape, dt.float64, device)
    return hi + (lo + 2.0**-25) * 2.0**-24


def _unit(shape: tuple[int, ...], dtype: DType, device: str | None) -> Tensor:
    """Uniforms in [0, 1) to compute `dtype` values with: float64 gets 48 bits, the rest float32's 24."""
    return _uniform48(shape, device) - 2.0**-49 if dtype == dt.float64 else _uniform(shape, dt.float32, device)


def _below(shape: tuple[int, ...], span: int, device: str | None) -> Tensor:
    """int64 integers uniform in [0, span): 24, 48 or 63 random bits, whichever covers span (bias < span / 2^bits)."""
    if span > 2**63:
        raise RuntimeError(f"random_: a range of {span} integers does not fit int64")
    if span <= 2**24:  # u * span is exact in float64, so the floor never rounds up to span
        return (_uniform(shape, dt.float64, device) * span).floor().cast(dt.int64)
    words = [(_uniform(shape, dt.float64, device) * 2**24).cast(dt.int64) for _ in range(2 if span <= 2**40 else 3)]
    r = words[0] * 2**24 + words[1]
    if len(words) == 3:  # 48 + 15 bits: 63 stay below int64's overflow
        r = r * 2**15 + words[2] // 2**9
    return r if span == 2**63 else r % span


def _check_float(t: Tensor, name: str) -> None:
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} is only implemented for floating-point tensors, got {t.dtype.name}")


def _probabilities(t: Tensor, p: Any, name: str) -> Tensor:
    """A probability (scalar or tensor) as a float tensor broadcast to t's shape, on t's device."""
    from .tensor import Tensor
    if isinstance(p, Tensor):
        work = dt.float64 if p.dtype == dt.float64 else dt.float32
        return p.to(t.device).cast(work).expand(t.shape)
    if not 0 <= p <= 1:
        raise ValueError(f"{name}: p must be in [0, 1], got {p}")
    return t._const(float(p), dtype=dt.float32)


def _bernoulli_values(t: Tensor, p: Tensor) -> Tensor:
    """1 with probability p per element: u < p, exact at p = 0 (never) and p = 1 (always) since u is in [0, 1)."""
    return _uniform(t.shape, p.dtype, t.device) < p


def randperm(n: int, *, dtype: DType | str = dt.int64, device: str | None = None,
             requires_grad: bool = False) -> Tensor:
    """A uniformly random permutation of 0..n-1 (the stable order of 48-bit random keys)."""
    from .tensor import Tensor
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise RuntimeError(f"randperm: n must be a non-negative integer, got {n}")
    n, dtype = int(n), dt.to_dtype(dtype)
    host = n > RANDPERM_ON_DEVICE_MAX and not (grad_mode.shape_only() or grad_mode.tracing())
    keys = _uniform48((n,), "numpy" if host else device)  # devices draw the same keys, so both paths agree
    if host:  # NumPy's stable argsort equals the device sort's order, ties by index included
        out = Tensor(np.argsort(keys.numpy(), kind="stable"), dtype=dtype, device=device)
    else:
        out = keys.argsort().cast(dtype) if n else keys.cast(dtype)
    return out.requires_grad_() if requires_grad else out


def bernoulli(input: Tensor, p: float | None = None) -> Tensor:
    """0/1 draws with the probabilities in `input` (or the scalar `p`), with input's shape and dtype."""
    return input.bernoulli(p)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False) -> Tensor:
    """int64 category indices drawn from the (unnormalized) weights of each row of a 1-D or 2-D `input`."""
    return input.multinomial(num_samples, replacement)


def seed() -> int:
    """Reseed the stream from the OS's entropy (non-deterministic) and return the new 64-bit seed."""
    s = int.from_bytes(os.urandom(8), "little")
    _creation().manual_seed(s)
    return s


def initial_seed() -> int:
    """The seed of the stream: the last one `manual_seed` or `seed` set (0 at import)."""
    return _creation()._rng["seed"]


def get_rng_state() -> Tensor:
    """The stream's state as a uint8 tensor on the host (seed and position); `set_rng_state` restores it."""
    from ..runtime import available_devices
    from .tensor import Tensor
    rng = _creation()._rng
    words = np.array([rng["seed"], rng["counter"]], dtype="<u8")
    return Tensor(words.view(np.uint8).copy(), dtype=dt.uint8, device="cpu" if "cpu" in available_devices()
                  else "numpy")


def set_rng_state(new_state: Tensor) -> None:
    """Restore a state from `get_rng_state`: the draws made after it repeat."""
    from .tensor import Tensor
    if not isinstance(new_state, Tensor) or new_state.dtype != dt.uint8:
        raise TypeError(f"set_rng_state expects a uint8 Tensor from get_rng_state, got {new_state!r}")
    if new_state.numel() != _STATE_BYTES:
        raise RuntimeError(f"set_rng_state: a state has {_STATE_BYTES} bytes, got {new_state.numel()}")
    s, counter = (int(w) for w in np.ascontiguousarray(new_state.numpy().reshape(-1)).view("<u8"))
    rng = _creation()._rng
    rng["seed"], rng["counter"] = s, counter  # in place: eval_shape journals this dict


class RandomMixin:
    """Tensor.bernoulli, multinomial and the in-place random fills."""

    def bernoulli(self: Tensor, p: float | Tensor | None = None) -> Tensor:
        """0/1 draws with probability self (or `p`), with self's shape and dtype; not differentiable. Probabilities
        outside [0, 1] in a tensor are not checked (a scalar p is): below 0 acts as 0, above 1 as 1."""
        if p is None:
            _check_float(self, "bernoulli")
            prob = self.detach().cast(dt.float64 if self.dtype == dt.float64 else dt.float32)
        else:
            prob = _probabilities(self, p, "bernoulli")
        return _bernoulli_values(self, prob).cast(self.dtype)

    def multinomial(self: Tensor, num_samples: int, replacement: bool = False) -> Tensor:
        """int64 indices drawn from each row's unnormalized weights (1-D or 2-D). Each draw is the largest of
        weight / Exp(1) keys (an exponential race, exact); without replacement the top num_samples keys, in the
        order a sequential draw would take them. Values are not read, so weights that torch rejects at run time
        (negative, inf, NaN, all zero, fewer nonzero than num_samples without replacement) give no error: a
        negative or zero weight is never drawn while a positive one remains, and ties go to the lowest index."""
        if self.ndim not in (1, 2):
            raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got shape {self.shape}")
        _check_float(self, "multinomial")
        n = self.shape[-1]
        if n == 0:
            raise RuntimeError("multinomial: the number of categories cannot be 0")
        if not isinstance(num_samples, (int, np.integer)) or num_samples <= 0:
            raise RuntimeError(f"multinomial: cannot sample n_sample <= 0 samples, got {num_samples}")
        if not replacement and num_samples > n:
            raise RuntimeError(f"multinomial: cannot sample n_sample > prob_dist.size(-1) samples without "
                               f"replacement ({num_samples} > {n})")
        w = self.detach().cast(dt.float64).reshape(-1, n).relu()  # negatives act as 0: they never win the race
        rows = w.shape[0]
        if replacement:  # one independent race per sample
            e = -_uniform48((rows, int(num_samples), n), self.device).log()
            out = (w.unsqueeze(1) / e).argmax(-1)
        else:
            e = -_uniform48((rows, n), self.device).log()
            out = (w / e).topk(int(num_samples), -1).indices
        return out.reshape(-1) if self.ndim == 1 else out

    def _random_fill(self: Tensor, values: Any) -> Tensor:
        """Rebind self to `values(dtype)` (random, untracked), on the in-place rules (leaves under no_grad)."""
        return self._inplace(lambda old: values(old.dtype).cast(old.dtype))

    def uniform_(self: Tensor, *args: float, **kwargs: float) -> Tensor:
        """Fill with uniform values in [from, to) (torch's names; pass `from` as a positional or **{"from": a})."""
        _check_float(self, "uniform_")
        lo, hi = _from_to(args, kwargs, "uniform_", 0.0, 1.0)
        if lo > hi:
            raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={lo} > to={hi}")
        return self._random_fill(lambda d: _unit(self.shape, d, self.device) * (hi - lo) + lo)

    def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
        """Fill with normal values of the given mean and standard deviation."""
        _check_float(self, "normal_")
        if std < 0:
            raise RuntimeError(f"normal_ expects std >= 0.0, but found std {std}")
        return self._random_fill(lambda d: _creation().randn(self.shape, dtype=d, device=self.device) * std + mean)

    def log_normal_(self: Tensor, mean: float = 1.0, std: float = 2.0) -> Tensor:
        """Fill with exp(N(mean, std)) values."""
        _check_float(self, "log_normal_")
        if std <= 0:
            raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={std}")
        return self._random_fill(lambda d: (_creation().randn(self.shape, dtype=d, device=self.device) * std
                                            + mean).exp())

    def bernoulli_(self: Tensor, p: float | Tensor = 0.5) -> Tensor:
        """Fill with 1 (probability p, a scalar or a tensor broadcast to self) or 0, in self's dtype."""
        prob = _probabilities(self, p, "bernoulli_")
        return self._random_fill(lambda d: _bernoulli_values(self, prob))

    def exponential_(self: Tensor, lambd: float = 1.0) -> Tensor:
        """Fill with exponential values of rate lambd (-log(1 - u) / lambd)."""
        _check_float(self, "exponential_")
        if not lambd > 0:
            raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
        return self._random_fill(lambda d: -(1 - _unit(self.shape, d, self.device)).log() / lambd)

    def geometric_(self: Tensor, p: float) -> Tensor:
        """Fill with the number of Bernoulli(p) trials up to the first success (1, 2, ...)."""
        if not 0 < p < 1:
            raise RuntimeError(f"geometric_ expects p to be in (0, 1), got p={p}")
        # u in (0, 1): log(u) / log(1 - p) > 0, so the ceiling is at least 1
        return self._random_fill(lambda d: (_uniform48(self.shape, self.device).log() / math.log1p(-p)).ceil())

    def cauchy_(self: Tensor, median: float = 0.0, sigma: float = 1.0) -> Tensor:
        """Fill with Cauchy values: median + sigma * tan(pi * (u - 1/2))."""
        _check_float(self, "cauchy_")
        return self._random_fill(lambda d: (math.pi * (_uniform48(self.shape, self.device) - 0.5)).tan() * sigma
                                 + median)

    def random_(self: Tensor, *args: int, **kwargs: int) -> Tensor:
        """Fill with integers uniform in [from, to): random_(to), random_(from, to), or random_() for [0, the
        dtype's largest integer] (floats: [0, 2^mantissa]); `from` may be a keyword via **{"from": a}."""
        if len(args) == 1 and "to" not in kwargs and "from" not in kwargs:
            args, kwargs = (), {"to": args[0]}  # torch's random_(to) overload
        lo, hi = _from_to(args, kwargs, "random_", 0, None)
        if hi is None:
            hi = _LARGEST[self.dtype] + 1
        lo, hi = int(lo), int(hi)
        if lo >= hi:
            raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={lo} >= to={hi}")
        return self._random_fill(lambda d: _below(self.shape, hi - lo, self.device) + lo)


def _from_to(args: tuple, kwargs: dict, name: str, lo: Any, hi: Any) -> tuple[Any, Any]:
    """torch's (from, to) arguments, positional or keyword (`from` is a Python keyword: it comes via **kwargs)."""
    unknown = set(kwargs) - {"from", "to"}
    if unknown or len(args) > 2:
        raise TypeError(f"{name}() takes (from, to), got {len(args)} positional and keywords {sorted(kwargs)}")
    given = dict(zip(("from", "to"), args))
    if set(given) & set(kwargs):
        raise TypeError(f"{name}() got multiple values for {sorted(set(given) & set(kwargs))}")
    given.update(kwargs)
    return given.get("from", lo), given.get("to", hi)
