"""The ``backend="fast"`` entry points used by ``droplab.functional`` (numba CPU kernels).

``fast_dropout(x, p, scale, seed)`` computes ``y = x * m * scale`` with
``m = dropout_mask(x.shape, p, seed=seed)`` in one fused pass (``droplab.kernels.cpu``), and its
backward regenerates ``m`` from the seed: **nothing is saved for backward but three numbers**.
With ``packed=True`` the forward also writes the mask at 1 bit per element and the backward reads
it instead (for callers that prefer reading 1/8 byte per element to recomputing the hash). With
``inplace=True`` the kernel writes the result into ``x`` itself (no output allocation).

Two routes to the same kernels, and the same bits:

- **eager** (the common case): plain ``torch.autograd.Function`` s that call the numba kernels
  directly. Their backward applies the same Function to the gradient (so double backward works).
  A call costs a few microseconds of Python, and imports nothing new: the first call of a
  ``torch.library.custom_op`` imports ``torch._dynamo`` (seconds), which an eager training run
  should never pay.
- **under torch.compile** (``torch.compiler.is_compiling()``): the ``torch.library`` custom ops
  ``droplab::dropout``, ``droplab::dropout_packed`` and ``droplab::unpack_scale``, each with an
  autograd formula and a fake (meta) implementation, so the compiler sees single opaque ops.
  In-place calls are traced as ``x.copy_(droplab::dropout(x))``.

The ops are defined when this module is imported (which imports neither numba nor
``torch._dynamo``); they are only called by compiled code, and by tests such as ``opcheck``.

In place: contiguous float32, float64 and bfloat16 tensors are overwritten by the kernel
directly (``out=x``); float16 and non-contiguous tensors go through a contiguous temporary that
is copied back into ``x`` (same bits, one more pass). Either way the autograd contract is that of
torch's in-place dropout (``mark_dirty``; a leaf that requires grad is refused; the backward
regenerates the mask from the seed).

Seeds are uint64 (``[0, 2**64 - 1]``); the op schema has only int64, so they cross it as the
int64 with the same bits. Non-contiguous inputs are copied to contiguous first: the mask is
indexed by the logical row-major index, whatever the strides. numba is imported on first use,
never by ``import droplab``.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import torch

from droplab.kernels import pool
from droplab.kernels.rng import MASK64, check_seed

FAST_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
# dtypes the kernel can overwrite in place (float16 is computed through a float32 temporary)
INPLACE_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
# Below this many elements, "auto" keeps torch's own ops. The choice is between droplab's two
# backends, not against F.dropout: `droplab bench --overhead` (2 loaded cores, provisional)
# measured per forward call, no grad / requires grad, in us:
#     1K:  F.dropout 13 / 14, droplab torch 24 / 26, droplab fast 14 / 23
#     4K:  F.dropout 32 / 33, droplab torch 37 / 39, droplab fast 15 / 23
#     64K: F.dropout 3700 / 4400, droplab torch 2400 / 2700, droplab fast 69 / 130
# and at 16-256 elements the two droplab backends within noise of each other (~25-35 us). The
# eager fast path costs ~10 us of Python (autograd.Function ~5 us when grad is on, numba
# dispatch ~1 us, seed draw, checks), no longer the ~15 us dispatch of a torch.library op.
AUTO_MIN_NUMEL = 1 << 10


_NUMBA_MISSING: str | None = None


def _numba_missing() -> str:
    global _NUMBA_MISSING
    if _NUMBA_MISSING is None:
        found = importlib.util.find_spec("numba") is not None
        _NUMBA_MISSING = "" if found else "numba is not installed (pip install 'droplab[fast]')"
        if not found:  # once per process: backend="auto" would otherwise lose its speed silently
            warnings.warn(
                "numba is not installed: backend='auto' runs PyTorch's dropout ops, not "
                "droplab's fast kernels (pip install 'droplab[fast]')",
                RuntimeWarning,
                stacklevel=2,
            )
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
        return (
            False,
            f"x has {x.numel()} elements; below {AUTO_MIN_NUMEL} torch's dropout is faster",
        )
    return True, ""


_cpu_module = None


def _cpu():
    global _cpu_module
    if _cpu_module is None:
        threads = torch.get_num_threads()
        from droplab.kernels import cpu  # imports numba (first call: loads the cached kernels)

        # numba's OpenMP layer starts on the first parallel kernel and resets the process's
        # OpenMP thread count, which is torch's too: start it now, then give torch its count back
        cpu.mask_cpu(2 * cpu.SERIAL_BELOW, 0.5, 0)
        torch.set_num_threads(threads)
        _cpu_module = cpu
    _sync_threads(_cpu_module)
    return _cpu_module


_synced_threads = None  # torch's thread count the numba threads were last set for


def _sync_threads(cpu) -> None:
    """Run the parallel kernels on as many threads as torch uses (``torch.set_num_threads``)."""
    global _synced_threads
    threads = torch.get_num_threads()  # cheap; numba's own getter is not, so compare to this
    if threads != _synced_threads:
        cpu.numba.set_num_threads(min(threads, cpu.numba.config.NUMBA_NUM_THREADS))
        _synced_threads = threads


def _flat(t: torch.Tensor) -> np.ndarray:
    """A flat NumPy view of a contiguous CPU tensor (bfloat16 as its uint16 bits)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().reshape(-1).view(np.uint16)
    return t.numpy().reshape(-1)


