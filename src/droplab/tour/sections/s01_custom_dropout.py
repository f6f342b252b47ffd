"""1. The tutorial's ``CustomDropout`` scales twice, and ``droplab.check_scaling`` catches it.

The tutorial's layer divides by ``1 - p`` in training (inverted dropout) *and* multiplies by
``1 - p`` at eval (classic dropout). Either rule alone keeps ``E[y_train] = y_eval``; both together
make the eval output ``(1 - p)`` times too small, ``1 / (1 - p) = 2`` at ``p = 0.5``. Scale once:
in training (``mode="inverted"``, what ``torch.nn.Dropout`` does) or at eval (``mode="classic"``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import droplab
from droplab import scratch
from droplab.tour.sections._common import Checks, heading, show


class CustomDropout(nn.Module):
    """The tutorial's layer, bug included."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.training:
            mask = (torch.rand(x.shape) > self.p).float()
            return x * mask / (1 - self.p)  # scaled up in training...
        return x * (1 - self.p)  # ...and down again at eval: twice


def run(plots=None) -> Checks:
    checks = Checks()
    p = 0.5
    torch.manual_seed(0)
    x = torch.ones(5, 5)

    heading("the tutorial's CustomDropout(p=0.5) on torch.ones(5, 5)")
    layer = CustomDropout(p)
    y_train, y_eval = layer.train()(x), layer.eval()(x)
    show("train (kept = 1/(1-p) = 2)", y_train)
    show("eval (x * (1-p) = 0.5)", y_eval)
    checks.check("train: every element 0 or 2", set(y_train.unique().tolist()) <= {0.0, 2.0})
    checks.equal("eval: every element 0.5 (E[train] is 1)", y_eval, torch.full((5, 5), 0.5))

    # check_scaling averages many training passes: E[y_train] / y_eval should be 1
    heading("droplab.check_scaling: E[train output] / eval output, should be 1")
    x_check, samples = torch.ones(64, 128), 200
    result = droplab.check_scaling(CustomDropout(p), x_check, samples=samples)
    show("CustomDropout", f"ratio {result.ratio:.4f}  consistent={result.consistent}")
    print(f"    {result.message}")
    checks.check("check_scaling flags CustomDropout", not result.consistent)
    # each training element is 2 * Bernoulli(1/2): the ratio's standard error is binomial
    se = (1 / (1 - p)) * np.sqrt(p / (1 - p) / (x_check.numel() * samples))
    checks.check(
        "the measured ratio is 1/(1-p) = 2 (within 6 standard errors)",
        abs(result.ratio - 1 / (1 - p)) <= 6 * se,
        f"ratio {result.ratio:.4f}, 6 s.e. = {6 * se:.4f}",
    )

    heading("the corrected layers: scale once")
    for name, module in [
        ("droplab.Dropout(0.5)", droplab.Dropout(p)),
        ("droplab.Dropout(0.5, mode='classic')", droplab.Dropout(p, mode="classic")),
        ("torch.nn.Dropout(0.5)", nn.Dropout(p)),
    ]:
        y_train, y_eval = module.train()(x), module.eval()(x)
        show(f"{name}, train, row 0", y_train[0], width=54)
        show(f"{name}, eval, row 0", y_eval[0], width=54)
        result = droplab.check_scaling(module, x_check, samples=samples)
        checks.check(f"check_scaling passes {name}", result.consistent, f"ratio {result.ratio:.4f}")
    classic = droplab.Dropout(p, mode="classic")
    checks.check(
        "classic: train keeps x (0 or 1), eval gives x * (1-p)",
        set(classic.train()(x).unique().tolist()) <= {0.0, 1.0}
        and bool((classic.eval()(x) == 0.5).all()),
    )

    # the NumPy engine's Dropout draws the same counter-based masks as droplab's torch layer
    heading("the same seeded layer in both engines (shared counter-based masks)")
    for mode in ("inverted", "classic"):
        y_torch = droplab.Dropout(p, mode=mode, seed=7)(x)
        y_numpy = scratch.Dropout(p, mode=mode, seed=7)(np.ones((5, 5), dtype=np.float32))
        show(f"{mode}, PyTorch", y_torch[0])
        show(f"{mode}, NumPy engine", y_numpy[0])
        checks.equal(f"{mode}: NumPy engine = PyTorch layer, seed 7", y_numpy, y_torch)
    return checks
