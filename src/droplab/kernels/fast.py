"""The ``backend="fast"`` entry points used by ``droplab.functional`` (numba CPU kernels).

``fast_dropout(x, p, scale, seed)`` computes ``y = x * m * scale`` with
``m = dropout_mask(x.shape, p, seed=seed)`` in one fused pass (``droplab.kernels.cpu``), and its
backward regenerates ``m`` from the seed: **nothing is saved for backward but three numbers**.
With ``packed=True`` the forward also writes the mask at 1 bit per element and the backward reads
it instead (for callers that prefer reading 1/8 byte per element to recomputing the hash).

Both are registered with ``torch.library`` (``droplab::dropout``, ``droplab::dropout_packed``,
``droplab::unpack_scale``), each with an autograd formula and a fake (meta) implementation, so
``torch.compile`` treats them as single opaque ops and gives the same bits as eager.

Seeds are uint64 (``[0, 2**64 - 1]``); the op schema has only int64, so they cross it as the
int64 with the same bits. Non-contiguous inputs are copied to contiguous first: the mask is
indexed by the logical row-major index, whatever the strides. numba is imported on first use,
never by ``import droplab``.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from droplab.kernels.rng import MASK64, check_seed

FAST_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
# Below this many elements, "auto" keeps torch's own dropout: the custom op's Python dispatch
# (~15 us) is then a large share of the time (measured by `droplab bench`; see AUTO_MIN_NUMEL).
AUTO_MIN_NUMEL = 1 << 12


_NUMBA_MISSING: str | None = None


def _numba_missing() -> str:
    global _NUMBA_MISSING
    if _NUMBA_MISSING is None:
        found = importlib.util.find_spec("numba") is not None
        _NUMBA_MISSING = "" if found else "numba is not installed (pip install 'droplab[fast]')"
    return _NUMBA_MISSING


def fast_available(x: torch.Tensor, *, auto: bool = False) -> tuple[bool, str]:
    """Whether ``fast_dropout`` can run on ``x``; if not, the reason in one sentence.

    With ``auto=True`` it also answers whether the fast path is the faster choice: tensors with
    fewer than ``AUTO_MIN_NUMEL`` elements are then left to torch (``backend="auto"``).
    """
    if not isinstance(x, torch.Tensor):
        return False, f"the fast kernels take a torch.Tensor, got {type(x).__name__}"
    if x.device.type != "cpu":
        return False, f"the fast kernels run on CPU tensors; this one is on {x.device}"
    if x.layout != torch.strided:
        return False, f"the fast kernels need a dense (strided) tensor, got layout {x.layout}"
    if x.dtype not in FAST_DTYPES:
        return False, (
            f"the fast kernels take float16, bfloat16, float32 or float64 tensors, got {x.dtype}"
        )
    missing = _numba_missing()
    if missing:
        return False, missing
    if auto and x.numel() < AUTO_MIN_NUMEL:
        return False, f"x has {x.numel()} elements; below {AUTO_MIN_NUMEL} torch's dropout is faster"
    return True, ""


def _cpu():
    from droplab.kernels import cpu  # imports numba (first call: loads the cached kernels)

    return cpu


def _flat(t: torch.Tensor) -> np.ndarray:
    """A flat NumPy view of a contiguous CPU tensor (bfloat16 as its uint16 bits)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().reshape(-1).view(np.uint16)
    return t.numpy().reshape(-1)


def _apply(x: torch.Tensor, p: float, scale: float, seed: int, out: torch.Tensor) -> None:
    """``out = x * mask * scale`` for contiguous ``x`` and ``out`` of the same dtype and size."""
    cpu = _cpu()
    if x.dtype == torch.bfloat16:
        cpu.dropout_bf16_cpu(_flat(x), p, scale, seed, out=_flat(out))
    elif x.dtype == torch.float16:  # numba has no float16: compute in float32
        tmp = x.float()
        cpu.dropout_cpu(_flat(tmp), p, scale, seed, out=_flat(tmp))
        out.copy_(tmp)
    else:
        cpu.dropout_cpu(_flat(x), p, scale, seed, out=_flat(out))


def _u64(seed: int) -> int:
    return int(seed) & MASK64


def _i64(seed: int) -> int:
    seed = check_seed(seed)
    return seed - (1 << 64) if seed >= 1 << 63 else seed


# ----------------------------------------------------------------------------------------------
# droplab::dropout (mask regenerated in backward)
# ----------------------------------------------------------------------------------------------


@torch.library.custom_op("droplab::dropout", mutates_args=(), device_types="cpu")
def _dropout_op(x: torch.Tensor, p: float, scale: float, seed: int) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty_like(x)
    if x.numel():
        with torch.no_grad():
            _apply(x, p, scale, _u64(seed), out)
    return out


