"""randperm, bernoulli, multinomial, the in-place random fills, the RNG state and the thread count.

Random values cannot be compared with torch's: distributions are tested statistically over many draws with fixed
seeds and bounds several standard deviations wide, and shapes, dtypes and errors against torch's for the same call.
"""
import itertools
import math

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad.frontend import random as fg_random

TORCH_DTYPE = {fg.float32: torch.float32, fg.float64: torch.float64, fg.float16: torch.float16,
               fg.int64: torch.int64, fg.int32: torch.int32, fg.uint8: torch.uint8, fg.bool: torch.bool}


def _within(count: float, expected: float, sds: float = 6.0) -> bool:
    """count is within `sds` binomial-ish standard deviations of expected (never flaky at 6)."""
    return abs(count - expected) <= sds * math.sqrt(max(expected, 1.0))


# ---- randperm ----

@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_randperm_is_a_permutation(device, n):
    fg.manual_seed(3)
    p = fg.randperm(n, device=device)
    assert p.dtype == fg.int64 and p.shape == tuple(torch.randperm(n).shape) and p.device == device
    assert sorted(p.tolist()) == list(range(n))


def test_randperm_devices_agree_and_reproduce(device):
    fg.manual_seed(11)
    a = fg.randperm(200, device=device).tolist()
    fg.manual_seed(11)
    ref = fg.randperm(200, device="numpy").tolist()
    assert a == ref
    assert fg.randperm(200, device="numpy").tolist() != ref  # the stream moved on


def test_randperm_dtype_and_requires_grad_like_torch():
    p = fg.randperm(5, dtype=fg.float32, requires_grad=True)
    t = torch.randperm(5, dtype=torch.float32, requires_grad=True)
    assert p.dtype == fg.float32 and p.requires_grad == t.requires_grad and sorted(p.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError):
        torch.randperm(5, requires_grad=True)
    with pytest.raises(RuntimeError):
        fg.randperm(5, requires_grad=True)  # int64 cannot require grad, in both
    with pytest.raises(RuntimeError):
        torch.randperm(-1)
    with pytest.raises(RuntimeError):
        fg.randperm(-1)


def test_randperm_is_uniform():
    fg.manual_seed(0)
    counts = dict.fromkeys(itertools.permutations(range(3)), 0)
    for _ in range(720):
        counts[tuple(fg.randperm(3, device="numpy").tolist())] += 1
    assert all(_within(c, 120) for c in counts.values()), counts
    first = np.zeros(6, int)  # where element 0 lands, over longer permutations
    for _ in range(300):
        first[fg.randperm(6, device="numpy").tolist().index(0)] += 1
    assert all(_within(c, 50) for c in first), first


def test_randperm_large_sorts_on_host_with_the_same_result(monkeypatch):
    fg.manual_seed(5)
    on_device = fg.randperm(60, device="cpu").tolist()
    monkeypatch.setattr(fg_random, "RANDPERM_ON_DEVICE_MAX", 10)
    fg.manual_seed(5)
    assert fg.randperm(60, device="cpu").tolist() == on_device
    p = fg.randperm(20000)
    assert sorted(p.tolist()) == list(range(20000)) and p.device == fg.default_device()


def test_randperm_in_eval_shape_draws_nothing():
    fg.manual_seed(2)
    spec = fg.eval_shape(lambda: fg.randperm(9000))
    assert spec.shape == (9000,) and fg.initial_seed() == 2
    state = fg.get_rng_state()
    fg.manual_seed(2)
    assert fg.get_rng_state().tolist() == state.tolist()


# ---- bernoulli ----

def test_bernoulli_rates_and_exact_ends(device):
    fg.manual_seed(1)
    p = fg.tensor([0.0, 1.0, 0.25, 0.9], device=device).reshape(4, 1).expand(4, 20000).contiguous()
    draws = fg.bernoulli(p)
    assert draws.dtype == fg.float32 and draws.shape == (4, 20000)
    rows = draws.numpy().sum(1)
    assert rows[0] == 0 and rows[1] == 20000
    assert _within(rows[2], 5000) and _within(rows[3], 18000)
    assert set(np.unique(draws.numpy())) <= {0.0, 1.0}


