"""Train the MLP on Fashion-MNIST with the torch or the NumPy engine.

Writes OUT/metrics.json, OUT/metrics.csv and OUT/checkpoint after every epoch (atomically),
and OUT/report.html at the end. Ctrl-C keeps the last finished epoch; --resume continues it (exit 2 if DIR holds no checkpoint).
An OUT holding a run with other settings is refused (exit 2) unless --force. Fashion-MNIST is
looked for in $DROPLAB_DATA, ~/.cache/droplab and /usr/share/datasets/fashion-mnist, then
downloaded (SHA-256 checked).

examples:
  droplab train                                    # the classic recipe, 5 epochs
  droplab train --dropout 0,0 --out runs/nodrop    # the same network without dropout
  droplab train --engine scratch --epochs 10 --subset 1000 --out runs/overfit
  droplab train --optimizer momentum --lr 0.05 --scheduler step --step-size 2 --gamma 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from droplab.cli.options import add_out, add_quiet, add_threads, config_argument, flag

DEFAULT_OUT = "droplab-runs/train"


# the fields shown under "network"; the others under "training"
NETWORK = ("engine", "hidden", "dropout", "input_dropout", "mode", "init")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field, in field order, each generated from the field's
    ``option`` (help, choices, range, default), so that the command line accepts what the
    config accepts; ``--threads`` ranges over this machine's cores (``add_threads``)."""
    from droplab.train import TrainConfig

    network = parser.add_argument_group("network")
    training = parser.add_argument_group("training")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "threads":
            add_threads(training)
        else:
            config_argument(network if f.name in NETWORK else training, f.name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    g = parser.add_argument_group("output")
    add_out(g, DEFAULT_OUT, "run folder")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from DIR/checkpoint (same settings; --epochs may grow)",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="overwrite DIR when it holds a run with other settings (refused otherwise, exit 2)",
    )
    add_quiet(g)


def config_from_args(args: argparse.Namespace):
    """The ``TrainConfig`` of parsed arguments; a bad combination is a ``UsageError`` (exit 2)
    naming the flag."""
    from droplab.errors import ConfigError, UsageError
    from droplab.train import TrainConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values["dropout"] = per_layer(args.dropout, args.hidden)
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        raise UsageError(f"{flag(e.field)} {e.reason}") from None


def per_layer(dropout: list, hidden: list) -> tuple:
    """One rate means every hidden layer (as in a sweep's grid); else one rate per layer."""
    return tuple(dropout) * len(hidden) if len(dropout) == 1 else tuple(dropout)


def check_writable(out: Path, flag: str = "--out") -> Path:
    """Create ``out`` and check a file can be written there; else a one-line ``DroplabError``."""
    import tempfile

    from droplab.errors import DroplabError

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise DroplabError(f"cannot write to {flag} {out}: {reason}") from None
    return out


def load_data():
    """Fashion-MNIST, or a one-line ``DroplabError`` saying where it looked and what to do.

    A status line shows at once while it loads (a terminal only)."""
    from droplab._console import console
    from droplab.data import DataError, load_fashion_mnist
    from droplab.errors import DroplabError

    out = console()
    try:
        if not out.is_terminal:
            return load_fashion_mnist()
        with out.status("loading Fashion-MNIST"):
            return load_fashion_mnist()
    except DataError as e:
        raise DroplabError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from droplab.errors import UsageError
    from droplab.provenance import command_line
    from droplab.train import check_out_dir

    config = config_from_args(args)
    try:
        check_out_dir(args.out, config, resume=args.resume, force=args.force)
    except (FileExistsError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    out = check_writable(args.out)
    data = load_data()
    from droplab.train import train

    log = (lambda *_: None) if args.quiet else print
    train(config, out_dir=out, resume=args.resume, progress=not args.quiet, data=data, log=log)
    from droplab.report.run import build_run_report

    report = build_run_report(out)
    print(f"metrics: {out / 'metrics.json'}")
    print(f"report: {report}")
    print(f"reproduce: {command_line()}")
    return 0
