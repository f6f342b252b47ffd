"""2. The keep_prob walk-through: one mask changes the mean, the expectation does not change.

The course's example: activations ``A = [0.2, 0.6, 0.4, 0.9]`` (mean 0.525), keep_prob 0.5 and
the mask ``[1, 0, 1, 0]``. Multiplying by the mask drops the mean to 0.15; dividing by
keep_prob ("inverted" dropout) lifts it to 0.3. Not 0.525: one mask is one sample. What inverted
dropout preserves is the *expectation* over masks, ``E[A * m / keep_prob] = A``, so the mean over
many masks comes back to 0.525 within the sampling error, which the Bernoulli variance gives.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import droplab
from droplab import scratch
from droplab.functional import apply_mask
from droplab.tour.sections._common import TOL, Checks, heading, show


def run(plots=None) -> Checks:
    checks = Checks()
    keep_prob, tol = 0.5, TOL[np.dtype(np.float64)]
    A = torch.tensor([0.2, 0.6, 0.4, 0.9], dtype=torch.float64)
    mask = torch.tensor([1, 0, 1, 0])

    heading("one mask, A = [0.2, 0.6, 0.4, 0.9], mask [1, 0, 1, 0], keep_prob 0.5")
    dropped = apply_mask(A, mask, keep_prob=keep_prob, mode="classic")  # A * mask
    scaled = apply_mask(A, mask, keep_prob=keep_prob)  # A * mask / keep_prob (inverted)
    show("A", A)
    show("A * mask", dropped)
    show("A * mask / keep_prob", scaled)
    for name, value, want in [
        ("mean(A)", A.mean(), 0.525),
        ("mean(A * mask)", dropped.mean(), 0.15),
        ("mean(A * mask / keep_prob)", scaled.mean(), 0.3),
    ]:
        show(name, value)
        checks.close(f"{name} = {want} (the course's number)", value, want, tol)
    checks.equal("A * mask / keep_prob = [0.4, 0, 0.8, 0]", scaled, 2 * A * mask)

    # many masks: each row of a (n, 4) batch of A draws its own mask
    n, seed = 200_000, 2024
    heading(f"the mean over {n:,} masks, both engines (seeded: the same masks)")
    batch = A.expand(n, 4).contiguous()  # (n, 4)
    row_means = droplab.Dropout(keep_prob=keep_prob, seed=seed)(batch).mean(dim=1)  # (n,)
    layer_np = scratch.Dropout(keep_prob=keep_prob, seed=seed)
    row_means_np = layer_np(batch.numpy()).mean(axis=1)
    mask_np = layer_np.mask  # the keep-mask it drew, (n, 4)
    mean, mean_np = float(row_means.mean()), float(row_means_np.mean())
    # Var(A_i m_i / kp) = A_i^2 (1 - kp) / kp for m_i ~ Bernoulli(kp): the row mean has variance
    # sum_i A_i^2 (1 - kp) / kp / 16, the mean of n rows that over n
    se = math.sqrt(float((A**2).sum()) * (1 - keep_prob) / keep_prob / 16 / n)
    show("PyTorch (droplab.Dropout)", f"{mean:.6f}")
    show("NumPy (scratch.Dropout)", f"{mean_np:.6f}")
    show("binomial standard error", f"{se:.6f}")
    checks.check(
        "mean over masks = 0.525 within 6 standard errors",
        abs(mean - 0.525) <= 6 * se,
        f"|{mean:.6f} - 0.525| = {abs(mean - 0.525):.2e} <= {6 * se:.2e}",
    )
    checks.close("NumPy engine's mean = PyTorch's (same masks)", mean_np, mean, tol)
    drop_rate = 1 - float(mask_np.mean())
    checks.check(
        "drop rate = 1 - keep_prob within 6 standard errors",
        abs(drop_rate - 0.5) <= 6 * math.sqrt(keep_prob * (1 - keep_prob) / mask_np.size),
        f"{drop_rate:.5f}",
    )
    single = float(scaled.mean())
    checks.check(
        "one mask is not the expectation: 0.3 lies far outside that bound",
        abs(single - 0.525) > 6 * se,
        f"|0.3 - 0.525| = {abs(single - 0.525):.3f}",
    )
    return checks