def test_bernoulli_forms_like_torch():
    x = fg.full((3, 4), 0.5, dtype=fg.float64)
    tx = torch.full((3, 4), 0.5, dtype=torch.float64)
    for fg_out, torch_out in [(fg.bernoulli(x), torch.bernoulli(tx)), (x.bernoulli(), tx.bernoulli()),
                              (fg.bernoulli(x, 0.3), torch.bernoulli(tx, 0.3)), (x.bernoulli(0.3), tx.bernoulli(0.3))]:
        assert fg_out.shape == tuple(torch_out.shape) and TORCH_DTYPE[fg_out.dtype] == torch_out.dtype
    half = fg.full((4000,), 0.5, dtype=fg.float16).bernoulli()
    assert half.dtype == fg.float16 and _within(float(half.numpy().sum()), 2000)
    with pytest.raises(TypeError):
        fg.zeros(3, dtype=fg.int64).bernoulli()  # torch: not implemented for integer probabilities
    with pytest.raises(ValueError):
        x.bernoulli(1.5)


def test_bernoulli_inplace(device):
    fg.manual_seed(4)
    x = fg.zeros(50000, dtype=fg.int64, device=device)
    assert x.bernoulli_(0.2) is x and x.dtype == fg.int64
    assert _within(x.numpy().sum(), 10000)
    p = fg.tensor([0.0, 1.0, 0.5], device=device)
    y = fg.zeros(2000, 3, dtype=fg.bool, device=device).bernoulli_(p).numpy()
    assert y[:, 0].sum() == 0 and y[:, 1].all() and _within(y[:, 2].sum(), 1000)


# ---- multinomial ----

def test_multinomial_shapes_and_dtypes_like_torch():
    for shape, k, repl in [((5,), 3, False), ((5,), 8, True), ((2, 5), 5, False), ((3, 4), 1, True)]:
        w = np.random.default_rng(0).random(shape) + 0.1
        out = fg.tensor(w).multinomial(k, repl)
        ref = torch.multinomial(torch.tensor(w), k, repl)
        assert out.shape == tuple(ref.shape) and out.dtype == fg.int64 and ref.dtype == torch.int64
        assert fg.multinomial(fg.tensor(w), k, replacement=repl).shape == tuple(ref.shape)


def test_multinomial_errors_like_torch():
    cases = [(np.ones(3), 4, False), (np.ones(3), 0, True), (np.ones((2, 2, 2)), 1, True), (np.ones((2, 0)), 1, True)]
    for w, k, repl in cases:
        with pytest.raises(RuntimeError):
            torch.multinomial(torch.tensor(w), k, repl)
        with pytest.raises(RuntimeError):
            fg.tensor(w).multinomial(k, repl)
    with pytest.raises(TypeError):
        fg.tensor([1, 2, 3]).multinomial(1)  # integer weights: torch too refuses them


def test_multinomial_without_replacement(device):
    fg.manual_seed(7)
    w = fg.tensor([[0.0, 1.0, 2.0, 0.0, 3.0, 4.0]] * 3000, device=device)
    out = w.multinomial(4).numpy()
    assert out.shape == (3000, 4)
    assert all(sorted(row) == [1, 2, 4, 5] for row in out)  # no repeats, zero weights never drawn
    p = np.array([0, 1, 2, 0, 3, 4]) / 10
    first = np.bincount(out[:, 0], minlength=6)
    assert all(_within(first[j], 3000 * p[j]) for j in range(6)), first
    # the second draw follows a sequential draw's law: sum_i p_i p_j / (1 - p_i) over i != j
    second = np.bincount(out[:, 1], minlength=6)
    expect = [sum(p[i] * p[j] / (1 - p[i]) for i in range(6) if i != j) for j in range(6)]
    assert all(_within(second[j], 3000 * expect[j]) for j in range(6)), (second, expect)


def test_multinomial_many_samples_without_replacement_sorts():
    fg.manual_seed(8)
    w = fg.arange(1, 41, dtype=fg.float32)  # more than topk's maxima: the sorted path
    out = w.multinomial(40).tolist()
    assert sorted(out) == list(range(40))
    fg.manual_seed(8)
    assert w.multinomial(40).tolist() == out
    fg.manual_seed(8)
    assert w.multinomial(5).tolist() == out[:5]  # the same keys: the first draws agree however many are taken


def test_multinomial_with_replacement(device):
    fg.manual_seed(9)
    w = fg.tensor([0.0, 2.0, 0.0, 6.0, 0.0], device=device)
    out = w.multinomial(8000, replacement=True).numpy()
    assert out.shape == (8000,) and out.dtype == np.int64
    counts = np.bincount(out, minlength=5)
    assert counts[0] == counts[2] == counts[4] == 0
    assert _within(counts[1], 2000) and _within(counts[3], 6000)
    rows = fg.tensor([[1.0, 0.0], [0.0, 1.0]], device=device).multinomial(50, True).numpy()
    assert (rows[0] == 0).all() and (rows[1] == 1).all()


