"""Argument checks of the NumPy engine, with the same text as ``droplab.functional``.

``droplab.functional`` imports torch, which this package must not; these twins repeat its
messages word for word (a test holds them together) so that both engines fail alike.
"""

from __future__ import annotations

import math
import numbers

MODES = ("inverted", "classic")


def check_p(p, name: str = "p", *, upper_open: bool = False) -> float:
    """Validate a probability: a real number in ``[0, 1]`` (``[0, 1)`` with ``upper_open``)."""
    accepted = "[0, 1)" if upper_open else "[0, 1]"
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


def check_reduction(reduction) -> str:
    """Validate a loss reduction: ``"mean"``, ``"sum"`` or ``"none"`` (torch's names)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction
