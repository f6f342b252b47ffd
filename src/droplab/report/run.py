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
    "scheduler": "none", "input_dropout": 0.0,
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
        section.add(_no_plots(e))
    return section


def _no_plots(e: ImportError):
    return paragraph(
        f"No plots: matplotlib is missing ({e}); install it with pip install 'droplab[report]'."
    )


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
# the demo: the same network with and without dropout
# ----------------------------------------------------------------------------------------------

# a test loss that ends this much above its lowest value has "turned up": the run overfits
TURNED_UP = 1.10
TILES = 64  # first-layer units shown per network (an 8 x 8 grid of 28 x 28 images)


def write_demo_index(
    demo_dir,
    arms: list[dict],
    seconds: float,
    *,
    recipe: str | None = None,
    provenance: dict | None = None,
) -> Path:
    """``demo.json``: the arms (``name``, ``label``, ``dir``, optional ``activations``), the
    recipe, the total wall time and the provenance block."""
    index = {"arms": arms, "seconds": seconds, "recipe": recipe, "provenance": provenance}
    return atomic_write_json(Path(demo_dir) / "demo.json", index)


def read_demo_index(demo_dir) -> dict:
    with open(Path(demo_dir) / "demo.json", encoding="utf-8") as f:
        return json.load(f)


def demo_summary(demo_dir) -> list[dict]:
    """Per arm: label, final train/test accuracy and loss, the gap, the lowest test loss and its
    epoch, the time, and the activation statistics (when the demo recorded them)."""
    demo_dir = Path(demo_dir)
    rows = []
    for arm in read_demo_index(demo_dir)["arms"]:
        d = read_run(demo_dir / arm["dir"])
        epochs = d["epochs"]
        last = epochs[-1]
        best = min(epochs, key=lambda e: e["test_loss"])
        rows.append(
            {
                "label": arm["label"],
                "dir": arm["dir"],
                "config": d["config"],
                "epochs": epochs,
                "train_acc": last["train_acc"],
                "test_acc": last["test_acc"],
                "train_loss": last["train_loss"],
                "test_loss": last["test_loss"],
                "gap": last["train_acc"] - last["test_acc"],
                "best_test_loss": best["test_loss"],
                "best_epoch": best["epoch"],
                "turned_up": best["epoch"] < last["epoch"]
                and last["test_loss"] > TURNED_UP * best["test_loss"],
                "seconds": sum(e["seconds"] for e in epochs),
                "activations": arm.get("activations"),
            }
        )
    return rows


def _loss_story(a: dict, who: str) -> str:
    last = a["epochs"][-1]["epoch"]
    if a["turned_up"]:
        return (
            f"{who}, test loss was lowest in epoch {a['best_epoch']} ({a['best_test_loss']:.3f}) "
            f"and then rose to {a['test_loss']:.3f} by epoch {last}, while train loss fell to "
            f"{a['train_loss']:.3f}: from epoch {a['best_epoch']} on, the network learns its "
            "training images rather than the task (it overfits)."
        )
    if a["best_epoch"] == last:
        return (
            f"{who}, test loss was still falling when training stopped ({a['test_loss']:.3f} in "
            f"epoch {last}; train loss {a['train_loss']:.3f}): no overfitting turn in {last} epochs."
        )
    return (
        f"{who}, test loss was lowest in epoch {a['best_epoch']} ({a['best_test_loss']:.3f}) and "
        f"ended at {a['test_loss']:.3f}, train loss at {a['train_loss']:.3f}: less than "
        f"{TURNED_UP - 1:.0%} above its lowest, so no overfitting turn in {last} epochs."
    )


def demo_outcome(summary: list[dict]) -> list[str]:
    """What happened, in plain sentences computed from the numbers (dropout arm first)."""
    if len(summary) != 2:
        return []
    d, n = summary
    gain = 100 * (d["test_acc"] - n["test_acc"])
    verb = "gained" if gain > 0 else "lost" if gain < 0 else "changed nothing in"
    points = f" {abs(gain):.1f} points of" if gain else ""
    lower = "lower" if d["test_loss"] < n["test_loss"] else "higher"
    return [
        _loss_story(n, "Without dropout"),
        _loss_story(d, "With dropout"),
        f"Final test accuracy {d['test_acc']:.3f} with dropout and {n['test_acc']:.3f} without: "
        f"dropout {verb}{points} test accuracy, with a {lower} final test loss "
        f"({d['test_loss']:.3f} vs {n['test_loss']:.3f}) and a train-test accuracy gap of "
        f"{d['gap']:+.3f} instead of {n['gap']:+.3f}.",
    ]