def test_multinomial_tiny_weight_still_drawn_and_negative_never():
    fg.manual_seed(10)
    w = fg.tensor([1e-3, -5.0, 1.0], dtype=fg.float64)
    counts = np.bincount(w.multinomial(20000, True).numpy(), minlength=3)
    assert counts[1] == 0 and 0 < counts[0] and _within(counts[0], 20000 * 1e-3 / 1.001)


# ---- in-place fills ----

def test_fills_return_self_and_keep_shape_dtype(device):
    fg.manual_seed(12)
    x = fg.zeros(3, 4, dtype=fg.float64, device=device)
    for fill in [lambda t: t.uniform_(), lambda t: t.normal_(), lambda t: t.bernoulli_(), lambda t: t.exponential_(),
                 lambda t: t.random_(0, 5), lambda t: t.geometric_(0.5), lambda t: t.cauchy_(),
                 lambda t: t.log_normal_()]:
        assert fill(x) is x and x.shape == (3, 4) and x.dtype == fg.float64 and x.device == device
        tx = torch.zeros(3, 4, dtype=torch.float64)
        assert tuple(fill(tx).shape) == x.shape


def test_uniform_(device):
    fg.manual_seed(13)
    x = fg.empty(40000, device=device).uniform_(-2, 3).numpy()
    assert x.min() >= -2 and x.max() < 3
    assert abs(x.mean() - 0.5) < 0.05 and abs(x.var() - 25 / 12) < 0.1
    y = fg.empty(1000, dtype=fg.float64, device=device).uniform_(**{"from": 5, "to": 6}).numpy()
    assert y.min() >= 5 and y.max() < 6 and len(np.unique(y)) == 1000
    z = fg.empty(1000, device=device).uniform_(1, to=1.5).numpy()
    assert z.min() >= 1 and z.max() < 1.5


def test_normal_exponential_and_friends(device):
    fg.manual_seed(14)
    n = fg.empty(40000, device=device).normal_(3, 2).numpy()
    assert abs(n.mean() - 3) < 0.06 and abs(n.std() - 2) < 0.06
    e = fg.empty(40000, device=device).exponential_(4).numpy()
    assert e.min() >= 0 and abs(e.mean() - 0.25) < 0.01
    g = fg.empty(40000, device=device).geometric_(0.25).numpy()
    assert g.min() >= 1 and (g == np.round(g)).all() and abs(g.mean() - 4) < 0.15
    assert _within((g == 1).sum(), 10000)
    c = fg.empty(40000, device=device).cauchy_(1, 2).numpy()
    assert abs(np.median(c) - 1) < 0.1 and abs(np.percentile(c, 75) - 3) < 0.15
    ln = fg.empty(40000, device=device).log_normal_(0.5, 0.25).numpy()
    assert ln.min() > 0 and abs(np.median(np.log(ln)) - 0.5) < 0.02


def test_random_ranges(device):
    fg.manual_seed(15)
    x = fg.empty(30000, dtype=fg.int64, device=device)
    counts = np.bincount(x.random_(10).numpy(), minlength=10)
    assert counts.shape == (10,) and all(_within(c, 3000) for c in counts)
    v = x.random_(-3, 2).numpy()
    assert set(np.unique(v)) == {-3, -2, -1, 0, 1}
    assert set(np.unique(x.random_(**{"from": 7, "to": 9}).numpy())) == {7, 8}
    big = x.random_(0, 2**40 + 3).numpy()
    assert big.min() >= 0 and big.max() < 2**40 + 3 and big.max() > 2**39
    assert (big % 2 == 1).sum() > 14000 and (big % 2 == 1).sum() < 16000  # the low bits are random too
    full = x.random_().numpy()
    assert full.min() >= 0 and full.max() > 2**62 and (full % 2 == 1).sum() > 14000
    b = fg.empty(1000, dtype=fg.bool, device=device).random_().numpy()
    assert 300 < b.sum() < 700
    u8 = fg.empty(5000, dtype=fg.uint8, device=device).random_().numpy()
    assert u8.max() > 250 and u8.min() < 5
    f = fg.empty(1000, device=device).random_().numpy()
    assert f.min() >= 0 and f.max() <= 2**24 and (f == np.round(f)).all() and f.max() > 2**23


