"""Dropout, modules: thin ``torch.nn.Module`` wrappers over ``droplab.functional``.

Each module checks and stores its arguments in ``__init__``; ``forward`` is one call to its
function with ``self.training`` passed explicitly; ``extra_repr`` shows the hyper-parameters.
Every droplab module whose forward is random in training sets the class attribute
``stochastic = True``: that is how ``droplab.mc_dropout`` finds them. Modules call only the
public functions of ``droplab.functional`` and the checks of ``droplab._checks``.

A seeded module counts its training forwards in a 0-d int64 buffer (``persistent=False``, so
the state_dict stays empty, as ``torch.nn.Dropout``'s), read as the plain int ``step``: under
``torch.compile`` the counter is a graph input and the step's seed is computed by tensor ops
(``derive_seed_tensor``), so training steps neither recompile nor break the graph.
"""

from __future__ import annotations

import torch
from torch import nn
from torch._C._functorch import peek_interpreter_stack

from droplab import functional as F
from droplab._checks import (
    check_backend,
    check_bool,
    check_gamma_scale,
    check_mode,
    check_pair,
    check_seed,
    check_step,
    resolve_gaussian_p,
    resolve_p,
)
from droplab.kernels.rng import derive_seed, derive_seed_tensor

# ----------------------------------------------------------------------------------------------
# what every module shares
# ----------------------------------------------------------------------------------------------


class _DropoutModule(nn.Module):
    """What every droplab dropout module shares: ``p``/``keep_prob``, ``mode``, ``inplace``,
    ``stochastic``, and the seeded step counter (training forward ``k`` of a module built with
    ``seed=s`` uses ``derive_seed(s, k)``). Extra keyword arguments go to the next base class
    (``nn.Linear`` for ``DropConnect``)."""

    # random in training: how droplab.mc_dropout finds dropout layers
    stochastic = True

    def __init__(
        self,
        p: float | None = None,
        keep_prob: float | None = None,
        *,
        mode: str = "inverted",
        seed: int | None = None,
        inplace: bool = False,
        default_p: float = 0.5,
        **kwargs,
    ) -> None:
        p = resolve_p(p, keep_prob, default=default_p)
        mode = check_mode(mode)
        seed = None if seed is None else check_seed(seed)
        super().__init__(**kwargs)
        self.p, self.mode, self.inplace, self.seed = p, mode, bool(inplace), seed
        # a tensor, so that a compiled forward reads it as an input instead of specialising on it
        self.register_buffer("_step", torch.zeros((), dtype=torch.int64), persistent=False)

    @property
    def keep_prob(self) -> float:
        return 1.0 - self.p

    @property
    def step(self) -> int:
        """Seeded training forwards so far: set it back to resume a run's sequence of masks."""
        return int(self._step)

    @step.setter
    def step(self, value: int) -> None:
        self._set_step(check_step(value))

    def _counter(self):
        """The step counter as a NumPy view where it can be (CPU, no transform), else None.

        The counter is the module's state, not data: no ``torch.func`` transform may see it as a
        captured tensor written in place (grad over functional_call), and a NumPy write costs
        about 1 us where an in-place torch op dispatches for about 5 us.
        """
        step = self._step
        if step.device.type == "cpu" and peek_interpreter_stack() is None:
            return step.numpy()
        return None

    def _set_step(self, value: int) -> None:
        counter = self._counter()
        if counter is not None:
            counter[()] = value
        else:
            with torch._C._DisableFuncTorch():
                self._step.fill_(value)

    def _seeded(self, fn, *args, **kwargs) -> torch.Tensor:
        """``fn(*args, seed=..., **kwargs)`` with this step's seed; counts seeded steps."""
        if not (self.training and self.seed is not None):
            return fn(*args, seed=None, **kwargs)
        if torch.compiler.is_compiling():
            # the step stays a graph input: no recompile per step, and the seed is tensor ops
            out = fn(*args, seed=derive_seed_tensor(self.seed, self._step), **kwargs)
            self._step.add_(1)  # a buffer mutation, kept in the graph
            return out
        counter = self._counter()
        step = int(self._step) if counter is None else int(counter)
        out = fn(*args, seed=derive_seed(self.seed, step), **kwargs)
        if counter is not None:
            counter[()] = step + 1
        else:
            self._set_step(step + 1)
        return out

    def _repr_tail(self) -> str:
        return "" if self.seed is None else f", seed={self.seed}"


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


