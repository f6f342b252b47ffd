"""Argument checks shared by every engine: one error text from the function, the module, the
kernel and the NumPy engine.

Imports neither torch nor NumPy, because ``droplab.scratch`` must not load torch; a torch tensor
is recognized by its methods (``numel``, ``item``), not by its class.
"""

from __future__ import annotations

import math
import numbers

MODES = ("inverted", "classic")
MAX_SEED = 2**64 - 1  # seeds are the uint64 keys of the counter-based RNG


def check_p(p, name: str = "p", *, upper_open: bool = False) -> float:
    """Validate a probability: a real number in ``[0, 1]`` (``[0, 1)`` with ``upper_open``).

    Accepts Python/NumPy reals and one-element tensors; rejects ``bool``, strings, NaN and
    multi-element tensors, naming the argument and the accepted range.

    Examples::

        >>> check_p(0.25)
        0.25
        >>> check_p(1.0, upper_open=True)
        Traceback (most recent call last):
        ...
        ValueError: p must be a real number in [0, 1), got 1.0
    """
    accepted = "[0, 1)" if upper_open else "[0, 1]"
    if callable(getattr(p, "numel", None)) and callable(getattr(p, "item", None)):  # a tensor
        dtype = str(getattr(p, "dtype", None))
        if p.numel() != 1 or dtype.endswith("bool") or "complex" in dtype:
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


def check_seed(seed, name: str = "seed") -> int:
    """Validate a seed: an integer in ``[0, 2**64 - 1]``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name} must be an int in [0, 2**64 - 1], got {type(seed).__name__} {seed!r}"
        )
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an int in [0, 2**64 - 1], got {seed}")
    return seed


def check_mask_p(p) -> float:
    """Validate the ``p`` of ``dropout_mask``: a real number in ``[0, 1]``, else a ValueError."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or math.isnan(p) or not 0 <= p <= 1:
        raise ValueError(f"p must be a real number in [0, 1], got {p!r}")
    return p
