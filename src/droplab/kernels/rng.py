"""The counter-based keep-mask shared by every droplab backend.

A seeded mask is a pure function of ``(seed, element index)``, so the same bits come out of
PyTorch ops (this file), the numba CPU kernel, the NumPy engine and a GPU kernel, at any thread
count and in any run.

The generator is SplitMix64 (Steele, Lea & Flood 2014, the seeder of Java's SplittableRandom and
of xoshiro): its 64-bit finalizer applied to a Weyl sequence passes BigCrush. One 64-bit word
gives two elements (its low and high 32 bits), so every output bit is used::

    key      = mix64(seed + GOLDEN)                    # decorrelates neighbouring seeds
    word[j]  = mix64(key + (j + 1) * GOLDEN)           # j = i // 2, arithmetic mod 2**64
    u[i]     = (word[i // 2] >> (32 * (i % 2))) & 0xFFFFFFFF
    keep[i]  = u[i] >= threshold(p),  threshold(p) = round(p * 2**32)

so ``P(keep) = 1 - threshold / 2**32`` equals ``1 - p`` to within ``2**-33`` (about 1.2e-10);
``p = 0`` keeps everything and ``p = 1`` nothing. ``i`` is the row-major (C-order) index of the
element in its logical shape, whatever the strides of the tensor it is applied to.

PyTorch has no unsigned 64-bit shifts on CPU, so this reference computes in ``int64``: products
wrap modulo ``2**64`` exactly as ``uint64`` would, and right shifts are made logical with a mask.
"""

from __future__ import annotations

import numbers

import torch

from droplab._checks import check_mask_p, check_seed

GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, the Weyl increment
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
MAX_SEED = MASK64


def _signed(c: int) -> int:
    """The int64 with the same bits as the uint64 ``c``."""
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


def derive_seed(seed: int, step: int) -> int:
    """The seed of step ``step`` of a seeded module: distinct, well-mixed, repeatable."""
    return mix64_int(stream_key(seed) ^ mix64_int((int(step) * MIX1 + MIX2) & MASK64))


def keep_threshold(p: float) -> int:
    """The integer threshold ``round(p * 2**32)``: a 32-bit word ``u`` is kept iff ``u >= t``."""
    return min(1 << 32, max(0, round(float(p) * 4294967296.0)))


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
