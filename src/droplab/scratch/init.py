"""Weight initializers of the NumPy engine (``torch.nn.init``'s formulas).

Each factory returns an initializer, a callable ``(shape, rng, dtype) -> ndarray`` for a weight
of shape ``(fan_out, fan_in)`` (torch's ``Linear`` layout), which ``Linear(init=...)`` accepts;
``Linear`` also accepts their names as strings:

======================  =================================================  =====================
name                    weight                                             bias
======================  =================================================  =====================
``"torch"`` (default)   ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: torch's     ``U(-1/sqrt(fan_in),
                        ``kaiming_uniform_(a=sqrt(5))``                     1/sqrt(fan_in))``
``"normal"``            ``N(0, std^2)``, ``std = 0.01`` (the d2l chapter)   zeros
``"kaiming_normal"``    ``N(0, 2 / fan_in)`` (He et al. 2015, for ReLU)     zeros
``"xavier_normal"``     ``N(0, 2 / (fan_in + fan_out))`` (Glorot 2010)      zeros
======================  =================================================  =====================

Examples::

    >>> from droplab.scratch import Linear
    >>> layer = Linear(784, 256, init=normal(std=0.01), rng=0)
    >>> round(float(layer.weight.data.std()), 2)
    0.01
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[tuple, np.random.Generator, np.dtype], np.ndarray]


def _fans(shape) -> tuple[int, int]:
    fan_out, fan_in = shape[0], (math.prod(shape[1:]) if len(shape) > 1 else 1)
    return fan_in, fan_out


def torch_default() -> Initializer:
    """torch's ``Linear`` default: ``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(+-1/sqrt(fan_in))``."""

    def init(shape, rng, dtype):
        fan_in, _ = _fans(shape)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        return rng.uniform(-bound, bound, size=shape).astype(dtype)

    init.bias = "torch"
    return init


def normal(std: float = 0.01, mean: float = 0.0) -> Initializer:
    """``N(mean, std^2)`` weights (``torch.nn.init.normal_``); biases start at zero."""

    def init(shape, rng, dtype):
        return rng.normal(mean, std, size=shape).astype(dtype)

    init.bias = "zeros"
    return init


def kaiming_normal(gain: float = math.sqrt(2.0)) -> Initializer:
    """He initialization, ``N(0, gain^2 / fan_in)`` (``kaiming_normal_``, ReLU gain sqrt(2))."""

    def init(shape, rng, dtype):
        fan_in, _ = _fans(shape)
        return rng.normal(0.0, gain / math.sqrt(fan_in), size=shape).astype(dtype)

    init.bias = "zeros"
    return init


def xavier_normal(gain: float = 1.0) -> Initializer:
    """Glorot initialization, ``N(0, gain^2 * 2 / (fan_in + fan_out))`` (``xavier_normal_``)."""

    def init(shape, rng, dtype):
        fan_in, fan_out = _fans(shape)
        return rng.normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), size=shape).astype(dtype)

    init.bias = "zeros"
    return init


INITIALIZERS = {
    "torch": torch_default,
    "normal": normal,
    "kaiming_normal": kaiming_normal,
    "xavier_normal": xavier_normal,
}


def get(init) -> Initializer:
    """An initializer from its name or itself (any callable ``(shape, rng, dtype)``)."""
    if isinstance(init, str):
        if init not in INITIALIZERS:
            raise ValueError(
                f"init must be one of {', '.join(map(repr, INITIALIZERS))} or a callable, "
                f"got {init!r}"
            )
        return INITIALIZERS[init]()
    if not callable(init):
        raise TypeError(f"init must be a name or a callable, got {type(init).__name__}")
    return init
