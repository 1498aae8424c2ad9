"""Optimizers and learning-rate schedulers against PyTorch: the same model, data and initial weights, trained for
10 steps in float64; parameters must equal torch's after every step. Also param groups, zero_grad, state_dict
round trips, parameters without gradients, a step inside `fg.eval_shape`, and every scheduler over 30 steps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fusegrad as fg
from fusegrad import nn, optim
from tests.helpers import assert_close, randn

STEPS = 10
ATOL = 1e-10  # float64 throughout: the formulas must be torch's, not merely close

X, Y_REG, Y_CLS = randn(8, 3, seed=0), randn(8, 2, seed=1), np.random.default_rng(2).integers(0, 2, 8)


def _models(seed: int = 0) -> tuple[nn.Module, torch.nn.Module]:
    """A small MLP in both libraries with torch's initial weights, float64."""
    torch.manual_seed(seed)
    t = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    m = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).to(fg.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return m, t


def _loss(lib: object, model: object, task: str) -> object:
    """Mean squared error (regression) or cross-entropy (classification) on the fixed batch."""
    x = lib.tensor(X)
    if task == "regression":
        return lib.nn.functional.mse_loss(model(x), lib.tensor(Y_REG))
    return lib.nn.functional.cross_entropy(model(x), lib.tensor(Y_CLS))


def _step(lib: object, model: object, opt: object, task: str) -> float:
    opt.zero_grad()
    loss = _loss(lib, model, task)
    loss.backward()
    opt.step()
    return loss.item()


def _assert_same_params(m: nn.Module, t: torch.nn.Module, what: str) -> None:
    for (name, p), tp in zip(m.named_parameters(), t.parameters()):
        assert_close(p, tp, atol=ATOL, rtol=ATOL, what=f"{what}: {name}")


# name -> (fusegrad optimizer class, torch optimizer class, options): each formula and option at least once
CONFIGS = {
    "sgd": ("SGD", {"lr": 0.1}),
    "sgd_momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}),
    "sgd_dampening": ("SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    "sgd_nesterov": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    "sgd_maximize": ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True, "weight_decay": 0.1}),
    "adam": ("Adam", {"lr": 0.05}),
    "adam_wd": ("Adam", {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
    "adam_beta_zero": ("Adam", {"lr": 0.05, "betas": (0.0, 0.9)}),  # 0 ** step is 0: no bias to correct
    "adam_amsgrad": ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01}),
    "adam_maximize": ("Adam", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}),
    "adamw_maximize": ("AdamW", {"lr": 0.01, "maximize": True}),
    "adamw": ("AdamW", {"lr": 0.05}),
    "adamw_amsgrad": ("AdamW", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True}),
    "rmsprop": ("RMSprop", {"lr": 0.01}),
    "rmsprop_momentum": ("RMSprop", {"lr": 0.01, "momentum": 0.9, "alpha": 0.9, "weight_decay": 0.01}),
    "rmsprop_centered": ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "eps": 1e-4}),
    "rmsprop_maximize": ("RMSprop", {"lr": 0.01, "centered": True, "maximize": True}),
    "adagrad": ("Adagrad", {"lr": 0.1}),
    "adagrad_decay": ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.5,
                                  "weight_decay": 0.01, "eps": 1e-6}),
    "adagrad_maximize": ("Adagrad", {"lr": 0.1, "maximize": True, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_optimizer_matches_torch_every_step(config: str, task: str) -> None:
    name, opts = CONFIGS[config]
    m, t = _models()
    opt, topt = getattr(optim, name)(m.parameters(), **opts), getattr(torch.optim, name)(t.parameters(), **opts)
    for i in range(STEPS):
        loss, tloss = _step(fg, m, opt, task), _step(torch, t, topt, task)
        assert loss == pytest.approx(tloss, rel=1e-9, abs=1e-12), f"loss before step {i}"
        _assert_same_params(m, t, f"after step {i}")


def test_training_reduces_loss() -> None:
    m, _ = _models()
    opt = optim.Adam(m.parameters(), lr=0.05)
    losses = [_step(fg, m, opt, "classification") for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_param_groups_with_different_options(name: str) -> None:
    m, t = _models(1)
    extra = {"momentum": 0.5} if name != "Adam" else {"betas": (0.5, 0.9)}

    def groups(model: object) -> list[dict]:
        return [{"params": model[0].parameters(), "lr": 0.1, **extra}, {"params": [model[2].weight]},
                {"params": model[2].bias, "lr": 0.001, "weight_decay": 0.1}]

    opt = getattr(optim, name)(groups(m), lr=0.02)
    topt = getattr(torch.optim, name)(groups(t), lr=0.02)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups] == [0.1, 0.02, 0.001]
    for i in range(STEPS):
        _step(fg, m, opt, "regression"), _step(torch, t, topt, "regression")
        _assert_same_params(m, t, f"after step {i}")


def test_add_param_group_and_errors() -> None:
    m, _ = _models()
    opt = optim.SGD(m[0].parameters(), lr=0.1, momentum=0.9)
    opt.add_param_group({"params": m[2].parameters(), "lr": 0.5})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.5
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [m[0].weight]})
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="floating"):
        optim.SGD([fg.zeros(3, dtype=fg.int64)], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(m.parameters(), lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(m[0].weight, lr=0.1)
    for betas, index in [((1.0, 0.9), 0), ((0.9, -0.1), 1)]:  # torch's check: the bias corrections need [0, 1)
        with pytest.raises(ValueError, match=f"beta parameter at index {index}"):
            optim.AdamW(m.parameters(), betas=betas)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none: bool) -> None:
    m, _ = _models()
    opt = optim.SGD(m.parameters(), lr=0.1)
    _loss(fg, m, "regression").backward()
    opt.zero_grad(set_to_none=set_to_none)
    for p in m.parameters():
        assert (p.grad is None) if set_to_none else (p.grad.shape == p.shape and not p.grad.numpy().any())
    opt.step()  # zero (or no) gradients: SGD without weight decay leaves the parameters alone
    m2, _ = _models()
    for p, q in zip(m.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_params_without_grad_are_skipped() -> None:
    m, t = _models()
    for lib_m in (m, t):
        lib_m[0].requires_grad_(False)  # frozen first layer: its grads stay None
    opt, topt = optim.Adam(m.parameters(), lr=0.05, weight_decay=0.1), \
        torch.optim.Adam(t.parameters(), lr=0.05, weight_decay=0.1)
    frozen = m[0].weight.numpy().copy()
    for i in range(3):
        _step(fg, m, opt, "regression"), _step(torch, t, topt, "regression")
        _assert_same_params(m, t, f"after step {i}")
    np.testing.assert_array_equal(m[0].weight.numpy(), frozen)
    assert m[0].weight not in opt.state and m[2].weight in opt.state
    assert sorted(opt.state[m[2].weight]) == sorted(topt.state[t[2].weight])
    assert_close(opt.state[m[2].weight]["exp_avg"], topt.state[t[2].weight]["exp_avg"], atol=ATOL)


@pytest.mark.parametrize("config", ["sgd_nesterov", "adam_amsgrad", "adamw", "rmsprop_centered", "adagrad_decay"])
def test_state_dict_round_trip_resumes_identically(config: str) -> None:
    name, opts = CONFIGS[config]
    m, _ = _models()
    opt = getattr(optim, name)(m.parameters(), **opts)
    for _ in range(4):
        _step(fg, m, opt, "classification")
    model_sd, opt_sd = m.state_dict(), opt.state_dict()
    assert sorted(opt_sd) == ["param_groups", "state"] and opt_sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    m2, _ = _models(seed=5)  # different weights and a fresh optimizer with other hyper-parameters
    opt2 = getattr(optim, name)(m2.parameters(), lr=123.0)
    m2.load_state_dict(model_sd)
    opt2.load_state_dict(opt_sd)
    assert opt2.param_groups[0]["lr"] == opts["lr"]
    for i in range(4):
        assert _step(fg, m, opt, "classification") == _step(fg, m2, opt2, "classification"), f"loss at step {i}"
        for p, q in zip(m.parameters(), m2.parameters()):
            np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_state_dict_matches_torch_layout() -> None:
    m, t = _models()
    opt, topt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9), torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9)
    _step(fg, m, opt, "regression"), _step(torch, t, topt, "regression")
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"]) == [0, 1, 2, 3]
    for i in range(4):
        assert_close(sd["state"][i]["momentum_buffer"], tsd["state"][i]["momentum_buffer"], atol=ATOL)
    assert set(sd["param_groups"][0]) <= set(tsd["param_groups"][0])
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([{"params": [m[0].weight]}, {"params": [m[0].bias]}], lr=0.1).load_state_dict(sd)