def first_layer_change(run_dir, units: int = TILES):
    """What training wrote into the first layer: ``W - W0`` of the first ``units`` units,
    ``(units, 784)`` NumPy, from the run's checkpoint and its config's initial weights;
    ``None`` when the run kept no checkpoint.

    The initial weights are N(0, 0.01^2) noise of the same size as what 2,000 images teach, so
    the trained weights themselves look like noise in both networks; the change does not.
    """
    import numpy as np

    from droplab.models import IN_FEATURES, initial_weights
    from droplab.train import CHECKPOINT, load_model

    if not (Path(run_dir) / CHECKPOINT).exists():
        return None
    model, config = load_model(run_dir)
    for layer in model:
        w = getattr(layer, "weight", None)
        if w is not None:
            w = w.detach().numpy() if hasattr(w, "detach") else w.data
            break
    else:
        return None
    w0 = initial_weights([IN_FEATURES, *config.hidden, 10], config.init, config.seed)[0][0]
    return np.asarray(w[:units], dtype=np.float64) - w0[:units]


def smoothness(weights) -> float:
    """The mean correlation between horizontally neighbouring pixels' weights of 28x28 tiles:
    near 0 for noise, towards 1 for smooth strokes."""
    import numpy as np

    w = weights.reshape(len(weights), 28, 28)
    a = w[:, :, :-1].ravel() - w[:, :, :-1].mean()
    b = w[:, :, 1:].ravel() - w[:, :, 1:].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _silent(stats: dict) -> int:
    """Units whose mean activation is 0: they are off on every image shown."""
    return sum(1 for m in stats["unit_means"] if m <= 0)


def _captions(arms: list[dict], weights: list | None) -> dict:
    d, n = arms
    subset = d["config"].get("subset") or 60000
    caps = {
        "loss": (
            "Train loss (solid) and test loss (dashed) per epoch of both runs, on a log scale. "
            "Each test curve's lowest point is marked"
            + (
                "; the dotted line is the epoch where the run without dropout reached its "
                f"lowest test loss (epoch {n['best_epoch']}) before it turned up. Look at what "
                "the curves do after it"
                if n["turned_up"]
                else " (the run without dropout did not turn up by more than "
                f"{TURNED_UP - 1:.0%}, so no overfitting point is drawn)"
            )
            + ": a train loss that keeps falling while the test loss rises is a network "
            f"memorising its {subset:,} training images. Here the test loss without dropout "
            f"went from {n['best_test_loss']:.3f} (epoch {n['best_epoch']}) to "
            f"{n['test_loss']:.3f}, with dropout from {d['best_test_loss']:.3f} (epoch "
            f"{d['best_epoch']}) to {d['test_loss']:.3f}. Dropout's train loss stays higher: "
            "every step trains a thinned network."
        ),
        "accuracy": (
            "Train accuracy (solid; measured while training, dropout active) and test accuracy "
            "(dashed) per epoch. The distance between a run's two curves is what it learned "
            "about its training images that does not carry over to new ones: at the end "
            f"{n['gap']:+.3f} without dropout and {d['gap']:+.3f} with; test accuracy "
            f"{n['test_acc']:.3f} without, {d['test_acc']:.3f} with."
        ),
    }
    if weights is not None:
        caps["weights"] = (
            f"What training wrote into the first layer: for the first {len(weights[0])} of the "
            "first-layer units of each network, the change of its 784 incoming weights from "
            "their initial values, drawn as a 28x28 image (grey = no change, dark = lowered, "
            "light = raised; each tile scaled to its own largest change). A whole garment "
            "in dark is a unit taught to switch off on that image: it memorises examples. "
            "Srivastava et al. (2014, Fig. 7) found that dropout gives cleaner, less co-adapted "
            "features. The smoothness of the changes (the correlation of neighbouring pixels, "
            f"0 for noise) is {smoothness(weights[0]):.2f} with dropout and "
            f"{smoothness(weights[1]):.2f} without."
        )
    if d.get("activations") and n.get("activations"):
        ad, an = d["activations"], n["activations"]
        caps["activations"] = (
            f"Hidden layer {ad['layer']}'s activations on the first {ad['images']:,} test images "
            "(eval mode): the histogram of all activations (left, log count; the bar at 0 "
            "holds the units that are off) and of each unit's mean activation (right). "
            "Srivastava et al. (2014, Fig. 8) found that dropout makes the hidden activations "
            f"sparse. Here {ad['zero_fraction']:.0%} of the activations are exactly 0 with "
            f"dropout and {an['zero_fraction']:.0%} without; the mean activation is "
            f"{ad['mean']:.3f} with dropout and {an['mean']:.3f} without; "
            f"{_silent(ad)} of the {ad['units']} units never fire on these images with dropout, "
            f"{_silent(an)} without."
        )
    return caps


