"""droplab.scratch layers and whole networks against torch twins sharing weights and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from droplab import scratch
from droplab.kernels import rng as torch_rng

# ----------------------------------------------------------------------------------------------
# layers, one at a time (float64)
# ----------------------------------------------------------------------------------------------


def torch_twin_grads(layer, x: np.ndarray, dLdy: np.ndarray):
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(torch.from_numpy(dLdy))
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (scratch.ReLU, torch.nn.ReLU),
        (scratch.Sigmoid, torch.nn.Sigmoid),
        (scratch.Tanh, torch.nn.Tanh),
    ],
    ids=["ReLU", "Sigmoid", "Tanh"],
)
def test_activations(ours, theirs):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3, size=(6, 5))
    x[0, :3] = [0.0, -800.0, 800.0]  # the kink and saturation: no NaN, torch's values
    dLdy = rng.normal(size=x.shape)
    layer = ours()
    y = layer(x)
    dLdX = layer.backward(dLdy)
    ty, tdx = torch_twin_grads(theirs(), x, dLdy)
    np.testing.assert_allclose(y, ty, rtol=1e-15, atol=1e-300, err_msg="forward: ours vs torch")
    # 1 - y^2 cancels near saturation: a one-ulp difference in tanh(x) is absolute, not relative
    np.testing.assert_allclose(dLdX, tdx, rtol=1e-14, atol=1e-15, err_msg="backward: ours vs torch")


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    rng = np.random.default_rng(1)
    layer = scratch.Linear(5, 3, bias=bias, dtype=np.float64, rng=0)
    twin = torch.nn.Linear(5, 3, bias=bias, dtype=torch.float64)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = rng.normal(size=(2, 4, 5))  # leading dims, as torch.nn.Linear
    dLdy = rng.normal(size=(2, 4, 3))
    for _ in range(2):  # gradients accumulate with +=
        y, dLdX = layer(x), layer.backward(dLdy)
    ty, tdx = torch_twin_grads(twin, x, dLdy)
    torch_twin_grads(twin, x, dLdy)
    np.testing.assert_allclose(y, ty, rtol=1e-13, err_msg="forward")
    np.testing.assert_allclose(dLdX, tdx, rtol=1e-13, err_msg="dLdX")
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(
            p.grad, getattr(twin, name).grad.numpy(), rtol=1e-13, err_msg=name
        )
    assert layer.backward(dLdy, input_grad=False) is None


def test_linear_default_init_matches_torch_distribution():
    layer = scratch.Linear(400, 300, rng=0)
    bound = 1 / np.sqrt(400)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (300, 400) and b.shape == (300,) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-a, a) has variance a^2 / 3: a 5-sigma bound on the sample variance
    n, var = w.size, bound**2 / 3
    assert abs(w.var() - var) < 5 * var * np.sqrt(0.8 / n)
    # and torch's own layer has the same bound
    twin = torch.nn.Linear(400, 300)
    assert twin.weight.abs().max().item() <= bound + 1e-7


@pytest.mark.parametrize(
    "name, std",
    [
        ("normal", lambda i, o: 0.01),
        ("kaiming_normal", lambda i, o: np.sqrt(2 / i)),
        ("xavier_normal", lambda i, o: np.sqrt(2 / (i + o))),
    ],
)
def test_initializers(name, std):
    layer = scratch.Linear(500, 400, init=name, rng=0)
    expected = std(500, 400)
    # sample std of n normals: relative sd about 1/sqrt(2n); allow 5 of them
    assert abs(layer.weight.data.std() / expected - 1) < 5 / np.sqrt(2 * layer.weight.data.size)
    assert not layer.bias.data.any()
    custom = scratch.Linear(500, 400, init=scratch.init.normal(std=0.1), rng=0)
    assert abs(custom.weight.data.std() / 0.1 - 1) < 0.01
    with pytest.raises(ValueError, match="init must be one of"):
        scratch.Linear(2, 2, init="uniform")


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_dropout_matches_torch_with_the_same_mask(mode):
    rng = np.random.default_rng(2)
    x, dLdy = rng.normal(size=(8, 9)), rng.normal(size=(8, 9))
    p = 0.3
    drop = scratch.Dropout(p, mode=mode, seed=11)
    y, dLdX = drop(x), drop.backward(dLdy)
    mask = torch_rng.dropout_mask(x.shape, p, seed=torch_rng.derive_seed(11, 0)).numpy()
    np.testing.assert_array_equal(drop.mask, mask)
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    xt = torch.tensor(x, requires_grad=True)
    yt = xt * torch.from_numpy(mask) * scale
    yt.backward(torch.from_numpy(dLdy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(dLdX, xt.grad.numpy(), rtol=1e-15)


# ----------------------------------------------------------------------------------------------
# the tutorial's backprop example: 2-2-2, ReLU then sigmoid, MSE
# ----------------------------------------------------------------------------------------------


def test_tutorial_2_2_2_backprop_example():
    x = np.array([[0.05, 0.10]])
    target = np.array([[0.01, 0.99]])
    W1, b1 = np.array([[0.15, 0.20], [0.25, 0.30]]), np.array([0.35, 0.35])
    W2, b2 = np.array([[0.40, 0.45], [0.50, 0.55]]), np.array([0.60, 0.60])
    for hidden, torch_hidden in (
        (scratch.ReLU, torch.nn.ReLU),
        (scratch.Sigmoid, torch.nn.Sigmoid),
    ):
        net = scratch.Sequential(
            scratch.Linear(2, 2, dtype=np.float64),
            hidden(),
            scratch.Linear(2, 2, dtype=np.float64),
            scratch.Sigmoid(),
        )
        net.load_state_dict({"0.weight": W1, "0.bias": b1, "2.weight": W2, "2.bias": b2})
        loss_fn = scratch.MSELoss()
        loss = loss_fn(net(x), target)
        dLdx = net.backward(loss_fn.backward())

        twin = torch.nn.Sequential(
            torch.nn.Linear(2, 2), torch_hidden(), torch.nn.Linear(2, 2), torch.nn.Sigmoid()
        ).double()
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
        xt = torch.tensor(x, requires_grad=True)
        tloss = torch.nn.functional.mse_loss(twin(xt), torch.from_numpy(target))
        tloss.backward()
        assert float(loss) == pytest.approx(tloss.item(), rel=1e-15)
        np.testing.assert_allclose(dLdx, xt.grad.numpy(), rtol=1e-14)
        for (name, p), tp in zip(net.named_parameters(), twin.parameters()):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-14, err_msg=name)
    # the sigmoid-everywhere version is the classic worked example: total error 0.298371109
    # with the sum of squared errors / 2 (= MSE mean here, 2 outputs)
    assert float(loss) == pytest.approx(0.298371109, abs=1e-9)


# ----------------------------------------------------------------------------------------------
# the classic MLP, 784-256-256-10 with dropout 0.2 / 0.5, SGD lr 0.5: 50 steps in both engines
# ----------------------------------------------------------------------------------------------

P1, P2, SEED1, SEED2 = 0.2, 0.5, 101, 202


@pytest.fixture
def one_torch_thread():
    """Small matrices, two BLAS libraries taking turns: their idle threads spin against each
    other on a small machine, so torch runs on one thread here (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def scratch_mlp(dtype):
    return scratch.Sequential(
        scratch.Linear(784, 256, dtype=dtype, rng=1),
        scratch.ReLU(),
        scratch.Dropout(P1, seed=SEED1),
        scratch.Linear(256, 256, dtype=dtype, rng=2),
        scratch.ReLU(),
        scratch.Dropout(P2, seed=SEED2),
        scratch.Linear(256, 10, dtype=dtype, rng=3),
    )


class TorchMLP(torch.nn.Module):
    """The same MLP with torch.nn.Linear, applying the very masks of the NumPy engine."""

    def __init__(self, dtype):
        super().__init__()
        self.l1 = torch.nn.Linear(784, 256, dtype=dtype)
        self.l2 = torch.nn.Linear(256, 256, dtype=dtype)
        self.l3 = torch.nn.Linear(256, 10, dtype=dtype)
        self.step = 0

    def drop(self, h, p, seed):
        mask = torch.from_numpy(
            scratch.dropout_mask(h.shape, p, seed=scratch.derive_seed(seed, self.step))
        )
        return h * mask / (1 - p)

    def forward(self, x):
        h = self.drop(torch.relu(self.l1(x)), P1, SEED1)
        h = self.drop(torch.relu(self.l2(h)), P2, SEED2)
        self.step += 1
        return self.l3(h)


@pytest.mark.parametrize(
    "dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-4)], ids=["float64", "float32"]
)
def test_mlp_loss_curve_matches_torch_over_50_steps(dtype, rtol, one_torch_thread):
    net = scratch_mlp(dtype)
    twin = TorchMLP(torch.float64 if dtype == np.float64 else torch.float32)
    names = {"0": "l1", "3": "l2", "6": "l3"}
    twin.load_state_dict(
        {
            f"{names[k.split('.')[0]]}.{k.split('.')[1]}": torch.from_numpy(v)
            for k, v in net.state_dict().items()
        }
    )
    opt = scratch.optim.SGD(net.parameters(), lr=0.5)
    topt = torch.optim.SGD(twin.parameters(), lr=0.5)
    loss_fn, tloss_fn = scratch.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()

    rng = np.random.default_rng(0)
    # inputs that look like images: [0, 1], sparse-ish, and labels that a net can learn
    protos = rng.uniform(0, 1, size=(10, 784)) * (rng.uniform(size=(10, 784)) < 0.4)
    ours, theirs = [], []
    for _ in range(50):
        y = rng.integers(0, 10, size=64)
        X = np.clip(protos[y] + rng.normal(scale=0.2, size=(64, 784)), 0, 1).astype(dtype)
        opt.zero_grad()
        loss = loss_fn(net(X), y)
        net.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        ours.append(float(loss))

        topt.zero_grad()
        tloss = tloss_fn(twin(torch.from_numpy(X)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        theirs.append(tloss.item())
    assert ours[-1] < 0.5 * ours[0], f"the net did not learn: {ours[0]} -> {ours[-1]}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, err_msg="loss curve: ours vs torch")
    sd = net.state_dict()
    atol = 1e-12 if dtype == np.float64 else 1e-5
    for k, v in sd.items():
        tv = twin.state_dict()[f"{names[k.split('.')[0]]}.{k.split('.')[1]}"].numpy()
        np.testing.assert_allclose(v, tv, rtol=rtol, atol=atol, err_msg=f"{k} after 50 steps")


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_seeded_dropout_equals_the_torch_engines_module_step_by_step(mode):
    layers = pytest.importorskip("droplab.layers")
    theirs = layers.Dropout(0.4, mode=mode, seed=77, backend="torch")
    ours = scratch.Dropout(0.4, mode=mode, seed=77)
    x = np.random.default_rng(0).normal(size=(16, 33))
    for _ in range(4):
        np.testing.assert_array_equal(ours(x), theirs(torch.from_numpy(x)).numpy())
    theirs.eval(), ours.eval()
    np.testing.assert_array_equal(ours(x), theirs(torch.from_numpy(x)).numpy())
    assert ours.step == theirs.step == 4
