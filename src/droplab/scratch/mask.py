"""The counter-based keep-mask in NumPy alone: the same bits as ``droplab.dropout_mask``.

The definition (SplitMix64 over a Weyl sequence, two 32-bit words per 64-bit output, kept iff
``u >= round(p * 2**32)``) is specified once in ``droplab._rng`` (pure Python); this twin
evaluates it on NumPy arrays and must not import torch or numba, so that the NumPy engine shares
masks with the torch engine bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from droplab._checks import check_p, check_seed, check_shape
from droplab._rng import GOLDEN, MASK32, MIX1, MIX2, derive_seed, keep_threshold, stream_key

__all__ = ["derive_seed", "dropout_mask", "random_words", "stream_key"]


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def random_words(numel: int, seed: int, *, offset: int = 0) -> np.ndarray:
    """The 32-bit words ``u[offset : offset + numel]`` of a seed's stream, as uint64."""
    if numel == 0:
        return np.empty(0, dtype=np.uint64)
    key = stream_key(seed)
    first, last = offset // 2, (offset + numel - 1) // 2
    j = np.arange(first + 1, last + 2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        w = _mix64(j * np.uint64(GOLDEN) + np.uint64(key))
    u = np.empty((w.size, 2), dtype=np.uint64)
    u[:, 0] = w & np.uint64(MASK32)
    u[:, 1] = w >> np.uint64(32)
    start = offset - 2 * first
    return u.reshape(-1)[start : start + numel]


def dropout_mask(shape, p: float, *, seed: int) -> np.ndarray:
    """The keep-mask (``True`` = kept) of seeded dropout on an array of ``shape``.

    Bit-identical to ``droplab.dropout_mask(shape, p, seed=seed)``.

    Examples::

        >>> dropout_mask((2, 3), 0.0, seed=1).all()
        np.True_
    """
    p = check_p(p)
    seed = check_seed(seed)
    shape = check_shape(shape)
    u = random_words(math.prod(shape), seed)
    return (u >= np.uint64(keep_threshold(p))).reshape(shape)
