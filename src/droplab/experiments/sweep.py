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
import itertools
import math
import os
import re
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from droplab._cli import DroplabError, UsageError, add_out, int_range, positive_int

DEFAULT_OUT = "droplab-runs/sweep"
TRAINER_ENV = "DROPLAB_SWEEP_TRAINER"  # for tests: a "module:function" fake trainer

# config keys that hold one value per hidden layer
_PER_LAYER = ("dropout",)
# config keys that describe how a trial runs, not what it computes: not part of its identity
_EXECUTION_KEYS = ("threads",)

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# -- the sweep's definition --------------------------------------------------------------------


@dataclass
class SweepSpec:
    """What to sweep: ``grid`` (key -> values, in order), ``fixed`` (key -> value), ``seeds``."""

    grid: dict[str, list] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])


def parse_scalar(text: str):
    """``"0.5"`` -> 0.5, ``"3"`` -> 3, ``"true"`` -> True, ``"null"`` -> None, else the text;
    ``"0.2:0.5"`` -> ``(0.2, 0.5)`` (one value per layer)."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if any(not p.strip() for p in parts):
            raise UsageError(f"empty item in per-layer value {text!r}")
        return tuple(parse_scalar(p) for p in parts)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":  # "none" stays text (scheduler=none); see _none_for_optional
        return None
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"expected a finite number, got {text!r}")
        return value
    return text


def parse_values(key: str, text: str) -> list:
    """A grid's comma-separated values; ``a,b,...,z`` fills in the progression a, b, ..., z."""
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise UsageError(f"--grid {key}: empty value in {text!r}")
    values: list = []
    i = 0
    while i < len(items):
        if items[i] != "...":
            values.append(parse_scalar(items[i]))
            i += 1
            continue
        if len(values) < 2 or i + 1 >= len(items):
            raise UsageError(f"--grid {key}: '...' needs two values before it and one after")
        a, b, end = values[-2], values[-1], parse_scalar(items[i + 1])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b, end)):
            raise UsageError(f"--grid {key}: '...' works on numbers only")
        step = b - a
        if step == 0 or (end - b) / step < 0:
            raise UsageError(f"--grid {key}: {a}, {b}, ..., {end} does not progress to {end}")
        n = (end - b) / step
        if abs(n - round(n)) > 1e-6:
            raise UsageError(f"--grid {key}: {end} is not reached from {a}, {b} in equal steps")
        whole = all(isinstance(v, int) for v in (a, b, end))
        for k in range(1, round(n) + 1):
            v = b + k * step
            values.append(int(v) if whole else round(v, 10))
        i += 2
    if len(set(map(repr, values))) != len(values):
        raise UsageError(f"--grid {key}: repeated values in {text!r}")
    return values


