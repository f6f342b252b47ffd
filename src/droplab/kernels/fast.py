"""The ``backend="fast"`` entry point used by ``droplab.functional`` (numba CPU kernels).

``fast_dropout(x, p, scale, seed)`` computes ``y = x * m * scale`` with
``m = dropout_mask(x.shape, p, seed=seed)`` in one fused pass (``droplab.kernels.cpu``), and its
backward regenerates ``m`` from the seed: **nothing is saved for backward but three numbers**.
With ``inplace=True`` the kernel writes the result into ``x`` itself (no output allocation).

Two routes to the same bits:

- **direct** (plain eager tensors, the common case): the numba kernel, called without autograd
  when nothing needs a gradient, else through ``_Dropout``, an autograd Function whose backward
  applies the same Function to the gradient (so double backward works). A call costs a few
  microseconds of Python.
- **traced or transformed** (``torch.compile``, ``torch.export``, any ``torch.func`` transform,
  a forward-mode AD level, tensor subclasses): ``x * m * scale`` in PyTorch ops with ``m`` from
  ``droplab.kernels.rng.dropout_mask``, which has no differentiable input. The compiler fuses it
  into one loop, and every transform sees ordinary ops: gradients, tangents (a forward-mode
  tangent is never dropped), ``vmap`` (a batched seed gives one mask per batch element) and
  export work as they do for any PyTorch op. ``direct_call_ok`` picks the route.

In place: contiguous float32, float64 and bfloat16 tensors are overwritten by the kernel
directly (``out=x``); float16 and non-contiguous tensors go through a contiguous temporary that
is copied back into ``x`` (same bits, one more pass). Either way the autograd contract is that of
torch's in-place dropout (``mark_dirty``; a leaf that requires grad is refused; the backward
regenerates the mask from the seed).

Seeds are uint64 (``[0, 2**64 - 1]``), or a 0-d int64 tensor holding the same bits. The mask is
indexed by the logical row-major index, whatever the strides: a non-contiguous input is copied
to contiguous for the kernel, and the result is given the input's layout (channels_last and
permuted dense inputs come back in their layout, as from ``torch.nn.functional.dropout``).
numba is imported on first use, never by ``import droplab``.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import torch
from torch._C._functorch import peek_interpreter_stack
from torch.autograd import forward_ad

from droplab.kernels import pool
from droplab.kernels.rng import MASK64, check_seed, dropout_mask

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
# dispatch ~1 us, seed draw, checks).
AUTO_MIN_NUMEL = 1 << 10


# looked up once, at import (find_spec does not import numba): a compiled caller reads a
# constant, never a cache written by its first call (that would be a guard and a recompile)
_NUMBA_FOUND = importlib.util.find_spec("numba") is not None
_NUMBA_WARNED = False


def _numba_missing() -> str:
    global _NUMBA_WARNED
    if _NUMBA_FOUND:
        return ""
    if not _NUMBA_WARNED:  # once per process: backend="auto" would otherwise lose its speed
        _NUMBA_WARNED = True
        warnings.warn(
            "numba is not installed: backend='auto' runs PyTorch's dropout ops, not "
            "droplab's fast kernels (pip install 'droplab[fast]')",
            RuntimeWarning,
            stacklevel=2,
        )
    return "numba is not installed (pip install 'droplab[fast]')"


def fast_available(x: torch.Tensor, *, auto: bool = False) -> tuple[bool, str]:
    """Whether ``fast_dropout`` can run on ``x``; if not, the reason in one sentence.

    With ``auto=True`` it also answers whether the fast path is the faster choice: tensors with
    fewer than ``AUTO_MIN_NUMEL`` elements are then left to torch (``backend="auto"``), except
    under a compiler, which fuses either route (and would recompile on a guard on the size).
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
    # a compiler fuses either route: no size rule there (a guard on the size would recompile)
    if auto and not torch.compiler.is_compiling() and x.numel() < AUTO_MIN_NUMEL:
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
        cpu.set_threads(threads)
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
    """The kernel's result in a new tensor, with ``x``'s layout where ``x`` is dense."""
    # no torch.no_grad() needed (nor its ~1.5 us): the kernels write through NumPy views,
    # which autograd does not see
    xc = x.contiguous()
    out = pool.empty_like(xc)  # large outputs reuse warm memory (see droplab.kernels.pool)
    if xc.numel():
        _apply(xc, p, scale, seed, out)
    if xc is not x:
        # channels_last or permuted (empty_like keeps a dense layout): keep it, as torch does
        like = torch.empty_like(x)
        if not like.is_contiguous():
            return like.copy_(out)
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


# ----------------------------------------------------------------------------------------------
# direct: the kernel, differentiable by an autograd Function
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


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------


def direct_call_ok(x: torch.Tensor) -> bool:
    """Whether the numba kernel may be called on ``x`` directly, outside any tracer.

    Not under ``torch.compile``/``torch.export``, a ``torch.func`` transform or a forward-mode
    AD level, and not on a tensor subclass: there the kernel would be opaque (a graph break, a
    lost tangent, one mask for a whole ``vmap`` batch), so ``fast_dropout`` uses PyTorch ops.
    """
    return (
        not torch.compiler.is_compiling()
        and peek_interpreter_stack() is None
        and forward_ad._current_level < 0
        and type(x) in (torch.Tensor, torch.nn.Parameter)
    )


def draw_seed(x: torch.Tensor, generator: torch.Generator | None = None):
    """A seed for an unseeded call on ``x``, drawn from ``generator`` (or the global RNG).

    An int where ``direct_call_ok(x)``, else a 0-d int64 tensor: never ``int(tensor)`` where a
    tracer is watching, and under ``vmap(randomness="different")`` one seed per batch element.
    """
    if generator is None:  # no generator=None: see droplab.functional._drawn_from
        seed = torch.randint(0, 2**62, (), device="cpu")
    else:
        seed = torch.randint(0, 2**62, (), generator=generator, device=generator.device)
    return int(seed) if direct_call_ok(x) else seed


def fast_dropout(
    x: torch.Tensor, p: float, scale: float, seed, *, inplace: bool = False
) -> torch.Tensor:
    """``y = x * m * scale`` with ``m = dropout_mask(x.shape, p, seed=seed)``, differentiable.

    The backward regenerates ``m`` from ``seed`` (0 bytes saved per element). ``seed`` is an int
    in ``[0, 2**64 - 1]`` or a 0-d int64 tensor with its bits. The output has ``x``'s shape,
    dtype and (for dense ``x``) layout; with ``inplace=True`` the result is written into ``x``
    and ``x`` is returned (as ``F.dropout(x, inplace=True)``: a leaf that requires grad is
    refused). Where ``direct_call_ok(x)`` is false (compiler, ``torch.func``, forward AD) the
    same bits come from PyTorch ops (see the module docstring).

    Examples::

        >>> x = torch.ones(6)
        >>> y = fast_dropout(x, 0.5, 2.0, seed=3)
        >>> bool(((y == 0) | (y == 2)).all())
        True
    """
    ok, reason = fast_available(x)
    if not ok:
        raise ValueError(reason)
    p, scale = float(p), float(scale)
    if not direct_call_ok(x):
        mask = dropout_mask(x.shape, p, seed=seed, device=x.device)
        return x.mul_(mask).mul_(scale) if inplace else x * mask * scale
    seed = int(seed) & MASK64 if isinstance(seed, torch.Tensor) else check_seed(seed)
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
