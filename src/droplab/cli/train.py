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
import re
from pathlib import Path

from droplab.cli.options import (
    add_engine,
    add_mlp,
    add_out,
    add_quiet,
    add_seed,
    add_subset,
    add_threads,
    float_range,
    list_of,
    positive_float,
    positive_int,
)

DEFAULT_OUT = "droplab-runs/train"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``TrainConfig`` (shared by ``droplab train``); defaults are the recipe's."""
    g = parser.add_argument_group("network")
    add_engine(g)
    add_mlp(
        g,
        hidden="hidden layer widths",
        dropout="drop probability per hidden layer, in [0, 1]; 0 = none",
    )
    g.add_argument(
        "--input-dropout",
        type=float_range(0.0, 1.0, hi_open=True),
        default=0.0,
        metavar="P",
        help="drop probability of the input pixels, in [0, 1); 0 = none (default: 0)",
    )
    g.add_argument(
        "--mode",
        choices=("inverted", "classic"),
        default="inverted",
        help="inverted (scale in training) or classic (scale at eval) (default: inverted)",
    )
    g.add_argument(
        "--init",
        choices=("normal", "torch"),
        default="normal",
        help="initial weights: normal = N(0, 0.01^2) as in the tutorial, torch = "
        "nn.Linear's default (default: normal)",
    )
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=5, help="epochs (default: 5)")
    g.add_argument("--lr", type=positive_float, default=0.5, help="learning rate (default: 0.5)")
    g.add_argument("--batch-size", type=positive_int, default=256, help="batch size (default: 256)")
    g.add_argument(
        "--reduction",
        choices=("nominal", "mean"),
        default="nominal",
        help="a batch's loss: nominal = sum / --batch-size, so the short last batch of an "
        "epoch takes a shorter step, as in the tutorial; mean = / its own length, as "
        "nn.CrossEntropyLoss (default: nominal)",
    )
    g.add_argument(
        "--optimizer",
        choices=("sgd", "momentum", "adagrad", "rmsprop", "adam"),
        default="sgd",
        help="update rule, as torch.optim (default: sgd)",
    )
    g.add_argument(
        "--momentum",
        type=float_range(0.0, 1.0, hi_open=True),
        default=0.9,
        help="momentum of --optimizer momentum, in [0, 1) (default: 0.9)",
    )
    g.add_argument(
        "--nesterov", action="store_true", help="Nesterov momentum (--optimizer momentum)"
    )
    g.add_argument(
        "--alpha",
        type=float_range(0.0, 1.0, hi_open=True),
        default=0.99,
        help="RMSprop's smoothing constant, in [0, 1) (default: 0.99)",
    )
    g.add_argument(
        "--betas",
        type=list_of(float_range(0.0, 1.0, hi_open=True), min_len=2),
        default=[0.9, 0.999],
        metavar="B1,B2",
        help="Adam's betas, each in [0, 1) (default: 0.9,0.999)",
    )
    g.add_argument(
        "--eps",
        type=positive_float,
        default=None,
        help="epsilon of adagrad/rmsprop/adam (default: torch's, 1e-10 or 1e-8)",
    )
    g.add_argument(
        "--weight-decay", type=float_range(0.0), default=0.0, help="L2 penalty, >= 0 (default: 0)"
    )
    g.add_argument(
        "--scheduler",
        choices=("none", "step", "multistep", "exponential"),
        default="none",
        help="learning-rate schedule, stepped per epoch (default: none)",
    )
    g.add_argument(
        "--step-size",
        type=positive_int,
        default=2,
        help="--scheduler step: epochs between decays (default: 2)",
    )
    g.add_argument(
        "--gamma",
        type=float_range(0.0, 1.0, lo_open=True),
        default=0.5,
        help="decay factor of every scheduler, in (0, 1] (default: 0.5)",
    )
    g.add_argument(
        "--milestones",
        type=list_of(positive_int),
        default=[3],
        metavar="E,E",
        help="--scheduler multistep: epochs after which lr *= gamma (default: 3)",
    )
    add_subset(g, "train on the first N training examples (default: all 60,000)")
    add_seed(g)
    add_threads(g)


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
    """The ``TrainConfig`` of parsed arguments; a bad combination is a ``UsageError`` (exit 2)."""
    from droplab.errors import UsageError
    from droplab.train import TrainConfig

    dropout = per_layer(args.dropout, args.hidden)
    try:
        return TrainConfig(
            engine=args.engine,
            hidden=tuple(args.hidden),
            dropout=dropout,
            input_dropout=args.input_dropout,
            mode=args.mode,
            init=args.init,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            reduction=args.reduction,
            optimizer=args.optimizer,
            momentum=args.momentum,
            nesterov=args.nesterov,
            alpha=args.alpha,
            betas=tuple(args.betas),
            eps=args.eps,
            weight_decay=args.weight_decay,
            scheduler=args.scheduler,
            step_size=args.step_size,
            gamma=args.gamma,
            milestones=tuple(args.milestones),
            subset=args.subset,
            seed=args.seed,
            threads=args.threads,
        )
    except ValueError as e:
        # "lr must be ..." -> "--lr must be ...": name the flag the user typed
        msg = re.sub(r"^(\w+) must", lambda m: f"--{m[1].replace('_', '-')} must", str(e))
        raise UsageError(msg.replace("hidden has", "--hidden has")) from None


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
