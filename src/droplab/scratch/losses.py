"""Losses of the NumPy engine, with torch's reductions and hand-written gradients.

A loss is called like torch's, ``loss = loss_fn(input, target)``, and returns a NumPy scalar
(``reduction="mean"`` or ``"sum"``) or an array (``"none"``). ``loss_fn.backward()`` then returns
``dL/dinput`` for the last call (``backward(dLdloss)`` with ``reduction="none"`` or to scale the
loss). ``reduction="mean"`` divides by the number of elements (by the batch size for
``CrossEntropyLoss``), as torch does.

Also here: ``L2Penalty``, the course's explicit regularization term
``lambda / (2 m) * sum ||W||^2``, the same update as ``weight_decay = lambda / m`` on the weights.
"""

from __future__ import annotations

import numpy as np


def check_reduction(reduction) -> str:
    """Validate a loss reduction: ``"mean"``, ``"sum"`` or ``"none"`` (torch's names)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


class _Loss:
    """Bookkeeping shared by the losses: the reduction and the cached gradient."""

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = check_reduction(reduction)
        self._dLdx = None  # gradient of the *summed* elementwise loss, shape of the input
        self._shape = None  # shape of the unreduced loss
        self._n = 1  # the divisor of "mean"

    def __call__(self, input, target):
        return self.forward(input, target)

    def _reduce(self, losses, n: int):
        if self.reduction == "none":
            return losses
        total = losses.sum()
        return total / n if self.reduction == "mean" else total

    def _scale(self, dLdloss, n: int):
        """The gradient of the reduced loss: scale the elementwise gradient by the reduction."""
        if self._dLdx is None:
            raise RuntimeError("call the loss (forward) before backward")
        if self.reduction == "none":
            if dLdloss is None:
                dLdloss = np.ones(self._shape, dtype=self._dLdx.dtype)
            return np.asarray(dLdloss, dtype=self._dLdx.dtype)
        scale = 1.0 if dLdloss is None else float(dLdloss)
        return scale / n if self.reduction == "mean" else scale

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


# ----------------------------------------------------------------------------------------------
# cross-entropy (fused with the softmax)
# ----------------------------------------------------------------------------------------------


def _log_softmax(Z):
    """``log softmax(z)_c = z_c - logsumexp(z)``, shifted by the row maximum (no overflow)."""
    shifted = Z - Z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (``torch.nn.CrossEntropyLoss``), fused for a cheap backward.

    With class indices ``y`` (int, shape ``(N,)``): ``l_n = logsumexp(z_n) - z_{n, y_n}``.
    With probabilities or one-hot rows ``t`` (float, shape ``(N, C)``), the tutorial's form:
    ``l_n = -sum_c t_{n,c} log softmax(z_n)_c``.

    The gradient is the softmax minus the target, ``dl_n/dz_n = softmax(z_n) * sum_c t_{n,c} -
    t_n`` (``softmax(z_n) - onehot(y_n)`` for indices), divided by ``N`` for ``"mean"``.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Shape:
        - Input: ``(N, C)`` logits. Target: ``(N,)`` class indices or ``(N, C)`` probabilities.
        - Output: a scalar, or ``(N,)`` with ``reduction="none"``.

    Examples::

        >>> loss_fn = CrossEntropyLoss()
        >>> float(loss_fn(np.zeros((2, 4)), np.array([0, 3]))) == float(np.log(4))
        True
        >>> loss_fn.backward().shape
        (2, 4)
    """

    def forward(self, input, target):
        Z = np.asarray(input)
        if Z.ndim != 2:
            raise ValueError(f"input must be (N, C) logits, got shape {Z.shape}")
        target = np.asarray(target)
        N, C = Z.shape
        logp = _log_softmax(Z)  # (N, C)
        probs = np.exp(logp)
        if np.issubdtype(target.dtype, np.integer):
            if target.shape != (N,):
                raise ValueError(f"class-index target must have shape ({N},), got {target.shape}")
            if target.size and (target.min() < 0 or target.max() >= C):
                raise IndexError(f"target class out of range [0, {C - 1}]")
            rows = np.arange(N)
            losses = -logp[rows, target]
            probs[rows, target] -= 1
            dLdx = probs
        else:
            if target.shape != Z.shape:
                raise ValueError(
                    f"probability target must have the input's shape {Z.shape}, got {target.shape}"
                )
            losses = -(target * logp).sum(axis=1)
            dLdx = probs * target.sum(axis=1, keepdims=True) - target
        self._dLdx, self._shape, self._n = dLdx, losses.shape, N
        return self._reduce(losses, N)

    def backward(self, dLdloss=None):
        scale = self._scale(dLdloss, self._n)
        if self.reduction == "none":
            return self._dLdx * scale[:, None]
        return self._dLdx * scale


