"""Sweep training options (dropout rate, weight decay, training-set size, ...) over seeds.

Every trial is one `droplab train` config; the results go to DIR/sweep.db (SQLite), and the
report to DIR/report.html. Running the same command again resumes: finished trials are skipped,
failed ones are retried with --retry-failed, and adding a grid value runs only the new trials.

One driver per folder (a second one exits 1 naming the first); --trial-timeout stops a trial
that runs too long; Ctrl-C or SIGTERM stops the workers at once and exits 130/143.

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
import time
from pathlib import Path

from droplab.cli.options import add_out, float_range, int_range, positive_int
from droplab.errors import UsageError
from droplab.studies.sweep.driver import Events, Outcome, drive
from droplab.studies.sweep.plan import (
    SweepSpec,
    _default_config_class,
    build_spec,
    describe,
    plan,
)

DEFAULT_OUT = "droplab-runs/sweep"
TRAINER_ENV = "DROPLAB_SWEEP_TRAINER"  # for tests: a "module:function" fake trainer


# -- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_what(parser.add_argument_group("what to sweep"))
    _add_where(parser.add_argument_group("where it runs"))
    _add_how(parser.add_argument_group("what to run"))


def _add_what(group) -> None:
    group.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2,...",
        help="sweep a train option over values (repeatable; the grid is the "
        "product of all of them)",
    )
    group.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="fix a train option for every trial (repeatable), e.g. epochs=20",
    )
    group.add_argument(
        "--seeds",
        type=positive_int,
        metavar="N",
        help="run every grid point with seeds 0..N-1 (default: 1)",
    )
    group.add_argument(
        "--file",
        metavar="SWEEP.toml",
        help="a sweep file with [grid] and [fixed] tables (and `seeds = N`, `trial_timeout = S`)",
    )


def _add_where(group) -> None:
    add_out(group, DEFAULT_OUT, "results folder: DIR/sweep.db, DIR/report.html")
    group.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local worker processes (default) or Ray tasks",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="trials in parallel (local default: the number of cores; ray "
        "default: the cluster's CPUs // threads)",
    )
    group.add_argument(
        "--threads",
        type=positive_int,
        metavar="T",
        help="torch threads per trial (local default: cores // workers; ray "
        "default: 1). Results depend on it: keep it fixed to compare runs",
    )
    group.add_argument(
        "--address",
        metavar="auto|HOST:PORT",
        help="with --executor ray: join this Ray cluster (default: start a private Ray on "
        "this machine, bound to 127.0.0.1)",
    )


def _add_how(group) -> None:
    group.add_argument(
        "--trial-timeout",
        type=float_range(0, lo_open=True),
        metavar="SECONDS",
        help="stop a trial that runs longer and record it as failed (default: no limit)",
    )
    group.add_argument(
        "--retry-failed",
        action="store_true",
        help="run failed trials again (they are skipped otherwise)",
    )
    group.add_argument(
        "--dry-run", action="store_true", help="print the plan (trials, how many are done) and exit"
    )
    group.add_argument("--no-report", action="store_true", help="do not write DIR/report.html")
    group.add_argument("--limit", type=int_range(1), metavar="N", help=argparse.SUPPRESS)
    # For tests and benchmarks: a "module:function" trainer taking a config dict and returning
    # {"epochs": [...], "seconds": s}; configs are then not checked against TrainConfig.
    group.add_argument("--trainer", default=os.environ.get(TRAINER_ENV), help=argparse.SUPPRESS)


def run(args) -> int:
    """Parse ``args`` into a plan and settings, then :func:`sweep`."""
    from rich.console import Console

    if args.address and args.executor != "ray":
        raise UsageError("--address needs --executor ray")
    spec = build_spec(args.file, args.grid, args.set, args.seeds, args.trial_timeout)
    trials = plan_trials(spec, args.trainer, args.limit)
    return sweep(
        spec,
        trials,
        Path(args.out),
        executor=args.executor,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        trainer=args.trainer,
        retry_failed=args.retry_failed,
        dry_run=args.dry_run,
        report=not args.no_report,
        console=Console(highlight=False, soft_wrap=True),
    )


def plan_trials(spec: SweepSpec, trainer: str | None = None, limit: int | None = None) -> list:
    """The trials of ``spec``: checked against ``TrainConfig`` for the real trainer, as given
    for a ``trainer`` named by tests (which must import, here, once, not in every worker)."""
    from droplab.studies.sweep import executors

    if trainer:
        try:
            executors.resolve_trainer(trainer)
        except (ImportError, AttributeError, ValueError) as e:
            raise UsageError(f"--trainer {trainer}: {e}") from None
        trials = plan(spec)
    else:
        trials = plan(spec, _default_config_class())
    trials = trials[:limit] if limit else trials
    if not trials:
        raise UsageError("the sweep has no trials")
    return trials


def sweep(
    spec: SweepSpec,
    trials: list,
    out: Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    trainer: str | None = None,
    retry_failed: bool = False,
    dry_run: bool = False,
    report: bool = True,
    console,
) -> int:
    """Run the ``trials`` not yet done into ``out`` (its only driver), then the report.

    Returns the exit status: 0, or 1 when trials failed; Ctrl-C or SIGTERM is re-raised (after
    the trials in flight went back to pending) for ``droplab.__main__`` to map to 130 or 143.
    """
    from droplab.studies.sweep.lock import FolderLock

    keys = [*spec.grid, "seed"]
    if dry_run:  # the plan only: the folder is left untouched (not even created)
        return _dry_run(out, trials, spec, keys, console)
    workers, threads = _sizes(executor, workers, threads)
    with FolderLock(out):
        outcome, counts = _run(
            spec, trials, out, keys, executor, workers, threads, address, trainer, retry_failed,
            console,
        )  # fmt: skip
    if outcome.interrupted is not None:
        console.print(
            f"interrupted: {counts['done']} done, trials in flight back to pending; "
            "run the same command to resume"
        )
        raise outcome.interrupted
    console.print(f"{counts['done']} done, {counts['failed']} failed of {len(trials)}")
    if counts["failed"]:
        console.print("failed trials are kept with their errors; rerun with --retry-failed")
    if report:
        _report(out, console)
    return 1 if counts["failed"] else 0


def _sizes(executor: str, workers: int | None, threads: int | None) -> tuple:
    from droplab.studies.sweep.executors import default_workers

    if executor == "local":
        workers = workers or default_workers()
        return workers, threads or max(1, default_workers() // workers)
    return workers, threads or 1


def _run(spec, trials, out, keys, executor, workers, threads, address, trainer, retry, console):
    """Record the plan in ``OUT/sweep.db`` and drive what is left to run."""
    from droplab.provenance import provenance
    from droplab.studies.sweep.store import Store

    with Store(out / "sweep.db") as store:
        added = store.add(trials)
        reset = store.reset_running()
        store.set_meta("grid_keys", list(spec.grid))
        store.set_meta("provenance", provenance(threads=threads))
        counts = store.counts(tid for tid, _ in trials)
        todo = counts["pending"] + (counts["failed"] if retry else 0)
        console.print(
            _plan_line(trials, spec, counts, todo)
            + f"; {added} new"
            + (f"; {reset} left running by an earlier driver, now pending" if reset else "")
        )
        outcome = Outcome()
        if todo:
            runner = _executor(executor, trainer, workers, threads, address)
            console.print(f"running on {runner.describe()}; results in {out / 'sweep.db'}")
            started = time.time()
            try:
                events = _Progress(console, trials, keys, counts, retry)
                outcome = drive(
                    store, trials, runner, threads=threads, retry_failed=retry,
                    trial_timeout=spec.trial_timeout, events=events,
                )  # fmt: skip
            finally:
                runner.close()
            _print_rate(console, outcome, time.time() - started)
        return outcome, store.counts(tid for tid, _ in trials)


def _executor(kind: str, trainer: str | None, workers, threads: int, address):
    from droplab.studies.sweep import executors

    trainer = trainer or executors.DEFAULT_TRAINER
    if kind == "local":
        return executors.LocalExecutor(trainer, workers=workers, threads=threads)
    return executors.RayExecutor(trainer, workers=workers, threads=threads, address=address)


def _print_rate(console, outcome: Outcome, elapsed: float) -> None:
    if outcome.ran:
        console.print(
            f"ran {outcome.ran} trials in {elapsed:.1f} s "
            f"({60 * outcome.ran / max(elapsed, 1e-9):.1f} trials/min)"
        )


def _report(out: Path, console) -> None:
    try:
        from droplab.report.sweep import build

        path = build(out)
    except ImportError as e:
        console.print(f"no report ({e}); pip install 'droplab[report]'")
        return
    _print_best(console, out)
    console.print(f"results: {out / 'results.csv'}")
    console.print(f"report: {path}")


class _Progress(Events):
    """The driver's events as a rich progress bar and one line per finished trial."""

    def __init__(self, console, trials, keys, counts: dict, retry_failed: bool):
        from droplab._console import progress_bar

        self.configs, self.keys = dict(trials), keys
        self.progress = progress_bar(
            console,
            "trials",
            "running {task.fields[running]}  [red]failed {task.fields[failed]}[/]",
            eta="ETA",
        )
        already = counts["done"] + (0 if retry_failed else counts["failed"])
        self.task = self.progress.add_task(
            "sweep", total=len(trials), completed=already, running=0, failed=0
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def done(self, tid: str, result: dict) -> None:
        last = result["epochs"][-1] if result["epochs"] else {}
        self.progress.console.print(
            f"done {describe(self.configs[tid], self.keys)}"
            f"  test_acc {last.get('test_acc', float('nan')):.4f}"
            f"  train_acc {last.get('train_acc', float('nan')):.4f}"
            f"  ({result.get('seconds') or 0:.1f} s, {result.get('host')})"
        )
        self.progress.advance(self.task)

    def failed(self, tid: str, reason: str) -> None:
        self.progress.console.print(
            f"[red]FAILED[/] {describe(self.configs[tid], self.keys)}: {reason}"
        )
        self.progress.advance(self.task)

    def status(self, running: int, failed: int) -> None:
        self.progress.update(self.task, running=running, failed=failed)


def _dry_run(out: Path, trials, spec, keys, console) -> int:
    """Print the plan, reading (never creating or writing) OUT/sweep.db."""
    from droplab.studies.sweep.store import Store

    counts = {"done": 0, "failed": 0, "pending": len(trials)}
    if (out / "sweep.db").exists():
        with Store(out / "sweep.db", readonly=True, no_trace=True) as store:
            counts = store.counts(tid for tid, _ in trials)
        counts["pending"] = len(trials) - counts["done"] - counts["failed"]
    console.print(_plan_line(trials, spec, counts, counts["pending"]) + " (dry run)")
    for tid, config in trials:
        console.print(f"  {tid}  {describe(config, keys)}")
    return 0


def _plan_line(trials, spec, counts: dict, todo: int) -> str:
    grid = ", ".join(f"{k} x{len(v)}" for k, v in spec.grid.items())
    return (
        f"sweep: {len(trials)} trials ({grid}{', ' if spec.grid else ''}{len(spec.seeds)} "
        f"seed(s)); {counts['done']} done, {counts['failed']} failed, {todo} to run"
    )


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
