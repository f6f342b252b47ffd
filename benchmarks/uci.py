"""The UCI benchmark of Gal & Ghahramani (2016), five datasets, all 20 splits, against the
published numbers (the authors' 2018 grid-search re-run), with the wall time.

    python benchmarks/uci.py --data-dir /path/to/uci [--workers 2] [--out runs/uci]

Target: RMSE and test LL within one published standard error (or better) on Boston, Concrete,
Energy, Wine and Yacht, all five in under 20 minutes on 2 cores. Equivalent to
``droplab mc --uci boston,concrete,energy,wine,yacht --data-dir DIR --workers 2``.
"""

from __future__ import annotations

import argparse
import os

from droplab._timer import Stopwatch
from droplab.studies.uci import format_table, run_uci

DATASETS = ("boston", "concrete", "energy", "wine", "yacht")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--splits", type=int, default=None)
    ap.add_argument("--epochs-mult", type=int, default=100)
    ap.add_argument("--out", default=None, help="also write mc.json + mc.html here")
    args = ap.parse_args()
    watch = Stopwatch()
    summaries = []
    for name in args.datasets.split(","):
        s = run_uci(
            name,
            args.data_dir,
            splits=args.splits,
            epochs_mult=args.epochs_mult,
            workers=args.workers,
        )
        summaries.append(s)
        print(format_table([s]), flush=True)
    total = watch.seconds()
    print()
    print(format_table(summaries))
    print(
        f"\ntotal {total:.0f} s ({total / 60:.1f} min) with {args.workers} worker(s) on "
        f"{os.cpu_count()} cores"
    )
    if args.out:
        from droplab._io import merge_json
        from droplab.report.mc import build

        merge_json(
            __import__("pathlib").Path(args.out) / "mc.json",
            {"uci": {s["dataset"]: s for s in summaries}},
        )
        print(f"report: {build(args.out)}")


if __name__ == "__main__":
    main()
