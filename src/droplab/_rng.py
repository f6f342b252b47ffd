"""The counter-based RNG specification, in pure Python: the one place its constants live.

A seeded mask is a pure function of ``(seed, element index)``, so the same bits come out of
PyTorch ops (``droplab.kernels.rng``), the numba CPU kernels (``droplab.kernels.cpu``) and the
NumPy engine (``droplab.scratch.mask``), at any thread count and in any run. Those three import
their constants and scalar functions from here, so they cannot drift apart.

The generator is SplitMix64 (Steele, Lea & Flood 2014, the seeder of Java's SplittableRandom and
of xoshiro): its 64-bit finalizer applied to a Weyl sequence passes BigCrush. One 64-bit word
gives two elements (its low and high 32 bits), so every output bit is used::

    key      = mix64(seed + GOLDEN)                    # decorrelates neighbouring seeds
    word[j]  = mix64(key + (j + 1) * GOLDEN)           # j = i // 2, arithmetic mod 2**64
    u[i]     = (word[i // 2] >> (32 * (i % 2))) & 0xFFFFFFFF
    keep[i]  = u[i] >= threshold(p),  threshold(p) = round(p * 2**32)

so ``P(keep) = 1 - threshold / 2**32`` equals ``1 - p`` to within ``2**-33`` (about 1.2e-10);
``p = 0`` keeps everything and ``p = 1`` nothing. ``i`` is the row-major (C-order) index of the
element in its logical shape, whatever the strides of the array it is applied to.

This module imports neither torch nor numpy (the NumPy engine must not import torch).
"""

from __future__ import annotations

from droplab._checks import MAX_SEED, check_seed

__all__ = [
    "GOLDEN",
    "MASK32",
    "MASK64",
    "MAX_SEED",
    "MIX1",
    "MIX2",
    "derive_seed",
    "keep_threshold",
    "mix64_int",
    "signed64",
    "stream_key",
    "threshold",
    "word_int",
]

GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, the Weyl increment
MIX1 = 0xBF58476D1CE4E5B9  # SplitMix64's two finalizer multipliers
MIX2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1


def signed64(c: int) -> int:
    """The int64 with the same bits as the uint64 ``c`` (PyTorch has no uint64 arithmetic)."""
    return c - (1 << 64) if c >= 1 << 63 else c


def mix64_int(z: int) -> int:
    """SplitMix64's finalizer on a Python int (the scalar definition the kernels follow)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int) -> int:
    """The 64-bit key of a seed's stream: ``mix64(seed + GOLDEN)``."""
    return mix64_int(check_seed(seed) + GOLDEN)


def word_int(key: int, j: int) -> int:
    """The 64-bit word ``j`` of the stream with key ``key``: ``mix64(key + (j + 1) * GOLDEN)``."""
    return mix64_int(key + (j + 1) * GOLDEN)


def derive_seed(seed: int, step: int) -> int:
    """The seed of step ``step`` of a seeded module: distinct, well-mixed, repeatable.

    ``mix64(stream_key(seed) ^ mix64((step * MIX1 + MIX2) mod 2**64))``.

    Examples::

        >>> derive_seed(0, 0) != derive_seed(0, 1)
        True
    """
    return mix64_int(stream_key(seed) ^ mix64_int((int(step) * MIX1 + MIX2) & MASK64))


def threshold(p: float, bits: int = 32) -> int:
    """The integer threshold ``round(p * 2**bits)``, in ``[0, 2**bits]``: an unsigned ``bits``-bit
    word ``u``, uniform, is kept iff ``u >= t``, so ``P(keep) = 1 - t / 2**bits`` (``p`` rounded to
    a multiple of ``2**-bits``).

    Examples::

        >>> threshold(0.25, 16)
        16384
    """
    return min(1 << bits, max(0, round(float(p) * float(1 << bits))))


def keep_threshold(p: float) -> int:
    """The threshold of the 32-bit words of the mask: ``threshold(p, 32) = round(p * 2**32)``."""
    return threshold(p, 32)
