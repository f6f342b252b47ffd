"""droplab.scratch.grad_check: passes on correct backward passes, flags a wrong one clearly."""

from __future__ import annotations

import numpy as np
import pytest

from droplab import scratch


def dropout_mlp(dtype=np.float32):
    return scratch.Sequential(
        scratch.Linear(6, 8, dtype=dtype, rng=0),
        scratch.ReLU(),
        scratch.Dropout(0.3, seed=1),
        scratch.Linear(8, 7, dtype=dtype, rng=1),
        scratch.Tanh(),
        scratch.Dropout(0.5, rng=2),
        scratch.Linear(7, 4, dtype=dtype, rng=2),
    )


def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 6)), rng.integers(0, 4, size=5)


def test_passes_on_a_dropout_mlp_and_leaves_the_model_alone():
    net = dropout_mlp()
    before = net.state_dict()
    x, y = batch()
    result = scratch.grad_check(net, scratch.CrossEntropyLoss(), x, y, check_input=True)
    assert result.passed, str(result)
    assert result.max_rel_error < 1e-7
    assert set(result.errors) == {
        "0.weight",
        "0.bias",
        "3.weight",
        "3.bias",
        "6.weight",
        "6.bias",
        "input",
    }
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert net[2].step == 0 and net[0].weight.dtype == np.float32  # a copy was checked
    # dropout really was active: some masks zero some units
    assert (result.analytic["input"] != 0).any()


@pytest.mark.parametrize(
    "loss_fn, target",
    [
        (scratch.MSELoss(), lambda rng: rng.normal(size=(5, 4))),
        (scratch.L1Loss(reduction="sum"), lambda rng: rng.normal(size=(5, 4))),
        (scratch.SmoothL1Loss(beta=0.5), lambda rng: rng.normal(size=(5, 4))),
        (scratch.CrossEntropyLoss(reduction="sum"), lambda rng: rng.dirichlet(np.ones(4), size=5)),
    ],
    ids=["MSE", "L1-sum", "SmoothL1", "CE-probabilities"],
)
def test_passes_for_every_loss(loss_fn, target):
    net = scratch.Sequential(
        scratch.Linear(6, 5, rng=0), scratch.Sigmoid(), scratch.Linear(5, 4, rng=1)
    )
    x, _ = batch()
    result = scratch.grad_check(net, loss_fn, x, target(np.random.default_rng(1)))
    assert result.passed, str(result)


def test_bce_with_sigmoid_output():
    net = scratch.Sequential(scratch.Linear(6, 3, rng=0), scratch.Sigmoid())
    x, _ = batch()
    t = np.random.default_rng(3).uniform(size=(5, 3))
    assert scratch.grad_check(net, scratch.BCELoss(), x, t).passed


class BuggyReLU(scratch.ReLU):
    """A wrong backward: forgets to zero the gradient of negative inputs."""

    def backward(self, dLdy, *, input_grad=True):
        return dLdy


class BuggyLinear(scratch.Linear):
    """A wrong backward: the bias gradient is the mean, not the sum, over the batch."""

    def backward(self, dLdy, *, input_grad=True):
        dLdX = super().backward(dLdy, input_grad=input_grad)
        self.bias.grad -= dLdy.sum(axis=0) - dLdy.mean(axis=0)
        return dLdX


def test_fails_clearly_on_a_wrong_backward():
    x, y = batch()
    net = scratch.Sequential(scratch.Linear(6, 8, rng=0), BuggyReLU(), scratch.Linear(8, 4, rng=1))
    result = scratch.grad_check(net, scratch.CrossEntropyLoss(), x, y)
    assert not result.passed and not result
    assert result.errors["0.weight"] > 1e-3  # below the bug: wrong
    assert result.errors["2.weight"] < 1e-7  # above it: right
    text = str(result)
    assert "FAILED" in text and "0.weight" in text and "<-- wrong gradient" in text

    net = scratch.Sequential(BuggyLinear(6, 4, rng=0))
    result = scratch.grad_check(net, scratch.MSELoss(), x, np.zeros((5, 4)))
    assert not result.passed
    assert result.errors["0.bias"] > 0.1 and result.errors["0.weight"] < 1e-7


def test_rel_error_definition():
    assert scratch.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    g, n = np.array([3.0, 4.0]), np.array([3.0, 4.0 + 1e-6])
    assert scratch.rel_error(g, n) == pytest.approx(1e-6 / (5 + np.linalg.norm(n)))


def test_needs_a_scalar_loss():
    x, y = batch()
    with pytest.raises(ValueError, match="scalar loss"):
        scratch.grad_check(dropout_mlp(), scratch.CrossEntropyLoss(reduction="none"), x, y)
