"""Dropout, functional: the math of every dropout family, each a function taking ``training``.

Inverted dropout (the default, what ``torch.nn.functional.dropout`` computes)::

    train: y = x * m / (1 - p)      eval: y = x          m ~ Bernoulli(1 - p), i.i.d.

Classic dropout (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting", JMLR 15)::

    train: y = x * m                eval: y = x * (1 - p)

``keep_prob = 1 - p`` is the parametrization of Andrew Ng's course; give one or the other.
Both forms have ``E[y_train] = y_eval``: scale once, either in training or at eval, never both.

Argument checks (``check_p`` and friends) live in ``droplab._checks``, which the NumPy engine
imports too, so that the function, the module, the kernel and both engines raise the same text;
they are re-exported here.

Every function composes with PyTorch's tools as ``torch.nn.functional.dropout`` does: masks are
made by ops with no differentiable input and applied with ordinary multiplications, so
``torch.compile`` (no graph break), ``torch.export``, ``torch.func`` (``grad``, ``vjp``,
``jvp``, ``vmap``) and forward-mode AD see plain PyTorch ops; only the fast kernel's direct
eager call is opaque, and it is taken only where no tracer or transform is active
(``droplab.kernels.fast.direct_call_ok``). ``seed`` may be a 0-d int64 tensor (the bits of the
uint64 seed), so that a compiled step counter is a graph input, not a constant.
"""

from __future__ import annotations

import math
import numbers

import torch

from droplab._checks import BACKENDS as BACKENDS
from droplab._checks import MODES as MODES
from droplab._checks import (
    check_backend,
    check_bool,
    check_gamma_scale,
    check_generator,
    check_input,
    check_mode,
    check_p,
    check_pair,
    check_seed,
    resolve_gaussian_p,
    resolve_p,
)
from droplab.kernels.rng import dropout_mask

__all__ = [
    "alpha_dropout",
    "apply_mask",
    "drop_block_2d",
    "drop_connect",
    "drop_path",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "locked_dropout",
    "shared_dropout",
]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------------------------
# dropout (inverted / classic)
# ----------------------------------------------------------------------------------------------


def train_scale(p: float, mode: str) -> float:
    """The factor applied to kept elements in training: ``1 / (1 - p)`` inverted, 1 classic."""
    if mode == "classic":
        return 1.0
    # p == 1 keeps nothing: scale 0 instead of inf, so that 0 * inf never makes a NaN
    return 1.0 / (1.0 - p) if p < 1 else 0.0


def _scale_by_mask(x: torch.Tensor, mask: torch.Tensor, scale, inplace: bool) -> torch.Tensor:
    """``y = x * mask * scale`` in ordinary ops, so every transform differentiates it.

    ``x * m`` first, then the scale: the order of the fast kernel (and of torch's
    ``native_dropout``), so that both backends give the same bits in every dtype.
    """
    return x.mul_(mask).mul_(scale) if inplace else x * mask * scale


