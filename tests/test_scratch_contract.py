"""droplab.scratch: contract, statistics, edges and errors of the NumPy engine."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import numpy as np
import pytest

from droplab import _checks, scratch
from droplab.scratch.mask import derive_seed, stream_key


def test_scratch_never_imports_torch_or_numba():
    code = (
        "import sys, droplab.scratch as s; import droplab.scratch.gradcheck; "
        "bad = [m for m in ('torch', 'numba') if m in sys.modules]; "
        "assert not bad, bad; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_public_names():
    for name in (
        "Parameter",
        "Module",
        "Sequential",
        "Linear",
        "ReLU",
        "Sigmoid",
        "Tanh",
        "Dropout",
        "CrossEntropyLoss",
        "BCELoss",
        "L1Loss",
        "MSELoss",
        "SmoothL1Loss",
        "dropout_mask",
        "grad_check",
        "optim",
        "lr_scheduler",
    ):
        assert hasattr(scratch, name), name


# ----------------------------------------------------------------------------------------------
# the torch twins: derive_seed and the error texts
# ----------------------------------------------------------------------------------------------


def test_derive_seed_equals_the_torch_engines():
    from droplab.kernels import rng

    for seed in (0, 1, 42, 2**63, 2**64 - 1):
        assert stream_key(seed) == rng.stream_key(seed)
        for step in (0, 1, 2, 1000, 2**40):
            assert derive_seed(seed, step) == rng.derive_seed(seed, step)
    assert len({derive_seed(7, k) for k in range(1000)}) == 1000


BAD_P = [-0.1, 1.5, float("nan"), True, "0.5", None, np.array([0.5, 0.5])]


@pytest.mark.parametrize("bad", BAD_P, ids=repr)
def test_check_p_text_equals_functional(bad):
    functional = pytest.importorskip("droplab.functional")
    with pytest.raises((TypeError, ValueError)) as theirs:
        functional.check_p(bad)
    with pytest.raises(theirs.type, match=re.escape(str(theirs.value))):
        _checks.check_p(bad)
    if bad is not None:  # Dropout(None) means the default p
        with pytest.raises(theirs.type, match=re.escape(str(theirs.value))):
            scratch.Dropout(bad)


def test_resolve_p_and_mode_texts_equal_functional():
    functional = pytest.importorskip("droplab.functional")
    for call in (
        lambda m: m.resolve_p(0.2, 0.8),
        lambda m: m.resolve_p(None, 2.0),
        lambda m: m.check_mode("standard"),
    ):
        with pytest.raises((TypeError, ValueError)) as theirs:
            call(functional)
        with pytest.raises(theirs.type, match=re.escape(str(theirs.value))):
            call(_checks)
    assert _checks.MODES == functional.MODES


def test_dropout_errors():
    with pytest.raises(TypeError, match="give p"):
        scratch.Dropout(0.2, keep_prob=0.8)
    with pytest.raises(ValueError, match="mode must be one of 'inverted', 'classic'"):
        scratch.Dropout(0.2, mode="scaled")
    with pytest.raises(ValueError, match=re.escape("seed must be an int in [0, 2**64 - 1]")):
        scratch.Dropout(0.2, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        scratch.Dropout(0.2, seed=1.5)


# ----------------------------------------------------------------------------------------------
# Dropout: behaviour and statistics
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["inverted", "classic"])
@pytest.mark.parametrize("seed", [None, 3])
def test_dropout_kept_values_exact_and_rate_within_binomial_bound(mode, seed):
    p, n = 0.3, 200_000
    x = np.random.default_rng(0).uniform(0.5, 2, size=n)
    drop = scratch.Dropout(p, mode=mode, seed=seed, rng=0)
    y = drop(x)
    kept = y != 0
    expected = x / (1 - p) if mode == "inverted" else x
    np.testing.assert_array_equal(y[kept], expected[kept])  # exact, not approximately
    np.testing.assert_array_equal(kept, drop.mask)
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    dLdX = drop.backward(np.ones(n))
    np.testing.assert_array_equal(
        dLdX, np.where(kept, 1 / (1 - p) if mode == "inverted" else 1.0, 0)
    )
    assert drop.step == (0 if seed is None else 1)  # counts seeded steps, as droplab.Dropout


def test_dropout_eval_and_modes():
    x = np.arange(1.0, 5.0)
    inv, cls = scratch.Dropout(0.25).eval(), scratch.Dropout(0.25, mode="classic").eval()
    assert inv(x) is x
    np.testing.assert_array_equal(cls(x), x * 0.75)
    np.testing.assert_array_equal(cls.backward(np.ones(4)), np.full(4, 0.75))
    np.testing.assert_array_equal(inv.backward(np.ones(4)), np.ones(4))
    assert inv.step == 0


def test_dropout_p_zero_and_one():
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    zero = scratch.Dropout(0.0)
    np.testing.assert_array_equal(zero(x), x)
    np.testing.assert_array_equal(zero.backward(x), x)
    for mode in ("inverted", "classic"):
        one = scratch.Dropout(1.0, mode=mode, seed=0)
        y = one(x)
        assert y.dtype == x.dtype and not y.any() and np.isfinite(y).all()
        assert not one.backward(np.ones_like(x)).any()
    assert not scratch.Dropout(1.0, mode="classic").eval()(x).any()
    np.testing.assert_array_equal(scratch.Dropout(1.0).eval()(x), x)


def test_dropout_keep_prob_and_shapes():
    assert scratch.Dropout(keep_prob=0.8).p == pytest.approx(0.2)
    drop = scratch.Dropout(0.5, seed=1)
    assert drop(np.zeros((0, 3))).shape == (0, 3)
    assert drop(np.float64(2.0)).shape == ()
    assert drop(np.ones((2, 3, 4), dtype=np.float32)).dtype == np.float32


def test_seeded_dropout_steps_through_derived_seeds():
    drop = scratch.Dropout(0.5, seed=9)
    masks = [drop(np.ones((4, 5))) != 0 for _ in range(3)]
    assert drop.step == 3
    for k, m in enumerate(masks):
        np.testing.assert_array_equal(m, scratch.dropout_mask((4, 5), 0.5, seed=derive_seed(9, k)))
    assert not all((masks[0] == m).all() for m in masks[1:])
    again = scratch.Dropout(0.5, seed=9)
    again.step = 2  # resuming a run: set the counter
    np.testing.assert_array_equal(again(np.ones((4, 5))) != 0, masks[2])


def test_freeze_masks_reuses_the_mask_and_restores():
    drop = scratch.Dropout(0.5, seed=0)
    net = scratch.Sequential(drop)
    with scratch.freeze_masks(net):
        a, b = net(np.ones(50)), net(np.ones(50))
        assert drop.step == 1
    np.testing.assert_array_equal(a, b)
    assert not drop.frozen
    net(np.ones(50))
    assert drop.step == 2


def test_dropout_does_not_mutate_inputs():
    x = np.ones((4, 4))
    g = np.ones((4, 4))
    drop = scratch.Dropout(0.5, seed=0)
    drop(x)
    drop.backward(g)
    assert (x == 1).all() and (g == 1).all()


def test_repr():
    net = scratch.Sequential(scratch.Linear(3, 2), scratch.Dropout(0.2, seed=4))
    text = repr(net)
    assert "Linear(in_features=3, out_features=2, bias=True)" in text
    assert "Dropout(p=0.2, mode='inverted', seed=4)" in text
    assert "(1): Dropout" in text


# ----------------------------------------------------------------------------------------------
# modules: bookkeeping
# ----------------------------------------------------------------------------------------------


def test_train_eval_propagate():
    net = scratch.Sequential(scratch.Linear(2, 2), scratch.Sequential(scratch.Dropout(0.5)))
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_state_dict_roundtrip_and_errors():
    a = scratch.Sequential(scratch.Linear(3, 4, rng=0), scratch.ReLU(), scratch.Linear(4, 2, rng=1))
    b = scratch.Sequential(scratch.Linear(3, 4, rng=5), scratch.ReLU(), scratch.Linear(4, 2, rng=6))
    sd = a.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    b.load_state_dict(sd)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    sd["0.weight"][...] = 0  # a copy: the model is untouched
    assert a[0].weight.data.any()
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"0.weight": sd["0.weight"]})
    with pytest.raises(ValueError, match="shape mismatch for 0.weight"):
        b.load_state_dict({**a.state_dict(), "0.weight": np.zeros((4, 4))})


def test_load_state_dict_from_torch_keeps_dtype():
    torch = pytest.importorskip("torch")
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net = scratch.Sequential(scratch.Linear(3, 4), scratch.ReLU(), scratch.Linear(4, 2))
    net.load_state_dict(twin.state_dict())
    np.testing.assert_array_equal(net[2].bias.data, twin[2].bias.detach().numpy())
    assert net[0].weight.dtype == np.float32


def test_gradients_accumulate_and_zero_grad():
    layer = scratch.Linear(3, 2, dtype=np.float64, rng=0)
    x, g = np.ones((4, 3)), np.ones((4, 2))
    layer(x)
    layer.backward(g)
    once = layer.weight.grad.copy()
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * once)
    layer.zero_grad()
    assert not layer.weight.grad.any()


def test_astype_and_deepcopy():
    net = scratch.Sequential(scratch.Linear(3, 2, rng=0))
    twin = copy.deepcopy(net).astype(np.float64)
    assert twin[0].weight.dtype == np.float64 and net[0].weight.dtype == np.float32
    assert twin(np.ones((1, 3))).dtype == np.float64


def test_linear_does_not_mutate_inputs():
    layer = scratch.Linear(3, 2, rng=0)
    x = np.ones((4, 3), dtype=np.float32)
    g = np.ones((4, 2), dtype=np.float32)
    layer(x)
    layer.backward(g)
    assert (x == 1).all() and (g == 1).all()


def test_flatten():
    f = scratch.Flatten()
    x = np.zeros((5, 1, 28, 28))
    assert f(x).shape == (5, 784)
    assert f.backward(np.zeros((5, 784))).shape == (5, 1, 28, 28)
