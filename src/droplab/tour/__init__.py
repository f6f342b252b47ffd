"""The tour: every example of the tutorials, run and checked (the sections live in
``droplab.tour.sections``, one module each; this module runs them and prints the summary).

``droplab tour`` (``droplab.cli.tour``) parses the command line and calls ``run_sections``.
"""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

from droplab._timer import Stopwatch
from droplab.errors import DroplabError
from droplab.tour.sections import SECTIONS, Check, Section, find_section


def run_section(section: Section, plots: Path | None = None) -> tuple[list[Check], float]:
    """Run one section: its checks and the seconds it took (its imports not counted). An
    exception becomes a failed check, with the traceback on stderr, and the tour goes on."""
    try:
        module = importlib.import_module(f"droplab.tour.sections.{section.module}")
        watch = Stopwatch()
        return list(module.run(plots)), watch.seconds()
    except Exception as e:  # a broken section is a FAIL, not a crash
        traceback.print_exc()
        return [Check("the section ran to the end", False, f"{type(e).__name__}: {e}")], 0.0


def run_sections(sections, plots: Path | None = None) -> int:
    """Run ``sections`` (``Section`` objects, numbers or names), print a summary table; the exit
    status: 0 if every check passed, 1 otherwise."""
    from rich.console import Console
    from rich.table import Table

    sections = [s if isinstance(s, Section) else find_section(str(s)) for s in sections]
    if plots is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise DroplabError("--plots needs matplotlib: pip install 'droplab[report]'") from None
        plots.mkdir(parents=True, exist_ok=True)
    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal:  # a log or a pipe: wide enough for the table's rows
        console = Console(soft_wrap=True, highlight=False, width=110)
    results = []
    for section in sections or SECTIONS:
        console.rule(f"[bold]{section.number}. {section.title}")
        results.append((section, *run_section(section, plots)))

    table = Table(title="droplab tour: every tutorial example, checked")
    for name, justify in [("#", "right"), ("section", "left"), ("checks", "right"),
                          ("time", "right"), ("result", "left")]:  # fmt: skip
        table.add_column(name, justify=justify)
    for section, checks, seconds in results:
        passed = sum(c.passed for c in checks)
        ok = bool(checks) and passed == len(checks)
        table.add_row(
            str(section.number),
            f"{section.key}: {section.title}",
            f"{passed}/{len(checks)}",
            f"{seconds:.1f} s",
            "[green]PASS[/]" if ok else "[bold red]FAIL[/]",
        )
    console.print()
    console.print(table)
    failed = [s for s, checks, _ in results if not checks or not all(c.passed for c in checks)]
    total = sum(len(checks) for _, checks, _ in results)
    if failed:
        names = ", ".join(f"{s.number} ({s.key})" for s in failed)
        console.print(f"[bold red]FAIL[/]: {len(failed)} of {len(results)} section(s): {names}")
        for section, checks, _ in results:
            for c in checks:
                if not c.passed:
                    console.print(f"  {section.number}. {c.name}: {c.detail}", markup=False)
        return 1
    console.print(f"[green]PASS[/]: all {total} checks of {len(results)} section(s)")
    return 0