def _zeros_from(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``x * 0``: what every dropout returns when all is dropped (torch: ``x * zeros(())``)."""
    return x.mul_(0) if inplace else x * 0


def _drawn_from(generator) -> dict:
    # generator=None is not passed on: a compiled random op with symbolic (dynamic) sizes
    # refuses an explicit generator argument, even None
    return {} if generator is None else {"generator": generator}


def _eval_dropout(x: torch.Tensor, p: float, mode: str, inplace: bool) -> torch.Tensor:
    if mode == "inverted" or p == 0:
        return x
    return x.mul_(1.0 - p) if inplace else x * (1.0 - p)


def fast_backend(x: torch.Tensor, backend: str, inplace: bool):
    """The fast-kernel module if ``backend`` routes ``x`` to it, else None (use torch ops)."""
    if backend == "torch":
        return None
    from droplab.kernels import fast  # here, so numba stays unloaded until needed

    # auto=True: the fast module also weighs speed (small tensors stay with torch)
    ok, reason = fast.fast_available(x, auto=backend == "auto")
    if not ok and backend == "fast":
        raise ValueError(f"backend='fast' cannot run here: {reason}; use backend='auto' or 'torch'")
    return fast if ok else None


def dropout(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    *,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    backend: str = "auto",
    inplace: bool = False,
) -> torch.Tensor:
    r"""Randomly zero elements of ``x`` with probability ``p``, scaling so that train and eval agree.

    In training, each element is kept independently with probability ``1 - p`` (a Bernoulli
    keep-mask ``m``) and the result is scaled once, either in training (``mode="inverted"``, the
    default and what :func:`torch.nn.functional.dropout` computes) or at eval
    (``mode="classic"``, Srivastava et al. 2014)::

        inverted:  train y = x * m / (1 - p)      eval y = x
        classic:   train y = x * m                eval y = x * (1 - p)

    so that ``E[y_train] = y_eval`` in both. The gradient is ``dy/dx = m * scale`` with the mask
    of the forward pass. ``p = 0`` returns ``x`` without drawing random numbers; ``p = 1`` returns
    zeros in training (never NaN, for finite ``x``). As in torch, a dropped element is ``x * 0``,
    so a NaN or inf input stays NaN.

    Masks: with ``seed``, the mask is :func:`droplab.dropout_mask` ``(x.shape, p, seed=seed)``, a
    counter-based function of the seed and the row-major index of each element, so it is the same
    on every backend, device and run. Without ``seed`` it comes from ``generator`` or PyTorch's
    global RNG (``torch.manual_seed`` makes runs repeatable): on ``backend="torch"`` the mask is
    ``torch.rand(x.shape, dtype=float32, generator=generator) >= p`` (drawn in float32 for every
    dtype, so ``p = 0`` never drops); on the fast path a seed is drawn from the same generator.
    Under ``torch.func.vmap`` an unseeded call follows ``randomness`` as ``F.dropout`` does
    (``"different"``: a mask per batch element, ``"same"``: one mask, ``"error"``: torch's
    error); a seeded call is a deterministic function of its seed, one mask for the batch.

    Backends: ``"torch"`` uses PyTorch's ops; ``"fast"`` uses droplab's CPU kernels and raises a
    ``ValueError`` saying why where they cannot run; ``"auto"`` takes the fast kernels where they
    can run on ``x`` and are the faster choice (``droplab.kernels.fast.fast_available(x,
    auto=True)``), PyTorch's ops otherwise. With ``inplace=True`` the fast kernel writes into
    ``x`` directly (contiguous float32/float64/bfloat16; float16 and non-contiguous ``x`` go
    through a temporary copied back into ``x``).

    Args:
        x: input tensor of float16, bfloat16, float32 or float64, any shape.
        p: probability of an element to be zeroed, in ``[0, 1]``. Default: 0.5 (when
            ``keep_prob`` is not given).
        training: apply dropout if ``True``, the eval rule of ``mode`` if ``False``.
            Default: ``True``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: probability of an element to be kept, ``1 - p``; give ``p`` or ``keep_prob``,
            not both. Default: ``None``
        seed: an int in ``[0, 2**64 - 1]`` that fixes the mask, or a 0-d int64 tensor holding its
            bits (``droplab.kernels.rng.derive_seed_tensor``). Default: ``None``
        generator: the ``torch.Generator`` to draw from when ``seed`` is ``None``.
            Default: ``None`` (the global RNG)
        backend: ``"auto"``, ``"torch"`` or ``"fast"``. Default: ``"auto"``
        inplace: do the operation in place on ``x``. Default: ``False``

    Shape:
        - Input: :math:`(*)`, any shape, including empty and 0-d, contiguous or not.
        - Output: :math:`(*)`, the same shape, dtype and device as the input.

    Examples::

        >>> x = torch.arange(1.0, 9.0).reshape(2, 4)
        >>> dropout(x, 0.5, seed=2)
        tensor([[ 0.,  0.,  6.,  0.],
                [10., 12.,  0., 16.]])
        >>> dropout(x, 0.5, mode="classic", seed=2)
        tensor([[0., 0., 3., 0.],
                [5., 6., 0., 8.]])
        >>> dropout(x, 0.5, training=False, mode="classic")
        tensor([[0.5000, 1.0000, 1.5000, 2.0000],
                [2.5000, 3.0000, 3.5000, 4.0000]])
        >>> torch.equal(dropout(x, keep_prob=0.5, seed=0), dropout(x, p=0.5, seed=0))
        True

    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple Way to Prevent
    Neural Networks from Overfitting", JMLR 15 (2014).
    """
    check_input(x)
    check_bool(training, "training")
    p = resolve_p(p, keep_prob)
    check_mode(mode)
    check_backend(backend)
    if seed is not None:
        seed = check_seed(seed, tensor_ok=True)
    check_generator(generator)
    # resolved before the short cuts, so that a bad backend="fast" shows on the first call
    fast = fast_backend(x, backend, inplace)
    if not training or p == 0:
        return _eval_dropout(x, p, mode, inplace)
    if p == 1:
        return _zeros_from(x, inplace)
    scale = train_scale(p, mode)
    if fast is not None:  # the kernel writes into x (through a temporary if non-contiguous/float16)
        seed = fast.draw_seed(x, generator) if seed is None else seed
        return fast.fast_dropout(x, p, scale, seed, inplace=inplace)
    if seed is not None:
        mask = dropout_mask(x.shape, p, seed=seed, device=x.device)
    else:
        u = torch.rand(x.shape, dtype=torch.float32, device=x.device, **_drawn_from(generator))
        mask = u >= p
    return _scale_by_mask(x, mask, scale, inplace)


def apply_mask(
    x: torch.Tensor,
    mask: torch.Tensor,
    p: float | None = None,
    *,
    keep_prob: float | None = None,
    mode: str = "inverted",
    training: bool = True,
    inplace: bool = False,
) -> torch.Tensor:
    r"""Apply a given keep-mask with the scaling of dropout: :func:`dropout` with the mask injected.

    ``y = x * mask / (1 - p)`` (inverted) or ``y = x * mask`` (classic) in training, the eval rule
    of ``mode`` otherwise (the mask is then unused). The gradient is ``mask * scale``, as for
    :func:`dropout`. Use it to reproduce a worked example with a
    known mask, or to share one mask between tensors.

    Args:
        x: input tensor of float16, bfloat16, float32 or float64.
        mask: keep-mask (``True`` or 1 = kept): a bool tensor, or a tensor holding only 0 and 1,
            that broadcasts to ``x.shape`` (so a per-channel mask is allowed).
        p: the drop probability the mask was drawn with, in ``[0, 1]``; it sets the scale.
        keep_prob: ``1 - p``; give ``p`` or ``keep_prob``, not both.
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        training: apply the mask if ``True``, the eval rule if ``False``. Default: ``True``
        inplace: do the operation in place on ``x``. Default: ``False``

    Shape:
        - Input: :math:`(*)`; mask: any shape that broadcasts to the input's.
        - Output: :math:`(*)`, the same shape as the input.

    Examples::

        >>> a = torch.tensor([0.2, 0.6, 0.4, 0.9])
        >>> apply_mask(a, torch.tensor([1, 0, 1, 0]), keep_prob=0.5)
        tensor([0.4000, 0.0000, 0.8000, 0.0000])
    """
    check_input(x)
    check_bool(training, "training")
    if p is None and keep_prob is None:
        raise TypeError(
            "give p (drop probability) or keep_prob (= 1 - p): the mask's scale needs it"
        )
    p = resolve_p(p, keep_prob)
    check_mode(mode)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must be a bool tensor or a tensor holding only 0 and 1")
        mask = mask != 0
    try:
        shape = torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the input's shape "
            f"{tuple(x.shape)}"
        )
    if not training:
        return _eval_dropout(x, p, mode, inplace)
    return _scale_by_mask(x, mask.to(x.device), train_scale(p, mode), inplace)


# ----------------------------------------------------------------------------------------------
# variants
# ----------------------------------------------------------------------------------------------
#
# One mechanism, many variants: dropout whose keep-mask has a smaller shape than the input and
# is broadcast along the other dimensions (Keras' ``noise_shape``). Channel dropout uses a mask of
# shape (N, C, 1, ...), drop-path (N, 1, ...), locked dropout (N, 1, F) or (1, N, F), DropConnect
# a mask the shape of the weight. Alpha, Gaussian and DropBlock change what a drop means, not
# where the mask lives.
#
# Papers:
#   Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks" (channels)
#   Klambauer et al. 2017, "Self-Normalizing Neural Networks" (alpha dropout)
#   Srivastava et al. 2014, JMLR 15, section 10 (Gaussian dropout)
#   Wan et al. 2013, "Regularization of Neural Networks using DropConnect"
#   Huang et al. 2016, "Deep Networks with Stochastic Depth" (drop-path)
#   Ghiasi, Lin & Le 2018, "DropBlock: A regularization method for convolutional networks"
#   Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout in Recurrent Neural
#   Networks" (locked / variational dropout)

import torch.nn.functional as _torch_F  # noqa: E402

# SELU's saturation value -lambda * alpha (Klambauer et al. 2017): where SELU sends -inf
ALPHA_PRIME = -1.7580993408473766


def _keep_mask(shape, p: float, *, seed, generator, like: torch.Tensor) -> torch.Tensor:
    """A bool keep-mask of ``shape``, each element kept with probability ``1 - p``.

    Seeded: ``dropout_mask(shape, p, seed=seed)``. Otherwise ``like.new_empty(shape)
    .bernoulli_(1 - p)`` on ``generator`` (or the global RNG): the very call PyTorch's channel
    and alpha dropouts make, so that after ``torch.manual_seed`` droplab and ``torch.nn`` draw
    the same mask.
    """
    if seed is not None:
        if generator is not None:
            raise TypeError("give seed or generator, not both")
        return dropout_mask(shape, p, seed=check_seed(seed, tensor_ok=True), device=like.device)
    check_generator(generator)
    if p == 1:
        return torch.zeros(shape, dtype=torch.bool, device=like.device)
    return like.new_empty(shape).bernoulli_(1 - p, **_drawn_from(generator)).bool()


def _masked_dropout(
    x, p, training, mask_shape, *, mode, seed, generator, inplace, scale_by_keep=True
):
    """Dropout with one Bernoulli(1 - p) keep-mask of ``mask_shape``, broadcast to ``x``.

    The rules of ``dropout``, with torch's arithmetic (``_VF.feature_dropout``, timm's
    ``drop_path``): the mask is made a noise tensor in ``x``'s dtype and divided by ``1 - p``
    there, then ``y = x * noise``, so that float16 and bfloat16 give torch's bits too.
    ``scale_by_keep=False`` skips the division (drop-path without ``scale_by_keep``).
    """
    if not training or p == 0 or x.numel() == 0:
        return _eval_dropout(x, p, mode, inplace) if not training else x
    if p == 1:
        return _zeros_from(x, inplace)
    noise = _keep_mask(mask_shape, p, seed=seed, generator=generator, like=x).to(x.dtype)
    if mode == "inverted" and scale_by_keep:
        noise = noise.div_(1 - p)
    return x.mul_(noise) if inplace else x * noise


def _shared_mask_shape(x: torch.Tensor, dims, noise_shape) -> tuple[int, ...]:
    """The mask shape: ``x.shape`` with 1 along ``dims``, or Keras' ``noise_shape`` checked."""
    if dims is not None and noise_shape is not None:
        raise TypeError("give dims (the shared dimensions) or noise_shape, not both")
    shape = list(x.shape)
    if noise_shape is not None:
        noise_shape = tuple(noise_shape)
        if len(noise_shape) != x.dim():
            raise ValueError(
                f"noise_shape must have one entry per dimension of the input ({x.dim()}), "
                f"got {noise_shape}"
            )
        for i, (n, s) in enumerate(zip(noise_shape, x.shape)):
            if n is None:
                continue
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n not in (1, s):
                raise ValueError(
                    f"noise_shape[{i}] must be 1, None or the input's size {s}, got {n!r} "
                    f"(noise_shape={noise_shape}, input shape={tuple(x.shape)})"
                )
            shape[i] = int(n)
        return tuple(shape)
    if dims is None:
        return tuple(shape)
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        dims = (dims,)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"dims must be ints, got {type(d).__name__} {d!r}")
        if not -x.dim() <= d < max(x.dim(), 1):
            raise ValueError(
                f"dims entry {d} is out of range for an input with {x.dim()} dimensions"
            )
        shape[d % x.dim()] = 1
    return tuple(shape)


