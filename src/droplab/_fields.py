"""Dataclass fields that carry their own help, choices and accepted range.

A config field is declared once, with everything a front end needs to know about it::

    momentum: float = option(0.9, "momentum of optimizer='momentum'", Range(0.0, 1.0, hi_open=True))

``check(config)`` validates every such field of a dataclass (a ``ConfigError`` naming the field
and what it accepts), and the command line builds its options from the same metadata
(``droplab.cli.train.add_config_arguments``), so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from droplab.errors import ConfigError

__all__ = ["Range", "accepted", "check", "option"]


@dataclass(frozen=True)
class Range:
    """The numbers ``[lo, hi]`` (``None``: unbounded; open at an end with ``lo_open``/``hi_open``)
    of ``kind`` ``int`` or ``float``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    kind: type = float

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self, plural: bool = False) -> str:
        """``a number in [0, 1)``, ``an integer >= 1``, ``numbers in (0, inf)``..."""
        if self.kind is int:
            noun = "integers" if plural else "an integer"
            if self.hi is None:
                return f"{noun} >= {self.lo}"
            return f"{noun} in [{self.lo}, {_int_text(self.hi)}]"
        return f"{'numbers' if plural else 'a number'} in {self.interval()}"

    def interval(self) -> str:
        """``[0, 1)``, ``(0, inf)``: the range of a float."""
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open or self.hi is None else "]"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{left}{lo}, {hi}{right}"


def _int_text(n: int) -> str:
    # 2**63 - 1 reads better than 9223372036854775807
    return f"2**{(n + 1).bit_length() - 1} - 1" if n > 2**32 and (n + 1) & n == 0 else str(n)


def option(
    default,
    help: str,
    range: Range | None = None,
    *,
    choices: tuple | None = None,
    items: int | None = None,
    exact: bool = False,
    increasing: bool = False,
    optional: bool = False,
    note: str = "",
    **cli,
):
    """A dataclass field with its metadata: ``help`` (``{range}`` in it: the range, ``[0, 1)``);
    ``range`` of a number (of each item of a
    tuple with ``items`` = the least length; ``exact``: exactly that many; ``increasing``:
    strictly); ``choices`` of a string; ``optional``: ``None`` is accepted; ``note``: said after
    the accepted values in an error. ``cli``: how the command line shows it (``metavar``,
    ``seps`` of a list, ``default_text``)."""
    if range is not None:
        help = help.replace("{range}", range.interval())
    meta = dict(help=help, range=range, choices=choices, items=items, exact=exact,
                increasing=increasing, optional=optional, note=note, cli=cli)  # fmt: skip
    return dataclasses.field(default=default, metadata=meta)


def accepted(meta: dict) -> str:
    """What a field accepts, in words: ``a number in [0, 1)``, ``two numbers in [0, 1)``..."""
    if meta["choices"] is not None:
        return "one of " + ", ".join(map(repr, meta["choices"]))
    if meta["range"] is None:  # a flag
        return "true or false"
    if meta["items"] is None:
        text = meta["range"].describe()
    elif meta["exact"]:
        text = f"{_COUNTS.get(meta['items'], meta['items'])} {meta['range'].describe(True)}"
    else:
        adjectives = ("non-empty " if meta["items"] else "") + (
            "increasing " if meta["increasing"] else ""
        )
        text = f"a {adjectives}list of {meta['range'].describe(True)}"
    return ("None or " if meta["optional"] else "") + text + meta["note"]


_COUNTS = {2: "two", 3: "three"}


def _accepts(meta: dict, value) -> bool:
    if value is None:
        return meta["optional"]
    if meta["choices"] is not None:
        return value in meta["choices"]
    if meta["range"] is None:
        return isinstance(value, bool)
    if meta["items"] is None:
        return value in meta["range"]
    if not isinstance(value, tuple) or len(value) < meta["items"]:
        return False
    if meta["exact"] and len(value) != meta["items"]:
        return False
    if meta["increasing"] and any(a >= b for a, b in zip(value, value[1:])):
        return False
    return all(v in meta["range"] for v in value)


def check(config) -> None:
    """``ConfigError`` (a ``ValueError``) on the first field of the dataclass ``config`` that
    holds a value its ``option`` does not accept."""
    for f in dataclasses.fields(config):
        if "help" not in f.metadata:
            continue
        value = getattr(config, f.name)
        if not _accepts(f.metadata, value):
            raise ConfigError(f.name, f"must be {accepted(f.metadata)}, got {value!r}")
