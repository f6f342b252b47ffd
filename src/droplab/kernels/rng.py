"""The counter-based keep-mask in PyTorch ops.

The generator (SplitMix64 over a Weyl sequence, two 32-bit words per 64-bit output, kept iff
``u >= round(p * 2**32)``) is specified once, in pure Python, in ``droplab._rng``; this file
evaluates it on tensors, so its bits equal the numba kernel's and the NumPy engine's.

PyTorch has no unsigned 64-bit shifts on CPU, so this file computes in ``int64``: products
wrap modulo ``2**64`` exactly as ``uint64`` would, and right shifts are made logical with a mask.
"""

from __future__ import annotations

import numbers

import torch

from droplab._checks import check_mask_p, check_seed
from droplab._rng import (
    GOLDEN,
    MASK32,
    MASK64,
    MAX_SEED,
    MIX1,
    MIX2,
    derive_seed,
    keep_threshold,
    mix64_int,
    signed64,
    stream_key,
)

# re-exported: callers and tests read the specification through this module too
__all__ = [
    "GOLDEN",
    "MASK32",
    "MASK64",
    "MAX_SEED",
    "MIX1",
    "MIX2",
    "check_seed",
    "derive_seed",
    "dropout_mask",
    "keep_threshold",
    "mix64_int",
    "random_words",
    "stream_key",
]

_signed = signed64


def _mix64(z: torch.Tensor) -> torch.Tensor:
    # logical right shifts on int64: shift, then clear the sign-extended bits
    z = (z ^ ((z >> 30) & ((1 << 34) - 1))) * _signed(MIX1)
    z = (z ^ ((z >> 27) & ((1 << 37) - 1))) * _signed(MIX2)
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def random_words(numel: int, seed: int, *, offset: int = 0, device=None) -> torch.Tensor:
    """The 32-bit words ``u[offset : offset + numel]`` of a seed's stream, as int64."""
    if numel == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    key = stream_key(seed)
    first, last = offset // 2, (offset + numel - 1) // 2
    j = torch.arange(first, last + 1, dtype=torch.int64, device=device)
    w = _mix64((j + 1) * _signed(GOLDEN) + _signed(key))
    lo = w & MASK32
    hi = (w >> 32) & MASK32
    u = torch.stack((lo, hi), dim=-1).reshape(-1)
    start = offset - 2 * first
    return u[start : start + numel]


def dropout_mask(shape, p: float, *, seed: int, device=None) -> torch.Tensor:
    """The keep-mask (``True`` = kept) that seeded dropout applies to a tensor of ``shape``.

    Computed with PyTorch ops; the fast kernel and ``droplab.scratch.dropout_mask`` give the same
    bits. See the module docstring for the definition.

    Examples::

        >>> dropout_mask((2, 4), 0.5, seed=0).shape
        torch.Size([2, 4])
    """
    shape = torch.Size((shape,) if isinstance(shape, numbers.Integral) else shape)
    check_mask_p(p)
    seed = check_seed(seed)  # also for an empty shape, which draws no words
    u = random_words(shape.numel(), seed, device=device)
    return (u >= keep_threshold(p)).reshape(shape)