def demo_figures(arms: list[dict], demo_dir: Path) -> Section:
    """The demo's four figures (loss, accuracy, weights, activations), as PNGs and a section."""
    from droplab.report import plots

    section = Section("What dropout did")
    try:
        runs = {a["label"]: a["epochs"] for a in arms}
        if len(arms) != 2:
            return plot_sections(runs, demo_dir)
        weights = [first_layer_change(demo_dir / a["dir"]) for a in arms]
        weights = weights if all(w is not None for w in weights) else None
        caps = _captions(arms, weights)
        marks = {a["label"]: a["best_epoch"] for a in arms}
        # the dotted overfitting line only where the run without dropout turned up
        overfit = arms[1]["best_epoch"] if arms[1]["turned_up"] else None
        made = [
            (
                "loss.png",
                plots.loss_plot(runs, marks=marks, overfit=overfit, log=True),
                "loss",
            ),
            ("accuracy.png", plots.accuracy_plot(runs), "accuracy"),
        ]
        if weights is not None:
            made.append(
                (
                    "weights.png",
                    plots.weights_plot(
                        dict(zip(runs, weights)), title="Change of the first-layer weights"
                    ),
                    "weights",
                )
            )
        if "activations" in caps:
            stats = {a["label"]: a["activations"] for a in arms}
            made.append(("activations.png", plots.activations_plot(stats), "activations"))
        figures = []
        for name, png, key in made:
            atomic_write_bytes(demo_dir / name, png)
            figures.append(image(png, caps[key], alt=name))
        section.add(grid(figures))
        if weights is None:
            section.add(paragraph("No first-layer weights: a run folder holds no checkpoint."))
        if "activations" not in caps:
            section.add(paragraph("No activation histogram: demo.json records no activations."))
    except ImportError as e:
        section.add(_no_plots(e))
    return section


def build_demo_report(demo_dir) -> Path:
    """Write ``demo_dir/report.html`` and its PNGs from the demo's run folders."""
    from droplab.train import TrainConfig, describe

    demo_dir = Path(demo_dir)
    index = read_demo_index(demo_dir)
    arms = demo_summary(demo_dir)
    headers = ["run", "train acc", "test acc", "gap (train - test)", "train loss", "test loss",
               "lowest test loss", "at epoch", "seconds"]  # fmt: skip
    rows = [
        [
            a["label"],
            a["train_acc"],
            a["test_acc"],
            a["gap"],
            a["train_loss"],
            a["test_loss"],
            a["best_test_loss"],
            a["best_epoch"],
            f"{a['seconds']:.1f}",
        ]
        for a in arms
    ]
    summary = Section("Summary", table(headers, rows, table_id="summary"))
    for sentence in demo_outcome(arms):
        summary.add(f'<p class="outcome">{esc(sentence)}</p>')
    summary.add(
        paragraph(
            "Same network, initial weights, batches and seed; only the dropout rates differ. "
            + HOW_MEASURED
        )
    )
    sections = [summary, demo_figures(arms, demo_dir)]
    for arm in arms:
        s = Section(f"Epochs: {arm['label']}")
        s.add(paragraph(describe(TrainConfig.from_dict(arm["config"]))))
        s.add(epochs_table(arm["epochs"], table_id=f"epochs-{arm['dir']}"))
        s.add(f'<p class="meta">{esc(arm["dir"])}/metrics.json</p>')
        sections.append(s)
    sections.append(Section("Settings (with dropout)", config_table(arms[0]["config"])))
    sections.append(reference_section(arms[0]["config"]))
    sections.append(provenance_section(index.get("provenance")))
    recipe = index.get("recipe") or "custom"
    subset = arms[0]["config"].get("subset")
    images = f"the first {subset:,} training images" if subset else "all 60,000 training images"
    return write_page(
        demo_dir / "report.html",
        "droplab demo: the same network with and without dropout",
        sections,
        subtitle=f"Fashion-MNIST, {images}, recipe {recipe}",
    )