def test_fill_errors_like_torch():
    for call in [lambda t: t.uniform_(2, 1), lambda t: t.normal_(0, -1), lambda t: t.exponential_(0),
                 lambda t: t.random_(5, 5), lambda t: t.geometric_(1.5)]:
        with pytest.raises(RuntimeError):
            call(torch.zeros(3))
        with pytest.raises(RuntimeError):
            call(fg.zeros(3))
    with pytest.raises(TypeError):
        fg.zeros(3, dtype=fg.int64).uniform_()
    with pytest.raises(TypeError):
        fg.zeros(3).uniform_(0, 1, low=2)
    with pytest.raises(TypeError):
        fg.zeros(3).uniform_(0, **{"from": 1})


def test_fills_on_parameters_follow_the_inplace_rules():
    w = fg.zeros(4, 3, requires_grad=True)
    with pytest.raises(RuntimeError):
        w.normal_()
    with fg.no_grad():
        w.normal_(0, 0.02)
        w.uniform_(-1, 1)
    assert w.requires_grad and w.is_leaf and (w.numpy() != 0).all()
    (w * 2).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2)
    lin = fg.nn.Linear(3, 2)
    with fg.no_grad():
        lin.weight.uniform_(5, 6)
    assert (lin.weight.numpy() >= 5).all() and lin.weight.requires_grad


def test_fills_reproduce_under_manual_seed(device):
    def draw():
        fg.manual_seed(21)
        x = fg.empty(100, device=device)
        return [x.uniform_().numpy(), x.random_(100).numpy(), x.bernoulli_(0.5).numpy(), x.exponential_().numpy()]

    a, b = draw(), draw()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    fg.manual_seed(21)
    ref = fg.empty(100, device="numpy")
    np.testing.assert_allclose(ref.uniform_().numpy(), a[0], rtol=1e-6)
    np.testing.assert_array_equal(ref.random_(100).numpy(), a[1])  # integers: exactly the reference's


# ---- the RNG state ----

def test_rng_state_round_trip(device):
    fg.manual_seed(31)
    fg.rand(5)
    state = fg.get_rng_state()
    assert state.dtype == fg.uint8 and state.shape == (16,)
    assert TORCH_DTYPE[state.dtype] == torch.get_rng_state().dtype
    first = [fg.rand(4, device=device).numpy(), fg.randperm(9, device=device).numpy(),
             fg.tensor([1.0, 2.0, 3.0], device=device).multinomial(2).numpy()]
    fg.set_rng_state(state)
    again = [fg.rand(4, device=device).numpy(), fg.randperm(9, device=device).numpy(),
             fg.tensor([1.0, 2.0, 3.0], device=device).multinomial(2).numpy()]
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    assert fg.get_rng_state().tolist() != state.tolist()


def test_rng_state_errors_and_seeds():
    with pytest.raises(TypeError):
        fg.set_rng_state(fg.zeros(16))
    with pytest.raises(TypeError):
        fg.set_rng_state(bytes(16))
    with pytest.raises(RuntimeError):
        fg.set_rng_state(fg.zeros(8, dtype=fg.uint8))
    fg.manual_seed(123)
    assert fg.initial_seed() == 123 and isinstance(torch.initial_seed(), int)
    a = fg.rand(3).tolist()
    s = fg.seed()
    assert isinstance(s, int) and 0 <= s < 2**64 and fg.initial_seed() == s
    assert fg.seed() != s  # 64 fresh random bits each time
    fg.manual_seed(s)
    b = fg.rand(3).tolist()
    fg.manual_seed(123)
    assert fg.rand(3).tolist() == a and a != b


# ---- threads ----

def test_num_threads_round_trip():
    before = fg.get_num_threads()
    assert isinstance(before, int) and before >= 1
    try:
        fg.set_num_threads(1)
        assert fg.get_num_threads() == 1
        x = fg.arange(1 << 18, dtype=fg.float32, device="cpu") if "cpu" in fg.available_devices() else None
        if x is not None:  # a kernel big enough to run in parallel still computes the same on one thread
            assert (x * 2).sum().item() == float(np.arange(1 << 18, dtype=np.float64).sum() * 2)
        fg.set_num_threads(3)
        assert fg.get_num_threads() == 3
    finally:
        fg.set_num_threads(before)
    assert fg.get_num_threads() == before
    with pytest.raises(RuntimeError):
        torch.set_num_threads(0)
    with pytest.raises(RuntimeError):
        fg.set_num_threads(0)
    with pytest.raises(TypeError):
        fg.set_num_threads(2.0)
