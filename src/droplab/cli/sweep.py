"""Sweep training options (dropout rate, weight decay, training-set size, ...) over seeds.

Every trial is one `droplab train` config; the results go to DIR/sweep.db (SQLite), and the
report to DIR/report.html. Running the same command again resumes: finished trials are skipped,
failed ones are retried with --retry-failed, and adding a grid value runs only the new trials.

examples:
  droplab sweep --grid dropout=0,0.1,...,0.9 --set subset=1000 --set epochs=30 --seeds 3 --out runs/s
  droplab sweep --grid dropout=0,0.5 --grid weight_decay=0,1e-4,1e-3 --out runs/l2
  droplab sweep --file sweep.toml --executor ray --address auto --out runs/cluster

values: `a,b,c` lists values; `0,0.1,...,0.9` fills in an arithmetic progression; `0.2:0.5` is
one value per hidden layer (a single dropout rate applies to every hidden layer). A TOML file
has a [grid] table (key = [values]) and a [fixed] table (key = value), and may set `seeds`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import time
from pathlib import Path

from droplab.cli.options import add_out, int_range, positive_int
from droplab.errors import DroplabError, UsageError
from droplab.studies.sweep.driver import Outcome, drive
from droplab.studies.sweep.plan import _default_config_class, build_spec, describe, plan

DEFAULT_OUT = "droplab-runs/sweep"
TRAINER_ENV = "DROPLAB_SWEEP_TRAINER"  # for tests: a "module:function" fake trainer


# -- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to sweep")
    what.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2,...",
        help="sweep a train option over values (repeatable; the grid is the "
        "product of all of them)",
    )
    what.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="fix a train option for every trial (repeatable), e.g. epochs=20",
    )
    what.add_argument(
        "--seeds",
        type=positive_int,
        metavar="N",
        help="run every grid point with seeds 0..N-1 (default: 1)",
    )
    what.add_argument(
        "--file",
        metavar="SWEEP.toml",
        help="a sweep file with [grid] and [fixed] tables (and `seeds = N`)",
    )
    where = parser.add_argument_group("where it runs")
    add_out(where, DEFAULT_OUT, "results folder: DIR/sweep.db, DIR/report.html")
    where.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local process pool (default) or Ray tasks",
    )
    where.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="trials in parallel (local default: the number of cores; ray "
        "default: the cluster's CPUs // threads)",
    )
    where.add_argument(
        "--threads",
        type=positive_int,
        metavar="T",
        help="torch threads per trial (local default: cores // workers; ray "
        "default: 1). Results depend on it: keep it fixed to compare runs",
    )
    where.add_argument(
        "--address",
        metavar="auto|HOST:PORT",
        help="with --executor ray: join this Ray cluster (default: start a private local Ray)",
    )
    runs = parser.add_argument_group("what to run")
    runs.add_argument(
        "--retry-failed",
        action="store_true",
        help="run failed trials again (they are skipped otherwise)",
    )
    runs.add_argument(
        "--dry-run", action="store_true", help="print the plan (trials, how many are done) and exit"
    )
    runs.add_argument("--no-report", action="store_true", help="do not write DIR/report.html")
    runs.add_argument("--limit", type=int_range(1), metavar="N", help=argparse.SUPPRESS)
    # For tests and benchmarks: a "module:function" trainer taking a config dict and returning
    # {"epochs": [...], "seconds": s}; configs are then not checked against TrainConfig.
    runs.add_argument("--trainer", default=os.environ.get(TRAINER_ENV), help=argparse.SUPPRESS)


def run(args) -> int:
    from rich.console import Console

    from droplab.studies.sweep import executors
    from droplab.studies.sweep.store import Store

    console = Console(highlight=False, soft_wrap=True)
    spec = build_spec(args.file, args.grid, args.set, args.seeds)
    if args.address and args.executor != "ray":
        raise UsageError("--address needs --executor ray")
    trainer = args.trainer or executors.DEFAULT_TRAINER
    if args.trainer:
        try:
            executors.resolve_trainer(trainer)  # fail here, once, not in every worker
        except (ImportError, AttributeError, ValueError) as e:
            raise UsageError(f"--trainer {trainer}: {e}") from None
        trials = plan(spec)
    else:
        trials = plan(spec, _default_config_class())
    if args.limit:
        trials = trials[: args.limit]
    if not trials:
        raise UsageError("the sweep has no trials")
    keys = [*spec.grid, "seed"]

    cores = executors.default_workers()
    if args.executor == "local":
        workers = args.workers or cores
        threads = args.threads or max(1, cores // workers)
    else:
        workers = args.workers
        threads = args.threads or 1

    from droplab.provenance import provenance

    out = Path(args.out)
    if args.dry_run:  # the plan only: the folder is left untouched (not even created)
        return _dry_run(out, trials, spec, keys, console)
    try:
        store = Store(out / "sweep.db")
    except (OSError, sqlite3.Error) as e:
        raise DroplabError(f"cannot open {out / 'sweep.db'}: {e}") from None
    with store:
        added = store.add(trials)
        reset = store.reset_running()
        store.set_meta("grid_keys", list(spec.grid))
        store.set_meta("provenance", provenance(threads=threads))
        counts = store.counts(tid for tid, _ in trials)
        todo = counts["pending"] + (counts["failed"] if args.retry_failed else 0)
        console.print(
            _plan_line(trials, spec, counts, todo)
            + f"; {added} new"
            + (f"; {reset} left running by an earlier driver, now pending" if reset else "")
        )
        outcome = Outcome()
        if todo:
            if args.executor == "local":
                executor = executors.LocalExecutor(trainer, workers=workers, threads=threads)
            else:
                executor = executors.RayExecutor(
                    trainer, workers=workers, threads=threads, address=args.address
                )
            console.print(f"running on {executor.describe()}; results in {out / 'sweep.db'}")
            previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
            started = time.time()
            try:
                outcome = drive(
                    store,
                    trials,
                    executor,
                    threads=threads,
                    retry_failed=args.retry_failed,
                    keys=keys,
                    console=console,
                )
            finally:
                signal.signal(signal.SIGTERM, previous)
                executor.close()
            elapsed = time.time() - started
            if outcome.ran:
                console.print(
                    f"ran {outcome.ran} trials in {elapsed:.1f} s "
                    f"({60 * outcome.ran / max(elapsed, 1e-9):.1f} trials/min)"
                )
        counts = store.counts(tid for tid, _ in trials)
    if outcome.interrupted:
        console.print(
            f"interrupted: {counts['done']} done, trials in flight back to pending; "
            "run the same command to resume"
        )
        return 130
    console.print(f"{counts['done']} done, {counts['failed']} failed of {len(trials)}")
    if counts["failed"]:
        console.print("failed trials are kept with their errors; rerun with --retry-failed")
    if not args.no_report:
        try:
            from droplab.report.sweep import build

            path = build(out)
            _print_best(console, out)
            console.print(f"results: {out / 'results.csv'}")
            console.print(f"report: {path}")
        except ImportError as e:
            console.print(f"no report ({e}); pip install 'droplab[report]'")
    return 1 if counts["failed"] else 0


def _plan_line(trials, spec, counts: dict, todo: int) -> str:
    grid = ", ".join(f"{k} x{len(v)}" for k, v in spec.grid.items())
    return (
        f"sweep: {len(trials)} trials ({grid}{', ' if spec.grid else ''}{len(spec.seeds)} "
        f"seed(s)); {counts['done']} done, {counts['failed']} failed, {todo} to run"
    )


def _dry_run(out: Path, trials, spec, keys, console) -> int:
    """Print the plan, reading (never creating) OUT/sweep.db."""
    from droplab.studies.sweep.store import Store

    counts = {"done": 0, "failed": 0, "pending": len(trials)}
    if (out / "sweep.db").exists():
        with Store(out / "sweep.db", readonly=True) as store:
            counts = store.counts(tid for tid, _ in trials)
        counts["pending"] = len(trials) - counts["done"] - counts["failed"]
    console.print(_plan_line(trials, spec, counts, counts["pending"]) + " (dry run)")
    for tid, config in trials:
        console.print(f"  {tid}  {describe(config, keys)}")
    return 0


def _print_best(console, out: Path, top: int = 5) -> None:
    """The best settings, mean +- std of the final test accuracy over seeds."""
    from rich.table import Table

    from droplab.report.sweep import best_of_store

    keys, best = best_of_store(out)
    if not best:
        return
    table = Table(title=f"best settings (top {min(top, len(best))} by mean test accuracy)",
                  title_justify="left")  # fmt: skip
    for name in (*keys, "test acc", "gap", "seeds"):
        table.add_column(name, justify="right")
    for r in best[:top]:
        table.add_row(
            *(str(_show_value(r["setting"][k])) for k in keys),
            f"{r['test_acc']:.4f} ± {r['test_acc_std']:.4f}",
            f"{r['gap']:+.4f}",
            str(r["seeds"]),
        )
    console.print(table)


def _show_value(v):
    return f"{v:g}" if isinstance(v, float) else v


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt
