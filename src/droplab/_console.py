"""The ``rich`` console every command prints through.

In a terminal it is as wide as the terminal. Piped to a file or another program, rich would
assume 80 columns and hard-wrap every longer line and table header; there the console is wide
(``PIPED_WIDTH``, or ``$COLUMNS`` when set) and lines are never broken, so a log reads as the
terminal showed it and ``grep`` finds whole lines.
"""

from __future__ import annotations

import os

PIPED_WIDTH = 200


def console(*, stderr: bool = False):
    """A ``rich.console.Console`` for the command's output (stdout, or stderr)."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if out.is_terminal:
        return out
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else PIPED_WIDTH
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=True)
