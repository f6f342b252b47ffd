"""The report of a training run (``droplab train``) and of the demo (``droplab demo``).

A run folder holds ``metrics.json``; a demo folder holds ``demo.json`` and one run folder per arm
(with and without dropout). Both reports are one self-contained ``report.html`` (plots embedded)
next to the PNG files of the same plots.
"""

from __future__ import annotations

import json
from pathlib import Path

from droplab._io import atomic_write_bytes, atomic_write_json
from droplab.report.html import (
    Section,
    esc,
    grid,
    image,
    number,
    paragraph,
    provenance_section,
    table,
    write_page,
)

REFERENCE = (
    "Published runs of the same recipe (784-256-256-10, dropout 0.2/0.5, SGD lr 0.5, batch 256, "
    "5 epochs): Dive into Deep Learning (MXNet edition) 0.862-0.864 test accuracy; a PyTorch port "
    "0.839-0.850. One seed lands anywhere in about 0.83-0.87."
)
HOW_MEASURED = (
    "Train loss and accuracy are averages over the epoch's mini-batches, measured while training "
    "(dropout active), as the tutorial reports them; test loss and accuracy are measured on the "
    "10,000 test images in eval mode after the epoch. With dropout, train accuracy can therefore "
    "sit below test accuracy."
)
EPOCH_HEADERS = ["epoch", "train loss", "train acc", "test loss", "test acc", "lr", "seconds"]
PLOTS = (
    ("loss.png", "loss_plot", "Train (solid) and test (dashed) loss per epoch."),
    ("accuracy.png", "accuracy_plot", "Train (solid) and test (dashed) accuracy per epoch."),
    ("gap.png", "gap_plot", "Train accuracy minus test accuracy per epoch."),
)


def read_run(run_dir) -> dict:
    """``metrics.json`` of a run folder, as a dict (``config``, ``epochs``)."""
    path = Path(run_dir) / "metrics.json"
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    if not isinstance(d, dict) or not d.get("epochs"):
        raise ValueError(f"{path} holds no finished epoch")
    return d


def epochs_table(epochs: list[dict], *, table_id: str) -> str:
    rows = [
        [
            e["epoch"],
            # one column, one number of decimals: the digits line up
            f"{e['train_loss']:.4f}",
            f"{e['train_acc']:.4f}",
            f"{e['test_loss']:.4f}",
            f"{e['test_acc']:.4f}",
            f"{e['lr']:.4g}",
            f"{e['seconds']:.1f}",
        ]
        for e in epochs
    ]
    return table(EPOCH_HEADERS, rows, table_id=table_id)


# the knobs that only some optimizers / schedulers read: shown only where they apply
_APPLIES = {
    "momentum": lambda c: c.get("optimizer") == "momentum",
    "nesterov": lambda c: c.get("optimizer") == "momentum",
    "alpha": lambda c: c.get("optimizer") == "rmsprop",
    "betas": lambda c: c.get("optimizer") == "adam",
    "eps": lambda c: c.get("optimizer") in ("adagrad", "rmsprop", "adam"),
    "step_size": lambda c: c.get("scheduler") == "step",
    "milestones": lambda c: c.get("scheduler") == "multistep",
    "gamma": lambda c: c.get("scheduler") in ("step", "multistep", "exponential"),
}


def applicable(config: dict) -> dict:
    """The settings of a config that the run used (no momentum or betas for plain SGD)."""
    return {k: v for k, v in config.items() if _APPLIES.get(k, lambda c: True)(config)}


def config_table(config: dict) -> str:
    rows = [[k, _show(v)] for k, v in applicable(config).items()]
    return table(["setting", "value"], rows, table_id="config")


def _show(v) -> str:
    if isinstance(v, list):
        return ", ".join(number(x) for x in v) or "-"
    return "-" if v is None else number(v)


# the recipe the published numbers of REFERENCE were measured with
_RECIPE = {
    "hidden": [256, 256], "dropout": [0.2, 0.5], "optimizer": "sgd", "lr": 0.5,
    "batch_size": 256, "epochs": 5, "subset": None, "mode": "inverted", "weight_decay": 0.0,
    "scheduler": "none",
}  # fmt: skip


def reference_section(config: dict) -> Section:
    """The published numbers, only for a run of the recipe they were measured with."""
    differs = [k for k, v in _RECIPE.items() if config.get(k, v) != v]
    if not differs:
        return Section("Reference", paragraph(REFERENCE))
    return Section(
        "Reference",
        paragraph(
            "No published numbers to compare with: the published runs train the classic recipe "
            "(784-256-256-10, dropout 0.2/0.5, SGD lr 0.5, batch 256, 5 epochs) on all 60,000 "
            f"training images; this run differs in {', '.join(differs)}."
        ),
    )


