"""droplab.Dropout: the module over droplab.dropout, a drop-in for torch.nn.Dropout."""

from __future__ import annotations

import copy
import pickle
import re

import pytest
import torch
from torch import nn

import droplab
from droplab.kernels.rng import derive_seed

MODES = ["inverted", "classic"]


# ----------------------------------------------------------------------------------------------
# 1. contract
# ----------------------------------------------------------------------------------------------


def test_repr_shows_hyper_parameters():
    assert repr(droplab.Dropout()) == "Dropout(p=0.5, mode='inverted', inplace=False)"
    assert (
        repr(droplab.Dropout(0.2, True, mode="classic", seed=3, backend="torch"))
        == "Dropout(p=0.2, mode='classic', inplace=True, seed=3, backend='torch')"
    )


def test_drop_in_constructor_and_attributes():
    t, d = nn.Dropout(0.3, True), droplab.Dropout(0.3, True)
    assert (d.p, d.inplace) == (t.p, t.inplace)
    assert droplab.Dropout(keep_prob=0.8).p == pytest.approx(0.2)
    assert droplab.Dropout(0.25).keep_prob == 0.75
    assert droplab.Dropout.stochastic is True
    assert droplab.Dropout is droplab.layers.Dropout


def test_state_dict_is_empty_and_torch_checkpoints_load_both_ways():
    d = droplab.Dropout(0.5, seed=1)
    d.train()(torch.ones(3))
    assert d.state_dict() == {}
    torch_model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    ours = nn.Sequential(nn.Linear(4, 3), droplab.Dropout(0.5))
    ours.load_state_dict(torch_model.state_dict(), strict=True)
    torch_model.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 4)
    assert torch.equal(ours.eval()(x), torch_model.eval()(x))


