"""droplab.check_scaling and droplab.replace_dropout."""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings

import pytest
import torch
from torch import nn

import droplab
from droplab import layers
from droplab.kernels.rng import derive_seed
from droplab.tools import ScalingCheck, check_scaling, replace_dropout
from droplab.tour.sections.s01_custom_dropout import CustomDropout


class UnscaledDropout(CustomDropout):
    """Scales in neither place: train x * m, eval x."""

    def forward(self, x):
        return x * (torch.rand(x.shape) > self.p).float() if self.training else x


# ----------------------------------------------------------------------------------------------
# check_scaling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_passes_torch_dropout(p):
    result = check_scaling(nn.Dropout(p))
    assert result.consistent and bool(result), result.message
    assert abs(result.ratio - 1) <= result.tolerance
    assert result.message.startswith("consistent")


@pytest.mark.parametrize("mode", ["inverted", "classic"])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.8])
@pytest.mark.parametrize("seed", [None, 3])
def test_passes_droplab_dropout_both_modes(mode, p, seed):
    assert check_scaling(droplab.Dropout(p, mode=mode, seed=seed)).consistent


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9])
def test_flags_the_tutorials_double_scaling(p):
    result = check_scaling(CustomDropout(p))
    assert not result.consistent and not result
    # E[train] = x, eval = x * (1 - p): the ratio is 1 / (1 - p)
    assert abs(result.ratio - 1 / (1 - p)) <= result.tolerance
    assert "scales twice" in result.message


def test_flags_a_layer_that_never_scales():
    result = check_scaling(UnscaledDropout(0.3))
    assert not result.consistent
    assert abs(result.ratio - 0.7) <= result.tolerance
    assert "scales in neither place" in result.message


def test_tutorial_layer_on_5x5_ones():
    result = check_scaling(CustomDropout(0.5), torch.ones(5, 5), samples=400)
    assert not result.consistent
    assert abs(result.ratio - 2) <= result.tolerance


def test_tolerance_is_the_binomial_standard_error():
    # inverted dropout on n ones: sd of one sample's ratio is sqrt(p / ((1 - p) n))
    p, n, samples = 0.5, 64 * 128, 200
    result = check_scaling(nn.Dropout(p), samples=samples)
    binomial = 6 * (p / ((1 - p) * n * samples)) ** 0.5
    assert 0.7 * binomial <= result.tolerance <= 1.3 * binomial


def test_no_false_alarms_over_many_global_seeds():
    for s in range(20):
        torch.manual_seed(s)
        assert check_scaling(nn.Dropout(0.3), samples=50).consistent


def test_works_with_signed_input_and_a_model_with_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), droplab.Dropout(0.4), nn.Linear(32, 4))
    assert check_scaling(model, torch.randn(256, 16)).consistent
    assert not check_scaling(
        nn.Sequential(nn.Linear(16, 32), CustomDropout(0.4)), torch.randn(256, 16)
    ).consistent


def test_deterministic_modules_and_p_edges():
    assert check_scaling(nn.Identity()).consistent
    assert check_scaling(droplab.Dropout(0.0)).consistent
    assert check_scaling(droplab.Dropout(1.0, mode="classic")).consistent  # zeros both ways
    assert not check_scaling(droplab.Dropout(1.0)).consistent  # zeros vs x


def test_restores_training_flags_rng_step_and_runs_without_grad():
    model = nn.Sequential(nn.Linear(4, 4), droplab.Dropout(0.5, seed=1), nn.Dropout(0.5))
    model.train()
    model[0].eval()  # a mixed state must come back as it was
    model[1].step = 5
    flags = [m.training for m in model.modules()]
    x = torch.randn(8, 4)
    state = torch.get_rng_state()
    result = check_scaling(model, x)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(state, torch.get_rng_state())
    assert model[1].step == 5
    assert model[0].weight.grad is None
    assert isinstance(result, ScalingCheck)


def test_restores_flags_after_an_exception():
    class Broken(nn.Module):
        def forward(self, x):
            if self.training:
                raise RuntimeError("boom")
            return x

    m = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        check_scaling(m)
    assert m.training


def test_result_is_a_frozen_dataclass():
    result = check_scaling(nn.Dropout(0.5), samples=10)
    assert result.expected == 1.0 and result.samples == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ratio = 2.0


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"samples": 1}, "samples must be an int >= 2, got 1"),
        ({"samples": 10.0}, "samples must be an int >= 2, got 10.0"),
        ({"z": 0}, "z must be a positive number, got 0"),
    ],
)
def test_check_scaling_invalid_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        check_scaling(nn.Dropout(0.5), **kwargs)


# ----------------------------------------------------------------------------------------------
# replace_dropout
# ----------------------------------------------------------------------------------------------

KINDS = {
    "Dropout": nn.Dropout,
    "Dropout1d": nn.Dropout1d,
    "Dropout2d": nn.Dropout2d,
    "Dropout3d": nn.Dropout3d,
    "AlphaDropout": nn.AlphaDropout,
    "FeatureAlphaDropout": nn.FeatureAlphaDropout,
}