def shared_dropout(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    *,
    dims=None,
    noise_shape=None,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Dropout whose mask is shared along some dimensions (Keras' ``noise_shape``).

    One Bernoulli(1 - p) keep-mask ``m`` of shape ``S`` (``x.shape`` with 1 along ``dims``) is
    broadcast to ``x``, so every slice along a shared dimension is kept or dropped together.
    Channel dropout, drop-path and locked dropout are this function with a fixed ``S``.

    Math (``m`` broadcast from ``S``)::

        inverted: train y = x * m / (1 - p)    eval y = x
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        x: input, any floating dtype and shape.
        p: probability of a mask entry to be zeroed. Default: 0.5
        training: apply dropout if ``True``. Default: ``True``
        dims: the dimensions along which the mask is shared (int or sequence of ints).
        noise_shape: alternatively, the mask shape itself, as in Keras: one entry per dimension,
            each 1 (shared), ``None`` or the input's size. Give ``dims`` or ``noise_shape``;
            with neither this is plain element-wise dropout.
        mode: ``"inverted"`` (default) or ``"classic"``.
        keep_prob: ``1 - p``, instead of ``p``.
        seed: with a seed the mask is ``droplab.dropout_mask(S, p, seed=seed)``.
        generator: the ``torch.Generator`` to draw the mask from when no seed is given.
        inplace: modify ``x`` in place.

    Shape:
        Output: the shape of the input.

    Examples::

        >>> x = torch.ones(2, 3, 4)
        >>> y = shared_dropout(x, 0.5, dims=-1, seed=0)   # mask (2, 3, 1)
        >>> bool(((y == 0).all(-1) | (y == 2).all(-1)).all())
        True
    """
    p = resolve_p(p, keep_prob)
    mode = check_mode(mode)
    x = check_input(x)
    check_bool(training, "training")
    mask_shape = _shared_mask_shape(x, dims, noise_shape)
    return _masked_dropout(
        x, p, training, mask_shape, mode=mode, seed=seed, generator=generator, inplace=inplace
    )


# ---- channel dropout -------------------------------------------------------------------------


def _channel_mask_shape(x: torch.Tensor, name: str, spatial: int) -> tuple[int, ...]:
    """(N, C, 1, ...) for a batched input, (C, 1, ...) for an unbatched one; other ranks raise."""
    batched, unbatched = spatial + 2, spatial + 1
    if spatial == 2 and x.dim() == 3:
        # PyTorch reads a 3-D input to dropout2d as (N, C, L) while its docs promise (C, H, W)
        # (pytorch issue 69801); droplab refuses to guess
        raise ValueError(
            f"{name}: got a 3-D input of shape {tuple(x.shape)}, which is ambiguous: PyTorch "
            "treats it as (N, C, L) (pytorch issue 69801) but documents (C, H, W). For "
            "channel dropout on (N, C, L) use dropout1d / Dropout1d; for one unbatched image "
            "(C, H, W) use x.unsqueeze(0)."
        )
    accepted = (batched,) if spatial == 2 else (unbatched, batched)
    if x.dim() not in accepted:
        shapes = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W) or (C, D, H, W)"}
        raise ValueError(
            f"{name}: expected an input of shape {shapes[spatial]}, got {x.dim()}-D input of "
            f"shape {tuple(x.shape)}"
        )
    lead = 2 if x.dim() == batched else 1
    return tuple(x.shape[:lead]) + (1,) * (x.dim() - lead)


def _channel_dropout(x, p, training, keep_prob, mode, seed, generator, inplace, name, spatial):
    p = resolve_p(p, keep_prob)
    mode = check_mode(mode)
    x = check_input(x)
    check_bool(training, "training")
    if spatial > 1 and (not training or p == 0 or x.numel() == 0):
        # as torch's dropout2d/3d: the rank matters only when channels are dropped
        return _eval_dropout(x, p, mode, inplace) if not training else x
    mask_shape = _channel_mask_shape(x, name, spatial)
    return _masked_dropout(
        x, p, training, mask_shape, mode=mode, seed=seed, generator=generator, inplace=inplace
    )


def dropout1d(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    inplace: bool = False,
    *,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Channel dropout for 1-D feature maps: zero whole channels ``x[n, c, :]``.

    Each channel is kept with probability ``1 - p``, independently per sample and per forward
    (Tompson et al. 2015): neighbouring activations within a channel are strongly correlated,
    so element-wise dropout barely regularizes them. Same accepted shapes as
    ``torch.nn.functional.dropout1d``.

    Math (``m`` of shape (N, C, 1), broadcast over ``L``)::

        inverted: train y = x * m / (1 - p)    eval y = x
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        x: input of shape (N, C, L) or (C, L).
        p: probability of a channel to be zeroed. Default: 0.5
        training: apply dropout if ``True``. Default: ``True``
        inplace: modify ``x`` in place. Default: ``False``
        mode, keep_prob, seed, generator: as for ``droplab.dropout``; with a seed the mask is
            ``droplab.dropout_mask((N, C, 1), p, seed=seed)``.

    Examples::

        >>> y = dropout1d(torch.ones(2, 3, 5), 0.5, seed=0)
        >>> bool(((y == 0).all(-1) | (y == 2).all(-1)).all())
        True

    Paper: Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks".
    """
    return _channel_dropout(
        x, p, training, keep_prob, mode, seed, generator, inplace, "dropout1d", 1
    )


def dropout2d(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    inplace: bool = False,
    *,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Channel dropout for 2-D feature maps: zero whole channels ``x[n, c, :, :]``.

    As ``torch.nn.functional.dropout2d`` on a 4-D input. Unlike PyTorch, a 3-D input is a
    ``ValueError`` in training: PyTorch treats it as (N, C, L) (1-D channel dropout, with only a
    warning) although its documentation promises (C, H, W) (pytorch issue 69801). Use
    ``dropout1d`` for (N, C, L), or ``x.unsqueeze(0)`` for one unbatched image. Other ranks are
    a ``ValueError`` in training too (PyTorch warns and goes on). In eval, with ``p = 0`` or an
    empty input, every rank returns the eval rule, as in PyTorch.

    Math (``m`` of shape (N, C, 1, 1), broadcast over ``H, W``)::

        inverted: train y = x * m / (1 - p)    eval y = x
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        x: input of shape (N, C, H, W).
        p: probability of a channel to be zeroed. Default: 0.5
        training: apply dropout if ``True``. Default: ``True``
        inplace: modify ``x`` in place. Default: ``False``
        mode, keep_prob, seed, generator: as for ``droplab.dropout``; with a seed the mask is
            ``droplab.dropout_mask((N, C, 1, 1), p, seed=seed)``.

    Examples::

        >>> y = dropout2d(torch.ones(2, 3, 4, 4), 0.5, seed=0)
        >>> bool(((y == 0).all((-2, -1)) | (y == 2).all((-2, -1))).all())
        True

    Paper: Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks".
    """
    return _channel_dropout(
        x, p, training, keep_prob, mode, seed, generator, inplace, "dropout2d", 2
    )


def dropout3d(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    inplace: bool = False,
    *,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Channel dropout for 3-D feature maps: zero whole channels ``x[n, c, :, :, :]``.

    As ``torch.nn.functional.dropout3d`` on 4-D (unbatched) and 5-D inputs; other ranks are a
    ``ValueError`` in training (PyTorch warns and goes on), the eval rule in eval, with ``p = 0``
    or an empty input (as PyTorch).

    Math (``m`` of shape (N, C, 1, 1, 1), broadcast over ``D, H, W``)::

        inverted: train y = x * m / (1 - p)    eval y = x
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        x: input of shape (N, C, D, H, W) or (C, D, H, W).
        p: probability of a channel to be zeroed. Default: 0.5
        training: apply dropout if ``True``. Default: ``True``
        inplace: modify ``x`` in place. Default: ``False``
        mode, keep_prob, seed, generator: as for ``droplab.dropout``; with a seed the mask is
            ``droplab.dropout_mask((N, C, 1, 1, 1), p, seed=seed)``.

    Examples::

        >>> dropout3d(torch.ones(2, 3, 2, 2, 2), 0.5, seed=0).shape
        torch.Size([2, 3, 2, 2, 2])

    Paper: Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks".
    """
    return _channel_dropout(
        x, p, training, keep_prob, mode, seed, generator, inplace, "dropout3d", 3
    )


# ---- alpha dropout ---------------------------------------------------------------------------


def alpha_dropout_coefficients(p: float) -> tuple[float, float]:
    """The affine correction ``(a, b)`` of alpha dropout for drop probability ``p < 1``.

    ``a = ((1 - p) (1 + p alpha'^2))^(-1/2)`` and ``b = -a alpha' p`` with
    ``alpha' = -lambda alpha = -1.7580993408473766`` (``ALPHA_PRIME``).
    """
    p = check_p(p, upper_open=True)
    # PyTorch's order of operations, so that both give the same bits
    a = 1.0 / math.sqrt((ALPHA_PRIME * ALPHA_PRIME * p + 1.0) * (1.0 - p))
    return a, -a * ALPHA_PRIME * p


def _alpha_dropout(x, p, training, mask_shape, seed, generator, inplace):
    if not training or p == 0 or x.numel() == 0:
        return x
    if p == 1:
        # the limit of a * alpha' + b = a alpha' (1 - p) as p -> 1, and what PyTorch returns
        return _zeros_from(x, inplace)
    keep = _keep_mask(mask_shape, p, seed=seed, generator=generator, like=x)
    a, _ = alpha_dropout_coefficients(p)
    # PyTorch's arithmetic, op for op: noise = keep; y = x * (a noise) + ((noise - 1) alpha a
    # + alpha a p) with alpha = -alpha', i.e. a x + b where kept and a alpha' + b where dropped
    noise = keep.to(x.dtype)
    shift = (noise - 1).mul_(-ALPHA_PRIME * a).add_(-ALPHA_PRIME * a * p)
    noise = noise.mul_(a)
    return x.mul_(noise).add_(shift) if inplace else x * noise + shift


def alpha_dropout(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    inplace: bool = False,
    *,
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Alpha dropout: dropout that keeps SELU activations at mean 0 and variance 1.

    A dropped unit is set to SELU's saturation value ``alpha'`` rather than 0, then an affine map
    restores the mean and variance of a standard-normal input (Klambauer et al. 2017)::

        alpha' = -lambda * alpha = -1.7580993408473766
        a = ((1 - p) * (1 + p * alpha'^2)) ** (-1/2)        b = -a * alpha' * p
        train: y = a * x + b  where kept (prob 1 - p),  y = a * alpha' + b  where dropped
        eval:  y = x

    The same function as ``torch.nn.functional.alpha_dropout`` (given the same mask) except the
    default of ``training``, ``True`` here as for every droplab function (PyTorch: ``False``).
    ``p = 1`` returns zeros, the limit of the formula and PyTorch's answer.

    Args:
        x: input, any shape.
        p: probability of an element to be dropped. Default: 0.5
        training: apply dropout if ``True``. Default: ``True``
        inplace: modify ``x`` in place. Default: ``False``
        keep_prob, seed, generator: as for ``droplab.dropout``.

    Examples::

        >>> x = torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> y = alpha_dropout(x, 0.2, seed=0)
        >>> round(y.mean().item(), 1), round(y.var().item(), 1)
        (0.0, 1.0)

    Paper: Klambauer, Unterthiner, Mayr & Hochreiter 2017, "Self-Normalizing Neural Networks".
    """
    p = resolve_p(p, keep_prob)
    x = check_input(x)
    check_bool(training, "training")
    return _alpha_dropout(x, p, training, x.shape, seed, generator, inplace)


def feature_alpha_dropout(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    inplace: bool = False,
    *,
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Alpha dropout of whole channels: the alpha-dropout formula with a mask (N, C, 1, ...).

    As ``torch.nn.functional.feature_alpha_dropout``: the first two dimensions are read as
    (N, C), whatever the rank (at least 2), so an unbatched (C, D, H, W) input is read as
    (N=C, C=D, ...), as in PyTorch; add the batch dimension yourself. See ``alpha_dropout`` for
    the math; the default of ``training`` is ``True`` (PyTorch: ``False``).

    Examples::

        >>> feature_alpha_dropout(torch.zeros(2, 3, 4), 0.5, seed=0).shape
        torch.Size([2, 3, 4])

    Paper: Klambauer et al. 2017, "Self-Normalizing Neural Networks".
    """
    p = resolve_p(p, keep_prob)
    x = check_input(x)
    check_bool(training, "training")
    if not training or p == 0 or x.numel() == 0:
        return x  # at every rank, as torch (the channel dimension matters only when dropping)
    if x.dim() < 2:
        raise ValueError(
            "feature_alpha_dropout: expected an input with at least 2 dimensions (N, C, ...), "
            f"got shape {tuple(x.shape)}"
        )
    mask_shape = tuple(x.shape[:2]) + (1,) * (x.dim() - 2)
    return _alpha_dropout(x, p, training, mask_shape, seed, generator, inplace)


# ---- Gaussian dropout ------------------------------------------------------------------------


def gaussian_dropout(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    inplace: bool = False,
    *,
    keep_prob: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian dropout: multiply by noise ``N(1, p / (1 - p))`` instead of a scaled Bernoulli.

    The Bernoulli mask of inverted dropout, ``m / (1 - p)``, has mean 1 and variance
    ``p / (1 - p)``; Gaussian dropout keeps those two moments with a normal variable
    (Srivastava et al. 2014, section 10; Keras' ``GaussianDropout(rate)``)::

        train: y = x * e,   e ~ N(1, sigma^2) i.i.d.,   sigma = sqrt(p / (1 - p))
        eval:  y = x

    ``E[y] = x`` and ``dy/dx = e``. ``p`` must be in ``[0, 1)``: at ``p = 1`` the variance
    would be infinite.

    Args:
        x: input, any shape.
        p: the equivalent drop probability, in ``[0, 1)``. Default: 0.5
        training: apply the noise if ``True``. Default: ``True``
        inplace: modify ``x`` in place. Default: ``False``
        keep_prob: ``1 - p``, in ``(0, 1]``, instead of ``p``.
        generator: the ``torch.Generator`` to draw the noise from.

    Examples::

        >>> gaussian_dropout(torch.ones(3), 0.5, training=False)
        tensor([1., 1., 1.])

    Paper: Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014, "Dropout: A Simple
    Way to Prevent Neural Networks from Overfitting", JMLR 15, section 10.
    """
    p = resolve_gaussian_p(p, keep_prob)
    x = check_input(x)
    check_bool(training, "training")
    if not training or p == 0 or x.numel() == 0:
        return x
    sigma = math.sqrt(p / (1.0 - p))
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, **_drawn_from(generator))
    noise = noise.mul_(sigma).add_(1.0)
    return x.mul_(noise) if inplace else x * noise


# ---- DropConnect -----------------------------------------------------------------------------


def drop_connect(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    p: float | None = None,
    training: bool = True,
    *,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropConnect: a linear layer whose *weights* are dropped, not its activations.

    One Bernoulli(1 - p) mask ``M`` the shape of ``weight`` is drawn per call and shared by the
    whole batch (Wan et al. 2013)::

        inverted: train y = x (M * W / (1 - p))^T + b    eval y = x W^T + b
        classic:  train y = x (M * W)^T + b              eval y = x ((1 - p) W)^T + b

    The bias is never dropped. Where droplab differs from the paper: the paper draws a mask per
    example and, at inference, averages over a Gaussian moment-matched approximation; droplab
    uses one mask per batch and the full (inverted) weights at eval, as common implementations
    do.

    Args:
        x: input of shape (*, in_features).
        weight: (out_features, in_features).
        bias: (out_features,) or ``None``.
        p: probability of a weight to be dropped. Default: 0.5
        training: drop weights if ``True``. Default: ``True``
        mode, keep_prob, seed, generator: as for ``droplab.dropout``; with a seed the mask is
            ``droplab.dropout_mask(weight.shape, p, seed=seed)``.

    Examples::

        >>> w = torch.ones(2, 3)
        >>> drop_connect(torch.ones(1, 3), w, None, 0.5, training=False)
        tensor([[3., 3.]])

    Paper: Wan, Zeiler, Zhang, LeCun & Fergus 2013, "Regularization of Neural Networks using
    DropConnect", ICML.
    """
    p = resolve_p(p, keep_prob)
    mode = check_mode(mode)
    x = check_input(x)
    check_bool(training, "training")
    weight = check_input(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(
            f"weight must have shape (out_features, in_features), got {tuple(weight.shape)}"
        )
    w = _masked_dropout(
        weight,
        p,
        training,
        weight.shape,
        mode=mode,
        seed=seed,
        generator=generator,
        inplace=False,
    )
    return _torch_F.linear(x, w, bias)


# ---- drop-path (stochastic depth) ------------------------------------------------------------


def drop_path(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    *,
    scale_by_keep: bool = True,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Drop-path (stochastic depth): zero a whole sample of a residual branch.

    Applied to the output of a residual branch, ``x + drop_path(f(x))`` skips the branch for a
    random subset of the samples (Huang et al. 2016). The mask has shape (N, 1, ..., 1)::

        inverted, scale_by_keep=True  (timm's default): train y = x * m / (1 - p)   eval y = x
        inverted, scale_by_keep=False:                  train y = x * m             eval y = x
        classic (Huang et al.'s rule):                  train y = x * m   eval y = x * (1 - p)

    Matches ``timm.layers.drop_path`` except for the defaults (``p = 0.1`` and
    ``training = True`` here; timm: ``drop_prob = 0``, ``training = False``). ``p = 1`` gives
    zeros, never NaN.

    Args:
        x: input of shape (N, *), at least 1-D.
        p: probability of a sample to be dropped. Default: 0.1
        training: apply drop-path if ``True``. Default: ``True``
        scale_by_keep: in inverted mode, divide kept samples by ``1 - p``. Default: ``True``
        mode, keep_prob, seed, generator, inplace: as for ``droplab.dropout``; with a seed the
            mask is ``droplab.dropout_mask((N, 1, ..., 1), p, seed=seed)``.

    Examples::

        >>> y = drop_path(torch.ones(4, 3), 0.5, seed=0)
        >>> bool(((y == 0).all(1) | (y == 2).all(1)).all())
        True

    Paper: Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep Networks with Stochastic Depth".
    """
    p = resolve_p(0.1 if p is None and keep_prob is None else p, keep_prob)
    mode = check_mode(mode)
    check_bool(scale_by_keep, "scale_by_keep")
    x = check_input(x)
    check_bool(training, "training")
    if x.dim() == 0:
        raise ValueError("drop_path: expected an input of shape (N, *), got a 0-d tensor")
    mask_shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return _masked_dropout(
        x,
        p,
        training,
        mask_shape,
        mode=mode,
        seed=seed,
        generator=generator,
        inplace=inplace,
        scale_by_keep=scale_by_keep,
    )


# ---- locked (variational) dropout ------------------------------------------------------------


def locked_dropout(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    *,
    batch_first: bool = False,
    mode: str = "inverted",
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Locked (variational) dropout: one mask per sequence, the same at every time step.

    Gal & Ghahramani's RNN dropout: a feature dropped for a sequence stays dropped at all its
    time steps. The mask is (1, N, F) for a (T, N, F) input (``batch_first=False``, the layout
    of ``torch.nn.LSTM``'s default) or (N, 1, F) for (N, T, F); an unbatched (T, F) input gets
    (1, F)::

        inverted: train y = x * m / (1 - p)    eval y = x
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        x: input of shape (T, N, F), (N, T, F) with ``batch_first``, or (T, F).
        p: probability of a feature to be dropped for a whole sequence. Default: 0.5
        training: apply dropout if ``True``. Default: ``True``
        batch_first: the input is (N, T, F). Default: ``False``
        mode, keep_prob, seed, generator, inplace: as for ``droplab.dropout``.

    Examples::

        >>> y = locked_dropout(torch.ones(5, 2, 3), 0.5, seed=0)   # (T, N, F)
        >>> bool((y == y[0]).all())
        True

    Paper: Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout in Recurrent
    Neural Networks", NeurIPS.
    """
    p = resolve_p(p, keep_prob)
    mode = check_mode(mode)
    check_bool(batch_first, "batch_first")
    x = check_input(x)
    check_bool(training, "training")
    if x.dim() == 3:
        n_dim = 0 if batch_first else 1
        mask_shape = tuple(s if d in (n_dim, 2) else 1 for d, s in enumerate(x.shape))
    elif x.dim() == 2:
        mask_shape = (1, x.shape[1])
    else:
        raise ValueError(
            "locked_dropout: expected an input of shape (T, N, F), (N, T, F) with batch_first, "
            f"or (T, F); got {x.dim()}-D input of shape {tuple(x.shape)}"
        )
    return _masked_dropout(
        x, p, training, mask_shape, mode=mode, seed=seed, generator=generator, inplace=inplace
    )


# ---- DropBlock -------------------------------------------------------------------------------


def drop_block_gamma(
    p: float, size: tuple[int, int], block: tuple[int, int], gamma_scale: float = 1.0
) -> float:
    """DropBlock's seed rate: ``gamma = s p H W / (kh kw) / ((H - kh + 1)(W - kw + 1))``.

    ``(kh, kw)`` is the block size clipped to the feature map ``(H, W)``; the result is clipped
    to ``[0, 1]``. Each of the ``(H - kh + 1)(W - kw + 1)`` positions where a whole block fits
    starts one with probability ``gamma``, so ``p H W / (kh kw)`` blocks are expected: a drop
    fraction of about ``p`` before overlaps.
    """
    (h, w), (kh, kw) = size, block
    kh, kw = min(kh, h), min(kw, w)
    gamma = gamma_scale * p * h * w / (kh * kw) / ((h - kh + 1) * (w - kw + 1))
    return min(1.0, gamma)


def drop_block_2d(
    x: torch.Tensor,
    p: float | None = None,
    training: bool = True,
    *,
    block_size=7,
    gamma_scale: float = 1.0,
    couple_channels: bool = True,
    scale_by_keep: bool = True,
    keep_prob: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """DropBlock: zero contiguous ``kh x kw`` regions of 2-D feature maps.

    Neighbouring activations of a conv net carry the same information, so dropping single
    elements barely regularizes it; DropBlock drops whole blocks (Ghiasi et al. 2018). Following
    timm's current formula:

    1. clip the block to the map: ``kh = min(block_h, H)``, ``kw = min(block_w, W)``;
    2. ``gamma = gamma_scale * p * H * W / (kh * kw) / ((H - kh + 1) * (W - kw + 1))``;
    3. each position where a whole block fits (its top-left corner in
       ``[0, H - kh] x [0, W - kw]``) starts a block with probability ``gamma``;
    4. the blocks are grown with a ``kh x kw`` max-pool (any block size, even ones included:
       a block covers exactly ``kh x kw`` elements, never a shifted or cropped one);
    5. kept elements are divided by the kept fraction of the whole batch (``scale_by_keep``)::

        keep = 1 - maxpool(seeds);   train y = x * keep * numel(keep) / sum(keep);   eval y = x

    ``p`` is the target drop fraction; overlapping blocks make the actual one lower (the
    expected fraction is the mean over elements of ``1 - (1 - gamma)^n``, ``n`` the number of
    block positions covering the element), except that ``p = 1`` drops everything.
    With ``couple_channels`` (timm's default) one mask per sample is shared by all channels;
    otherwise each channel has its own. When every element is dropped (``p = 1``) the output
    is zeros, never NaN. With a seed the block starts are
    ``~droplab.dropout_mask((N, C', H - kh + 1, W - kw + 1), gamma, seed=seed)``,
    ``C' = 1`` if ``couple_channels`` else ``C``.

    Args:
        x: input of shape (N, C, H, W) or (C, H, W).
        p: target fraction of dropped elements. Default: 0.1
        training: apply DropBlock if ``True``. Default: ``True``
        block_size: block side, an int or ``(kh, kw)``. Default: 7
        gamma_scale: multiplies the seed rate ``gamma``. Default: 1.0
        couple_channels: one mask per sample for all channels. Default: ``True``
        scale_by_keep: divide by the kept fraction. Default: ``True``
        keep_prob, seed, generator, inplace: as for ``droplab.dropout``.

    Examples::

        >>> y = drop_block_2d(torch.ones(2, 3, 8, 8), 0.2, block_size=3, seed=0)
        >>> y.shape
        torch.Size([2, 3, 8, 8])

    Paper: Ghiasi, Lin & Le 2018, "DropBlock: A regularization method for convolutional
    networks", NeurIPS.
    """
    p = resolve_p(0.1 if p is None and keep_prob is None else p, keep_prob)
    kh, kw = check_pair(block_size, "block_size")
    gamma_scale = check_gamma_scale(gamma_scale)
    check_bool(couple_channels, "couple_channels")
    check_bool(scale_by_keep, "scale_by_keep")
    x = check_input(x)
    check_bool(training, "training")
    if x.dim() not in (3, 4):
        raise ValueError(
            "drop_block_2d: expected an input of shape (N, C, H, W) or (C, H, W), got "
            f"{x.dim()}-D input of shape {tuple(x.shape)}"
        )
    if not training or p == 0 or x.numel() == 0:
        return x
    if p == 1:
        # the gamma formula targets p only up to overlaps; p = 1 means everything, as elsewhere
        return _zeros_from(x, inplace)
    x4 = x if x.dim() == 4 else x.unsqueeze(0)
    n, c, h, w = x4.shape
    kh, kw = min(kh, h), min(kw, w)
    gamma = drop_block_gamma(p, (h, w), (kh, kw), gamma_scale)
    seeds_shape = (n, 1 if couple_channels else c, h - kh + 1, w - kw + 1)
    starts = ~_keep_mask(seeds_shape, gamma, seed=seed, generator=generator, like=x)
    # a block starting at (i, j) covers [i, i + kh) x [j, j + kw): pad by the block less one on
    # every side, then a stride-1 max-pool sees every start that covers each output element
    padded = _torch_F.pad(starts.to(torch.float32), (kw - 1, kw - 1, kh - 1, kh - 1))
    keep = _torch_F.max_pool2d(padded, (kh, kw), stride=1) == 0  # (N, C', H, W)
    if x.dim() == 3:
        keep = keep.squeeze(0)
    scale = 1.0
    if scale_by_keep:
        kept = keep.sum(dtype=torch.float64).clamp(min=1)  # every element dropped: zeros, no NaN
        scale = (keep.numel() / kept).to(x.dtype)
    return _scale_by_mask(x, keep, scale, inplace)
