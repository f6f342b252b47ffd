"""droplab.scratch.optim and lr_scheduler against torch.optim, step by step, in float64."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from droplab import scratch
from droplab.scratch import lr_scheduler, optim

X_IN = np.array([0.3, -1.2, 0.8, 2.0])
TARGET = np.array([1.0, -0.5, 0.25])


def objective_grads(W: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of a non-quadratic function of a matrix and a vector:
    ``f = sum log(1 + r^2) + 0.05 sum W^4 + 0.05 sum cos v``, ``r = W x + v - t``."""
    r = W @ X_IN + v - TARGET
    dr = 2 * r / (1 + r * r)
    return np.outer(dr, X_IN) + 0.2 * W**3, dr - 0.05 * np.sin(v)


def initial_params():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 4)), rng.normal(size=3)


def run_scratch(opt_cls, kwargs, steps, params=None, state=None):
    W0, v0 = initial_params() if params is None else params
    W, v = scratch.Parameter(W0), scratch.Parameter(v0)
    opt = opt_cls([W, v], **kwargs)
    if state is not None:
        opt.load_state_dict(state)
    for _ in range(steps):
        opt.zero_grad()
        gW, gv = objective_grads(W.data, v.data)
        if kwargs.get("maximize"):  # ascend -f
            gW, gv = -gW, -gv
        W.grad += gW
        v.grad += gv
        opt.step()
    return W.data, v.data, opt


def run_torch(opt_cls, kwargs, steps):
    W0, v0 = initial_params()
    W, v = torch.tensor(W0, requires_grad=True), torch.tensor(v0, requires_grad=True)
    opt = opt_cls([W, v], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        gW, gv = objective_grads(W.detach().numpy(), v.detach().numpy())
        if kwargs.get("maximize"):
            gW, gv = -gW, -gv
        W.grad, v.grad = torch.from_numpy(gW), torch.from_numpy(gv)
        opt.step()
    return W.detach().numpy(), v.detach().numpy()


CASES = [
    (optim.SGD, torch.optim.SGD, dict(lr=0.1)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.9)),  # the tutorial's form
    (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.5, weight_decay=0.01)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, maximize=True)),  # ascends -f
    (optim.Adam, torch.optim.Adam, dict(lr=0.01, maximize=True)),
    (optim.Adagrad, torch.optim.Adagrad, dict()),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.01)),
    (
        optim.Adagrad,
        torch.optim.Adagrad,
        dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6),
    ),
    (optim.RMSprop, torch.optim.RMSprop, dict()),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-6)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.001, momentum=0.9)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    (
        optim.RMSprop,
        torch.optim.RMSprop,
        dict(lr=0.005, centered=True, momentum=0.5, weight_decay=0.1),
    ),
    (optim.Adam, torch.optim.Adam, dict()),
    (optim.Adam, torch.optim.Adam, dict(lr=0.01)),
    (optim.Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.Adam, torch.optim.Adam, dict(lr=0.005, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
]


@pytest.mark.parametrize(
    "ours, theirs, kwargs", CASES, ids=lambda c: str(c) if isinstance(c, dict) else c.__name__
)
def test_optimizer_matches_torch_over_100_steps(ours, theirs, kwargs):
    W, v, _ = run_scratch(ours, kwargs, 100)
    tW, tv = run_torch(theirs, kwargs, 100)
    W0, _ = initial_params()
    assert not np.allclose(W, W0), "the optimizer did not move"
    np.testing.assert_allclose(
        W, tW, rtol=1e-9, atol=1e-12, err_msg=f"{ours.__name__} W: ours vs torch"
    )
    np.testing.assert_allclose(
        v, tv, rtol=1e-9, atol=1e-12, err_msg=f"{ours.__name__} v: ours vs torch"
    )


@pytest.mark.parametrize("ours", [optim.SGD, optim.Adagrad, optim.RMSprop, optim.Adam])
def test_defaults_follow_torch(ours):
    torch_cls = getattr(torch.optim, ours.__name__)
    p = scratch.Parameter(np.zeros(2))
    tp = torch.zeros(2, requires_grad=True)
    mine, theirs = ours([p]).defaults, torch_cls([tp]).defaults
    for key, value in mine.items():
        assert theirs[key] == value, (
            f"{ours.__name__} default {key}: ours {value} vs torch {theirs[key]}"
        )


@pytest.mark.parametrize("ours, _, kwargs", [CASES[2], CASES[9], CASES[14], CASES[17]])
def test_state_dict_resume_is_exact(ours, _, kwargs):
    W, v, _opt = run_scratch(ours, kwargs, 100)
    W50, v50, opt50 = run_scratch(ours, kwargs, 50)
    state = copy.deepcopy(opt50.state_dict())
    W2, v2, _opt = run_scratch(ours, kwargs, 50, params=(W50.copy(), v50.copy()), state=state)
    np.testing.assert_array_equal(W, W2)
    np.testing.assert_array_equal(v, v2)


def test_state_dict_layout_is_torchs():
    W, v = scratch.Parameter(np.zeros((2, 2))), scratch.Parameter(np.zeros(2))
    opt = optim.SGD([{"params": [W]}, {"params": [v], "lr": 0.5}], lr=0.1, momentum=0.9)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["lr"] == 0.1
    assert set(sd["state"]) == {0, 1} and "momentum_buffer" in sd["state"][0]


def test_invalid_hyperparameters():
    p = [scratch.Parameter(np.zeros(1))]
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD(p, lr=-1)
    with pytest.raises(
        ValueError, match="Nesterov momentum requires a momentum and zero dampening"
    ):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)


# ----------------------------------------------------------------------------------------------
# schedulers
# ----------------------------------------------------------------------------------------------

SCHEDULES = [
    ("StepLR", dict(step_size=30, gamma=0.1)),
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[150, 30, 80, 80], gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.97)),
]


def schedule(module, opt, name, kwargs, epochs=200):
    sched = getattr(module, name)(opt, **kwargs)
    lrs = [sched.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    return lrs, sched


@pytest.mark.parametrize("name, kwargs", SCHEDULES, ids=[s[0] + str(s[1]) for s in SCHEDULES])
def test_scheduler_matches_torch_over_200_epochs(name, kwargs):
    ps = [scratch.Parameter(np.zeros(1)), scratch.Parameter(np.zeros(1))]
    ours = optim.SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.03}], lr=0.5)
    ts = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    theirs = torch.optim.SGD([{"params": ts[:1]}, {"params": ts[1:], "lr": 0.03}], lr=0.5)
    for t in ts:
        t.grad = torch.zeros(1)
    mine, _ = schedule(lr_scheduler, ours, name, kwargs)
    gold, _ = schedule(torch.optim.lr_scheduler, theirs, name, kwargs)
    assert mine == gold  # the same floats, epoch by epoch
    assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]


@pytest.mark.parametrize("name, kwargs", SCHEDULES[:1] + SCHEDULES[2:])
def test_scheduler_resume(name, kwargs):
    def fresh():
        return optim.SGD([scratch.Parameter(np.zeros(1))], lr=0.5)

    full, _ = schedule(lr_scheduler, fresh(), name, kwargs, epochs=100)
    opt = fresh()
    first, sched = schedule(lr_scheduler, opt, name, kwargs, epochs=40)
    opt_state, sched_state = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    opt2 = fresh()
    sched2 = getattr(lr_scheduler, name)(opt2, **kwargs)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    rest = []
    for _ in range(60):
        opt2.step()
        sched2.step()
        rest.append(sched2.get_last_lr())
    assert first + rest == full
