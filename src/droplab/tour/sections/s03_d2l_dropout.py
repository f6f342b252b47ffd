"""3. d2l's ``dropout_layer(X, dropout)`` on ``X = arange(16).reshape(2, 8)`` for p = 0, 0.5, 1.

Dive into Deep Learning writes inverted dropout in four lines: keep each element with
probability ``1 - p`` and divide the kept ones by ``1 - p``; ``p = 0`` returns ``X`` and ``p = 1``
returns zeros (no division by zero). droplab computes the same formula; with a seed its mask is
a counter-based function of ``(seed, element index)``, so the NumPy engine draws the very same
mask and the two engines print the same matrix.
"""

from __future__ import annotations

import torch

import droplab
from droplab import scratch
from droplab.tour.sections._common import Checks, heading, show


def dropout_layer(X, dropout):
    """d2l's function, as the book writes it."""
    assert 0 <= dropout <= 1
    if dropout == 1:  # every element dropped
        return torch.zeros_like(X)
    if dropout == 0:  # every element kept
        return X
    mask = (torch.rand(X.shape) > dropout).float()
    return mask * X / (1.0 - dropout)


def run(plots=None) -> Checks:
    checks = Checks()
    X = torch.arange(16, dtype=torch.float32).reshape((2, 8))
    seed = 3
    torch.manual_seed(0)
    for p in (0.0, 0.5, 1.0):
        heading(f"p = {p:g}")
        y_d2l = dropout_layer(X, p)
        y_torch = droplab.Dropout(p, seed=seed)(X)  # droplab's torch layer
        y_numpy = scratch.Dropout(p, seed=seed)(X.numpy())  # the NumPy engine's layer
        show("d2l's dropout_layer (torch.rand)", y_d2l)
        show(f"droplab.Dropout({p}, seed={seed})", y_torch)
        show(f"scratch.Dropout({p}, seed={seed})", y_numpy)
        if p == 0:
            checks.equal("p = 0: d2l returns X", y_d2l, X)
            checks.equal("p = 0: droplab returns X", y_torch, X)
        elif p == 1:
            checks.equal("p = 1: d2l returns zeros", y_d2l, torch.zeros_like(X))
            checks.equal("p = 1: droplab returns zeros", y_torch, torch.zeros_like(X))
        else:
            for name, y in (("d2l", y_d2l), ("droplab", y_torch)):
                kept = y != 0
                checks.check(
                    f"p = 0.5: {name} keeps x / (1 - p) = 2x, zeros the rest",
                    bool(torch.equal(y[kept], 2 * X[kept])) and bool((y[~kept] == 0).all()),
                    f"{int(kept.sum())} of {X.numel()} kept",
                )
        checks.equal(f"p = {p:g}: NumPy engine = PyTorch layer, same seed", y_numpy, y_torch)

    # droplab.dropout(X, p, seed=s) applies dropout_mask(X.shape, p, seed=s); a seeded layer
    # derives step k's seed from (s, k), which is why its first mask above is another one
    heading("d2l's formula mask * X / (1 - p) with droplab's counter-based mask")
    p = 0.5
    mask = droplab.dropout_mask(X.shape, p, seed=seed).float()
    show(f"droplab.dropout_mask(seed={seed})", mask)
    by_hand = mask * X / (1.0 - p)
    checks.equal("= droplab.dropout(X, 0.5, seed=3)", by_hand, droplab.dropout(X, p, seed=seed))
    checks.equal(
        "the NumPy engine's mask = the torch mask",
        scratch.dropout_mask(X.shape, p, seed=seed),
        mask.bool(),
    )
    return checks
