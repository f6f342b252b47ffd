"""Sweep throughput: trials per minute with ``--workers 2`` vs ``--workers 1`` on the same grid.

Each configuration runs the same small grid in a fresh results folder, through ``droplab sweep``
itself (process pool start, per-worker data load and all), and the script prints trials per
minute and the ratio. ``--workers 1`` trains with all the cores' threads (cores // workers), so
the ratio is what splitting the cores between trials buys over giving them all to one trial.

    python benchmarks/sweep_workers.py                 # the real trainer, a 8-trial grid
    python benchmarks/sweep_workers.py --epochs 2 --subset 1000 --repeat 2

Target (issue 10): >= 1.6x with 2 workers on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

from droplab._timer import Stopwatch


def run_sweep(out: Path, workers: int, args) -> tuple[float, int]:
    from droplab.__main__ import main

    argv = [
        "sweep",
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--no-report",
        "--grid",
        f"dropout={args.grid}",
        "--set",
        f"subset={args.subset}",
        "--set",
        f"epochs={args.epochs}",
        "--seeds",
        str(args.seeds),
    ]
    with contextlib.redirect_stdout(io.StringIO()) as log:
        watch = Stopwatch()
        rc = main(argv)
        wall = watch.seconds()
    if rc != 0:
        sys.exit(f"sweep failed (exit {rc}):\n{log.getvalue()}")
    from droplab.studies.sweep.store import Store

    with Store(out / "sweep.db") as store:
        return wall, store.counts()["done"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="0,0.1,...,0.7", help="dropout values (default 8)")
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (best is kept)")
    args = parser.parse_args()

    from droplab.studies.sweep.executors import default_workers

    cores = default_workers()
    print(
        f"{cores} cores; grid dropout={args.grid}, subset={args.subset}, "
        f"epochs={args.epochs}, seeds={args.seeds}"
    )
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            best = 0.0
            for r in range(args.repeat):
                wall, n = run_sweep(Path(tmp) / f"w{workers}-{r}", workers, args)
                best = max(best, 60 * n / wall)
                print(
                    f"  --workers {workers} ({max(1, cores // workers)} threads each): "
                    f"{n} trials in {wall:.1f} s = {60 * n / wall:.1f} trials/min"
                )
            rates[workers] = best
    ratio = rates[2] / rates[1]
    print(
        f"trials/min: workers=1 {rates[1]:.1f}, workers=2 {rates[2]:.1f}; "
        f"ratio {ratio:.2f}x (target >= 1.6x on 2 cores)"
    )


if __name__ == "__main__":
    main()
