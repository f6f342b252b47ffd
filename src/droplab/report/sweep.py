"""The report of a sweep: what the dropout rate does to test accuracy and to the train-test gap.

``build(DIR)`` reads ``DIR/sweep.db`` (finished trials only) and writes ``DIR/report.html`` (one
self-contained file) plus the plots as PNG files next to it:

- ``test_acc_vs_dropout.png``: final test accuracy against the dropout rate, mean +- std over
  seeds, one line per value of the other swept options (training-set size above all);
- ``gap_vs_dropout.png``: the train-test gap (final train accuracy - test accuracy), the same way;
- ``heatmap_dropout_weight_decay.png``: mean test accuracy over dropout x weight decay, when both
  were swept (one panel per value of any other swept option);
- a table of the best settings (mean test accuracy over seeds), and the failed trials;
- ``results.csv``: one row per trial (settings, seed, test and train accuracy, gap, seconds).
"""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from droplab.report.html import (
    Section,
    figure_png,
    grid,
    image,
    paragraph,
    provenance_section,
    table,
    write_page,
)

PLOTS = {
    "acc": "test_acc_vs_dropout.png",
    "gap": "gap_vs_dropout.png",
    "heat": "heatmap_dropout_weight_decay.png",
}


def _value(v):
    """A config value as a hashable, printable key (per-layer lists equal -> one number)."""
    if isinstance(v, list):
        if v and all(x == v[0] for x in v):
            return v[0]
        return ":".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return v


