"""What dropout does, in about a minute: the same network trained with dropout and without.

The default recipe ("overfit") is chosen so that the network without dropout visibly overfits:
a wide MLP 784-512-512-512-10 on the first 2,000 Fashion-MNIST training images, 80 epochs of Adam
(lr 0.001, x0.96 per epoch, batch 100, weights N(0, 0.01^2)). Without dropout its train loss
heads to zero while its test loss turns up; with dropout (0.2 on the input pixels, 0.5 after
every hidden layer, as in Srivastava et al. 2014) it does not, and its test accuracy ends about
2 points higher. Both runs share the seed, the initial weights and the batches.

"--recipe tutorial" is the tutorial's experiment instead: 784-256-256-10, dropout 0.2/0.5,
SGD lr 0.5, batch 256, 5 epochs on all 60,000 images (published test accuracy about 0.85; there
dropout has little to fix, and the two runs end close together).

Prints each epoch of both runs and a summary computed from the numbers; writes OUT/report.html
with the loss and accuracy curves (the overfitting point marked), the first-layer weights of both
networks as 28x28 images and the hidden activations' histogram, also as PNG files. An OUT
holding a demo with other settings is refused (exit 2) unless --force. Fashion-MNIST is looked
for in $DROPLAB_DATA, ~/.cache/droplab and /usr/share/datasets/fashion-mnist, then downloaded
(SHA-256 checked).

examples:
  droplab demo                        # about a minute: ./droplab-runs/demo/report.html
  droplab demo --seed 1               # another seed (the README's table has 0, 1 and 2)
  droplab demo --recipe tutorial --out droplab-runs/demo-tutorial   # the tutorial's numbers
  droplab demo --engine scratch       # the same experiment on the NumPy engine
  droplab demo --quick                # a few seconds (a smoke test, no conclusions)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from droplab._timer import Stopwatch
from droplab.cli.options import add_engine, add_out, add_seed, add_subset, add_threads, positive_int
from droplab.studies.demo import QUICK, RECIPES, activation_stats, hidden_activations, recipe

DEFAULT_OUT = "droplab-runs/demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="overfit",
        help="overfit: 2,000 images, 784-512-512-512-10, Adam, 80 epochs, where dropout's effect "
        "shows; tutorial: the tutorial's 784-256-256-10, SGD, 5 epochs on 60,000 images "
        "(default: overfit)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs per run (default: the recipe's, 80 or 5)",
    )
    add_seed(parser, "seeds weights, shuffling and masks, the same for both runs")
    add_engine(parser)
    add_subset(parser, "train on the first N examples", "the recipe's, 2,000 or all")
    add_threads(parser)
    add_out(parser, DEFAULT_OUT, "output folder")
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite OUT when it holds a demo with other settings (refused otherwise, exit 2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds: a smaller subset and 1-3 epochs, to check that everything runs",
    )


def arms(args: argparse.Namespace):
    """``[(name, label, TrainConfig)]``: the recipe with dropout, then without."""
    subset, epochs = QUICK[args.recipe] if args.quick else (None, None)
    with_dropout = recipe(
        args.recipe,
        engine=args.engine,
        seed=args.seed,
        threads=args.threads,
        epochs=args.epochs or epochs,
        subset=args.subset or subset,
    )
    rates = ", ".join(f"{p:g}" for p in with_dropout.dropout)
    if with_dropout.input_dropout:
        rates = f"{with_dropout.input_dropout:g} (input), {rates}"
    without = with_dropout.replace(dropout=(0.0,) * len(with_dropout.hidden), input_dropout=0.0)
    return [("dropout", f"dropout {rates}", with_dropout), ("no-dropout", "no dropout", without)]


def _check_outputs(out: Path, runs, force: bool) -> None:
    from droplab.errors import UsageError
    from droplab.train import check_out_dir

    for name, _, config in runs:
        try:
            check_out_dir(out / name, config, force=force)
        except FileExistsError as e:
            raise UsageError(str(e).replace(str(out / name), str(out))) from None


def run(args: argparse.Namespace) -> int:
    from droplab.cli.train import check_writable, load_data
    from droplab.provenance import command_line

    runs = arms(args)
    out = Path(args.out)
    _check_outputs(out, runs, args.force)
    out = check_writable(out)
    data = load_data()
    from rich.markup import escape

    from droplab._console import console
    from droplab.provenance import provenance
    from droplab.report.run import build_demo_report, demo_summary, write_demo_index
    from droplab.train import describe, train

    screen = console()
    watch = Stopwatch()
    models = []
    for i, (name, label, config) in enumerate(runs, 1):
        screen.print(
            f"[bold]\\[{i}/{len(runs)}] {escape(label)}[/bold]: {escape(describe(config))}"
        )
        result = train(config, out_dir=out / name, progress=True, data=data, log=print)
        models.append(result.model)
    seconds = watch.seconds()
    test_images = data[1].images
    layers = [hidden_activations(m, test_images) for m in models]
    shown = len(layers[0]) - 1  # the last hidden layer, whose units feed the classifier
    top = max(float(acts[shown].max()) for acts in layers)
    index = [
        {"name": n, "label": lb, "dir": n, "activations": activation_stats(a[shown], top=top)}
        for (n, lb, _), a in zip(runs, layers)
    ]
    for arm in index:
        arm["activations"]["layer"] = shown + 1
    import torch

    prov = provenance(threads=torch.get_num_threads())
    write_demo_index(out, index, seconds, recipe=args.recipe, provenance=prov)
    summary = demo_summary(out)
    _print_summary(screen, summary, seconds)
    report = build_demo_report(out)
    print(f"report: {report}")
    print(f"reproduce: {command_line()}")
    return 0


def _print_summary(screen, summary: list[dict], seconds: float) -> None:
    from rich.table import Table

    from droplab.report.run import demo_outcome

    table = Table(
        title="summary: the final epoch (gap = train acc - test acc)", title_justify="left"
    )
    table.add_column("run", no_wrap=True)
    for col in ("train acc", "test acc", "gap", "train loss", "test loss", "lowest test loss"):
        table.add_column(col, justify="right")
    for a in summary:
        table.add_row(
            a["label"],
            f"{a['train_acc']:.3f}",
            f"{a['test_acc']:.3f}",
            f"{a['gap']:+.3f}",
            f"{a['train_loss']:.4f}",
            f"{a['test_loss']:.4f}",
            f"{a['best_test_loss']:.4f} (epoch {a['best_epoch']})",
        )
    screen.print(table)
    for sentence in demo_outcome(summary):
        screen.print(sentence)
    screen.print(f"{seconds:.0f} s in all")