def test_replaces_every_kind_recursively_keeping_p_inplace_and_flags():
    inner = nn.Sequential(*(cls(0.1 * (i + 1)) for i, cls in enumerate(KINDS.values())))
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(inner), nn.Dropout(0.7, inplace=True))
    inner[2].eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = replace_dropout(model)
    assert out is model
    missing = {str(w.message) for w in caught}
    for i, name in enumerate(KINDS):
        m = model[1][0][i]
        assert m.p == pytest.approx(0.1 * (i + 1))
        if hasattr(layers, name):
            assert type(m) is getattr(layers, name)
        else:  # not written yet: torch's module stays, with a warning naming it
            assert type(m) is KINDS[name]
            assert f"droplab has no {name}; torch.nn.{name} left in place" in missing
    assert model[1][0][2].training is False and model[1][0][1].training is True
    assert type(model[2]) is droplab.Dropout and model[2].inplace and model[2].p == 0.7
    assert type(model[0]) is nn.Linear


def test_kwargs_reach_the_droplab_modules_and_seeds_differ_per_module():
    model = nn.Sequential(nn.Dropout(0.5), nn.Dropout(0.5))
    replace_dropout(model, mode="classic", seed=3, backend="torch")
    assert [m.mode for m in model] == ["classic", "classic"]
    assert [m.backend for m in model] == ["torch", "torch"]
    assert [m.seed for m in model] == [derive_seed(3, 0), derive_seed(3, 1)]
    x = torch.ones(1000)
    assert not torch.equal(model[0](x), model[1](x))


def test_shared_module_is_replaced_by_one_module_and_subclasses_are_left():
    class MyDropout(nn.Dropout):
        pass

    shared = nn.Dropout(0.2)
    model = nn.ModuleDict({"a": shared, "b": nn.Sequential(shared), "c": MyDropout(0.3)})
    replace_dropout(model)
    assert model["a"] is model["b"][0] and type(model["a"]) is droplab.Dropout
    assert type(model["c"]) is MyDropout


def test_a_dropout_module_itself_is_returned_replaced():
    new = replace_dropout(nn.Dropout(0.25).eval())
    assert type(new) is droplab.Dropout and new.p == 0.25 and not new.training


def test_transformer_encoder_layer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.2)
    reference = copy.deepcopy(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left out of reach: no warning
        replace_dropout(layer, seed=1)
    for name in ("dropout", "dropout1", "dropout2"):
        assert type(getattr(layer, name)) is droplab.Dropout
        assert getattr(layer, name).p == 0.2
    x = torch.randn(5, 3, 16)
    # eval (and torch's fused inference path): the same outputs as before
    layer.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), reference(x))
    torch.testing.assert_close(layer(x), reference(x))
    # train: every dropout, attention's included, comes from droplab: the seed fixes the output
    layer.train()
    called = []
    for name in ("dropout", "dropout1", "dropout2"):
        getattr(layer, name).register_forward_hook(lambda m, i, o, n=name: called.append(n))
    torch.manual_seed(10)
    a = layer(x)
    for name in ("dropout", "dropout1", "dropout2"):
        getattr(layer, name).step = 0
    assert layer.self_attn.forward.router.step == 1
    layer.self_attn.forward.router.step = 0
    torch.manual_seed(11)
    b = layer(x)
    assert torch.equal(a, b)
    assert sorted(set(called)) == ["dropout", "dropout1", "dropout2"]
    assert a.requires_grad
    a.sum().backward()


def test_replaced_model_trains_like_the_torch_model_in_eval():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    reference = copy.deepcopy(model).eval()
    replace_dropout(model).eval()
    x = torch.randn(4, 8)
    assert torch.equal(model(x), reference(x))


def test_docstring_examples_run():
    import doctest

    from droplab import tools

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(tools, optionflags=flags)
    assert result.attempted >= 10 and result.failed == 0


def test_restore_dropout_undoes_replace_dropout_and_refuses_non_modules():
    mha = nn.MultiheadAttention(8, 2, dropout=0.1)
    drop = nn.Dropout(0.3)
    model = nn.Sequential(drop, nn.Sequential(mha))
    replace_dropout(model, seed=0)
    assert type(model[0]) is droplab.Dropout and "forward" in mha.__dict__
    assert droplab.tools.restore_dropout(model) is model
    assert model[0] is drop and "forward" not in mha.__dict__
    assert droplab.tools.restore_dropout(replace_dropout(nn.Dropout(0.2))).__class__ is nn.Dropout
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got int 3"):
        droplab.tools.restore_dropout(3)


def test_kwargs_a_constructor_does_not_take_are_left_out():
    from _timm_like import DropPath

    model = replace_dropout(nn.Sequential(nn.Dropout(0.1), DropPath(0.2)), backend="torch")
    assert model[0].backend == "torch" and type(model[1]) is droplab.DropPath


def test_classic_mode_warns_that_attention_stays_inverted():
    with pytest.warns(UserWarning, match=re.escape("attention dropout stays inverted")):
        replace_dropout(nn.MultiheadAttention(8, 2, dropout=0.1), mode="classic")
