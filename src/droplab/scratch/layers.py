"""Layers of the NumPy engine, each with its backward pass written by hand.

Every layer keeps its bookkeeping (``forward`` caches what ``backward`` needs) apart from the
math (the pure functions ``_fwd`` / ``_bwd`` next to it). Names follow the chain rule:
``dLdy`` is the gradient of the loss with respect to the layer's output, ``dLdX`` with respect to
its input, ``dW`` / ``db`` with respect to its parameters. Nothing modifies its arguments.

Examples::

    >>> import numpy as np
    >>> from droplab.scratch import Linear, ReLU, Dropout, Sequential
    >>> net = Sequential(Linear(784, 256, rng=0), ReLU(), Dropout(0.5, seed=1), Linear(256, 10, rng=0))
    >>> X = np.zeros((32, 784), dtype=np.float32)
    >>> net(X).shape
    (32, 10)
    >>> net.backward(np.ones((32, 10), dtype=np.float32)).shape
    (32, 784)
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from droplab._checks import check_mode, check_seed, resolve_p
from droplab.scratch import init as _init
from droplab.scratch.mask import derive_seed, dropout_mask
from droplab.scratch.module import Module, Parameter

# ----------------------------------------------------------------------------------------------
# Linear
# ----------------------------------------------------------------------------------------------


def _linear_fwd(X, W, b):
    """``Y = X W^T + b``; ``X (..., in)``, ``W (out, in)``, ``b (out,)`` -> ``Y (..., out)``."""
    Y = np.matmul(X, W.T)
    if b is not None:
        Y += b
    return Y


def _linear_bwd(dLdy, X, W, *, input_grad=True):
    """``dW = dLdy^T X``, ``db = sum_n dLdy``, ``dLdX = dLdy W`` (rows of ``X`` flattened)."""
    d2 = dLdy.reshape(-1, W.shape[0])  # (N, out)
    X2 = X.reshape(-1, W.shape[1])  # (N, in)
    dW = np.matmul(d2.T, X2)  # (out, in)
    db = d2.sum(axis=0)  # (out,)
    dLdX = np.matmul(dLdy, W) if input_grad else None  # (..., in)
    return dLdX, dW, db


class Linear(Module):
    """A fully connected layer, ``y = x W^T + b``, in torch's layout and with torch's init.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn an additive bias. Default: ``True``
        init: ``"torch"`` (default, ``kaiming_uniform_(a=sqrt(5))`` weights and
            ``U(+-1/sqrt(in_features))`` bias, as ``torch.nn.Linear``), ``"normal"``
            (``N(0, 0.01^2)``), ``"kaiming_normal"``, ``"xavier_normal"`` (zero bias), or an
            initializer from ``droplab.scratch.init`` such as ``init.normal(std=0.1)``.
        dtype: parameter dtype. Default: ``np.float32``
        rng: a ``np.random.Generator`` or a seed for ``np.random.default_rng``.

    Shape:
        - Input: ``(*, in_features)``; Output: ``(*, out_features)``.
        - ``weight``: ``(out_features, in_features)``; ``bias``: ``(out_features,)``.

    Weights load from arrays: ``layer.weight.data[...] = w`` or ``model.load_state_dict(...)``.

    Examples::

        >>> layer = Linear(3, 2, rng=0)
        >>> layer(np.ones((4, 3), dtype=np.float32)).shape
        (4, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init="torch",
        dtype=np.float32,
        rng=None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        initializer = _init.get(init)
        self.weight = Parameter(initializer((self.out_features, self.in_features), rng, dtype))
        if bias:
            if getattr(initializer, "bias", "zeros") == "torch":
                bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
                b = rng.uniform(-bound, bound, size=self.out_features)
            else:
                b = np.zeros(self.out_features)
            self.bias = Parameter(b.astype(dtype))
        else:
            self.bias = None
        self._X = None

    def forward(self, X):
        self._X = X
        return _linear_fwd(X, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, dLdy, *, input_grad: bool = True):
        dLdX, dW, db = _linear_bwd(dLdy, self._X, self.weight.data, input_grad=input_grad)
        self.weight.grad += dW
        if self.bias is not None:
            self.bias.grad += db
        return dLdX

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------


class ReLU(Module):
    """``y = max(x, 0)``; ``dL/dx = dL/dy * [y > 0]`` (zero gradient at 0, as torch)."""

    def __init__(self) -> None:
        super().__init__()
        self._Y = None

    @staticmethod
    def _fwd(X):
        return np.maximum(X, 0)

    @staticmethod
    def _bwd(dLdy, Y):
        return dLdy * (Y > 0)

    def forward(self, X):
        self._Y = self._fwd(X)
        return self._Y

    def backward(self, dLdy, *, input_grad: bool = True):
        return self._bwd(dLdy, self._Y) if input_grad else None


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))``; ``dL/dx = dL/dy * y (1 - y)``."""

    def __init__(self) -> None:
        super().__init__()
        self._Y = None

    @staticmethod
    def _fwd(X):
        with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0 gives y = 0, as it should
            Y = np.exp(-X)
        Y += 1
        return np.reciprocal(Y, out=Y)

    @staticmethod
    def _bwd(dLdy, Y):
        return dLdy * Y * (1 - Y)

    def forward(self, X):
        self._Y = self._fwd(X)
        return self._Y

    def backward(self, dLdy, *, input_grad: bool = True):
        return self._bwd(dLdy, self._Y) if input_grad else None


class Tanh(Module):
    """``y = tanh(x)``; ``dL/dx = dL/dy * (1 - y^2)``."""

    def __init__(self) -> None:
        super().__init__()
        self._Y = None

    @staticmethod
    def _fwd(X):
        return np.tanh(X)

    @staticmethod
    def _bwd(dLdy, Y):
        return dLdy * (1 - Y * Y)

    def forward(self, X):
        self._Y = self._fwd(X)
        return self._Y

    def backward(self, dLdy, *, input_grad: bool = True):
        return self._bwd(dLdy, self._Y) if input_grad else None


class Flatten(Module):
    """Flattens dimensions ``start_dim..`` into one (``torch.nn.Flatten(start_dim=1)``)."""

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self._shape = None

    def forward(self, X):
        self._shape = X.shape
        return X.reshape(*X.shape[: self.start_dim], -1)

    def backward(self, dLdy, *, input_grad: bool = True):
        return dLdy.reshape(self._shape) if input_grad else None


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


def _dropout_fwd(X, mask, p: float, mode: str):
    """Training: ``y = x * m / (1 - p)`` (inverted) or ``y = x * m`` (classic).

    Kept values equal ``x / (1 - p)`` exactly (the product by the 0/1 mask is exact, then one
    division). ``p == 1`` gives zeros, never NaN.
    """
    if p == 1:
        return np.zeros_like(X)
    Y = X * mask
    if mode == "inverted":
        Y /= 1 - p
    return Y


class Dropout(Module):
    """Dropout: zero each element with probability ``p`` in training (Srivastava et al. 2014).

    ``mode="inverted"`` (default, as ``torch.nn.Dropout``): train ``y = x * m / (1 - p)``, eval
    ``y = x``. ``mode="classic"`` (the paper's form): train ``y = x * m``, eval ``y = x * (1 - p)``.
    ``m ~ Bernoulli(1 - p)`` per element; the backward applies the same mask and scale,
    ``dL/dx = dL/dy * m / (1 - p)`` (inverted) or ``dL/dy * m`` (classic).

    With ``seed=s`` the mask of training step ``k`` (``k = self.step``, counted from 0 and
    increased by every forward in training mode, as in ``droplab.Dropout``) is
    ``dropout_mask(x.shape, p, seed=derive_seed(s, k))``: the same bits as the torch engine's
    seeded ``droplab.Dropout``. Without a seed, masks come from ``rng`` (a ``np.random.Generator``
    or a seed for one).

    Args:
        p: probability of an element to be zeroed. Default: 0.5
        mode: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        keep_prob: ``1 - p`` (Andrew Ng's parametrization); give ``p`` or ``keep_prob``.
        seed: an int in ``[0, 2**64 - 1]`` for counter-based, backend-independent masks.
        rng: generator (or its seed) for masks when ``seed`` is None.

    Shape:
        - Input: any; Output: the same as the input.

    Examples::

        >>> drop = Dropout(0.5, seed=0)
        >>> y = drop(np.ones((2, 4)))
        >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
        >>> drop.eval()(np.ones(3)).tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, p=None, *, mode: str = "inverted", keep_prob=None, seed=None, rng=None):
        super().__init__()
        self.p = resolve_p(p, keep_prob)
        self.mode = check_mode(mode)
        self.seed = None if seed is None else check_seed(seed)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.step = 0  # seeded training forwards so far: step k uses derive_seed(seed, k)
        self.frozen = False  # reuse the last mask (gradient checking), see freeze_masks
        self.mask = None  # the keep-mask of the last training forward
        self._train_pass = True

    def _draw(self, shape) -> np.ndarray:
        if self.seed is not None:
            return dropout_mask(shape, self.p, seed=derive_seed(self.seed, self.step))
        return self.rng.random(shape, dtype=np.float32) >= np.float32(self.p)

    def forward(self, X):
        self._train_pass = self.training
        if not self.training:
            return X * (1 - self.p) if self.mode == "classic" else X
        if self.frozen and self.mask is not None and self.mask.shape == np.shape(X):
            return _dropout_fwd(X, self.mask, self.p, self.mode)
        if self.p == 0:
            self.mask = None
        else:
            self.mask = self._draw(np.shape(X))
        if self.seed is not None:
            self.step += 1
        return X if self.mask is None else _dropout_fwd(X, self.mask, self.p, self.mode)

    def backward(self, dLdy, *, input_grad: bool = True):
        if not input_grad:
            return None
        if not self._train_pass:
            return dLdy * (1 - self.p) if self.mode == "classic" else dLdy
        if self.mask is None:  # p == 0
            return dLdy
        return _dropout_fwd(dLdy, self.mask, self.p, self.mode)

    def extra_repr(self) -> str:
        seed = "" if self.seed is None else f", seed={self.seed}"
        return f"p={self.p}, mode={self.mode!r}{seed}"


@contextmanager
def freeze_masks(model: Module):
    """Within the block, every ``Dropout`` in ``model`` reuses its last mask (drawing one on its
    first training forward) and its ``step`` stops: a fixed function of the parameters, as
    gradient checking needs. Restored on exit, also after an exception."""
    drops = [m for m in model.modules() if isinstance(m, Dropout)]
    saved = [m.frozen for m in drops]
    try:
        for m in drops:
            m.frozen = True
        yield model
    finally:
        for m, f in zip(drops, saved):
            m.frozen = f
