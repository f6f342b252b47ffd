"""The counter-based keep-mask in NumPy alone: the same bits as ``droplab.dropout_mask``.

The definition (SplitMix64 over a Weyl sequence, two 32-bit words per 64-bit output, kept iff
``u >= round(p * 2**32)``) is written out in ``droplab.kernels.rng``; this twin must not import
torch or numba, so that the NumPy engine can share masks with the torch engine bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from droplab._checks import check_mask_p, check_seed

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1


def _mix64_int(z: int) -> int:
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def random_words(numel: int, seed: int, *, offset: int = 0) -> np.ndarray:
    """The 32-bit words ``u[offset : offset + numel]`` of a seed's stream, as uint64."""
    if numel == 0:
        return np.empty(0, dtype=np.uint64)
    key = _mix64_int(int(seed) + GOLDEN)
    first, last = offset // 2, (offset + numel - 1) // 2
    j = np.arange(first + 1, last + 2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        w = _mix64(j * np.uint64(GOLDEN) + np.uint64(key))
    u = np.empty((w.size, 2), dtype=np.uint64)
    u[:, 0] = w & np.uint64(0xFFFFFFFF)
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
    check_mask_p(p)
    seed = check_seed(seed)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    threshold = min(1 << 32, max(0, round(float(p) * 4294967296.0)))
    u = random_words(math.prod(shape), seed)
    return (u >= np.uint64(threshold)).reshape(shape)


def stream_key(seed: int) -> int:
    """The 64-bit key of a seed's stream: ``mix64(seed + GOLDEN)``.

    The same function as ``droplab.kernels.rng.stream_key``, in pure Python ints.
    """
    return _mix64_int(check_seed(seed) + GOLDEN)


def derive_seed(seed: int, step: int) -> int:
    """The seed of step ``step`` of a seeded dropout module: distinct, well-mixed, repeatable.

    ``mix64(stream_key(seed) ^ mix64((step * MIX1 + MIX2) mod 2**64))``, the same function as
    ``droplab.kernels.rng.derive_seed`` (which this file cannot import: it imports torch).

    Examples::

        >>> derive_seed(0, 0) != derive_seed(0, 1)
        True
    """
    return _mix64_int(stream_key(seed) ^ _mix64_int((int(step) * MIX1 + MIX2) & MASK64))
