"""droplab.scratch losses against torch.nn in float64: every value and every gradient."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from droplab import scratch

REDUCTIONS = ("mean", "sum", "none")


def assert_close(ours, theirs, what: str, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape ours {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=f"{what}: ours vs torch")


def torch_value_and_grad(torch_loss, x: np.ndarray, t, upstream=None):
    xt = torch.tensor(x, requires_grad=True)
    tt = torch.as_tensor(t)
    out = torch_loss(xt, tt)
    out.backward(None if upstream is None else torch.as_tensor(upstream))
    return out.detach().numpy(), xt.grad.numpy()


def check(ours, theirs, x, t, label: str) -> None:
    value = ours(x, t)
    upstream = None
    if ours.reduction == "none":
        upstream = np.random.default_rng(3).normal(size=np.shape(value))
    grad = ours.backward(upstream)
    t_value, t_grad = torch_value_and_grad(theirs, x, t, upstream)
    assert_close(value, t_value, f"{label} value")
    assert_close(grad, t_grad, f"{label} gradient")
    assert grad.dtype == x.dtype


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_indices(reduction):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3, size=(7, 5))
    y = rng.integers(0, 5, size=7)
    check(
        scratch.CrossEntropyLoss(reduction=reduction),
        torch.nn.CrossEntropyLoss(reduction=reduction),
        x,
        y,
        f"CE indices {reduction}",
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_and_one_hot(reduction):
    rng = np.random.default_rng(1)
    x = rng.normal(scale=3, size=(6, 4))
    probs = rng.dirichlet(np.ones(4), size=6)
    one_hot = np.eye(4)[rng.integers(0, 4, size=6)]
    for t, label in ((probs, "probabilities"), (one_hot, "one-hot")):
        check(
            scratch.CrossEntropyLoss(reduction=reduction),
            torch.nn.CrossEntropyLoss(reduction=reduction),
            x,
            t,
            f"CE {label} {reduction}",
        )


def test_cross_entropy_one_hot_equals_indices():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3))
    y = rng.integers(0, 3, size=5)
    a, b = scratch.CrossEntropyLoss(), scratch.CrossEntropyLoss()
    np.testing.assert_allclose(a(x, y), b(x, np.eye(3)[y]), rtol=1e-14)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-14, atol=1e-16)


def test_cross_entropy_is_stable_for_huge_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]])
    y = np.array([2, 0])
    ours = scratch.CrossEntropyLoss()
    value, grad = ours(x, y), ours.backward()
    t_value, t_grad = torch_value_and_grad(torch.nn.CrossEntropyLoss(), x, y)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert_close(value, t_value, "CE huge logits value")
    assert_close(grad, t_grad, "CE huge logits gradient")


def test_cross_entropy_float32_keeps_dtype():
    x = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    loss_fn = scratch.CrossEntropyLoss()
    value = loss_fn(x, np.arange(4))
    assert value.dtype == np.float32 and loss_fn.backward().dtype == np.float32


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (scratch.MSELoss, torch.nn.MSELoss),
        (scratch.L1Loss, torch.nn.L1Loss),
        (scratch.SmoothL1Loss, torch.nn.SmoothL1Loss),
    ],
    ids=["MSE", "L1", "SmoothL1"],
)
def test_regression_losses(ours, theirs, reduction):
    rng = np.random.default_rng(4)
    x = rng.normal(scale=2, size=(6, 3))
    t = rng.normal(scale=2, size=(6, 3))
    t[0, 0] = x[0, 0]  # a zero difference: L1's gradient is 0 there, as torch's
    check(
        ours(reduction=reduction), theirs(reduction=reduction), x, t, f"{ours.__name__} {reduction}"
    )


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_smooth_l1_beta(beta):
    rng = np.random.default_rng(5)
    x, t = rng.normal(scale=2, size=(20,)), rng.normal(scale=2, size=(20,))
    check(
        scratch.SmoothL1Loss(beta=beta), torch.nn.SmoothL1Loss(beta=beta), x, t, f"SmoothL1 {beta}"
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce(reduction):
    rng = np.random.default_rng(6)
    x = rng.uniform(0.01, 0.99, size=(5, 4))
    x[0, 0], x[0, 1] = 0.0, 1.0  # clamped logs: finite values, as torch
    t = rng.uniform(0, 1, size=(5, 4))
    t[0, 0], t[0, 1] = 0.0, 1.0
    check(scratch.BCELoss(reduction=reduction), torch.nn.BCELoss(reduction=reduction), x, t, "BCE")
    w = rng.uniform(0.5, 2, size=(4,))
    check(
        scratch.BCELoss(weight=w, reduction=reduction),
        torch.nn.BCELoss(weight=torch.tensor(w), reduction=reduction),
        x,
        t,
        "BCE weight",
    )


def test_bce_rejects_out_of_range():
    with pytest.raises(ValueError, match="between 0 and 1"):
        scratch.BCELoss()(np.array([1.5]), np.array([1.0]))


def test_backward_scales_with_upstream_and_needs_forward():
    x, t = np.arange(4.0), np.zeros(4)
    loss_fn = scratch.MSELoss()
    with pytest.raises(RuntimeError, match="before backward"):
        loss_fn.backward()
    loss_fn(x, t)
    np.testing.assert_allclose(loss_fn.backward(3.0), 3 * loss_fn.backward())


def test_bad_reduction_and_shapes():
    with pytest.raises(
        ValueError, match=re.escape("reduction must be one of 'mean', 'sum', 'none'")
    ):
        scratch.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="target shape"):
        scratch.MSELoss()(np.zeros(3), np.zeros(4))
    with pytest.raises(IndexError, match="out of range"):
        scratch.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 3]))


def test_l2_penalty_equals_weight_decay():
    """Cost + lambda/(2m)||W||^2 with plain SGD == SGD(weight_decay=lambda/m) on the weights."""
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(30, 5)), rng.integers(0, 3, size=30)
    lambd, m = 0.7, 30

    def make():
        return scratch.Sequential(
            scratch.Linear(5, 8, dtype=np.float64, rng=0),
            scratch.Tanh(),
            scratch.Linear(8, 3, dtype=np.float64, rng=1),
        )

    a, b = make(), make()
    weights = lambda net: [net[0].weight, net[2].weight]  # noqa: E731
    biases = lambda net: [net[0].bias, net[2].bias]  # noqa: E731
    pen = scratch.L2Penalty(weights(a), lambd, m)
    opt_a = scratch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = scratch.optim.SGD(
        [{"params": weights(b), "weight_decay": lambd / m}, {"params": biases(b)}], lr=0.1
    )
    loss_a, loss_b = scratch.CrossEntropyLoss(), scratch.CrossEntropyLoss()
    for _ in range(20):
        opt_a.zero_grad()
        cost = float(loss_a(a(X), y)) + pen()
        a.backward(loss_a.backward())
        pen.backward()
        opt_a.step()
        opt_b.zero_grad()
        loss_b(b(X), y)
        b.backward(loss_b.backward())
        opt_b.step()
    assert cost > 0
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(pa.data, pb.data, rtol=1e-12, atol=1e-14, err_msg=name)
    expected = lambd / (2 * m) * sum(float((w.data**2).sum()) for w in weights(a))
    assert pen() == pytest.approx(expected, rel=1e-15)
