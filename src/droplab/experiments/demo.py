"""The classic experiment, with dropout and without: what dropout does, in about a minute.

Trains the MLP 784-256-256-10 on Fashion-MNIST (SGD lr 0.5, batch 256, weights N(0, 0.01^2))
twice with the same seed, initial weights and batches: once with dropout 0.2 / 0.5 after the
hidden layers, once without. Prints both epoch tables and a summary (final accuracies, the
train-test gap, the time), and writes OUT/report.html with the curves (also as PNG files).
Fashion-MNIST is looked for in $DROPLAB_DATA, ~/.cache/droplab and
/usr/share/datasets/fashion-mnist, then downloaded (SHA-256 checked).

examples:
  droplab demo                        # 5 epochs each, ./droplab-runs/demo/report.html
  droplab demo --epochs 100 --subset 1000 --out runs/overfit  # watch the gap open up
  droplab demo --engine scratch       # the same experiment on the NumPy engine
  droplab demo --quick                # a few seconds: 2,000 examples, 1 epoch (a smoke test)
"""

from __future__ import annotations

import argparse
import time

from droplab._cli import add_engine, add_out, add_seed, add_subset, add_threads, positive_int

DEFAULT_OUT = "droplab-runs/demo"
QUICK_SUBSET, QUICK_EPOCHS = 2000, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs per run (default: 5; 1 with --quick)",
    )
    add_seed(parser, "seeds weights, shuffling and masks, the same for both runs")
    add_engine(parser)
    add_subset(parser, f"train on the first N examples (default: all; {QUICK_SUBSET} with --quick)")
    add_threads(parser)
    add_out(parser, DEFAULT_OUT, "output folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a few seconds: {QUICK_SUBSET} examples, {QUICK_EPOCHS} epoch",
    )


def arms(args: argparse.Namespace):
    """``[(name, label, TrainConfig)]``: the recipe with dropout, then without."""
    from droplab.train import TrainConfig

    epochs = args.epochs or (QUICK_EPOCHS if args.quick else 5)
    subset = args.subset or (QUICK_SUBSET if args.quick else None)
    with_dropout = TrainConfig(
        engine=args.engine, epochs=epochs, seed=args.seed, subset=subset, threads=args.threads
    )
    rates = ", ".join(f"{p:g}" for p in with_dropout.dropout)
    return [
        ("dropout", f"dropout {rates}", with_dropout),
        (
            "no-dropout",
            "no dropout",
            with_dropout.replace(dropout=(0.0,) * len(with_dropout.hidden)),
        ),
    ]


def run(args: argparse.Namespace) -> int:
    from droplab.experiments.train_cmd import check_writable, load_data

    runs = arms(args)
    out = check_writable(args.out)
    data = load_data()
    from rich.console import Console
    from rich.markup import escape

    from droplab.report.run import build_demo_report, demo_summary, write_demo_index
    from droplab.train import describe, train

    console = Console()
    started = time.perf_counter()
    for i, (name, label, config) in enumerate(runs, 1):
        console.print(
            f"[bold]\\[{i}/{len(runs)}] {escape(label)}[/bold]: {escape(describe(config))}"
        )
        train(config, out_dir=out / name, progress=True, data=data, log=print)
    seconds = time.perf_counter() - started
    write_demo_index(out, [{"name": n, "label": lb, "dir": n} for n, lb, _ in runs], seconds)
    summary = demo_summary(out)
    _print_summary(console, summary, seconds)
    report = build_demo_report(out)
    print(f"report: {report}")
    return 0


def _print_summary(console, summary: list[dict], seconds: float) -> None:
    from rich.table import Table

    table = Table(
        title="summary: the final epoch (gap = train acc - test acc)", title_justify="left"
    )
    table.add_column("run", no_wrap=True)
    for col in ("train acc", "test acc", "gap", "train loss", "test loss", "seconds"):
        table.add_column(col, justify="right")
    for a in summary:
        table.add_row(
            a["label"],
            f"{a['train_acc']:.3f}",
            f"{a['test_acc']:.3f}",
            f"{a['gap']:+.3f}",
            f"{a['train_loss']:.4f}",
            f"{a['test_loss']:.4f}",
            f"{a['seconds']:.1f}",
        )
    console.print(table)
    if len(summary) == 2:
        a, b = summary
        console.print(
            f"dropout changed test accuracy by {100 * (a['test_acc'] - b['test_acc']):+.1f} points "
            f"and the train-test gap from {b['gap']:+.3f} to {a['gap']:+.3f}; "
            f"{seconds:.0f} s in all"
        )
