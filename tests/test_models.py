"""droplab.models: the MLP of the classic experiment in both engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import droplab
from droplab import scratch
from droplab.models import dropout_seed, initial_weights, mlp


def kinds(model) -> list[str]:
    return [type(m).__name__ for m in model]


def test_recipe_structure_uses_droplab_dropout():
    model = mlp()
    assert kinds(model) == [
        "Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip
    drops = [m for m in model if isinstance(m, droplab.Dropout)]
    assert [d.p for d in drops] == [0.2, 0.5]
    assert all(d.mode == "inverted" and d.seed is not None for d in drops)
    assert drops[0].seed != drops[1].seed
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [256, 256, 10]


def test_zero_rate_means_no_dropout_layer_and_classic_mode_is_passed_on():
    assert "Dropout" not in kinds(mlp((32, 16), (0, 0)))
    model = mlp((32, 16), (0.0, 0.3), mode="classic")
    assert kinds(model).count("Dropout") == 1
    assert next(m for m in model if isinstance(m, droplab.Dropout)).mode == "classic"
    assert kinds(mlp((), ())) == ["Flatten", "Linear"]


def test_normal_init_is_the_tutorials():
    (w1, b1), *_ = initial_weights([784, 256, 10], "normal", seed=0)
    assert w1.shape == (256, 784) and w1.dtype == np.float32
    assert abs(w1.std() - 0.01) < 0.0005 and abs(w1.mean()) < 0.0005
    assert not b1.any()


def test_torch_init_has_nn_linears_bounds():
    (w, b), _ = initial_weights([100, 50, 10], "torch", seed=0)
    bound = 1 / np.sqrt(100)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.9 * bound and b.any()
    ref = torch.nn.Linear(100, 50).weight.detach()  # torch's own: same bound
    assert float(ref.abs().max()) <= bound


def test_seed_fixes_weights_and_masks():
    a, b, c = mlp(seed=1), mlp(seed=1), mlp(seed=2)
    assert torch.equal(a[1].weight, b[1].weight) and not torch.equal(a[1].weight, c[1].weight)
    x = torch.rand(8, 784)
    assert torch.equal(a.train()(x), b.train()(x))
    assert dropout_seed(1, 0) != dropout_seed(1, 1) != dropout_seed(2, 1)


def test_input_shapes():
    x = torch.rand(4, 1, 28, 28)
    assert mlp()(x).shape == (4, 10)
    assert mlp(engine="scratch")(x.reshape(4, -1).numpy()).shape == (4, 10)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_both_engines_compute_the_same_function(mode):
    """Same initial weights and the same counter-based masks: train and eval outputs agree."""
    t = mlp(mode=mode, seed=3)
    s = mlp(mode=mode, seed=3, engine="scratch")
    assert isinstance(s, scratch.Sequential)
    x = torch.rand(16, 784)
    for train in (True, False):
        t.train(train)
        s.train(train)
        with torch.no_grad():
            ours = s(x.numpy())
            theirs = t(x).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6, err_msg=f"train={train}")


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="one rate per hidden layer: 2 hidden layers, 1 rates"):
        mlp((256, 256), (0.5,))
    with pytest.raises(ValueError, match="engine must be one of 'torch', 'scratch', got 'jax'"):
        mlp(engine="jax")
    with pytest.raises(ValueError, match="init must be one of 'normal', 'torch', got 'xavier'"):
        mlp(init="xavier")