def _show(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, s


def _varying(trials, grid_keys: list[str]) -> list[str]:
    """The config keys (other than the seed) whose value differs between trials; the sweep's own
    grid keys first, in their order."""
    values = defaultdict(set)
    for t in trials:
        for k, v in t.config.items():
            values[k].add(repr(_value(v)))
    keys = [k for k, vs in values.items() if len(vs) > 1 and k != "seed"]
    order = {k: i for i, k in enumerate(grid_keys)}
    return sorted(keys, key=lambda k: (order.get(k, len(order)), k))


def _groups(trials, keys: list[str]) -> dict[tuple, list]:
    out = defaultdict(list)
    for t in trials:
        out[tuple(_value(t.config.get(k)) for k in keys)].append(t)
    return out


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def _line_plot(trials, others: list[str], metric: str, ylabel: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs_all = sorted({_value(t.config.get("dropout")) for t in trials}, key=_sort_key)
    numeric = all(isinstance(x, (int, float)) for x in xs_all)
    pos = {x: (x if numeric else i) for i, x in enumerate(xs_all)}
    lines = _groups(trials, others)
    for line_key in sorted(lines, key=lambda k: tuple(map(_sort_key, k))):
        by_x = _groups(lines[line_key], ["dropout"])
        xs = sorted(by_x, key=lambda k: _sort_key(k[0]))
        stats = [_mean_std([getattr(t, metric) for t in by_x[x]]) for x in xs]
        px = [pos[x[0]] for x in xs]
        mean = [m for m, _ in stats]
        std = [s for _, s in stats]
        label = ", ".join(f"{k}={_show(v)}" for k, v in zip(others, line_key)) or None
        (line,) = ax.plot(px, mean, marker="o", label=label)
        ax.fill_between(
            px,
            [m - s for m, s in stats],
            [m + s for m, s in stats],
            color=line.get_color(),
            alpha=0.2,
        )
        ax.errorbar(px, mean, yerr=std, fmt="none", ecolor=line.get_color(), capsize=3)
    if not numeric:
        ax.set_xticks(range(len(xs_all)), [str(x) for x in xs_all])
    ax.set_xlabel("dropout rate p (per hidden layer)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize=8)
    return fig


def _heatmaps(trials, others: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _groups(trials, others)
    keys = sorted(panels, key=lambda k: tuple(map(_sort_key, k)))
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        cells = _groups(panels[key], ["dropout", "weight_decay"])
        ps = sorted({k[0] for k in cells}, key=_sort_key)
        wds = sorted({k[1] for k in cells}, key=_sort_key)
        grid = [[math.nan] * len(ps) for _ in wds]
        for (p, wd), ts in cells.items():
            grid[wds.index(wd)][ps.index(p)] = _mean_std([t.test_acc for t in ts])[0]
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    color = label_color(im.cmap(im.norm(v)))
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color=color)
        ax.set_xticks(range(len(ps)), [_show(p) for p in ps])
        ax.set_yticks(range(len(wds)), [_show(w) for w in wds])
        ax.set_xlabel("dropout rate p")
        ax.set_ylabel("weight decay (L2)")
        ax.set_title(", ".join(f"{k}={_show(v)}" for k, v in zip(others, key)) or "test accuracy")
        fig.colorbar(im, ax=ax, label="mean test accuracy")
    fig.tight_layout()
    return fig


def luminance(rgb) -> float:
    """WCAG relative luminance of an sRGB colour (components in [0, 1])."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    """WCAG contrast ratio of two colours (1 to 21; 4.5 is the bar for small text)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def label_color(background) -> str:
    """Black or white, whichever reads better on ``background`` (viridis' yellow needs black)."""
    black, white = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return "black" if contrast(background, black) >= contrast(background, white) else "white"


def best_settings(trials, keys: list[str]) -> list[dict]:
    """Grid points (seeds pooled) by mean final test accuracy, best first."""
    rows = []
    for key, ts in _groups(trials, keys).items():
        acc, acc_std = _mean_std([t.test_acc for t in ts])
        gap, _ = _mean_std([t.gap for t in ts])
        rows.append(
            {
                "setting": dict(zip(keys, key)),
                "test_acc": acc,
                "test_acc_std": acc_std,
                "gap": gap,
                "seeds": len(ts),
            }
        )
    rows.sort(key=lambda r: -r["test_acc"])
    return rows


def best_of_store(directory) -> tuple[list[str], list[dict]]:
    """``(swept keys, best_settings rows)`` of the finished trials in ``DIR/sweep.db``."""
    from droplab.studies.sweep.store import Store

    with Store(Path(directory) / "sweep.db", readonly=True) as store:
        trials = store.trials()
        grid_keys = store.meta("grid_keys", []) or []
    done = [t for t in trials if t.status == "done" and t.gap is not None]
    keys = _varying(done, grid_keys)
    return keys, best_settings(done, keys) if done else []


def write_csv(directory, trials, keys: list[str]) -> Path:
    """``DIR/results.csv``: one row per trial, the swept settings, the seed and the results."""
    import csv
    import io

    from droplab._io import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "status", *keys, "seed", "test_acc", "train_acc", "gap", "seconds"])
    for t in trials:
        writer.writerow(
            [t.id, t.status, *(_show(_value(t.config.get(k))) for k in keys), t.config.get("seed"),
             t.test_acc, t.train_acc, t.gap, t.seconds]
        )  # fmt: skip
    with _naming(Path(directory) / "results.csv"):
        return atomic_write_text(Path(directory) / "results.csv", buf.getvalue())


def build(directory) -> Path:
    """Write ``DIR/report.html`` (and the PNG plots, and ``results.csv``) from ``DIR/sweep.db``;
    returns its path. Every file is written atomically: a failed rewrite leaves the old one."""
    from droplab.studies.sweep.store import Store

    directory = Path(directory)
    with Store(directory / "sweep.db", readonly=True) as store:
        all_trials = store.trials()
        grid_keys = store.meta("grid_keys", []) or []
        provenance = store.meta("provenance", None)
    done = [t for t in all_trials if t.status == "done" and t.gap is not None]
    keys = _varying(done, grid_keys)
    write_csv(directory, all_trials, keys)
    counts = defaultdict(int)
    for t in all_trials:
        counts[t.status] += 1
    sections = [
        _overview(all_trials, done, keys, counts),
        *_dropout_sections(directory, done, keys),
        *_best_section(done, keys),
        *_failed_section([t for t in all_trials if t.status == "failed"], keys),
        provenance_section(provenance),
    ]
    subtitle = f"{directory}: {counts['done']} of {len(all_trials)} trials done"
    with _naming(directory / "report.html"):
        return write_page(directory / "report.html", "droplab sweep", sections, subtitle=subtitle)


def _overview(all_trials, done, keys: list[str], counts) -> Section:
    overview = Section("Overview")
    header = ["trials", "done", "failed", "pending", "running", "training time (s)"]
    row = [len(all_trials), *(counts[s] for s in ("done", "failed", "pending", "running"))]
    overview.add(table(header, [[*row, round(sum(t.seconds or 0.0 for t in done), 1)]]))
    if not done:
        return overview.add(paragraph("No finished trials yet."))
    seeds = sorted({t.config.get("seed") for t in done}, key=_sort_key)
    overview.add(
        paragraph(
            f"Swept: {', '.join(keys) or 'nothing'}; seeds: {', '.join(map(str, seeds))}. "
            "Accuracies are the final epoch's. The gap is train accuracy - test accuracy, with "
            "the train accuracy measured with dropout off (the final model in eval mode) where "
            "the trainer reports it (the torch engine), else the running accuracy of the last "
            "epoch, with dropout on."
        )
    )
    fixed = {k: _value(v) for k, v in done[0].config.items() if k not in keys and k != "seed"}
    return overview.add(table(["fixed option", "value"], [[k, _show(v)] for k, v in fixed.items()]))


def _dropout_sections(directory: Path, done, keys: list[str]) -> list[Section]:
    """The accuracy and gap plots against the dropout rate, and the dropout x L2 heat-map."""
    if not done or "dropout" not in keys:
        return []
    others = [k for k in keys if k != "dropout"]
    figures = []
    for name, metric, ylabel, title in (
        ("acc", "test_acc", "final test accuracy", "Test accuracy vs dropout rate"),
        ("gap", "gap", "train acc - test acc", "Train-test gap vs dropout rate"),
    ):
        png = figure_png(_line_plot(done, others, metric, ylabel, title + " (mean ± std)"))
        _write_png(directory / PLOTS[name], png)
        figures.append(image(png, f"{title}, mean ± std over seeds ({PLOTS[name]})"))
    sections = [Section("Dropout rate").add(grid(figures))]
    if "weight_decay" in keys:
        png = figure_png(_heatmaps(done, [k for k in others if k != "weight_decay"]))
        _write_png(directory / PLOTS["heat"], png)
        caption = f"Mean test accuracy, dropout x weight decay ({PLOTS['heat']})"
        sections.append(Section("Dropout x L2").add(image(png, caption)))
    return sections


def _write_png(path: Path, png: bytes) -> None:
    from droplab._io import atomic_write_bytes

    with _naming(path):
        atomic_write_bytes(path, png)


@contextmanager
def _naming(path: Path):
    """An ``OSError`` while writing ``path`` (a full disk, a file-size limit) as one line naming
    it; the atomic write left the previous file as it was."""
    from droplab.errors import DroplabError

    try:
        yield
    except OSError as e:
        raise DroplabError(
            f"cannot write {path}: {e.strerror or e}; the old file is kept"
        ) from None


def _best_section(done, keys: list[str]) -> list[Section]:
    if not done:
        return []
    rows = [
        [
            ", ".join(f"{k}={_show(v)}" for k, v in r["setting"].items()) or "(all)",
            r["test_acc"],
            r["test_acc_std"],
            r["gap"],
            r["seeds"],
        ]
        for r in best_settings(done, keys)[:15]
    ]
    header = ["setting", "test acc (mean)", "std", "gap (mean)", "seeds"]
    return [Section("Best settings").add(table(header, rows, table_id="best"))]


def _failed_section(failed, keys: list[str]) -> list[Section]:
    if not failed:
        return []
    rows = [
        [
            t.id,
            " ".join(f"{k}={_show(_value(t.config.get(k)))}" for k in [*keys, "seed"]),
            t.attempts,
            (t.error or "").strip().splitlines()[-1] if t.error else "",
        ]
        for t in failed
    ]
    return [Section("Failed trials").add(table(["trial", "config", "attempts", "error"], rows))]
