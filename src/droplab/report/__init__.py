"""Reports: one self-contained HTML page (plots embedded) per result folder.

``build_report(directory)`` tells the kind of folder by what it holds: sweep.db (droplab sweep),
mc.json (droplab mc), demo.json (droplab demo) or metrics.json (droplab train), and builds
DIR/report.html with the matching ``build*`` function of ``report.sweep``, ``report.mc`` or
``report.run``. Reports read results; nothing below them imports them.
"""

from __future__ import annotations

from pathlib import Path

from droplab.errors import DroplabError


def build_report(directory) -> Path:
    """Build the report of ``directory`` (dispatching on its contents); returns its path."""
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
