"""The training curves as PNG bytes: loss, accuracy and the train-test gap of one or more runs.

Each function takes ``runs``, a mapping from a label to that run's epochs (the dicts of
``metrics.json``), and returns PNG bytes; one colour per run, train solid and test dashed.
matplotlib (the ``report`` extra) is imported here only, with the Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping

Runs = Mapping[str, list[dict]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves(runs: Runs, keys: tuple[str, str], ylabel: str, title: str) -> bytes:
    from droplab.report.html import figure_png

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, epochs) in enumerate(runs.items()):
        x = [e["epoch"] for e in epochs]
        color = f"C{i}"
        ax.plot(x, [e[keys[0]] for e in epochs], "-o", color=color, ms=4, label=f"{label}, train")
        ax.plot(x, [e[keys[1]] for e in epochs], "--s", color=color, ms=4, label=f"{label}, test")
    _finish(ax, runs, ylabel, title)
    return figure_png(fig)


def _finish(ax, runs: Runs, ylabel: str, title: str) -> None:
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
    ax.legend(fontsize="small")


def loss_plot(runs: Runs) -> bytes:
    """Train and test cross-entropy per epoch."""
    return _curves(runs, ("train_loss", "test_loss"), "cross-entropy loss", "Loss")


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
