"""(Re)build the HTML report of a run folder: a training run, the demo, a sweep or an MC study.

The kind of folder is told by what it holds: sweep.db (droplab sweep), mc.json (droplab mc),
demo.json (droplab demo) or metrics.json (droplab train). The report is DIR/report.html, one
self-contained file (plots embedded) that any browser opens without a server.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, metavar="DIR", help="a run, demo, sweep or mc folder")


def build_report(directory) -> Path:
    """Build the report of ``directory`` (dispatching on its contents); returns its path."""
    from droplab._cli import DroplabError

    d = Path(directory)
    if not d.is_dir():
        raise DroplabError(f"{d} is not a folder")
    if (d / "sweep.db").exists():
        from droplab.report.sweep import build

        return Path(build(d))
    if (d / "mc.json").exists():
        from droplab.report.mc import build

        return Path(build(d))
    from droplab.report.run import build_demo_report, build_run_report

    if (d / "demo.json").exists():
        return build_demo_report(d)
    if (d / "metrics.json").exists():
        return build_run_report(d)
    raise DroplabError(
        f"{d} holds nothing to report on (no metrics.json, demo.json, sweep.db or mc.json)"
    )


def run(args: argparse.Namespace) -> int:
    print(f"report: {build_report(args.dir)}")
    return 0
