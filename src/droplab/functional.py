"""Dropout, functional: the math of every dropout family, each a function taking ``training``.

Inverted dropout (the default, what ``torch.nn.functional.dropout`` computes)::

    train: y = x * m / (1 - p)      eval: y = x          m ~ Bernoulli(1 - p), i.i.d.

Classic dropout (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting", JMLR 15)::

    train: y = x * m                eval: y = x * (1 - p)

``keep_prob = 1 - p`` is the parametrization of Andrew Ng's course; give one or the other.
Both forms have ``E[y_train] = y_eval``: scale once, either in training or at eval, never both.

Argument checks live here (``check_p`` and friends) so that the function, the module, the kernel
and the NumPy engine raise the same text.
"""

from __future__ import annotations

import math
import numbers

import torch

MODES = ("inverted", "classic")
BACKENDS = ("auto", "torch", "fast")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------------------------
# argument checks shared by every dropout family
# ----------------------------------------------------------------------------------------------


def check_p(p, name: str = "p", *, upper_open: bool = False) -> float:
    """Validate a probability: a real number in ``[0, 1]`` (``[0, 1)`` with ``upper_open``).

    Accepts Python/NumPy reals and one-element tensors; rejects ``bool``, strings, NaN and
    multi-element tensors, naming the argument and the accepted range.
    """
    accepted = "[0, 1)" if upper_open else "[0, 1]"
    if isinstance(p, torch.Tensor):
        if p.numel() != 1 or p.dtype == torch.bool or p.is_complex():
            raise TypeError(
                f"{name} must be a real number in {accepted}, got a tensor of shape "
                f"{tuple(p.shape)} and dtype {p.dtype}"
            )
        p = p.item()
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a real number in {accepted}, got {type(p).__name__} {p!r}")
    p = float(p)
    if math.isnan(p) or p < 0 or p > 1 or (upper_open and p == 1):
        raise ValueError(f"{name} must be a real number in {accepted}, got {p!r}")
    return p


def resolve_p(p=None, keep_prob=None, *, default: float = 0.5) -> float:
    """The drop probability from ``p`` or ``keep_prob = 1 - p`` (giving both is a TypeError)."""
    if p is not None and keep_prob is not None:
        raise TypeError(
            f"give p (drop probability) or keep_prob (= 1 - p), not both; got p={p!r}, "
            f"keep_prob={keep_prob!r}"
        )
    if keep_prob is not None:
        return 1.0 - check_p(keep_prob, "keep_prob")
    return check_p(default if p is None else p, "p")


def check_mode(mode) -> str:
    """Validate ``mode``: one of ``MODES``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    return mode


def check_backend(backend) -> str:
    """Validate ``backend``: one of ``BACKENDS``."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}"
        )
    return backend


def check_input(x, name: str = "input") -> torch.Tensor:
    """Validate a dropout input: a floating-point tensor (float16, bfloat16, float32, float64)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {x.dtype}"
        )
    return x


# ----------------------------------------------------------------------------------------------
# dropout (inverted / classic)
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# variants
# ----------------------------------------------------------------------------------------------
