"""The counter-based keep-mask in PyTorch ops.

The generator (SplitMix64 over a Weyl sequence, two 32-bit words per 64-bit output, kept iff
``u >= round(p * 2**32)``) is specified once, in pure Python, in ``droplab._rng``; this file
evaluates it on tensors, so its bits equal the numba kernel's and the NumPy engine's.

PyTorch has no unsigned 64-bit shifts on CPU, so this file computes in ``int64``: products
wrap modulo ``2**64`` exactly as ``uint64`` would, and right shifts are made logical with a mask.
"""

from __future__ import annotations

import torch

from droplab._checks import check_p, check_seed, check_shape
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
    "derive_seed_tensor",
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


def derive_seed_tensor(seed: int, step: torch.Tensor) -> torch.Tensor:
    """``derive_seed(seed, step)`` for an int64 tensor ``step``: the int64 with the seed's bits.

    The form a compiler traces: ``step`` stays a graph input (no recompile per step) and the
    result is a 0-d int64 tensor that ``dropout_mask`` and every droplab function accept as
    ``seed``.
    """
    z = step.to(torch.int64) * _signed(MIX1) + _signed(MIX2)
    return _mix64(_signed(stream_key(seed)) ^ _mix64(z))


def _keep_from_tensor_seed(numel: int, t: int, seed: torch.Tensor, device) -> torch.Tensor:
    # element-wise (no pairing of words), so that a compiler fuses it into one loop and a
    # batched seed (vmap) broadcasts: u[i] = half (i % 2) of word[i // 2]
    key = _mix64(seed.to(torch.int64) + _signed(GOLDEN))
    i = torch.arange(numel, dtype=torch.int64, device=device)
    w = _mix64(((i >> 1) + 1) * _signed(GOLDEN) + key)
    return ((w >> ((i & 1) * 32)) & MASK32) >= t


def dropout_mask(shape, p: float, *, seed, device=None) -> torch.Tensor:
    """The keep-mask (``True`` = kept) that seeded dropout applies to a tensor of ``shape``.

    Computed with PyTorch ops; the fast kernel and ``droplab.scratch.dropout_mask`` give the same
    bits. See the module docstring for the definition. ``seed`` is an int in
    ``[0, 2**64 - 1]``, or a 0-d int64 tensor holding the int64 with the same bits (what
    ``derive_seed_tensor`` returns, and what a compiled or ``vmap``-ed caller passes).

    Examples::

        >>> dropout_mask((2, 4), 0.5, seed=0).shape
        torch.Size([2, 4])
    """
    # a torch.Size is valid by construction (and holds symbolic sizes under a compiler)
    shape = shape if isinstance(shape, torch.Size) else torch.Size(check_shape(shape))
    p = check_p(p)
    if torch.compiler.is_compiling() and not isinstance(seed, torch.Tensor):
        # a traced int seed would be folded into the compiler's index arithmetic (and overflow)
        seed = torch.tensor(signed64(check_seed(seed)), device=device)
    if isinstance(seed, torch.Tensor):
        seed = check_seed(seed, tensor_ok=True)
        keep = _keep_from_tensor_seed(shape.numel(), keep_threshold(p), seed, device)
        return keep.reshape(shape)
    seed = check_seed(seed)  # also for an empty shape, which draws no words
    u = random_words(shape.numel(), seed, device=device)
    return (u >= keep_threshold(p)).reshape(shape)
