"""4. The losses, with the tutorial's tensors: cross-entropy, BCE, L1 (MAE), MSE, smooth L1.

Each loss three ways: the tutorial's formula written out by hand, ``torch.nn``, and the NumPy
engine (``droplab.scratch``, whose backward passes are written by hand), in float32 (the
tutorial's dtype) and float64, values and gradients. Note that ``nn.CrossEntropyLoss`` takes
*logits*: the tutorial feeds it probability-like rows, so torch applies a softmax on top of
them, and the loss is 1.1201, not ``-log(0.6)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from droplab import scratch
from droplab.tour.sections._common import Checks, heading, side_by_side

PRED_CE = [[0.2, 0.6, 0.2], [0.1, 0.8, 0.1]]
PRED_REG, TARGET_REG = [1.0, 1.0, 1.9], [2.0, 2.0, 2.0]


def _log_softmax(z):
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _smooth_l1(d, beta=1.0):
    return np.where(np.abs(d) < beta, 0.5 * d**2 / beta, np.abs(d) - 0.5 * beta)


EXAMPLES = [
    # name, torch class, NumPy class, input, target, tutorial's value, the formula by hand
    ("CrossEntropy, one-hot target", nn.CrossEntropyLoss, scratch.CrossEntropyLoss, PRED_CE,
     [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 1.1201,
     lambda x, t: -(t * _log_softmax(x)).sum(axis=1).mean()),
    ("CrossEntropy, class indices [1, 2]", nn.CrossEntropyLoss, scratch.CrossEntropyLoss,
     PRED_CE, [1, 2], 1.1201, lambda x, t: -_log_softmax(x)[np.arange(len(t)), t].mean()),
    ("BCE", nn.BCELoss, scratch.BCELoss, [0.6901, 0.5459, 0.2469], [0.0, 1.0, 0.0], 0.6868,
     lambda x, t: -(t * np.log(x) + (1 - t) * np.log(1 - x)).mean()),
    ("L1 (MAE)", nn.L1Loss, scratch.L1Loss, PRED_REG, TARGET_REG, 0.7,
     lambda x, t: np.abs(x - t).mean()),
    ("MSE", nn.MSELoss, scratch.MSELoss, PRED_REG, TARGET_REG, 0.67,
     lambda x, t: ((x - t) ** 2).mean()),
    ("SmoothL1 (beta 1)", nn.SmoothL1Loss, scratch.SmoothL1Loss, PRED_REG, TARGET_REG, 0.335,
     lambda x, t: _smooth_l1(x - t).mean()),
]  # fmt: skip


def _torch_loss(loss_cls, x, t, dtype):
    x = torch.tensor(x, dtype=dtype, requires_grad=True)
    t = torch.tensor(t) if isinstance(t[0], int) else torch.tensor(t, dtype=dtype)
    loss = loss_cls()(x, t)
    loss.backward()
    return loss.detach(), x.grad


def _numpy_loss(loss_cls, x, t, dtype):
    x = np.array(x, dtype=dtype)
    t = np.array(t) if isinstance(t[0], int) else np.array(t, dtype=dtype)
    loss_fn = loss_cls()
    loss = loss_fn(x, t)
    return loss, loss_fn.backward()


def run(plots=None) -> Checks:
    checks = Checks()
    for name, torch_cls, numpy_cls, x, t, printed, formula in EXAMPLES:
        heading(f"{name}: input {x}, target {t}")
        results = {}  # dtype name -> (torch loss, torch grad, NumPy loss, NumPy grad)
        for dtype, np_dtype in ((torch.float32, np.float32), (torch.float64, np.float64)):
            results[np.dtype(np_dtype).name] = (
                *_torch_loss(torch_cls, x, t, dtype),
                *_numpy_loss(numpy_cls, x, t, np_dtype),
            )
        by_hand = formula(np.array(x, dtype=np.float64), np.array(t))
        rows = [(f"loss, {bits}", r[0], r[2]) for bits, r in results.items()]
        side_by_side([*rows, ("the formula by hand, float64", by_hand, None)])
        grad = np.array2string(results["float64"][3], precision=6, separator=", ")
        print("    dL/dinput, float64".ljust(38) + grad.replace("\n", "\n" + " " * 38))

        for bits, (loss_t, grad_t, loss_n, grad_n) in results.items():
            checks.agree(f"{name}, {bits}: NumPy loss = torch loss", loss_n, loss_t)
            checks.agree(f"{name}, {bits}: NumPy gradient = autograd's", grad_n, grad_t)
        checks.agree(
            f"{name}: the formula by hand = torch, float64", by_hand, results["float64"][0]
        )
        shown = f"{float(results['float32'][0]):.4f}"
        checks.check(
            f"{name}: torch prints the tutorial's {printed}", float(shown) == printed, shown
        )
    return checks
