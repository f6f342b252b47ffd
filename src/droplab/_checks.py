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


def _is_tensor(value) -> bool:
    # a torch tensor, recognized without importing torch
    return hasattr(value, "numel") and hasattr(value, "item") and hasattr(value, "dtype")


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
    if not isinstance(p, float) and _is_tensor(p):  # a float first: a compiler traces that
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
    if p != p or p < 0 or p > 1 or (upper_open and p == 1):  # p != p: NaN (traceable)
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


def check_seed(seed, name: str = "seed", *, tensor_ok: bool = False):
    """Validate a seed: an integer in ``[0, 2**64 - 1]``.

    With ``tensor_ok``, a 0-d int64 tensor is accepted as well (returned as it is): the int64
    with the bits of the uint64 seed, how a seed travels through a compiled graph.
    """
    if tensor_ok and not isinstance(seed, int) and _is_tensor(seed):
        if seed.dim() != 0 or str(seed.dtype) != "torch.int64":
            raise TypeError(
                f"{name} must be an int in [0, 2**64 - 1] or a 0-d int64 tensor, got a tensor "
                f"of shape {tuple(seed.shape)} and dtype {seed.dtype}"
            )
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name} must be an int in [0, 2**64 - 1], got {type(seed).__name__} {seed!r}"
        )
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an int in [0, 2**64 - 1], got {seed}")
    return seed


def check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """Validate a shape: one non-negative int, or a tuple or list of them (``torch.Size`` too).

    Examples::

        >>> check_shape((2, 3))
        (2, 3)
        >>> check_shape((2.7,))
        Traceback (most recent call last):
        ...
        TypeError: shape must be a non-negative int or a sequence of them, got (2.7,)
    """
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    if not isinstance(dims, (tuple, list)) or any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in dims
    ):
        raise TypeError(f"{name} must be a non-negative int or a sequence of them, got {shape!r}")
    if any(d < 0 for d in dims):
        raise ValueError(f"{name} must not have a negative size, got {tuple(dims)}")
    return tuple(int(d) for d in dims)


BACKENDS = ("auto", "torch", "fast")


def check_backend(backend) -> str:
    """Validate ``backend``: one of ``BACKENDS``."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}"
        )
    return backend


def check_input(x, name: str = "input"):
    """Validate a dropout input: a floating-point tensor (float16, bfloat16, float32, float64)."""
    if not (_is_tensor(x) and hasattr(x, "is_floating_point")):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {x.dtype}"
        )
    return x


def check_generator(generator):
    """Validate ``generator``: a ``torch.Generator`` (known by its methods) or ``None``."""
    if generator is not None and not (
        hasattr(generator, "manual_seed") and hasattr(generator, "initial_seed")
    ):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def check_bool(value, name: str) -> bool:
    """Validate a flag: exactly ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_pair(value, name: str) -> tuple[int, int]:
    """Validate a size: a positive int, or a pair of them (returned as a pair)."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in items
    ):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return int(items[0]), int(items[1])


def check_gamma_scale(gamma_scale) -> float:
    """Validate DropBlock's ``gamma_scale``: a positive, finite real number."""
    if (
        isinstance(gamma_scale, bool)
        or not isinstance(gamma_scale, numbers.Real)
        or not 0 < gamma_scale < math.inf  # NaN fails too
    ):
        raise ValueError(f"gamma_scale must be a positive real number, got {gamma_scale!r}")
    return float(gamma_scale)


def resolve_gaussian_p(p=None, keep_prob=None) -> float:
    """``resolve_p`` for Gaussian dropout: ``p`` in ``[0, 1)``, ``keep_prob`` in ``(0, 1]``."""
    if keep_prob is not None:
        if p is not None:
            resolve_p(p, keep_prob)  # raises: both given
        keep = check_p(keep_prob, "keep_prob")
        if keep == 0:
            raise ValueError(
                f"keep_prob must be a real number in (0, 1] for Gaussian dropout, got {keep!r}"
            )
        return 1.0 - keep
    return check_p(0.5 if p is None else p, "p", upper_open=True)


def check_step(step) -> int:
    """Validate a seeded module's step counter: a non-negative int."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return int(step)