def test_closure() -> None:
    m, t = _models()
    opt, topt = optim.SGD(m.parameters(), lr=0.1), torch.optim.SGD(t.parameters(), lr=0.1)

    def closure(lib: object, model: object, o: object) -> object:
        o.zero_grad()
        loss = _loss(lib, model, "regression")
        loss.backward()
        return loss

    for _ in range(3):
        loss, tloss = opt.step(lambda: closure(fg, m, opt)), topt.step(lambda: closure(torch, t, topt))
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
    _assert_same_params(m, t, "after closures")


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_step_inside_eval_shape_leaves_state_alone(name: str) -> None:
    opts = {"lr": 0.05, "momentum": 0.9} if name in ("SGD", "RMSprop") else {"lr": 0.05}
    m, t = _models()
    opt, topt = getattr(optim, name)(m.parameters(), **opts), getattr(torch.optim, name)(t.parameters(), **opts)

    def train_step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        return loss

    specs = (fg.Spec((8, 3), fg.float64), fg.Spec((8, 2), fg.float64))
    for i in range(4):
        if i in (0, 2):  # before any state exists, and once it does
            state_before = {p: dict(s) for p, s in opt.state.items()}
            assert fg.eval_shape(train_step, *specs).shape == ()
            assert opt.state.keys() == state_before.keys()
            assert all(opt.state[p][k] is v for p, s in state_before.items() for k, v in s.items())
        _step(fg, m, opt, "regression"), _step(torch, t, topt, "regression")
        _assert_same_params(m, t, f"after step {i}")


# ---- learning-rate schedulers ----

SCHEDULERS = {  # name -> (class name, kwargs): both libraries take the same arguments
    "step": ("StepLR", {"step_size": 4, "gamma": 0.5}),
    "multistep": ("MultiStepLR", {"milestones": [3, 7, 7, 20], "gamma": 0.3}),
    "cosine": ("CosineAnnealingLR", {"T_max": 10}),  # 30 steps go through the periodic restart
    "cosine_eta_min": ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}),
    "linear": ("LinearLR", {}),
    "linear_down": ("LinearLR", {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 12}),
    "onecycle": ("OneCycleLR", {"max_lr": 0.5, "total_steps": 31}),
    "onecycle_linear": ("OneCycleLR", {"max_lr": [0.5, 0.2], "epochs": 3, "steps_per_epoch": 11,
                                       "anneal_strategy": "linear", "pct_start": 0.2, "div_factor": 10.0}),
    "onecycle_three_phase": ("OneCycleLR", {"max_lr": 1.0, "total_steps": 40, "three_phase": True,
                                            "final_div_factor": 100.0}),
    "onecycle_no_momentum": ("OneCycleLR", {"max_lr": 0.3, "total_steps": 30, "cycle_momentum": False}),
}


def _group_state(opt: object) -> list[float]:
    """lr, momentum and betas of every group as one flat list (None as NaN), for pytest.approx."""
    flat: list[float] = []
    for g in opt.param_groups:
        for v in (g["lr"], g.get("momentum"), *(g.get("betas") or (None, None))):
            flat.append(float("nan") if v is None else float(v))
    return flat


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("sched", list(SCHEDULERS))
def test_scheduler_matches_torch_over_30_steps(sched: str, opt_name: str) -> None:
    cls, kwargs = SCHEDULERS[sched]
    m, t = _models()
    extra = {"momentum": 0.9} if opt_name == "SGD" else {}

    def groups(model: object) -> list[dict]:
        return [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.05}]

    opt, topt = getattr(optim, opt_name)(groups(m), lr=0.1, **extra), \
        getattr(torch.optim, opt_name)(groups(t), lr=0.1, **extra)
    s = getattr(optim.lr_scheduler, cls)(opt, **kwargs)
    ts = getattr(torch.optim.lr_scheduler, cls)(topt, **kwargs)
    assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12, abs=1e-15)
    for i in range(30):
        _step(fg, m, opt, "regression"), _step(torch, t, topt, "regression")
        s.step(), ts.step()
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12, abs=1e-15), f"step {i}"
        assert _group_state(opt) == pytest.approx(_group_state(topt), rel=1e-12, abs=1e-15, nan_ok=True), f"step {i}"
    _assert_same_params(m, t, "after 30 scheduled steps")