def plot_sections(runs: dict[str, list[dict]], out_dir: Path) -> Section:
    """The curves of ``runs``, written as PNGs in ``out_dir`` and embedded in a section."""
    from droplab.report import plots

    section = Section("Curves")
    try:
        figures = []
        for name, fn, caption in PLOTS:
            png = getattr(plots, fn)(runs)
            atomic_write_bytes(out_dir / name, png)
            figures.append(image(png, caption, alt=name))
        section.add(grid(figures))
    except ImportError as e:
        section.add(
            paragraph(
                f"No plots: matplotlib is missing ({e}); "
                "install it with pip install 'droplab[report]'."
            )
        )
    return section


def build_run_report(run_dir) -> Path:
    """Write ``run_dir/report.html`` (and its PNGs) from ``run_dir/metrics.json``."""
    from droplab.train import TrainConfig, describe

    run_dir = Path(run_dir)
    d = read_run(run_dir)
    config, epochs = d["config"], d["epochs"]
    final = epochs[-1]
    summary = Section("Result")
    summary.add(paragraph(describe(TrainConfig.from_dict(config))))
    summary.add(
        paragraph(
            f"After epoch {final['epoch']}: test accuracy {final['test_acc']:.4f}, train accuracy "
            f"{final['train_acc']:.4f} (gap {final['train_acc'] - final['test_acc']:+.4f}), "
            f"train loss {final['train_loss']:.4f}, {sum(e['seconds'] for e in epochs):.1f} s in all."
        )
    )
    summary.add(paragraph(HOW_MEASURED))
    per_epoch = Section("Epochs", epochs_table(epochs, table_id="epochs"))
    curves = plot_sections({"run": epochs}, run_dir)
    settings = Section("Settings", config_table(config))
    notes = reference_section(config)
    made = provenance_section(d.get("provenance"))
    return write_page(
        run_dir / "report.html",
        "droplab training run",
        [summary, per_epoch, curves, settings, notes, made],
        subtitle=f"{run_dir.resolve()}",
    )


# ----------------------------------------------------------------------------------------------
# the demo: the recipe with and without dropout
# ----------------------------------------------------------------------------------------------


def write_demo_index(demo_dir, arms: list[dict], seconds: float) -> Path:
    """``demo.json``: the arms (``name``, ``label``, ``dir``) and the total wall time."""
    return atomic_write_json(Path(demo_dir) / "demo.json", {"arms": arms, "seconds": seconds})


def demo_summary(demo_dir) -> list[dict]:
    """Per arm: label, final train/test accuracy and loss, the gap, and the time."""
    demo_dir = Path(demo_dir)
    with open(demo_dir / "demo.json", encoding="utf-8") as f:
        index = json.load(f)
    rows = []
    for arm in index["arms"]:
        d = read_run(demo_dir / arm["dir"])
        last = d["epochs"][-1]
        rows.append(
            {
                "label": arm["label"],
                "dir": arm["dir"],
                "config": d["config"],
                "epochs": d["epochs"],
                "train_acc": last["train_acc"],
                "test_acc": last["test_acc"],
                "train_loss": last["train_loss"],
                "test_loss": last["test_loss"],
                "gap": last["train_acc"] - last["test_acc"],
                "seconds": sum(e["seconds"] for e in d["epochs"]),
            }
        )
    return rows


def build_demo_report(demo_dir) -> Path:
    """Write ``demo_dir/report.html`` and its PNGs from the demo's run folders."""
    from droplab.train import TrainConfig, describe

    demo_dir = Path(demo_dir)
    arms = demo_summary(demo_dir)
    headers = [
        "run",
        "train acc",
        "test acc",
        "gap (train - test)",
        "train loss",
        "test loss",
        "seconds",
    ]
    rows = [
        [
            a["label"],
            a["train_acc"],
            a["test_acc"],
            a["gap"],
            a["train_loss"],
            a["test_loss"],
            f"{a['seconds']:.1f}",
        ]
        for a in arms
    ]
    summary = Section("Summary", table(headers, rows, table_id="summary"))
    if len(arms) == 2:
        a, b = arms
        summary.add(
            paragraph(
                f"{a['label']}: test accuracy {a['test_acc']:.4f}, gap {a['gap']:+.4f}. "
                f"{b['label']}: test accuracy {b['test_acc']:.4f}, gap {b['gap']:+.4f}. "
                f"Same network, initial weights, batches and seed; only the dropout rates differ."
            )
        )
    summary.add(paragraph(HOW_MEASURED))
    sections = [summary, plot_sections({a["label"]: a["epochs"] for a in arms}, demo_dir)]
    for arm in arms:
        s = Section(f"Epochs: {arm['label']}")
        s.add(paragraph(describe(TrainConfig.from_dict(arm["config"]))))
        s.add(epochs_table(arm["epochs"], table_id=f"epochs-{arm['dir']}"))
        s.add(f'<p class="meta">{esc(arm["dir"])}/metrics.json</p>')
        sections.append(s)
    sections.append(Section("Settings (with dropout)", config_table(arms[0]["config"])))
    sections.append(Section("Reference", paragraph(REFERENCE)))
    return write_page(
        demo_dir / "report.html",
        "droplab demo: dropout vs none",
        sections,
        subtitle="Fashion-MNIST, the classic recipe with and without dropout",
    )
