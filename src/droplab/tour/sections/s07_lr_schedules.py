"""7. Learning-rate schedules over 200 epochs from lr 0.1: StepLR, MultiStepLR, ExponentialLR.

The tutorial's settings: ``StepLR(step_size=50, gamma=0.5)`` halves the rate every 50 epochs,
``MultiStepLR(milestones=[50, 125, 160], gamma=0.5)`` at the listed epochs, and
``ExponentialLR(gamma=0.95)`` every epoch. Each curve three ways: ``torch.optim.lr_scheduler``,
the NumPy engine's ``droplab.scratch.lr_scheduler``, and the closed form. torch applies each
decay to the current rate (``lr <- lr * gamma``), and so does the NumPy engine, so the two curves
are the same floats, epoch by epoch; the closed form ``0.1 * 0.95 ** e`` differs from them by
rounding only.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import torch

from droplab import scratch
from droplab.tour.sections._common import Checks, heading, plot_lines, side_by_side

LR, EPOCHS = 0.1, 200

# (name, keyword arguments, the closed form of epoch e)
SCHEDULES = [
    ("StepLR", dict(step_size=50, gamma=0.5), lambda e: LR * 0.5 ** (e // 50)),
    ("MultiStepLR", dict(milestones=[50, 125, 160], gamma=0.5),
     lambda e: LR * 0.5 ** bisect_right([50, 125, 160], e)),
    ("ExponentialLR", dict(gamma=0.95), lambda e: LR * 0.95**e),
]  # fmt: skip


def torch_curve(name, kwargs) -> list[float]:
    w = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=LR)
    scheduler = getattr(torch.optim.lr_scheduler, name)(optimizer, **kwargs)
    lrs = []
    for _ in range(EPOCHS):
        lrs.append(scheduler.get_last_lr()[0])  # the rate this epoch trains with
        optimizer.step()  # ... an epoch of training ...
        scheduler.step()
    return lrs


def numpy_curve(name, kwargs) -> list[float]:
    w = scratch.Parameter(np.zeros(1))
    optimizer = scratch.optim.SGD([w], lr=LR)
    scheduler = getattr(scratch.lr_scheduler, name)(optimizer, **kwargs)
    lrs = []
    for _ in range(EPOCHS):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


def run(plots=None) -> Checks:
    checks = Checks()
    series = []
    epochs = np.arange(EPOCHS)
    for i, (name, kwargs, closed_form) in enumerate(SCHEDULES):
        heading(f"{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())}), lr {LR}")
        lrs_t, lrs_n = torch_curve(name, kwargs), numpy_curve(name, kwargs)
        lrs_c = [closed_form(e) for e in epochs]
        shown = [0, 49, 50, 100, 124, 125, 160, 199]
        side_by_side(
            [(f"epoch {e}", lrs_t[e], lrs_n[e], lrs_c[e]) for e in shown],
            headers=("", "PyTorch", "NumPy engine", "closed form"),
        )
        checks.equal(f"{name}: NumPy engine = torch, all {EPOCHS} epochs", lrs_n, lrs_t)
        ratio = np.array(lrs_c) / np.array(lrs_t)  # relative: the rates fall to 4e-6
        checks.close(
            f"{name}: closed form = torch, to 1e-12 relative", ratio, np.ones(EPOCHS), 1e-12
        )
        # wide lines, so that StepLR shows under MultiStepLR where they coincide
        series.append((name, epochs, lrs_t, dict(color=f"C{i}", lw=5 - 1.5 * i, alpha=0.7)))
        numpy_label = "NumPy engine (dotted)" if i == 0 else "_nolegend_"
        series.append((numpy_label, epochs, lrs_n, dict(color="black", ls=":", lw=1)))
    if plots is not None:
        plot_lines(
            plots / "lr_schedules.png",
            f"learning-rate schedules from lr {LR}: torch (colour), NumPy engine (dotted)",
            "epoch",
            "learning rate",
            series,
        )
    return checks
