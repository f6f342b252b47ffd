"""8. ``nn.Dropout(p=0.4)`` after a ``Linear(4, 5)``: which outputs are zeroed, and the 1/0.6 scale.

The tutorial feeds ``randint(0, 10, (1, 4))`` through ``nn.Linear(4, 5)`` and then
``nn.Dropout(p=0.4)``: about 40% of the five outputs become 0, and each kept one is multiplied by
``1 / (1 - 0.4) = 1.6667`` (inverted dropout: the scaling happens in training, so eval is the
identity). droplab reproduces torch's output bit for bit given torch's mask, and the NumPy
engine's ``Linear`` and ``Dropout`` compute the same layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

import droplab
from droplab import scratch
from droplab.functional import apply_mask
from droplab.tour.sections._common import Checks, heading, show


def run(plots=None) -> Checks:
    checks = Checks()
    p = 0.4
    torch.manual_seed(0)
    inputs = torch.randint(0, 10, size=[1, 4]).float()  # (1, 4)
    layer = nn.Linear(4, 5)
    dropout = nn.Dropout(p=p)
    with torch.no_grad():
        y = layer(inputs)  # (1, 5)
        out = dropout(y)

    heading("the tutorial's example (torch.manual_seed(0))")
    show("inputs", inputs)
    show("Linear(4, 5)(inputs)", y)
    show("nn.Dropout(p=0.4)(...)", out)
    kept = out != 0
    show("kept / original", (out[kept] / y[kept]))
    # torch computes y * mask * (1 / (1 - p)) in float32: kept values are exactly that
    scale = 1 / (1 - p)
    checks.check(
        "every output is 0 or y / (1 - p) = y * 1.6667",
        bool(torch.equal(out[kept], y[kept] * scale)) and bool((out[~kept] == 0).all()),
        f"{int((~kept).sum())} of 5 zeroed",
    )
    checks.check("eval: nn.Dropout is the identity", torch.equal(dropout.eval()(y), y))

    heading("droplab, given torch's mask")
    same = apply_mask(y, kept, p)
    show("droplab.functional.apply_mask", same)
    checks.equal("droplab.apply_mask(y, torch's mask, 0.4) = nn.Dropout's output", same, out)
    _numpy_twin(checks, layer, inputs, y, p)
    _drop_rates(checks, p)
    return checks


def _numpy_twin(checks: Checks, layer, inputs, y, p: float) -> None:
    heading("the NumPy engine: the same Linear weights, and seeded masks shared with droplab")
    twin = scratch.Linear(4, 5)
    twin.load_state_dict({k: v.numpy() for k, v in layer.state_dict().items()})
    y_np = twin(inputs.numpy())
    seed = 11
    out_t = droplab.Dropout(p, seed=seed)(y)
    out_n = scratch.Dropout(p, seed=seed)(y_np)
    show("scratch.Linear(4, 5)", y_np)
    show(f"droplab.Dropout(0.4, seed={seed})", out_t)
    show(f"scratch.Dropout(0.4, seed={seed})", out_n)
    checks.agree("NumPy Linear = torch Linear, float32", y_np, y)
    checks.equal("NumPy Dropout's mask = droplab.Dropout's, seed 11", out_n != 0, out_t != 0)
    # kept values: torch multiplies by 1 / (1 - p), the NumPy engine divides by 1 - p; in
    # float32 the two roundings may differ in the last bit
    checks.agree("NumPy Dropout = droplab.Dropout, float32", out_n, out_t)


def _drop_rates(checks: Checks, p: float) -> None:
    # one example shows one mask; the drop rate over many elements is binomial
    n = 1_000_000
    scale = 1 / (1 - p)
    heading(f"drop rate over {n:,} elements (binomial bound: 6 standard errors)")
    bound = 6 * math.sqrt(p * (1 - p) / n)
    ones = torch.ones(n)
    for name, module in [
        ("nn.Dropout(0.4)", nn.Dropout(p)),
        ("droplab.Dropout(0.4)", droplab.Dropout(p)),
    ]:
        z = module(ones)
        rate = float((z == 0).float().mean())
        kept_values = ", ".join(f"{v:.7g}" for v in z[z != 0].unique().tolist())
        show(name, f"drop rate {rate:.5f}, kept values {{{kept_values}}}")
        checks.check(
            f"{name}: drop rate 0.4 within {bound:.4f}, kept = 1/0.6",
            abs(rate - p) <= bound and bool(torch.equal(z[z != 0].unique(), torch.tensor([scale]))),
            f"{rate:.5f}",
        )
    rate_np = 1 - float(scratch.Dropout(p, rng=0)(np.ones(n, dtype=np.float32)).astype(bool).mean())
    show("scratch.Dropout(0.4)", f"drop rate {rate_np:.5f}")
    checks.check(
        f"scratch.Dropout(0.4): drop rate 0.4 within {bound:.4f}", abs(rate_np - p) <= bound
    )