def _apply(x: torch.Tensor, p: float, scale: float, seed: int, out: torch.Tensor) -> None:
    """``out = x * mask * scale`` for contiguous ``x`` and ``out`` of the same dtype and size.

    ``out`` may be ``x`` (in place) for float32, float64 and bfloat16.
    """
    cpu = _cpu()
    if x.dtype == torch.bfloat16:
        cpu.dropout_bf16_cpu(_flat(x), p, scale, seed, out=_flat(out))
    elif x.dtype == torch.float16:  # numba has no float16: compute in float32
        tmp = x.float()
        cpu.dropout_cpu(_flat(tmp), p, scale, seed, out=_flat(tmp))
        out.copy_(tmp)
    else:
        cpu.dropout_cpu(_flat(x), p, scale, seed, out=_flat(out))


def _dropout_new(x: torch.Tensor, p: float, scale: float, seed: int) -> torch.Tensor:
    """The kernel's result in a new contiguous tensor (``seed`` as uint64)."""
    # no torch.no_grad() needed (nor its ~1.5 us): the kernels write through NumPy views,
    # which autograd does not see
    x = x.contiguous()
    out = pool.empty_like(x)  # large outputs reuse warm memory (see droplab.kernels.pool)
    if x.numel():
        _apply(x, p, scale, seed, out)
    return out


def _dropout_into(x: torch.Tensor, p: float, scale: float, seed: int) -> None:
    """Overwrite ``x`` with the kernel's result: directly when it can, through a temporary else."""
    if not x.numel():
        return
    if x.dtype in INPLACE_DTYPES and x.is_contiguous():
        _apply(x, p, scale, seed, x)
    else:
        with torch.no_grad():
            x.copy_(_dropout_new(x, p, scale, seed))


