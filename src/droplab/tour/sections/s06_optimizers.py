"""6. The optimizers on ``f(w) = w^2 / 2`` from ``w = 1``: two steps each, lr 0.01.

The gradient of ``w^2 / 2`` is ``w`` itself, so every update can be followed by hand. The
tutorial's examples: SGD with momentum 0.9, Adagrad, RMSprop (alpha 0.9) and Adam (betas 0.9,
0.99). Each runs three ways: the update rule written out (as the tutorial writes it, with
torch's epsilons), ``torch.optim``, and the NumPy engine's ``droplab.scratch.optim``.

Momentum as the tutorial writes it is an exponential average, ``D_t = b D_{t-1} + (1 - b) g_t``
with ``D_0 = 0``, and ``w <- w - lr D_t``. torch's SGD keeps ``buf_t = m buf_{t-1} + (1 -
dampening) g_t`` but starts the buffer at ``g_1``. So ``SGD(momentum=b, dampening=b)`` is the
tutorial's average apart from the first step (``g_1`` instead of ``(1 - b) g_1``), and
``SGD(momentum=b, lr=lr (1 - b))`` is it exactly, at every step (``buf_t = D_t / (1 - b)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from droplab import scratch
from droplab.tour.sections._common import Checks, heading, plot_lines, side_by_side

LR, STEPS_PLOT = 0.01, 300


# -- the update rules, written out: each returns the step ``w_t - w_{t+1}`` ------------------


def momentum(lr, beta, *, dampening=0.0, tutorial=False):
    def rule(g, t, s):
        if tutorial:  # D_t = b D_{t-1} + (1 - b) g_t, D_0 = 0
            s["D"] = beta * s.get("D", 0.0) + (1 - beta) * g
        else:  # torch: the buffer starts at g_1
            s["D"] = g if t == 1 else beta * s["D"] + (1 - dampening) * g
        return lr * s["D"]

    return rule


def adagrad(lr, eps=1e-10):
    def rule(g, t, s):
        s["s"] = s.get("s", 0.0) + g * g  # the sum of squared gradients
        return lr * g / (math.sqrt(s["s"]) + eps)

    return rule


def rmsprop(lr, alpha, eps=1e-8):
    def rule(g, t, s):
        s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g  # a moving average instead
        return lr * g / (math.sqrt(s["v"]) + eps)

    return rule


def adam(lr, beta1, beta2, eps=1e-8):
    def rule(g, t, s):
        s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g  # momentum
        s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * g * g  # RMSprop
        m_hat, v_hat = s["m"] / (1 - beta1**t), s["v"] / (1 - beta2**t)  # bias corrections
        return lr * m_hat / (math.sqrt(v_hat) + eps)

    return rule


def by_hand(rule, steps: int, w: float = 1.0) -> np.ndarray:
    ws, state = [], {}
    for t in range(1, steps + 1):
        w = w - rule(w, t, state)  # the gradient of w^2 / 2 is w
        ws.append(w)
    return np.array(ws)


# (label, torch.optim / scratch.optim class name, keyword arguments, the rule by hand)
EXAMPLES = [
    ("SGD, momentum 0.9", "SGD", dict(lr=LR, momentum=0.9), momentum(LR, 0.9)),
    ("Adagrad", "Adagrad", dict(lr=LR), adagrad(LR)),
    ("RMSprop, alpha 0.9", "RMSprop", dict(lr=LR, alpha=0.9), rmsprop(LR, 0.9)),
    ("Adam, betas (0.9, 0.99)", "Adam", dict(lr=LR, betas=(0.9, 0.99)), adam(LR, 0.9, 0.99)),
    ("SGD, momentum 0.9, dampening 0.9", "SGD", dict(lr=LR, momentum=0.9, dampening=0.9),
     momentum(LR, 0.9, dampening=0.9)),
    ("SGD, momentum 0.9, lr 0.01 * (1 - 0.9)", "SGD", dict(lr=LR * (1 - 0.9), momentum=0.9),
     momentum(LR, 0.9, tutorial=True)),
]  # fmt: skip


def torch_trajectory(name, kwargs, steps, dtype=torch.float64) -> np.ndarray:
    w = torch.tensor([1.0], dtype=dtype, requires_grad=True)
    optimizer = getattr(torch.optim, name)([w], **kwargs)
    ws = []
    for _ in range(steps):
        loss = (w**2 / 2.0).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ws.append(w.detach().numpy()[0].copy())
    return np.array(ws)  # (steps,), in the parameter's dtype


def numpy_trajectory(name, kwargs, steps, dtype=np.float64) -> np.ndarray:
    w = scratch.Parameter(np.array([1.0], dtype=dtype))
    optimizer = getattr(scratch.optim, name)([w], **kwargs)
    ws = []
    for _ in range(steps):
        optimizer.zero_grad()
        w.grad += w.data  # backward of w^2 / 2
        optimizer.step()
        ws.append(w.data[0].copy())
    return np.array(ws)  # (steps,), in the parameter's dtype


def run(plots=None) -> Checks:
    checks = Checks()
    curves = {}
    for label, name, kwargs, rule in EXAMPLES:
        args = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kwargs.items()
        )
        heading(f"{label}: {name}({args})")
        hand = by_hand(rule, 2)
        torch64, numpy64 = torch_trajectory(name, kwargs, 2), numpy_trajectory(name, kwargs, 2)
        torch32 = torch_trajectory(name, kwargs, 2, torch.float32)
        numpy32 = numpy_trajectory(name, kwargs, 2, np.float32)
        side_by_side(
            [(f"w after step {t + 1}", torch64[t], numpy64[t], hand[t]) for t in range(2)],
            headers=("", "PyTorch", "NumPy engine", "by hand"),
        )
        checks.agree(f"{label}, 2 steps, float64: NumPy engine = torch.optim", numpy64, torch64)
        checks.agree(f"{label}, 2 steps, float32: NumPy engine = torch.optim", numpy32, torch32)
        checks.agree(f"{label}, 2 steps, float64: by hand = torch.optim", hand, torch64)
        # a longer run: the engines must not drift apart
        long_t = torch_trajectory(name, kwargs, STEPS_PLOT)
        long_n = numpy_trajectory(name, kwargs, STEPS_PLOT)
        checks.agree(
            f"{label}, {STEPS_PLOT} steps, float64: NumPy engine = torch.optim", long_n, long_t
        )
        checks.agree(f"{label}, {STEPS_PLOT} steps, float64: by hand = torch.optim",
                     by_hand(rule, STEPS_PLOT), long_t)  # fmt: skip
        curves[label] = (long_t, long_n)

    heading("the tutorial's exponential-average momentum, D_0 = 0, by hand")
    tutorial = by_hand(momentum(LR, 0.9, tutorial=True), 2)
    damp = by_hand(momentum(LR, 0.9, dampening=0.9), 2)
    side_by_side(
        [(f"w after step {t + 1}", tutorial[t], damp[t]) for t in range(2)],
        headers=("", "tutorial", "dampening 0.9"),
    )
    checks.check(
        "the tutorial's first step is (1 - 0.9) x dampening's (torch's buffer starts at g_1)",
        tutorial[0] != damp[0] and math.isclose(1 - tutorial[0], 0.1 * (1 - damp[0])),
        f"first step {1 - tutorial[0]:.6f} = (1 - 0.9) x {1 - damp[0]:.6f}",
    )

    if plots is not None:
        steps = np.arange(0, STEPS_PLOT + 1)
        series = []
        for i, (label, (ws_t, ws_n)) in enumerate(curves.items()):
            marks = dict(color=f"C{i}", ls="", marker="x", markevery=25, ms=5)
            numpy_label = "NumPy engine (x, same colours)" if i == 0 else "_nolegend_"
            series.append((label, steps, np.r_[1.0, ws_t], dict(color=f"C{i}")))
            series.append((numpy_label, steps, np.r_[1.0, ws_n], marks))
        plot_lines(
            plots / "optimizers.png",
            f"w on f(w) = w^2/2 from w = 1, lr {LR}: torch (lines), NumPy engine (x)",
            "step",
            "w",
            series,
        )
    return checks
