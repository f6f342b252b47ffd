"""The figures of the reports as PNG bytes: curves, first-layer weights, activation histograms.

The curve functions take ``runs``, a mapping from a label to that run's epochs (the dicts of
``metrics.json``); one colour per run, train solid and test dashed. matplotlib (the ``report``
extra) is imported here only, with the Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping

Runs = Mapping[str, list[dict]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves(
    runs: Runs,
    keys: tuple[str, str],
    ylabel: str,
    title: str,
    *,
    marks: Mapping[str, int] | None = None,
    overfit: int | None = None,
    log: bool = False,
) -> bytes:
    from droplab.report.html import figure_png

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    long = max((len(e) for e in runs.values()), default=0) > 30
    ms = 0 if long else 4  # markers would hide 80 epochs' curves
    for i, (label, epochs) in enumerate(runs.items()):
        x = [e["epoch"] for e in epochs]
        color = f"C{i}"
        ax.plot(x, [e[keys[0]] for e in epochs], "-o", color=color, ms=ms, label=f"{label}, train")
        ax.plot(x, [e[keys[1]] for e in epochs], "--s", color=color, ms=ms, label=f"{label}, test")
        if marks and label in marks:
            at = next(e for e in epochs if e["epoch"] == marks[label])
            ax.plot([at["epoch"]], [at[keys[1]]], "v", color=color, ms=9, mec="black",
                    label=f"{label}: lowest test loss (epoch {at['epoch']})")  # fmt: skip
    if overfit is not None:
        ax.axvline(overfit, color="0.3", ls=":", lw=1.2, label=f"overfitting from epoch {overfit}")
    if log:
        ax.set_yscale("log")
    _finish(ax, runs, ylabel, title, legend_below=bool(marks))
    return figure_png(fig)


def _finish(ax, runs: Runs, ylabel: str, title: str, *, legend_below: bool = False) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    last = max((e["epoch"] for epochs in runs.values() for e in epochs), default=1)
    if last <= 12:  # every epoch a tick (a lone epoch would get fractional ticks)
        ax.set_xticks(range(1, last + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if legend_below:  # many entries: under the axes, off the curves
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    else:
        ax.legend(fontsize="small")


def loss_plot(
    runs: Runs,
    *,
    marks: Mapping[str, int] | None = None,
    overfit: int | None = None,
    log: bool = False,
) -> bytes:
    """Train and test cross-entropy per epoch; ``marks`` (label -> epoch) puts a marker on a
    run's test curve, ``overfit`` a dotted line at that epoch, ``log`` a log-scale y axis."""
    return _curves(
        runs,
        ("train_loss", "test_loss"),
        "cross-entropy loss",
        "Loss",
        marks=marks,
        overfit=overfit,
        log=log,
    )


def accuracy_plot(runs: Runs) -> bytes:
    """Train and test accuracy per epoch."""
    return _curves(runs, ("train_acc", "test_acc"), "accuracy", "Accuracy")


def gap_plot(runs: Runs) -> bytes:
    """The generalization gap per epoch: train accuracy minus test accuracy."""
    from droplab.report.html import figure_png

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, epochs) in enumerate(runs.items()):
        x = [e["epoch"] for e in epochs]
        gap = [e["train_acc"] - e["test_acc"] for e in epochs]
        ax.plot(x, gap, "-o", color=f"C{i}", ms=4, label=label)
    ax.axhline(0.0, color="0.5", lw=0.8)
    _finish(ax, runs, "train acc - test acc", "Train-test gap")
    return figure_png(fig)


def weights_plot(
    weights: Mapping[str, object], *, columns: int = 8, title: str = "First-layer weights"
) -> bytes:
    """Each network's first-layer weights as a grid of 28x28 tiles, one panel per network.

    ``weights`` maps a label to a ``(units, 784)`` array; each tile is scaled to its own largest
    absolute weight, grey = 0.
    """
    import numpy as np

    from droplab.report.html import figure_png

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(weights), figsize=(4.6 * len(weights), 4.9), squeeze=False)
    for ax, (label, w) in zip(axes[0], weights.items()):
        w = np.asarray(w, dtype=np.float64)
        rows = -(-len(w) // columns)
        canvas = np.full((rows * 29 + 1, columns * 29 + 1), np.nan)
        for k, unit in enumerate(w):
            r, c = divmod(k, columns)
            peak = np.abs(unit).max() or 1.0
            canvas[1 + 29 * r : 29 * (r + 1), 1 + 29 * c : 29 * (c + 1)] = (
                unit.reshape(28, 28) / peak
            )
        cmap = plt.get_cmap("gray").with_extremes(bad="white")
        ax.imshow(canvas, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(label)
        ax.set_axis_off()
    fig.suptitle(f"{title}: {len(w)} units per network, 28x28 each")
    return figure_png(fig)


def activations_plot(stats: Mapping[str, dict]) -> bytes:
    """Histograms of hidden activations (left) and of the units' mean activations (right).

    ``stats`` maps a label to ``droplab.studies.demo.activation_stats``'s dict (``edges``,
    ``counts``, ``unit_means``); the arms share the bins.
    """
    import numpy as np

    from droplab.report.html import figure_png

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    means = [np.asarray(s["unit_means"]) for s in stats.values()]
    top = max((float(m.max()) for m in means), default=1.0) or 1.0
    mean_bins = np.linspace(0.0, top, 31)
    for i, (label, s) in enumerate(stats.items()):
        edges, counts = np.asarray(s["edges"]), np.asarray(s["counts"])
        left.stairs(counts, edges, color=f"C{i}", lw=1.6,
                    label=f"{label} ({s['zero_fraction']:.0%} exactly 0)")  # fmt: skip
        right.hist(means[i], bins=mean_bins, histtype="step", color=f"C{i}", lw=1.6,
                   label=f"{label} (mean {s['mean']:.3f})")  # fmt: skip
    left.set_yscale("log")
    left.set_xlabel("activation")
    left.set_ylabel("count (log)")
    left.set_title("Activations")
    right.set_xlabel("mean activation of a unit")
    right.set_ylabel("units")
    right.set_title("Mean activation per unit")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure_png(fig)
