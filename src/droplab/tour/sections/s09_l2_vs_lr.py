"""9. L2 regularization vs a smaller learning rate (the course's question).

The course adds ``lambda / (2 m) ||W||^2`` to the cost, so the gradient gains ``lambda / m W``
and the update is ``W <- W - a (dW + lambda / m W) = (1 - a lambda / m) W - a dW``: "weight
decay", which is ``SGD(weight_decay=lambda / m)`` in torch. Since ``a`` multiplies the decay
too, isn't a smaller learning rate the same thing? No: the learning rate sets how fast gradient
descent walks, not where it ends. Without L2 every learning rate walks to the same least-squares
weights; with L2 the end point is the ridge solution ``(X^T X + m lambda' I)^{-1} X^T y``,
whatever the learning rate. The experiment: linear regression on a small noisy data set, where
both end points have a closed form.
"""

from __future__ import annotations

import numpy as np
import torch

from droplab import scratch
from droplab.tour.sections._common import Checks, heading, show, side_by_side


def identity_check(checks: Checks) -> None:
    heading("one update: W - a (dW + lambda/m W) = weight decay = the explicit penalty")
    rng = np.random.default_rng(0)
    W, dW = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))  # weights and data gradient
    a, lambd, m = 0.1, 0.7, 20
    by_hand = W - a * (dW + lambd / m * W)  # the course's update

    w_t = torch.tensor(W, requires_grad=True)
    w_t.grad = torch.tensor(dW)
    torch.optim.SGD([w_t], lr=a, weight_decay=lambd / m).step()

    w_decay = scratch.Parameter(W)
    w_decay.grad += dW
    scratch.optim.SGD([w_decay], lr=a, weight_decay=lambd / m).step()

    w_penalty = scratch.Parameter(W)  # the cost's term lambda / (2m) ||W||^2, differentiated
    w_penalty.grad += dW
    scratch.L2Penalty([w_penalty], lambd=lambd, m=m).backward()
    scratch.optim.SGD([w_penalty], lr=a).step()

    show("W[0] after one update, by hand", by_hand[0])
    checks.agree("torch SGD(weight_decay=lambda/m) = the course's update", w_t, by_hand)
    checks.agree("NumPy SGD(weight_decay=lambda/m) = torch", w_decay.data, w_t)
    checks.agree("NumPy L2Penalty + plain SGD = torch", w_penalty.data, w_t)


def fit(X, y, lr, steps, weight_decay=0.0, engine="numpy"):
    """Full-batch gradient descent on the MSE of a linear model without bias; the weights."""
    if engine == "torch":
        model = torch.nn.Linear(X.shape[1], 1, bias=False).double()
        torch.nn.init.zeros_(model.weight)
        opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
        Xt, yt, loss_fn = torch.from_numpy(X), torch.from_numpy(y), torch.nn.MSELoss()
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(model(Xt), yt).backward()
            opt.step()
        return model.weight.detach().numpy().ravel()
    model = scratch.Linear(X.shape[1], 1, bias=False, init=scratch.init.normal(std=0.0),
                           dtype=np.float64)  # fmt: skip
    opt = scratch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = scratch.MSELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(X), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    return model.weight.data.ravel()


def run(plots=None) -> Checks:
    checks = Checks()
    identity_check(checks)

    heading("the experiment: 30 noisy examples, 12 features, full-batch gradient descent")
    rng = np.random.default_rng(1)
    m, d = 30, 12
    w_true = rng.normal(size=d)
    X = rng.normal(size=(m, d))  # (m, d)
    y = (X @ w_true + rng.normal(scale=2.0, size=m))[:, None]  # (m, 1): few, noisy examples
    X_test = rng.normal(size=(1000, d))
    y_test = X_test @ w_true

    # MSE = 1/m ||Xw - y||^2 has gradient 2/m X^T (Xw - y); weight decay wd adds wd * w, so the
    # end points are  w_ls = (X^T X)^-1 X^T y  and  w_ridge = (X^T X + m wd / 2 I)^-1 X^T y.
    # (The course's cost averages the loss over m examples: its lambda is m * wd = 15 here.)
    wd, lr, steps = 0.5, 0.1, 2000
    w_ls = np.linalg.solve(X.T @ X, X.T @ y).ravel()
    w_ridge = np.linalg.solve(X.T @ X + m * wd / 2 * np.eye(d), X.T @ y).ravel()
    runs = {
        f"lr {lr}, no L2": fit(X, y, lr, steps),
        f"lr {lr / 10:g}, no L2, 10x the steps": fit(X, y, lr / 10, 10 * steps),
        f"lr {lr / 10:g}, no L2, the same steps": fit(X, y, lr / 10, steps),
        f"lr {lr}, weight decay {wd}": fit(X, y, lr, steps, wd),
        f"lr {lr / 10:g}, weight decay {wd}, 10x the steps": fit(X, y, lr / 10, 10 * steps, wd),
    }

    def test_mse(w):
        return float(np.mean((X_test @ w - y_test) ** 2))

    rows = [("least squares (closed form)", np.linalg.norm(w_ls), test_mse(w_ls))]
    rows += [(name, np.linalg.norm(w), test_mse(w)) for name, w in runs.items()]
    rows += [("ridge (closed form)", np.linalg.norm(w_ridge), test_mse(w_ridge))]
    side_by_side(rows, headers=("", "||w||", "test MSE"))

    names = list(runs)
    tol = 1e-9  # gradient descent's end point vs the closed form
    for name in names[:2]:
        checks.close(f"{name}: ends at least squares", runs[name], w_ls, tol)
    checks.check(
        "a smaller lr for the same steps stops short of it: early stopping, not L2",
        np.linalg.norm(runs[names[2]] - w_ls) > 1e-3
        and np.linalg.norm(runs[names[2]] - w_ridge) > 1e-3,
        f"{np.linalg.norm(runs[names[2]] - w_ls):.3f} from least squares, "
        f"{np.linalg.norm(runs[names[2]] - w_ridge):.3f} from ridge",
    )
    for name in names[3:]:
        checks.close(f"{name}: ends at ridge, whatever the lr", runs[name], w_ridge, tol)
    checks.check(
        "L2 shrinks the weights: ||w_ridge|| < ||w_ls||",
        np.linalg.norm(w_ridge) < np.linalg.norm(w_ls),
        f"{np.linalg.norm(w_ridge):.4f} < {np.linalg.norm(w_ls):.4f}",
    )
    w_torch = fit(X, y, lr, steps, wd, engine="torch")
    checks.agree(
        f"torch SGD(weight_decay={wd}) ends where the NumPy engine does",
        runs[names[3]],
        w_torch,
        np.float64,
    )
    return checks