class Dropout(_DropoutModule):
    r"""Randomly zero elements with probability ``p`` in training: a drop-in for ``torch.nn.Dropout``.

    Follows ``self.training``: in training each element is kept independently with probability
    ``1 - p`` and the result is scaled by the rule of ``mode``; in eval it applies the eval rule
    (see :func:`droplab.dropout`)::

        inverted:  train y = x * m / (1 - p)      eval y = x
        classic:   train y = x * m                eval y = x * (1 - p)

    The constructor takes ``p`` and ``inplace`` like ``torch.nn.Dropout`` (positionally too), and
    the state_dict is empty, so a model built with it loads torch checkpoints and back.

    With ``seed=s``, forward call ``k`` in training (``k = 0, 1, ...``) uses the mask of
    ``droplab.kernels.rng.derive_seed(s, k)``: a training run is repeatable, while masks differ
    between steps. ``k`` is the int ``step`` (not in the state_dict, like every random state in
    torch): save it with your checkpoint and set it back to resume the same sequence of masks.
    Without a seed, masks come from PyTorch's global RNG. Compiles without graph breaks or
    per-step recompiles, exports, and works under ``torch.func`` (see :func:`droplab.dropout`).

    Args:
        p: probability of an element to be zeroed, in ``[0, 1]``. Default: 0.5 (when
            ``keep_prob`` is not given)
        inplace: do the operation in place. Default: ``False``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: probability of an element to be kept, ``1 - p``; give ``p`` or ``keep_prob``,
            not both. Default: ``None``
        seed: an int in ``[0, 2**64 - 1]`` that fixes the masks of a run. Default: ``None``
        backend: ``"auto"``, ``"torch"`` or ``"fast"`` (see :func:`droplab.dropout`).
            Default: ``"auto"``

    Shape:
        - Input: :math:`(*)`, any shape.
        - Output: :math:`(*)`, the same shape as the input.

    Examples::

        >>> m = Dropout(p=0.5, seed=0)
        >>> m
        Dropout(p=0.5, mode='inverted', inplace=False, seed=0)
        >>> m(torch.ones(2, 4))
        tensor([[2., 2., 2., 0.],
                [2., 2., 0., 0.]])
        >>> m.step
        1
        >>> m.eval()(torch.ones(2, 4))
        tensor([[1., 1., 1., 1.],
                [1., 1., 1., 1.]])
        >>> Dropout(keep_prob=0.8, mode="classic").eval()(torch.ones(3))
        tensor([0.8000, 0.8000, 0.8000])

    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 15 (2014).
    """

    def __init__(
        self,
        p: float | None = None,
        inplace: bool = False,
        *,
        mode: str = "inverted",
        keep_prob: float | None = None,
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(p, keep_prob, mode=mode, seed=seed, inplace=inplace)
        self.backend = check_backend(backend)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._seeded(
            F.dropout,
            input,
            self.p,
            self.training,
            mode=self.mode,
            backend=self.backend,
            inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        s = f"p={self.p}, mode={self.mode!r}, inplace={self.inplace}{self._repr_tail()}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s


# ----------------------------------------------------------------------------------------------
# variants
# ----------------------------------------------------------------------------------------------
#
# One module per function of the variants section of ``droplab.functional`` (see the papers and
# formulas there). Seeded modules follow ``Dropout``: training forward ``k`` of a module built
# with ``seed=s`` uses ``derive_seed(s, k)``, ``k`` being the plain attribute ``step``.


class _ChannelDropout(_DropoutModule):
    _fn = None  # the functional form, set by each subclass

    def __init__(
        self,
        p: float | None = None,
        inplace: bool = False,
        *,
        mode: str = "inverted",
        keep_prob: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, keep_prob, mode=mode, seed=seed, inplace=inplace)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._seeded(
            type(self)._fn, input, self.p, self.training, self.inplace, mode=self.mode
        )

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, inplace={self.inplace}" + self._repr_tail()


class Dropout1d(_ChannelDropout):
    r"""Zero whole channels of (N, C, L) inputs: a drop-in for ``torch.nn.Dropout1d``.

    Each channel ``x[n, c, :]`` is kept with probability ``1 - p`` (see
    :func:`droplab.dropout1d`)::

        inverted: train y = x * m / (1 - p)    eval y = x       m: (N, C, 1)
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        p: probability of a channel to be zeroed. Default: 0.5
        inplace: do the operation in place. Default: ``False``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).

    Shape:
        - Input: (N, C, L) or (C, L).
        - Output: the same shape as the input.

    Examples::

        >>> m = Dropout1d(0.5, seed=0)
        >>> m
        Dropout1d(p=0.5, mode='inverted', inplace=False, seed=0)
        >>> m(torch.ones(2, 3, 4)).shape
        torch.Size([2, 3, 4])

    Paper: Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks".
    """

    _fn = staticmethod(F.dropout1d)


class Dropout2d(_ChannelDropout):
    r"""Zero whole channels of (N, C, H, W) inputs: ``torch.nn.Dropout2d`` on 4-D inputs.

    Each channel ``x[n, c, :, :]`` is kept with probability ``1 - p`` (see
    :func:`droplab.dropout2d`)::

        inverted: train y = x * m / (1 - p)    eval y = x       m: (N, C, 1, 1)
        classic:  train y = x * m              eval y = x * (1 - p)

    A 3-D input is a ``ValueError``: PyTorch treats it as (N, C, L), with only a warning, although it
    documents (C, H, W) (pytorch issue 69801). Use :class:`Dropout1d` for (N, C, L) or
    ``x.unsqueeze(0)`` for one unbatched image.

    Args:
        p: probability of a channel to be zeroed. Default: 0.5
        inplace: do the operation in place. Default: ``False``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).

    Shape:
        - Input: (N, C, H, W).
        - Output: the same shape as the input.

    Examples::

        >>> y = Dropout2d(0.5, seed=0)(torch.ones(2, 3, 4, 4))
        >>> bool((y == y[:, :, :1, :1]).all())   # one value per channel: 0 or 2
        True

    Paper: Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks".
    """

    _fn = staticmethod(F.dropout2d)


class Dropout3d(_ChannelDropout):
    r"""Zero whole channels of (N, C, D, H, W) inputs: a drop-in for ``torch.nn.Dropout3d``.

    Each channel ``x[n, c]`` is kept with probability ``1 - p`` (see :func:`droplab.dropout3d`)::

        inverted: train y = x * m / (1 - p)    eval y = x       m: (N, C, 1, 1, 1)
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        p: probability of a channel to be zeroed. Default: 0.5
        inplace: do the operation in place. Default: ``False``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).

    Shape:
        - Input: (N, C, D, H, W) or (C, D, H, W).
        - Output: the same shape as the input.

    Examples::

        >>> Dropout3d(0.2)(torch.ones(1, 2, 2, 2, 2)).shape
        torch.Size([1, 2, 2, 2, 2])

    Paper: Tompson et al. 2015, "Efficient Object Localization Using Convolutional Networks".
    """

    _fn = staticmethod(F.dropout3d)


class _AlphaDropoutBase(_DropoutModule):
    _fn = None

    def __init__(
        self,
        p: float | None = None,
        inplace: bool = False,
        *,
        keep_prob: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, keep_prob, seed=seed, inplace=inplace)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._seeded(type(self)._fn, input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}" + self._repr_tail()


class AlphaDropout(_AlphaDropoutBase):
    r"""Alpha dropout for SELU networks: a drop-in for ``torch.nn.AlphaDropout``.

    Keeps mean 0 and variance 1 of standard-normal (SELU) activations (see
    :func:`droplab.alpha_dropout`)::

        alpha' = -1.7580993408473766,  a = ((1 - p)(1 + p alpha'^2))^(-1/2),  b = -a alpha' p
        train: y = a x + b (kept, prob 1 - p),  a alpha' + b (dropped)      eval: y = x

    Args:
        p: probability of an element to be dropped. Default: 0.5
        inplace: do the operation in place. Default: ``False``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).

    Shape:
        - Input: any shape.
        - Output: the same shape as the input.

    Examples::

        >>> AlphaDropout(0.2)
        AlphaDropout(p=0.2, inplace=False)

    Paper: Klambauer et al. 2017, "Self-Normalizing Neural Networks".
    """

    _fn = staticmethod(F.alpha_dropout)


class FeatureAlphaDropout(_AlphaDropoutBase):
    r"""Alpha dropout of whole channels: a drop-in for ``torch.nn.FeatureAlphaDropout``.

    The alpha-dropout formula (:class:`AlphaDropout`) with one mask entry per channel, shape
    (N, C, 1, ...); the first two dimensions are read as (N, C), as in PyTorch (see
    :func:`droplab.feature_alpha_dropout`).

    Args:
        p: probability of a channel to be dropped. Default: 0.5
        inplace: do the operation in place. Default: ``False``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).

    Shape:
        - Input: (N, C, *).
        - Output: the same shape as the input.

    Examples::

        >>> FeatureAlphaDropout(0.2)(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 3, 4])

    Paper: Klambauer et al. 2017, "Self-Normalizing Neural Networks".
    """

    _fn = staticmethod(F.feature_alpha_dropout)


class GaussianDropout(_DropoutModule):
    r"""Multiplicative Gaussian noise ``N(1, p / (1 - p))`` in training, identity at eval.

    The same mean and variance as the mask of inverted dropout, with a normal variable (see
    :func:`droplab.gaussian_dropout`; Keras' ``GaussianDropout(rate)``)::

        train: y = x * e,  e ~ N(1, p / (1 - p))      eval: y = x

    Args:
        p: the equivalent drop probability, in ``[0, 1)`` (``p = 1`` would be infinite noise).
            Default: 0.5
        inplace: do the operation in place. Default: ``False``
        keep_prob: ``1 - p``, in ``(0, 1]``, instead of ``p``.

    Shape:
        - Input: any shape.
        - Output: the same shape as the input.

    Examples::

        >>> GaussianDropout(0.2).eval()(torch.ones(2))
        tensor([1., 1.])

    Paper: Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 15, section 10.
    """

    def __init__(
        self, p: float | None = None, inplace: bool = False, *, keep_prob: float | None = None
    ) -> None:
        # Gaussian noise has no counter-based stream: global RNG only, no seed
        super().__init__(resolve_gaussian_p(p, keep_prob), inplace=inplace)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.gaussian_dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class DropConnect(_DropoutModule, nn.Linear):
    r"""A ``Linear`` layer whose weights are dropped in training (DropConnect, Wan et al. 2013).

    Parameters, initialization and state_dict (``weight``, ``bias``) are those of
    ``torch.nn.Linear``; in training each forward draws one Bernoulli(1 - p) mask ``M`` over the
    weight, shared by the batch (see :func:`droplab.drop_connect`)::

        inverted: train y = x (M * W / (1 - p))^T + b    eval y = x W^T + b
        classic:  train y = x (M * W)^T + b              eval y = x ((1 - p) W)^T + b

    The bias is never dropped. ``DropConnect.from_linear(linear, p)`` wraps the parameters of an
    existing ``Linear``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        p: probability of a weight to be dropped. Default: 0.5
        bias: learn an additive bias. Default: ``True``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).
        device, dtype: as for ``torch.nn.Linear``.

    Shape:
        - Input: (*, in_features).
        - Output: (*, out_features).

    Examples::

        >>> m = DropConnect(4, 3, p=0.5)
        >>> m
        DropConnect(in_features=4, out_features=3, bias=True, p=0.5, mode='inverted')
        >>> sorted(m.state_dict())
        ['bias', 'weight']

    Paper: Wan, Zeiler, Zhang, LeCun & Fergus 2013, "Regularization of Neural Networks using
    DropConnect", ICML.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        p: float | None = None,
        bias: bool = True,
        *,
        mode: str = "inverted",
        keep_prob: float | None = None,
        seed: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            p,
            keep_prob,
            mode=mode,
            seed=seed,
            in_features=in_features,
            out_features=out_features,
            bias=bias,
            device=device,
            dtype=dtype,
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float | None = None, **kwargs) -> DropConnect:
        """A DropConnect layer sharing the ``weight`` and ``bias`` Parameters of ``linear``."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight
        m = cls(
            linear.in_features,
            linear.out_features,
            p,
            linear.bias is not None,
            device="meta",
            dtype=w.dtype,
            **kwargs,
        )
        m.weight = linear.weight
        m.bias = linear.bias
        return m

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._seeded(
            F.drop_connect, input, self.weight, self.bias, self.p, self.training, mode=self.mode
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}, mode={self.mode!r}" + self._repr_tail()


class DropPath(_DropoutModule):
    r"""Drop-path (stochastic depth): zero whole samples of a residual branch (timm semantics).

    Use it on the branch: ``x + drop_path(f(x))``. The mask has shape (N, 1, ..., 1) (see
    :func:`droplab.drop_path`)::

        scale_by_keep=True (default): train y = x * m / (1 - p)    eval y = x
        scale_by_keep=False:          train y = x * m              eval y = x
        mode="classic" (Huang et al.): train y = x * m             eval y = x * (1 - p)

    ``p = 1`` gives zeros, never NaN. timm's ``DropPath(drop_prob=0.)`` is
    ``DropPath(p=...)`` here, with default 0.1.

    Args:
        p: probability of a sample's path to be dropped. Default: 0.1
        scale_by_keep: in inverted mode, divide kept samples by ``1 - p``. Default: ``True``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).
        inplace: do the operation in place. Default: ``False``

    Shape:
        - Input: (N, *).
        - Output: the same shape as the input.

    Examples::

        >>> DropPath(0.2)
        DropPath(p=0.2, scale_by_keep=True, mode='inverted')

    Paper: Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep Networks with Stochastic Depth".
    """

    def __init__(
        self,
        p: float | None = None,
        scale_by_keep: bool = True,
        *,
        mode: str = "inverted",
        keep_prob: float | None = None,
        seed: int | None = None,
        inplace: bool = False,
    ) -> None:
        super().__init__(p, keep_prob, mode=mode, seed=seed, inplace=inplace, default_p=0.1)
        self.scale_by_keep = check_bool(scale_by_keep, "scale_by_keep")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._seeded(
            F.drop_path,
            input,
            self.p,
            self.training,
            scale_by_keep=self.scale_by_keep,
            mode=self.mode,
            inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        s = f"p={self.p}, scale_by_keep={self.scale_by_keep}, mode={self.mode!r}"
        return s + (", inplace=True" if self.inplace else "") + self._repr_tail()


class DropBlock2d(_DropoutModule):
    r"""DropBlock: zero contiguous ``kh x kw`` regions of (N, C, H, W) feature maps.

    timm's current formula (see :func:`droplab.drop_block_2d`): block clipped to the map,
    ``gamma = gamma_scale * p * H * W / (kh * kw) / ((H - kh + 1) * (W - kw + 1))`` block
    starts where a whole block fits, blocks grown with a max-pool (even sizes too), kept
    elements divided by the kept fraction of the batch::

        train: y = x * keep * numel(keep) / sum(keep)      eval: y = x

    Args:
        p: target fraction of dropped elements. Default: 0.1
        block_size: block side, an int or ``(kh, kw)``. Default: 7
        gamma_scale: multiplies the seed rate ``gamma``. Default: 1.0
        couple_channels: one mask per sample for all channels (timm's default). Default: ``True``
        scale_by_keep: divide by the kept fraction. Default: ``True``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).
        inplace: do the operation in place. Default: ``False``

    Shape:
        - Input: (N, C, H, W) or (C, H, W).
        - Output: the same shape as the input.

    Examples::

        >>> DropBlock2d(0.1, block_size=5).block_size
        (5, 5)

    Paper: Ghiasi, Lin & Le 2018, "DropBlock: A regularization method for convolutional
    networks", NeurIPS.
    """

    def __init__(
        self,
        p: float | None = None,
        block_size=7,
        gamma_scale: float = 1.0,
        *,
        couple_channels: bool = True,
        scale_by_keep: bool = True,
        keep_prob: float | None = None,
        seed: int | None = None,
        inplace: bool = False,
    ) -> None:
        super().__init__(p, keep_prob, seed=seed, inplace=inplace, default_p=0.1)
        self.block_size = check_pair(block_size, "block_size")
        self.gamma_scale = check_gamma_scale(gamma_scale)
        self.couple_channels = check_bool(couple_channels, "couple_channels")
        self.scale_by_keep = check_bool(scale_by_keep, "scale_by_keep")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._seeded(
            F.drop_block_2d,
            input,
            self.p,
            self.training,
            block_size=self.block_size,
            gamma_scale=self.gamma_scale,
            couple_channels=self.couple_channels,
            scale_by_keep=self.scale_by_keep,
            inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        s = (
            f"p={self.p}, block_size={self.block_size}, gamma_scale={self.gamma_scale}, "
            f"couple_channels={self.couple_channels}, scale_by_keep={self.scale_by_keep}"
        )
        return s + (", inplace=True" if self.inplace else "") + self._repr_tail()


class LockedDropout(_DropoutModule):
    r"""Locked (variational) dropout: the same mask at every time step of a sequence.

    For RNN inputs and outputs (Gal & Ghahramani 2016): the mask is (1, N, F) for (T, N, F)
    inputs, or (N, 1, F) with ``batch_first`` (see :func:`droplab.locked_dropout`)::

        inverted: train y = x * m / (1 - p)    eval y = x
        classic:  train y = x * m              eval y = x * (1 - p)

    Args:
        p: probability of a feature to be dropped for a whole sequence. Default: 0.5
        batch_first: inputs are (N, T, F), as with ``torch.nn.LSTM(batch_first=True)``.
            Default: ``False``
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: ``1 - p``, instead of ``p``.
        seed: fixes the masks of a run (step ``k`` uses ``derive_seed(seed, k)``).
        inplace: do the operation in place. Default: ``False``

    Shape:
        - Input: (T, N, F), (N, T, F) with ``batch_first``, or (T, F).
        - Output: the same shape as the input.

    Examples::

        >>> LockedDropout(0.3, batch_first=True)
        LockedDropout(p=0.3, batch_first=True, mode='inverted')

    Paper: Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout in Recurrent
    Neural Networks", NeurIPS.
    """

    def __init__(
        self,
        p: float | None = None,
        *,
        batch_first: bool = False,
        mode: str = "inverted",
        keep_prob: float | None = None,
        seed: int | None = None,
        inplace: bool = False,
    ) -> None:
        super().__init__(p, keep_prob, mode=mode, seed=seed, inplace=inplace)
        self.batch_first = check_bool(batch_first, "batch_first")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._seeded(
            F.locked_dropout,
            input,
            self.p,
            self.training,
            batch_first=self.batch_first,
            mode=self.mode,
            inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        s = f"p={self.p}, batch_first={self.batch_first}, mode={self.mode!r}"
        return s + (", inplace=True" if self.inplace else "") + self._repr_tail()
