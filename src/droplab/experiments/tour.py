"""Run every example of the tutorials, print the values from PyTorch and from droplab's NumPy
engine side by side, and check each against its oracle: PASS or FAIL, a summary table at the end.

Sections (by number or name; all of them by default):
  1 custom-dropout   the tutorial's CustomDropout scales twice; check_scaling flags it
  2 keep-prob        keep_prob walk-through: 0.525 -> 0.15 -> 0.3, and the mean over masks
  3 d2l-dropout      d2l's dropout(X, p) on arange(16).reshape(2, 8), p = 0, 0.5, 1
  4 losses           cross-entropy, BCE, L1, MSE, smooth L1 with the tutorial's tensors
  5 backprop         gradients of the 2-2-2 network: autograd, NumPy engine, by hand
  6 optimizers       SGD momentum, Adagrad, RMSprop, Adam on w^2/2 (plot: optimizers.png)
  7 lr-schedules     StepLR, MultiStepLR, ExponentialLR over 200 epochs (plot: lr_schedules.png)
  8 nn-dropout       nn.Dropout(p=0.4) after Linear(4, 5): the zeros and the 1/0.6 scale
  9 l2-vs-lr         L2 = weight decay, and why a smaller learning rate is not L2

Oracles: the tutorial's printed numbers where the math is exact; NumPy engine vs PyTorch to
1e-6 (float32) / 1e-12 (float64); statistics within 6 binomial standard errors.
Exit status: 0 when every check passes, 1 when any fails.
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

from droplab.experiments.tour_sections import SECTIONS, Check, Section, find_section


def _section(text: str) -> Section:
    try:
        return find_section(text)
    except KeyError:
        names = ", ".join(f"{s.number}/{s.key}" for s in SECTIONS)
        raise argparse.ArgumentTypeError(
            f"unknown section {text!r} (choose from {names})"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sections",
        nargs="*",
        type=_section,
        metavar="SECTION",
        help="sections to run, by number (6) or name (optimizers); default: all",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="write the plots (optimizer trajectories, LR schedules) as PNGs into DIR",
    )


def run_section(section: Section, plots: Path | None = None) -> tuple[list[Check], float]:
    """Run one section: its checks and the seconds it took (its imports not counted). An
    exception becomes a failed check, with the traceback on stderr, and the tour goes on."""
    import importlib

    try:
        module = importlib.import_module(f"droplab.experiments.tour_sections.{section.module}")
        start = time.perf_counter()
        return list(module.run(plots)), time.perf_counter() - start
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
        from droplab._cli import DroplabError

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


def run(args: argparse.Namespace) -> int:
    return run_sections(args.sections, args.plots)


def main(argv: list[str] | None = None) -> int:
    """``droplab tour`` without the ``droplab`` front end (the examples call this)."""
    from droplab.__main__ import main as droplab_main

    return droplab_main(["tour", *(argv or [])])