@_dropout_op.register_fake
def _(x, p, scale, seed):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _dropout_setup(ctx, inputs, output):
    _, ctx.p, ctx.scale, ctx.seed = inputs


def _dropout_backward(ctx, grad):
    # d(x * m * scale)/dx = m * scale: the same op on the gradient, same seed, same bits
    return torch.ops.droplab.dropout(grad, ctx.p, ctx.scale, ctx.seed), None, None, None


_dropout_op.register_autograd(_dropout_backward, setup_context=_dropout_setup)


# ----------------------------------------------------------------------------------------------
# droplab::dropout_packed (mask saved at 1 bit per element) and droplab::unpack_scale
# ----------------------------------------------------------------------------------------------


@torch.library.custom_op("droplab::unpack_scale", mutates_args=(), device_types="cpu")
def _unpack_scale_op(grad: torch.Tensor, bits: torch.Tensor, scale: float) -> torch.Tensor:
    """``grad * m * scale`` with ``m`` read from a packed mask (bit ``i % 8`` of byte ``i // 8``)."""
    grad = grad.contiguous()
    if grad.numel() == 0:
        return torch.empty_like(grad)
    cpu = _cpu()
    work = grad if grad.dtype in (torch.float32, torch.float64) else grad.float()
    out = torch.empty_like(work)
    cpu.unpack_scale_cpu(_flat(work), bits.numpy(), scale, out=_flat(out))
    return out if out.dtype == grad.dtype else out.to(grad.dtype)


@_unpack_scale_op.register_fake
def _(grad, bits, scale):
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


def _unpack_setup(ctx, inputs, output):
    _, bits, ctx.scale = inputs
    ctx.save_for_backward(bits)


def _unpack_backward(ctx, grad):
    (bits,) = ctx.saved_tensors
    return torch.ops.droplab.unpack_scale(grad, bits, ctx.scale), None, None


_unpack_scale_op.register_autograd(_unpack_backward, setup_context=_unpack_setup)


@torch.library.custom_op("droplab::dropout_packed", mutates_args=(), device_types="cpu")
def _dropout_packed_op(
    x: torch.Tensor, p: float, scale: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.contiguous()
    bits = torch.empty((x.numel() + 7) // 8, dtype=torch.uint8)
    if x.numel() == 0:
        return torch.empty_like(x), bits
    cpu = _cpu()
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = torch.empty_like(work)
    cpu.dropout_packed_cpu(_flat(work), p, scale, _u64(seed), out=_flat(out), bits=bits.numpy())
    return (out if out.dtype == x.dtype else out.to(x.dtype)), bits


@_dropout_packed_op.register_fake
def _(x, p, scale, seed):
    bits = x.new_empty(((x.numel() + 7) // 8,), dtype=torch.uint8)
    return torch.empty_like(x, memory_format=torch.contiguous_format), bits


def _packed_setup(ctx, inputs, output):
    ctx.scale = inputs[2]
    ctx.save_for_backward(output[1])


def _packed_backward(ctx, grad, _grad_bits):
    (bits,) = ctx.saved_tensors
    return torch.ops.droplab.unpack_scale(grad, bits, ctx.scale), None, None, None


_dropout_packed_op.register_autograd(_packed_backward, setup_context=_packed_setup)


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------


def fast_dropout(
    x: torch.Tensor, p: float, scale: float, seed: int, *, packed: bool = False
) -> torch.Tensor:
    """``y = x * m * scale`` with ``m = dropout_mask(x.shape, p, seed=seed)``, differentiable.

    The backward regenerates ``m`` from ``seed`` (0 bytes saved per element); with
    ``packed=True`` the mask is saved at 1 bit per element instead. ``seed`` is an int in
    ``[0, 2**64 - 1]``. The output is contiguous, with ``x``'s shape and dtype.

    Examples::

        >>> x = torch.ones(6)
        >>> y = fast_dropout(x, 0.5, 2.0, seed=3)
        >>> bool(((y == 0) | (y == 2)).all())
        True
    """
    ok, reason = fast_available(x)
    if not ok:
        raise ValueError(reason)
    if packed:
        return torch.ops.droplab.dropout_packed(x, float(p), float(scale), _i64(seed))[0]
    return torch.ops.droplab.dropout(x, float(p), float(scale), _i64(seed))


def fast_mask(shape, p: float, *, seed: int) -> torch.Tensor:
    """The keep-mask of ``dropout_mask(shape, p, seed=seed)`` from the numba kernel (bool)."""
    shape = torch.Size(shape)
    return torch.from_numpy(_cpu().mask_cpu(shape.numel(), p, check_seed(seed))).reshape(shape)
