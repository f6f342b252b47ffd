"""Gradient checking: the hand-written backward against central differences, in float64.

For every parameter ``theta`` (and, optionally, the input), the numerical gradient is
``(L(theta + eps) - L(theta - eps)) / (2 eps)`` element by element, and the check reports the
course's relative error (deeplearning.ai, "Improving Deep Neural Networks", week 1)::

    rel = ||g - g_num|| / (||g|| + ||g_num||)      (0 where both are zero)

A correct backward gives about 1e-9 or less with ``eps = 1e-7``; above ``2e-7`` flags a bug.
The check runs on a float64 copy of the model (the model itself is left untouched), with every
dropout mask frozen after the first forward, so that the loss is a fixed function of the
parameters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from droplab.scratch.layers import freeze_masks
from droplab.scratch.module import Module

THRESHOLD = 2e-7  # the course's bar: a correct backward sits far below it


def rel_error(g, g_num) -> float:
    """``||g - g_num|| / (||g|| + ||g_num||)``, and 0 when both are zero."""
    g, g_num = np.ravel(g), np.ravel(g_num)
    denom = np.linalg.norm(g) + np.linalg.norm(g_num)
    return 0.0 if denom == 0 else float(np.linalg.norm(g - g_num) / denom)


@dataclass
class GradCheckResult:
    """What ``grad_check`` found.

    Attributes:
        max_rel_error: the largest relative error over the checked arrays.
        errors: relative error of each parameter by name (and ``"input"`` if checked).
        rel_error: the relative error of all gradients concatenated (the course's single number).
        passed: ``max_rel_error <= threshold``.
        analytic, numeric: the two gradients of each checked array.
    """

    max_rel_error: float
    errors: dict[str, float]
    rel_error: float
    passed: bool
    threshold: float
    analytic: dict[str, np.ndarray] = field(repr=False)
    numeric: dict[str, np.ndarray] = field(repr=False)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        lines = [
            f"gradient check {'passed' if self.passed else 'FAILED'} "
            f"(max relative error {self.max_rel_error:.3e}, threshold {self.threshold:.0e})"
        ]
        width = max(len(n) for n in self.errors)
        for name, err in self.errors.items():
            flag = "" if err <= self.threshold else "   <-- wrong gradient"
            lines.append(f"  {name:<{width}}  {err:.3e}{flag}")
        return "\n".join(lines)


def grad_check(
    model: Module,
    loss_fn,
    x,
    y,
    eps: float = 1e-7,
    *,
    check_input: bool = False,
    threshold: float = THRESHOLD,
) -> GradCheckResult:
    """Compare ``model``'s backward with central differences of ``loss_fn(model(x), y)``.

    Args:
        model: a ``Module``; checked on a float64 copy in its current train/eval mode.
        loss_fn: a loss with a scalar reduction (``"mean"`` or ``"sum"``) and ``backward()``.
        x, y: one batch (``x`` is cast to float64; ``y`` too, unless it holds class indices).
        eps: the finite-difference step. Default: 1e-7
        check_input: also check the gradient with respect to ``x``.
        threshold: the largest relative error that passes. Default: 2e-7

    Returns:
        a ``GradCheckResult``; ``print(result)`` lists the error of every parameter and marks the
        wrong ones.

    Examples::

        >>> from droplab.scratch import Sequential, Linear, Tanh, MSELoss
        >>> net = Sequential(Linear(3, 4, rng=0), Tanh(), Linear(4, 2, rng=1))
        >>> x, y = np.ones((5, 3)), np.zeros((5, 2))
        >>> grad_check(net, MSELoss(), x, y).passed
        True
    """
    net = copy.deepcopy(model).astype(np.float64)
    x = np.array(x, dtype=np.float64)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.float64)
    loss_fn = copy.deepcopy(loss_fn)
    if getattr(loss_fn, "reduction", "mean") == "none":
        raise ValueError("grad_check needs a scalar loss: use reduction 'mean' or 'sum'")

    def loss() -> float:
        return float(loss_fn(net.forward(x), y))

    with freeze_masks(net):
        net.zero_grad()
        loss()  # draws the dropout masks that every later forward reuses
        dLdx = net.backward(loss_fn.backward())
        arrays = dict(net.named_parameters())
        analytic = {name: p.grad.copy() for name, p in arrays.items()}
        targets = {name: p.data for name, p in arrays.items()}
        if check_input:
            analytic["input"], targets["input"] = np.asarray(dLdx), x
        numeric = {}
        for name, theta in targets.items():
            g = np.zeros_like(theta)
            flat, gflat = theta.reshape(-1), g.reshape(-1)  # views: edits reach the model
            for i in range(flat.size):
                saved = flat[i]
                flat[i] = saved + eps
                plus = loss()
                flat[i] = saved - eps
                minus = loss()
                flat[i] = saved
                gflat[i] = (plus - minus) / (2 * eps)
            numeric[name] = g

    errors = {name: rel_error(analytic[name], numeric[name]) for name in analytic}
    overall = rel_error(
        np.concatenate([a.ravel() for a in analytic.values()]),
        np.concatenate([n.ravel() for n in numeric.values()]),
    )
    worst = max(errors.values(), default=0.0)
    return GradCheckResult(
        max_rel_error=worst,
        errors=errors,
        rel_error=overall,
        passed=bool(worst <= threshold),
        threshold=threshold,
        analytic=analytic,
        numeric=numeric,
    )
