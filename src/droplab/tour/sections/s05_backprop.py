"""5. Backpropagation through the tutorial's 2-2-2 network: autograd vs the NumPy engine.

The network: ``Linear(2, 2)`` with Kaiming-normal weights, ReLU, ``Linear(2, 2)`` with
Xavier-normal weights, sigmoid; MSE loss; input ``[0.05, 0.10]``, target ``[0.01, 0.99]``. Its
gradients three ways: PyTorch's autograd, the NumPy engine's hand-written backward passes (the
same weights, loaded from torch's ``state_dict``), and the chain rule written out as the tutorial
does it. Then the course's gradient check on the NumPy engine: the relative error against
central differences must sit far below 2e-7.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from droplab import scratch
from droplab.tour.sections._common import Checks, heading, show, side_by_side


def torch_network(seed: int = 2) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.Sigmoid()).double()
    nn.init.kaiming_normal_(net[0].weight)  # He: N(0, 2 / fan_in), for the ReLU
    nn.init.xavier_normal_(net[2].weight)  # Glorot: N(0, 2 / (fan_in + fan_out)), for the sigmoid
    return net


def by_hand(W1, b1, W2, b2, x, t):
    """The chain rule, one layer at a time (row vectors, as torch's Linear: z = x W^T + b)."""
    z1 = x @ W1.T + b1
    h = np.maximum(z1, 0)  # ReLU
    z2 = h @ W2.T + b2
    y = 1 / (1 + np.exp(-z2))  # sigmoid
    dy = 2 * (y - t) / y.size  # d MSE / dy (the mean over the outputs)
    dz2 = dy * y * (1 - y)  # sigmoid' = y (1 - y)
    dh = dz2 @ W2
    dz1 = dh * (z1 > 0)  # ReLU' = 1 where z1 > 0
    return {
        "0.weight": dz1.T @ x,
        "0.bias": dz1.sum(0),
        "2.weight": dz2.T @ h,
        "2.bias": dz2.sum(0),
    }


def run(plots=None) -> Checks:
    checks = Checks()
    x = np.array([[0.05, 0.10]])  # (1, 2)
    t = np.array([[0.01, 0.99]])  # (1, 2)

    # PyTorch: autograd fills .grad. Seed 2 leaves both hidden units active on this input (with
    # seed 0 one ReLU is dead, and its weights' gradients are zero)
    net = torch_network(seed=2)
    loss_t = nn.MSELoss()(net(torch.from_numpy(x)), torch.from_numpy(t))
    loss_t.backward()
    grads_t = {name: p.grad.numpy() for name, p in net.named_parameters()}

    # the NumPy engine: the same layers and weights, backward written by hand
    twin = scratch.Sequential(
        scratch.Linear(2, 2, dtype=np.float64), scratch.ReLU(),
        scratch.Linear(2, 2, dtype=np.float64), scratch.Sigmoid(),
    )  # fmt: skip
    twin.load_state_dict({k: v.detach().numpy() for k, v in net.state_dict().items()})
    loss_fn = scratch.MSELoss()
    loss_n = loss_fn(twin(x), t)
    twin.backward(loss_fn.backward())
    grads_n = {name: p.grad for name, p in twin.named_parameters()}
    grads_h = by_hand(*(v.detach().numpy() for v in net.state_dict().values()), x, t)

    heading("weights (seed 2): Kaiming-normal, then Xavier-normal; torch's default biases")
    for name, value in net.state_dict().items():
        show(name, value)
    heading("loss and gradients, float64")
    side_by_side([("MSE loss", loss_t, loss_n)])
    for name in grads_t:
        show(f"d loss / d {name}, autograd", grads_t[name], width=38)
        show(f"d loss / d {name}, NumPy engine", grads_n[name], width=38)
        show(f"d loss / d {name}, by hand", grads_h[name], width=38)
    checks.agree("NumPy loss = torch loss", loss_n, loss_t)
    for name in grads_t:
        checks.agree(f"d/d {name}: NumPy engine = autograd", grads_n[name], grads_t[name])
        checks.agree(f"d/d {name}: chain rule by hand = autograd", grads_h[name], grads_t[name])

    heading("the course's gradient check on the NumPy engine (central differences, eps 1e-7)")
    result = scratch.grad_check(twin, scratch.MSELoss(), x, t, check_input=True)
    show("relative error", f"{result.max_rel_error:.2e} (a bug shows above 2e-7)")
    checks.check(
        "gradient check passes: relative error < 2e-7",
        result.passed and result.max_rel_error < 2e-7,
        f"{result.max_rel_error:.2e}",
    )
    return checks
