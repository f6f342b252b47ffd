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


def progress_bar(out, label: str, counted: str, *, eta: str = "eta", tail: str = "", **kw):
    """A ``rich.progress.Progress`` on the console ``out``, the columns every command shows:
    ``label``, the bar, done/total, ``counted`` (what is counted, or a status), the elapsed
    time, the ETA (``eta`` its label) and ``tail``; ``kw`` goes to ``Progress``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(counted)]
    columns += [TimeElapsedColumn(), TextColumn(eta), TimeRemainingColumn()]
    if tail:
        columns.append(TextColumn(tail))
    return Progress(*columns, console=out, **kw)