# ----------------------------------------------------------------------------------------------
# elementwise losses
# ----------------------------------------------------------------------------------------------


class _ElementwiseLoss(_Loss):
    def forward(self, input, target):
        x, t = np.asarray(input), np.asarray(target)
        if x.shape != t.shape:
            raise ValueError(f"target shape {t.shape} differs from input shape {x.shape}")
        losses, dLdx = self._fwd_bwd(x, t)
        self._dLdx, self._shape, self._n = dLdx, losses.shape, losses.size
        return self._reduce(losses, losses.size)

    def backward(self, dLdloss=None):
        return self._dLdx * self._scale(dLdloss, self._n)


class MSELoss(_ElementwiseLoss):
    """``l = (x - t)^2``; ``dl/dx = 2 (x - t)`` (``torch.nn.MSELoss``)."""

    def _fwd_bwd(self, x, t):
        d = x - t
        return d * d, 2 * d


class L1Loss(_ElementwiseLoss):
    """``l = |x - t|``; ``dl/dx = sign(x - t)``, 0 where ``x == t`` (``torch.nn.L1Loss``)."""

    def _fwd_bwd(self, x, t):
        d = x - t
        return np.abs(d), np.sign(d)


class SmoothL1Loss(_ElementwiseLoss):
    """Huber-like loss (``torch.nn.SmoothL1Loss``): with ``d = x - t``,
    ``l = 0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``;
    ``dl/dx = d / beta`` where ``|d| < beta``, else ``sign(d)``. ``beta = 0`` is the L1 loss.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        beta: where the loss changes from quadratic to linear. Default: 1.0
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.beta = float(beta)

    def _fwd_bwd(self, x, t):
        d = x - t
        a = np.abs(d)
        if self.beta == 0:
            return a, np.sign(d)
        small = a < self.beta
        losses = np.where(small, 0.5 * d * d / self.beta, a - 0.5 * self.beta)
        return losses, np.where(small, d / self.beta, np.sign(d))

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, beta={self.beta}"


class BCELoss(_ElementwiseLoss):
    """Binary cross-entropy on probabilities (``torch.nn.BCELoss``):
    ``l = -w (t log x + (1 - t) log(1 - x))``, each log clamped to ``>= -100`` as torch does;
    ``dl/dx = w (x - t) / max(x (1 - x), 1e-12)`` (torch's backward).

    Args:
        weight: a rescaling weight broadcast against the input. Default: None
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    def __init__(self, weight=None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = None if weight is None else np.asarray(weight)

    def _fwd_bwd(self, x, t):
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError("all elements of input should be between 0 and 1")
        with np.errstate(divide="ignore"):
            log_x = np.maximum(np.log(x), -100)
            log_1mx = np.maximum(np.log(1 - x), -100)
        losses = -(t * log_x + (1 - t) * log_1mx)
        dLdx = (x - t) / np.maximum((1 - x) * x, 1e-12)
        if self.weight is not None:
            losses = losses * self.weight
            dLdx = dLdx * self.weight
        return losses, dLdx


# ----------------------------------------------------------------------------------------------
# explicit L2 regularization (the course's form)
# ----------------------------------------------------------------------------------------------


class L2Penalty:
    """The course's L2 term, ``lambda / (2 m) * sum_l ||W_l||_F^2``, added to the cost.

    ``backward()`` adds its gradient ``lambda / m * W`` to each ``W.grad``. Plain SGD on
    ``cost + penalty`` gives the same update as ``SGD(weight_decay=lambda / m)`` on the same
    weights (torch adds ``weight_decay * W`` to the gradient); biases are usually left out.

    Args:
        params: the ``Parameter``\\ s to penalize (e.g. the weights, not the biases).
        lambd: the regularization strength ``lambda``.
        m: the number of training examples the cost is averaged over.

    Examples::

        >>> from droplab.scratch import Linear
        >>> layer = Linear(3, 2, rng=0)
        >>> pen = L2Penalty([layer.weight], lambd=0.7, m=10)
        >>> cost = pen()          # added to the data loss
        >>> pen.backward()        # after the model's backward, before the optimizer step
    """

    def __init__(self, params, lambd: float, m: int) -> None:
        self.params = list(params)
        self.lambd, self.m = float(lambd), int(m)

    def __call__(self) -> float:
        return self.lambd / (2 * self.m) * sum(float((p.data * p.data).sum()) for p in self.params)

    def backward(self) -> None:
        for p in self.params:
            p.grad += (self.lambd / self.m) * p.data