@pytest.mark.parametrize("mode", MODES)
def test_follows_training_flag(mode):
    m = droplab.Dropout(0.5, mode=mode)
    x = torch.ones(5, 5)
    train_values = {0.0, 2.0} if mode == "inverted" else {0.0, 1.0}
    assert set(m.train()(torch.ones(1000)).unique().tolist()) == train_values
    eval_out = m.eval()(x)
    assert torch.equal(eval_out, x if mode == "inverted" else x * 0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_shape_device(dtype):
    x = torch.randn(2, 3, 4).to(dtype)
    y = droplab.Dropout(0.3, seed=0)(x)
    assert y.dtype == dtype and y.shape == x.shape and y.device == x.device


def test_copy_and_pickle_keep_the_step():
    m = droplab.Dropout(0.5, seed=2)
    m(torch.ones(3))
    expected = droplab.dropout(torch.ones(50), 0.5, seed=derive_seed(2, 1))
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert c.step == 1 and c.seed == 2
        assert torch.equal(c(torch.ones(50)), expected)


# ----------------------------------------------------------------------------------------------
# 2. statistics and seeded steps
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_seeded_step_k_uses_derived_seed(mode):
    x = torch.randn(100)
    m = droplab.Dropout(0.4, mode=mode, seed=7)
    for k in range(3):
        assert torch.equal(m(x), droplab.dropout(x, 0.4, mode=mode, seed=derive_seed(7, k)))
    assert m.step == 3


def test_seeded_masks_differ_between_steps_and_repeat_between_runs():
    x = torch.ones(1000)
    a, b = droplab.Dropout(0.5, seed=9), droplab.Dropout(0.5, seed=9)
    outs_a = [a(x) for _ in range(4)]
    outs_b = [b(x) for _ in range(4)]
    assert all(torch.equal(u, v) for u, v in zip(outs_a, outs_b))
    assert not torch.equal(outs_a[0], outs_a[1])


def test_eval_does_not_advance_the_step_and_step_resumes_a_run():
    x = torch.ones(100)
    m = droplab.Dropout(0.5, seed=4)
    m(x)
    m.eval()(x)
    assert m.step == 1
    m.train()
    expected = [m(x) for _ in range(3)]
    resumed = droplab.Dropout(0.5, seed=4)
    resumed.step = 1  # restored from a checkpoint
    assert all(torch.equal(resumed(x), e) for e in expected)


def test_unseeded_module_repeats_under_manual_seed():
    x = torch.randn(500)
    m = droplab.Dropout(0.5)
    torch.manual_seed(3)
    a = m(x)
    torch.manual_seed(3)
    assert torch.equal(a, m(x))
    assert m.step == 0


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_drop_rate_within_binomial_bound(p):
    n = 100_000
    y = droplab.Dropout(p, seed=1)(torch.ones(n))
    rate = (y == 0).double().mean().item()
    assert abs(rate - p) <= 5 * (p * (1 - p) / n) ** 0.5


# ----------------------------------------------------------------------------------------------
# 3. parity
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_through_the_module(mode):
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    m = droplab.Dropout(0.3, mode=mode, seed=5)

    def f(x):
        m.step = 0  # the same mask on every call of gradcheck
        return m(x)

    assert torch.autograd.gradcheck(f, (x,))


def test_module_equals_torch_module_given_the_mask():
    torch.manual_seed(0)
    x = torch.rand(30, 30) + 0.5
    yt = nn.Dropout(0.3)(x)
    y = droplab.functional.apply_mask(x, yt != 0, droplab.Dropout(0.3).p)
    assert torch.equal(y, yt)


def test_inplace_module():
    x = torch.randn(20)
    expected = droplab.dropout(x, 0.5, seed=derive_seed(1, 0))
    y = droplab.Dropout(0.5, inplace=True, seed=1)(x)
    assert y is x and torch.equal(x, expected)


# ----------------------------------------------------------------------------------------------
# 4. edges and errors
# ----------------------------------------------------------------------------------------------


def test_p0_and_p1():
    x = torch.randn(10)
    assert droplab.Dropout(0.0)(x) is x
    assert torch.equal(droplab.Dropout(1.0)(x), torch.zeros(10))
    assert torch.equal(droplab.Dropout(1.0, mode="classic")(x), torch.zeros(10))
    assert torch.equal(droplab.Dropout(1.0, mode="classic").eval()(x), torch.zeros(10))


@pytest.mark.parametrize("shape", [(), (0,), (2, 0)])
def test_empty_and_zero_dim(shape):
    assert droplab.Dropout(0.5, seed=1)(torch.ones(shape)).shape == shape


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        ({"p": 1.5}, ValueError, "p must be a real number in [0, 1], got 1.5"),
        ({"p": True}, TypeError, "p must be a real number in [0, 1], got bool True"),
        ({"keep_prob": -1}, ValueError, "keep_prob must be a real number in [0, 1], got -1.0"),
        ({"p": 0.1, "keep_prob": 0.9}, TypeError, "give p (drop probability) or keep_prob"),
        ({"mode": "Inverted"}, ValueError, "mode must be one of 'inverted', 'classic'"),
        ({"backend": "numba"}, ValueError, "backend must be one of 'auto', 'torch', 'fast'"),
        ({"seed": -3}, ValueError, "seed must be an int in [0, 2**64 - 1], got -3"),
        ({"seed": "1"}, TypeError, "seed must be an int in [0, 2**64 - 1], got str '1'"),
    ],
)
def test_invalid_arguments_fail_at_construction(kwargs, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        droplab.Dropout(**kwargs)


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        droplab.Dropout(0.5)(torch.ones(3, dtype=torch.int32))


# ----------------------------------------------------------------------------------------------
# the tutorial examples
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_5x5_ones_in_train_and_eval(mode):
    m = droplab.Dropout(0.5, mode=mode, seed=0)
    x = torch.ones(5, 5)
    y = m.train()(x)
    kept = droplab.dropout_mask((5, 5), 0.5, seed=derive_seed(0, 0))
    assert torch.equal(y, kept * (2.0 if mode == "inverted" else 1.0))
    assert torch.equal(m.eval()(x), x if mode == "inverted" else x * 0.5)


def test_linear_then_dropout_04_shows_zeros_and_the_1_over_06_scaling():
    torch.manual_seed(0)
    lin = nn.Linear(4, 5)
    x = torch.randint(0, 10, (1, 4)).float()
    h = lin(x)
    y = droplab.Dropout(p=0.4, seed=2)(h)
    kept = y != 0
    torch.testing.assert_close(y[kept], h[kept] / 0.6)
