"""Fused CPU dropout kernels (numba): mask generation and scaling in one pass.

Every kernel computes the counter-based mask of ``droplab.kernels.rng`` on the fly, bit for bit::

    word[j] = mix64(key + (j + 1) * GOLDEN)       key = mix64(seed + GOLDEN), j = i // 2
    u[i]    = 32-bit half (i % 2) of word[i // 2];  keep[i] = u[i] >= threshold(p)

so no mask is ever allocated: the forward writes ``y = x * (scale if keep else 0)`` and the
backward regenerates the same bits from ``(seed, offset)`` (it is the same kernel applied to the
incoming gradient). One 64-bit hash serves two elements. Work is split into fixed chunks of
``CHUNK`` elements handed to ``prange``; as each element's bit depends only on its global index,
results do not depend on the thread count or on the chunk size.

Arrays here are flat NumPy views of contiguous tensors (the caller makes them contiguous);
``offset`` is the global index of element 0, so a tensor can be processed in pieces. bfloat16 has
no NumPy dtype: its storage is viewed as ``uint16`` and widened to float32 by a 16-bit shift
inside the kernel (rounded back to nearest-even, NaN to 0x7FC0, as PyTorch does). float16 is
converted through float32 by the caller (``droplab.kernels.fast``): numba has no float16 on CPU.

Importing this module imports numba; compiled kernels are cached on disk (``cache=True``).
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

from droplab.kernels.rng import GOLDEN, MASK64, MIX1, MIX2, keep_threshold, stream_key

CHUNK = 1 << 15  # elements per parallel task
SERIAL_BELOW = 1 << 15  # below this many elements the serial kernels win (no thread wake-up)

_G = np.uint64(GOLDEN)
_M1 = np.uint64(MIX1)
_M2 = np.uint64(MIX2)
_M32 = np.uint64(0xFFFFFFFF)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_ONE = np.uint64(1)

_FLAGS = dict(cache=True, nogil=True, fastmath=True, error_model="numpy", boundscheck=False)


@njit(inline="always", **_FLAGS)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", **_FLAGS)
def _word(key, j):
    # the 64-bit word holding elements 2j and 2j+1
    return _mix(key + (j + _ONE) * _G)


# ----------------------------------------------------------------------------------------------
# one segment (a whole array, a chunk's slice), whose first element has global index g;
# segments are compiled apart from the parallel drivers: inlined into a prange body, or called
# with a start index that is not the constant 0, LLVM does not vectorize them (7x slower)
# ----------------------------------------------------------------------------------------------


@njit(**_FLAGS)
def _scale_segment(x, y, g, key, t, scale, zero):
    i, b = 0, x.size
    if (g & _ONE) and i < b:  # odd start: the high half of a word
        w = _word(key, g >> _ONE)
        y[i] = x[i] * (scale if (w >> _S32) >= t else zero)
        i += 1
        g += _ONE
    j0 = g >> _ONE
    npairs = (b - i) // 2
    for k in range(npairs):
        w = _word(key, j0 + np.uint64(k))
        e = i + 2 * k
        y[e] = x[e] * (scale if (w & _M32) >= t else zero)
        y[e + 1] = x[e + 1] * (scale if (w >> _S32) >= t else zero)
    e = i + 2 * npairs
    if e < b:  # odd end: the low half of one more word
        w = _word(key, j0 + np.uint64(npairs))
        y[e] = x[e] * (scale if (w & _M32) >= t else zero)


@njit(inline="always", **_FLAGS)
def _bf16_to_f32(h):
    return np.uint32(np.uint32(h) << np.uint32(16)).view(np.float32)


@njit(inline="always", **_FLAGS)
def _f32_to_bf16(f):
    b = np.float32(f).view(np.uint32)
    rounded = np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> 16)
    return np.uint16(0x7FC0) if f != f else rounded


@njit(**_FLAGS)
def _scale_segment_bf16(x, y, g, key, t, scale):
    zero = np.float32(0.0)
    i, b = 0, x.size
    if (g & _ONE) and i < b:
        w = _word(key, g >> _ONE)
        y[i] = _f32_to_bf16(_bf16_to_f32(x[i]) * (scale if (w >> _S32) >= t else zero))
        i += 1
        g += _ONE
    j0 = g >> _ONE
    npairs = (b - i) // 2
    for k in range(npairs):
        w = _word(key, j0 + np.uint64(k))
        e = i + 2 * k
        y[e] = _f32_to_bf16(_bf16_to_f32(x[e]) * (scale if (w & _M32) >= t else zero))
        y[e + 1] = _f32_to_bf16(_bf16_to_f32(x[e + 1]) * (scale if (w >> _S32) >= t else zero))
    e = i + 2 * npairs
    if e < b:
        w = _word(key, j0 + np.uint64(npairs))
        y[e] = _f32_to_bf16(_bf16_to_f32(x[e]) * (scale if (w & _M32) >= t else zero))


@njit(**_FLAGS)
def _mask_segment(out, g, key, t):
    i, b = 0, out.size
    if (g & _ONE) and i < b:
        out[i] = (_word(key, g >> _ONE) >> _S32) >= t
        i += 1
        g += _ONE
    j0 = g >> _ONE
    npairs = (b - i) // 2
    for k in range(npairs):
        w = _word(key, j0 + np.uint64(k))
        out[i + 2 * k] = (w & _M32) >= t
        out[i + 2 * k + 1] = (w >> _S32) >= t
    e = i + 2 * npairs
    if e < b:
        out[e] = (_word(key, j0 + np.uint64(npairs)) & _M32) >= t


# ----------------------------------------------------------------------------------------------
# drivers: parallel over fixed chunks, and serial twins for small arrays
# ----------------------------------------------------------------------------------------------


# The scale drivers take plain Python numbers (seed and threshold as int64 with the bits of
# their uint64 values, scale as float64) and convert them inside: numba unboxes Python ints and
# floats several times faster than NumPy scalars, which matters for small tensors (~2 us a call).
# The scale is rounded to the array's dtype here, as ``np.float32(scale)`` would round it.


@njit(inline="always", **_FLAGS)
def _key_of(seed):
    return _mix(np.uint64(seed) + _G)  # stream_key: mix64(seed + GOLDEN)


@njit(parallel=True, **_FLAGS)
def _scale_par_f32(x, y, seed, t, scale, offset):
    n = x.size
    key, tu, s = _key_of(seed), np.uint64(t), np.float32(scale)
    zero = np.float32(0.0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        a = c * CHUNK
        b = min(a + CHUNK, n)
        _scale_segment(x[a:b], y[a:b], np.uint64(offset + a), key, tu, s, zero)


@njit(**_FLAGS)
def _scale_ser_f32(x, y, seed, t, scale, offset):
    _scale_segment(
        x, y, np.uint64(offset), _key_of(seed), np.uint64(t), np.float32(scale), np.float32(0.0)
    )


@njit(parallel=True, **_FLAGS)
def _scale_par_f64(x, y, seed, t, scale, offset):
    n = x.size
    key, tu, s = _key_of(seed), np.uint64(t), np.float64(scale)
    zero = np.float64(0.0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        a = c * CHUNK
        b = min(a + CHUNK, n)
        _scale_segment(x[a:b], y[a:b], np.uint64(offset + a), key, tu, s, zero)


@njit(**_FLAGS)
def _scale_ser_f64(x, y, seed, t, scale, offset):
    _scale_segment(
        x, y, np.uint64(offset), _key_of(seed), np.uint64(t), np.float64(scale), np.float64(0.0)
    )


@njit(parallel=True, **_FLAGS)
def _scale_bf16_par(x, y, seed, t, scale, offset):
    n = x.size
    key, tu, s = _key_of(seed), np.uint64(t), np.float32(scale)
    for c in prange((n + CHUNK - 1) // CHUNK):
        a = c * CHUNK
        b = min(a + CHUNK, n)
        _scale_segment_bf16(x[a:b], y[a:b], np.uint64(offset + a), key, tu, s)


@njit(**_FLAGS)
def _scale_bf16_ser(x, y, seed, t, scale, offset):
    _scale_segment_bf16(x, y, np.uint64(offset), _key_of(seed), np.uint64(t), np.float32(scale))


@njit(parallel=True, **_FLAGS)
def _mask_par(out, key, t, offset):
    n = out.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        a = c * CHUNK
        b = min(a + CHUNK, n)
        _mask_segment(out[a:b], np.uint64(offset + a), key, t)


# ----------------------------------------------------------------------------------------------
# fork safety
# ----------------------------------------------------------------------------------------------

# numba's OpenMP layer aborts ("fork() called from a process already using GNU OpenMP") or hangs
# a forked child (DataLoader workers, a fork Pool) once the parent has run a parallel kernel. A
# forked child therefore runs the serial kernels: same bits (the mask depends only on the
# counter), no thread pool, and no cost to the parent, which only gains a flag read per call.
_FORKED_CHILD = False
_SERIAL_COPIES: dict = {}


def _mark_forked_child() -> None:
    global _FORKED_CHILD
    _FORKED_CHILD = True


os.register_at_fork(after_in_child=_mark_forked_child)


def _serial(n: int) -> bool:
    return n < SERIAL_BELOW or _FORKED_CHILD


def _parallel(kernel):
    """``kernel``, or in a forked child its serial compilation (``prange`` runs as ``range``)."""
    if not _FORKED_CHILD:
        return kernel
    serial = _SERIAL_COPIES.get(kernel)
    if serial is None:  # not cached on disk: the index would collide with the parallel build's
        serial = _SERIAL_COPIES[kernel] = njit(**{**_FLAGS, "cache": False})(kernel.py_func)
    return serial


# ----------------------------------------------------------------------------------------------
# Python entry points (NumPy in, NumPy out)
# ----------------------------------------------------------------------------------------------


def _params(p: float, seed: int):
    return np.uint64(stream_key(int(seed) & MASK64)), np.uint64(keep_threshold(p))


def _i64(u: int) -> int:
    """The int64 with the bits of the uint64 ``u`` (how seeds cross into the scale drivers)."""
    return u - (1 << 64) if u >= 1 << 63 else u


_THRESHOLDS: dict[float, int] = {}


def _threshold(p: float) -> int:
    t = _THRESHOLDS.get(p)
    if t is None:
        t = _THRESHOLDS[p] = keep_threshold(p)
    return t


def dropout_cpu(
    x: np.ndarray,
    p: float,
    scale: float,
    seed: int,
    *,
    out: np.ndarray | None = None,
    offset: int = 0,
) -> np.ndarray:
    """``out = x * keep * scale`` for a flat float32/float64 array (``out`` may be ``x``).

    ``keep`` is the seeded mask of ``droplab.kernels.rng`` at global indices ``offset + i``. The
    backward of dropout is this same call on the incoming gradient.
    """
    out = np.empty_like(x) if out is None else out
    if x.dtype == np.float32:
        kernel = _scale_ser_f32 if _serial(x.size) else _scale_par_f32
    else:
        kernel = _scale_ser_f64 if _serial(x.size) else _scale_par_f64
    kernel(x, out, _i64(int(seed) & MASK64), _threshold(p), float(scale), int(offset))
    return out


def dropout_bf16_cpu(
    x: np.ndarray,
    p: float,
    scale: float,
    seed: int,
    *,
    out: np.ndarray | None = None,
    offset: int = 0,
) -> np.ndarray:
    """The same as ``dropout_cpu`` for bfloat16 bits stored as ``uint16``, computed in float32."""
    out = np.empty_like(x) if out is None else out
    kernel = _scale_bf16_ser if _serial(x.size) else _scale_bf16_par
    kernel(x, out, _i64(int(seed) & MASK64), _threshold(p), float(scale), int(offset))
    return out


def mask_cpu(numel: int, p: float, seed: int, *, offset: int = 0) -> np.ndarray:
    """The keep-mask of ``numel`` elements (global indices from ``offset``) as a bool array."""
    out = np.empty(int(numel), dtype=np.bool_)
    key, t = _params(p, seed)
    _parallel(_mask_par)(out, key, t, np.int64(offset))
    return out


def set_threads(threads: int) -> None:
    """Run the parallel kernels on ``threads`` threads (at most numba's pool size)."""
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