def _split_assignment(flag: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")  # --grid batch-size=... spells the flag's name
    if not sep or not _KEY.match(key):
        raise UsageError(
            f"{flag} expects KEY=VALUE (KEY a train option, e.g. batch_size), got {text!r}"
        )
    return key, value


def _from_toml(value):
    """A TOML value in a sweep file: lists inside a [grid] list are per-layer values."""
    return tuple(value) if isinstance(value, list) else value


def build_spec(args) -> SweepSpec:
    """The sweep file (if any), then --grid / --set / --seeds on top of it."""
    spec = SweepSpec()
    if args.file:
        import tomllib

        try:
            with open(args.file, "rb") as f:
                doc = tomllib.load(f)
        except OSError as e:
            raise UsageError(f"--file: cannot read {args.file}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"--file {args.file}: not valid TOML: {e}") from None
        unknown = set(doc) - {"grid", "fixed", "seeds"}
        if unknown:
            raise UsageError(
                f"--file {args.file}: unknown table(s) {', '.join(sorted(unknown))} "
                "(expected [grid], [fixed], seeds)"
            )
        for key, values in doc.get("grid", {}).items():
            if not isinstance(values, list) or not values:
                raise UsageError(f"--file {args.file}: grid.{key} must be a non-empty list")
            spec.grid[key] = [_from_toml(v) for v in values]
        spec.fixed.update({k: _from_toml(v) for k, v in doc.get("fixed", {}).items()})
        if "seeds" in doc:
            spec.seeds = _seed_list(doc["seeds"], f"--file {args.file}: seeds")
    for text in args.grid or []:
        key, value = _split_assignment("--grid", text)
        spec.grid[key] = parse_values(key, value)
    for text in args.set or []:
        key, value = _split_assignment("--set", text)
        spec.fixed[key] = parse_scalar(value)
    if args.seeds is not None:
        spec.seeds = list(range(args.seeds))
    both = set(spec.grid) & set(spec.fixed)
    if both:
        raise UsageError(f"{', '.join(sorted(both))} is both swept (--grid) and fixed (--set)")
    if "seed" in spec.grid or "seed" in spec.fixed:
        raise UsageError("give seeds with --seeds N (seeds 0..N-1), not as a grid or fixed key")
    for key in _EXECUTION_KEYS:
        if key in spec.grid:
            raise UsageError(f"{key} is not swept: it is set per worker (--threads)")
        spec.fixed.pop(key, None)
    return spec


def _seed_list(value, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return list(value)
    raise UsageError(f"{where} must be a positive count or a list of integers, got {value!r}")


# -- from the definition to trials -------------------------------------------------------------


def _per_layer(config: dict, n_layers: int | None) -> dict:
    """A single dropout rate applies to every hidden layer."""
    for key in _PER_LAYER:
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and n_layers:
            config[key] = (float(value),) * n_layers
        elif isinstance(value, (list, tuple)):
            config[key] = tuple(float(v) for v in value)
    return config


def _default_config_class():
    try:
        from droplab.train import TrainConfig
    except ImportError as e:
        raise DroplabError(f"droplab.train is not available ({e})") from None
    return TrainConfig


def plan(spec: SweepSpec, config_class=None) -> list[tuple[str, dict]]:
    """Every trial as ``(id, config)``, seeds outermost (a first full curve comes early).

    With ``config_class`` (``TrainConfig``), each config is completed with the defaults and
    validated by ``config_class.from_dict``; a bad value is a :class:`UsageError` naming it.
    Without one (a custom trainer), the config is exactly the sweep's keys.
    """
    from droplab.experiments.store import trial_id

    known = None
    defaults: dict = {}
    if config_class is not None:
        from dataclasses import fields

        known = {f.name for f in fields(config_class)}
        defaults = config_class().to_dict()
        unknown = sorted((set(spec.grid) | set(spec.fixed)) - known)
        if unknown:
            raise UsageError(
                f"unknown option(s) {', '.join(unknown)}; sweepable: "
                f"{', '.join(sorted(known - {'seed', *_EXECUTION_KEYS}))}"
            )
    keys = list(spec.grid)
    trials, seen = [], set()
    for seed in spec.seeds:
        for combo in itertools.product(*(spec.grid[k] for k in keys)):
            config = {**spec.fixed, **dict(zip(keys, combo))}
            if known is not None:
                config["seed"] = seed
                # "none" is None for a field that is not text (subset=none: all examples)
                config = {
                    k: None if v == "none" and not isinstance(defaults.get(k), str) else v
                    for k, v in config.items()
                }
                hidden = config.get("hidden", defaults.get("hidden"))
                n_layers = 1 if isinstance(hidden, int) else len(hidden or ())
                config = _per_layer(config, n_layers)
                try:
                    config = config_class.from_dict({**defaults, **config}).to_dict()
                except (ValueError, TypeError) as e:
                    shown = ", ".join(f"{k}={config[k]}" for k in keys)
                    raise UsageError(f"invalid trial ({shown}): {e}") from None
            else:
                config = _per_layer(config, None)
                config["seed"] = seed
            for key in _EXECUTION_KEYS:
                config.pop(key, None)
            config = _jsonable(config)
            tid = trial_id(config)
            if tid not in seen:  # e.g. dropout=0.5 and dropout=0.5:0.5
                seen.add(tid)
                trials.append((tid, config))
    return trials


def _jsonable(value):
    """Tuples as lists, recursively, so a config equals its JSON round trip."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def describe(config: dict, keys) -> str:
    def show(v):
        if isinstance(v, list) and v and all(x == v[0] for x in v):
            return show(v[0])
        if isinstance(v, list):
            return ":".join(show(x) for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={show(config.get(k))}" for k in keys)


# -- the driver --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run of the driver did."""

    ran: int = 0
    done: int = 0
    failed: int = 0
    interrupted: bool = False


def drive(store, trials, executor, *, threads: int, retry_failed: bool, keys, console) -> Outcome:
    """Run the trials of ``trials`` that still need running, recording each in ``store``.

    Only this function writes to the store while a sweep runs. On Ctrl-C (or SIGTERM) it stops
    submitting, puts the trials in flight back to ``pending`` and returns ``interrupted``.
    """
    from droplab.experiments.executors import WorkerDied

    configs = dict(trials)
    statuses = store.statuses(configs)
    wanted = ("pending", "failed") if retry_failed else ("pending",)
    queue = [tid for tid, _ in trials if statuses[tid] in wanted]
    outcome = Outcome()
    total = len(trials)
    already = sum(1 for s in statuses.values() if s == "done")
    failed_before = sum(1 for s in statuses.values() if s == "failed") if not retry_failed else 0
    in_flight: dict[str, float] = {}

    progress, task = _progress(console, total, already)
    position = 0
    try:
        with progress:
            while position < len(queue) or in_flight:
                while position < len(queue) and len(in_flight) < executor.capacity:
                    tid = queue[position]
                    position += 1
                    store.mark_running(tid, threads=threads)
                    in_flight[tid] = time.time()
                    executor.submit(tid, configs[tid])
                for tid, result in executor.wait(timeout=0.5):
                    in_flight.pop(tid, None)
                    outcome.ran += 1
                    label = describe(configs[tid], keys)
                    if isinstance(result, WorkerDied):
                        store.mark_failed(tid, str(result))
                        outcome.failed += 1
                        progress.console.print(f"[red]FAILED[/] {label}: {result}")
                    elif "error" in result:
                        store.mark_failed(
                            tid, result["error"], host=result.get("host"), pid=result.get("pid")
                        )
                        outcome.failed += 1
                        last = result["error"].strip().splitlines()[-1]
                        progress.console.print(f"[red]FAILED[/] {label}: {last}")
                    else:
                        store.mark_done(tid, result)
                        outcome.done += 1
                        last = result["epochs"][-1] if result["epochs"] else {}
                        progress.console.print(
                            f"done {label}  test_acc {last.get('test_acc', float('nan')):.4f}"
                            f"  train_acc {last.get('train_acc', float('nan')):.4f}"
                            f"  ({result.get('seconds') or 0:.1f} s, {result.get('host')})"
                        )
                    progress.advance(task)
                progress.update(
                    task,
                    running=len(in_flight),
                    failed=failed_before + outcome.failed,
                )
    except KeyboardInterrupt:
        outcome.interrupted = True
        stopped = executor.abort()
        store.mark_pending(set(stopped) | set(in_flight))
    return outcome


def _progress(console, total: int, already: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("running {task.fields[running]}  [red]failed {task.fields[failed]}[/]"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("sweep", total=total, completed=already, running=0, failed=0)
    return progress, task


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

    from droplab.experiments import executors
    from droplab.experiments.store import Store

    console = Console(highlight=False, soft_wrap=True)
    spec = build_spec(args)
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
    from droplab.experiments.store import Store

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
