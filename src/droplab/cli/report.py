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


def run(args: argparse.Namespace) -> int:
    from droplab.report import build_report

    print(f"report: {build_report(args.dir)}")
    return 0
