"""The ``backend="fast"`` entry points used by ``droplab.functional`` (numba CPU kernels).

Placeholder until the fast kernels land: ``fast_available`` says why the fast path cannot run.
"""

from __future__ import annotations

import torch


def fast_available(x: torch.Tensor) -> tuple[bool, str]:
    """Whether ``fast_dropout`` can run on ``x``; if not, the reason in one sentence."""
    return False, "the fast CPU kernels are not built in this version of droplab"


def fast_dropout(x: torch.Tensor, p: float, scale: float, seed: int) -> torch.Tensor:
    """``y = x * m * scale`` with ``m = dropout_mask(x.shape, p, seed=seed)``, differentiable."""
    raise NotImplementedError(fast_available(x)[1])