@pytest.mark.parametrize("sched", ["step", "multistep", "cosine", "linear_down", "onecycle"])
def test_scheduler_state_dict_resumes(sched: str) -> None:
    cls, kwargs = SCHEDULERS[sched]
    m, _ = _models()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    s = getattr(optim.lr_scheduler, cls)(opt, **kwargs)
    for _ in range(9):
        s.step()
    sd, opt_sd = s.state_dict(), opt.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 9
    opt2 = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    s2 = getattr(optim.lr_scheduler, cls)(opt2, **kwargs)
    opt2.load_state_dict(opt_sd)
    s2.load_state_dict(sd)
    for i in range(10):
        s.step(), s2.step()
        assert s2.get_last_lr() == s.get_last_lr(), f"step {i}"


@pytest.mark.parametrize("sched", ["step", "multistep", "cosine_eta_min", "linear_down"])
def test_scheduler_step_with_epoch_uses_closed_form(sched: str) -> None:
    cls, kwargs = SCHEDULERS[sched]
    m, t = _models()
    opt, topt = optim.SGD(m.parameters(), lr=0.1), torch.optim.SGD(t.parameters(), lr=0.1)
    s, ts = getattr(optim.lr_scheduler, cls)(opt, **kwargs), getattr(torch.optim.lr_scheduler, cls)(topt, **kwargs)
    for epoch in (5, 2, 11):
        s.step(epoch)
        with pytest.warns(UserWarning):
            ts.step(epoch)
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)


def test_scheduler_errors() -> None:
    m, _ = _models()
    opt = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="Optimizer"):
        optim.lr_scheduler.StepLR(object(), 3)
    with pytest.raises(ValueError, match="Starting"):
        optim.lr_scheduler.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="momentum"):
        optim.lr_scheduler.OneCycleLR(optim.Adagrad(m.parameters()), max_lr=0.1, total_steps=5)
    with pytest.raises(ValueError, match="total_steps"):
        optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1)
    s = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3, cycle_momentum=False)
    for _ in range(3):
        s.step()
    with pytest.raises(ValueError, match="Tried to step 4"):
        s.step()
    with pytest.raises(KeyError, match="initial_lr"):
        optim.lr_scheduler.StepLR(optim.SGD(m.parameters(), lr=0.1), 3, last_epoch=4)
    assert math.isclose(optim.lr_scheduler.StepLR(opt, 3).get_last_lr()[0], opt.param_groups[0]["lr"])
