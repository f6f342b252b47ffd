"""What the command modules share: argument types with their accepted ranges, and the options
that several commands define alike (spelled once here).

The argument types raise ``argparse.ArgumentTypeError`` with the accepted range, which the
parser turns into ``droplab CMD: error: argument --flag: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _number(text: str, kind):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_range(lo: int | None = None, hi: int | None = None):
    """An argparse type: an int in ``[lo, hi]`` (either end may be open)."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer in {_range(lo, hi)}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_range(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
):
    """An argparse type: a float in ``[lo, hi]`` (open at an end with ``lo_open``/``hi_open``)."""

    def parse(text: str) -> float:
        value = _number(text, float)
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
        if bad_lo or bad_hi:
            raise argparse.ArgumentTypeError(
                f"must be a number in {_range(lo, hi, lo_open, hi_open)}, got {text}"
            )
        return value

    parse.__name__ = "float"
    return parse


def list_of(item_type, *, min_len: int = 1, seps: str = ","):
    """An argparse type: a list of ``item_type`` values separated by any of ``seps``."""

    def parse(text: str) -> list:
        for sep in seps[1:]:
            text = text.replace(sep, seps[0])
        parts = [s.strip() for s in text.split(seps[0]) if s.strip()]
        if len(parts) < min_len:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [item_type(s) for s in parts]

    parse.__name__ = "list"
    return parse


def _range(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


probability = float_range(0.0, 1.0)
positive_int = int_range(1)
positive_float = float_range(0.0, None, lo_open=True)


# -- options that several commands share, spelled once; ``parser`` may be an argument group ----


def flag(name: str) -> str:
    """The command-line flag of a config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def config_argument(parser, name: str, help: str | None = None, default_text: str | None = None):
    """``--name`` for the ``TrainConfig`` field ``name``, from the field's ``option``
    (``droplab._fields``): its type and accepted range, choices, default, metavar, and help
    (``help`` replaces the field's text; ``(default: ...)`` follows it)."""
    import dataclasses

    from droplab.train import TrainConfig

    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    meta, cli = f.metadata, f.metadata["cli"]
    text = (help or meta["help"]) + cli.get("help_suffix", "")
    if meta["range"] is None and meta["choices"] is None:  # a flag, off by default
        parser.add_argument(flag(name), action="store_true", help=text)
        return
    shown = default_text or cli.get("default_text") or _shown(f.default)
    kw = {
        "default": list(f.default) if isinstance(f.default, tuple) else f.default,
        "help": f"{text} (default: {shown})",
    }
    if meta["choices"] is not None:
        kw["choices"] = meta["choices"]
    else:
        kw["type"] = _config_type(meta)
    if "metavar" in cli:
        kw["metavar"] = cli["metavar"]
    parser.add_argument(flag(name), **kw)


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _config_type(meta: dict):
    """The argparse type of a field: its range, as a list for a tuple field."""
    r = meta["range"]
    if r.kind is int:
        one = int_range(r.lo, r.hi)
    else:
        one = float_range(r.lo, r.hi, lo_open=r.lo_open, hi_open=r.hi_open)
    if meta["items"] is None:
        return one
    return list_of(one, min_len=max(1, meta["items"]), seps=meta["cli"].get("seps", ","))


def add_engine(parser) -> None:
    """``--engine torch|scratch``: which engine trains the MLP."""
    config_argument(parser, "engine")


def add_mlp(parser, *, hidden: str, dropout: str) -> None:
    """``--hidden N,N`` and ``--dropout P,P``: the MLP's hidden widths and per-layer drop rates
    (one rate means every hidden layer). ``hidden`` and ``dropout`` are their help texts."""
    config_argument(parser, "hidden", hidden)
    config_argument(parser, "dropout", dropout)


def add_seed(parser, help: str | None = None) -> None:
    """``--seed``: an int in ``[0, 2**63 - 1]`` (``TrainConfig``'s range), default 0."""
    config_argument(parser, "seed", help)


def add_threads(parser) -> None:
    """``--threads``: torch's threads; the default is ``droplab._threads.DEFAULT_THREADS``."""
    from droplab._threads import DEFAULT_THREADS, max_threads

    parser.add_argument(
        "--threads",
        type=int_range(1, max_threads()),
        default=DEFAULT_THREADS,
        help=f"torch threads (default: {DEFAULT_THREADS}: a second thread gains little on the "
        "small MLP and collapses on a busy machine; see README, Threads)",
    )


def add_quiet(parser) -> None:
    """``--quiet`` (alias ``--no-progress``): no progress bars or per-epoch lines."""
    parser.add_argument(
        "--quiet", "--no-progress", dest="quiet", action="store_true",
        help="no progress bars or per-epoch lines",
    )  # fmt: skip


def add_subset(parser, help: str, default_text: str | None = None) -> None:
    """``--subset N``: train on the first N training examples."""
    config_argument(parser, "subset", help, default_text)


def add_out(parser, default: str, help: str) -> None:
    """``--out DIR``: the output folder, a ``Path``; ``help`` is followed by the default."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(default),
        metavar="DIR",
        help=f"{help} (default: ./{default})",
    )
