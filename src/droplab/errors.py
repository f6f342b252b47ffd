"""droplab's error kinds, at the bottom of the import order so that every layer may raise them.

``UsageError`` (bad input a user gave: an option, a grid, a file's contents asked for) maps to
exit status 2 on the command line; ``DroplabError`` (anything else that went wrong in a way we
can explain in one line: missing data, an unwritable folder, a damaged file) to exit status 1.
Both print one line. Library functions raise ``ValueError``/``TypeError`` for bad arguments, as
torch does; the command line maps those to exit status 1 as well.
"""

from __future__ import annotations


class DroplabError(RuntimeError):
    """A failure the CLI reports in one line with exit status 1."""


class UsageError(ValueError):
    """Bad command-line input: the CLI reports it in one line with exit status 2."""


class ConfigError(ValueError):
    """A config field holds a value it does not accept: ``field`` names it, ``reason`` says what
    is wrong (``str(e)`` is ``f"{field} {reason}"``), so that a front end can name the field its
    own way (the command line: ``--field-name``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field, self.reason = field, reason