def _packed_new(x: torch.Tensor, p: float, scale: float, seed: int):
    x = x.contiguous()
    bits = torch.empty((x.numel() + 7) // 8, dtype=torch.uint8)
    if x.numel() == 0:
        return torch.empty_like(x), bits
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = pool.empty_like(work)
    _cpu().dropout_packed_cpu(_flat(work), p, scale, seed, out=_flat(out), bits=bits.numpy())
    return (out if out.dtype == x.dtype else out.to(x.dtype)), bits


def _unpack_new(grad: torch.Tensor, bits: torch.Tensor, scale: float) -> torch.Tensor:
    grad = grad.contiguous()
    if grad.numel() == 0:
        return torch.empty_like(grad)
    work = grad if grad.dtype in (torch.float32, torch.float64) else grad.float()
    out = pool.empty_like(work)
    _cpu().unpack_scale_cpu(_flat(work), bits.numpy(), scale, out=_flat(out))
    return out if out.dtype == grad.dtype else out.to(grad.dtype)


def _u64(seed: int) -> int:
    return int(seed) & MASK64


def _i64(seed: int) -> int:
    seed = check_seed(seed)
    return seed - (1 << 64) if seed >= 1 << 63 else seed


# ----------------------------------------------------------------------------------------------
# eager: autograd Functions that call the kernels directly (no torch.library dispatch)
# ----------------------------------------------------------------------------------------------


class _Dropout(torch.autograd.Function):
    """``y = x * m * scale``; backward: the same Function on the gradient (seed only saved)."""

    @staticmethod
    def forward(ctx, x, p, scale, seed, inplace):
        ctx.p, ctx.scale, ctx.seed = p, scale, seed
        if inplace:
            _dropout_into(x, p, scale, seed)
            ctx.mark_dirty(x)
            return x
        return _dropout_new(x, p, scale, seed)

    @staticmethod
    def backward(ctx, grad):
        # d(x * m * scale)/dx = m * scale: the same kernel on the gradient, same seed, same bits;
        # through the Function again, so the backward is itself differentiable
        return _Dropout.apply(grad, ctx.p, ctx.scale, ctx.seed, False), None, None, None, None


class _UnpackScale(torch.autograd.Function):
    """``grad * m * scale`` with ``m`` read from a packed mask; linear, so its own backward."""

    @staticmethod
    def forward(ctx, grad, bits, scale):
        ctx.save_for_backward(bits)
        ctx.scale = scale
        return _unpack_new(grad, bits, scale)

    @staticmethod
    def backward(ctx, grad):
        (bits,) = ctx.saved_tensors
        return _UnpackScale.apply(grad, bits, ctx.scale), None, None


class _DropoutPacked(torch.autograd.Function):
    """``y = x * m * scale`` that keeps ``m`` at 1 bit per element for the backward."""

    @staticmethod
    def forward(ctx, x, p, scale, seed):
        out, bits = _packed_new(x, p, scale, seed)
        ctx.save_for_backward(bits)
        ctx.scale = scale
        ctx.mark_non_differentiable(bits)
        return out, bits

    @staticmethod
    def backward(ctx, grad, _grad_bits):
        (bits,) = ctx.saved_tensors
        return _UnpackScale.apply(grad, bits, ctx.scale), None, None, None


# ----------------------------------------------------------------------------------------------
# torch.compile: droplab::dropout (mask regenerated in backward)
# ----------------------------------------------------------------------------------------------


@torch.library.custom_op("droplab::dropout", mutates_args=(), device_types="cpu")
def _dropout_op(x: torch.Tensor, p: float, scale: float, seed: int) -> torch.Tensor:
    return _dropout_new(x, p, scale, _u64(seed))


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
# torch.compile: droplab::dropout_packed (mask saved at 1 bit per element), droplab::unpack_scale
# ----------------------------------------------------------------------------------------------


@torch.library.custom_op("droplab::unpack_scale", mutates_args=(), device_types="cpu")
def _unpack_scale_op(grad: torch.Tensor, bits: torch.Tensor, scale: float) -> torch.Tensor:
    """``grad * m * scale`` with ``m`` read from a packed mask (bit ``i % 8`` of byte ``i // 8``)."""
    return _unpack_new(grad, bits, scale)


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
    return _packed_new(x, p, scale, _u64(seed))


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
    x: torch.Tensor,
    p: float,
    scale: float,
    seed: int,
    *,
    packed: bool = False,
    inplace: bool = False,
) -> torch.Tensor:
    """``y = x * m * scale`` with ``m = dropout_mask(x.shape, p, seed=seed)``, differentiable.

    The backward regenerates ``m`` from ``seed`` (0 bytes saved per element); with
    ``packed=True`` the mask is saved at 1 bit per element instead. ``seed`` is an int in
    ``[0, 2**64 - 1]``. The output is contiguous, with ``x``'s shape and dtype; with
    ``inplace=True`` the result is written into ``x`` and ``x`` is returned (as
    ``F.dropout(x, inplace=True)``: a leaf that requires grad is refused). ``packed`` and
    ``inplace`` do not combine.

    Eager calls go through ``torch.autograd.Function`` s that call the numba kernels directly;
    under ``torch.compile`` the ``droplab::`` custom ops are used, with the same bits.

    Examples::

        >>> x = torch.ones(6)
        >>> y = fast_dropout(x, 0.5, 2.0, seed=3)
        >>> bool(((y == 0) | (y == 2)).all())
        True
    """
    ok, reason = fast_available(x)
    if not ok:
        raise ValueError(reason)
    if packed and inplace:
        raise ValueError("fast_dropout: packed=True and inplace=True do not combine")
    p, scale = float(p), float(scale)
    if torch.compiler.is_compiling():
        if packed:
            return torch.ops.droplab.dropout_packed(x, p, scale, _i64(seed))[0]
        y = torch.ops.droplab.dropout(x, p, scale, _i64(seed))
        return x.copy_(y) if inplace else y
    seed = check_seed(seed)
    if packed:
        return _DropoutPacked.apply(x, p, scale, seed)[0]
    if not (x.requires_grad and torch.is_grad_enabled()):
        # nothing to differentiate: call the kernel without the autograd.Function (~5 us saved)
        if inplace:
            _dropout_into(x, p, scale, seed)
            if not torch.is_inference(x):
                torch.autograd.graph.increment_version(x)  # as an in-place torch op would
            return x
        return _dropout_new(x, p, scale, seed)
    return _Dropout.apply(x, p, scale, seed, inplace)


def fast_mask(shape, p: float, *, seed: int) -> torch.Tensor:
    """The keep-mask of ``dropout_mask(shape, p, seed=seed)`` from the numba kernel (bool)."""
    shape = torch.Size(shape)
    return torch.from_numpy(_cpu().mask_cpu(shape.numel(), p, check_seed(seed))).reshape(shape)
