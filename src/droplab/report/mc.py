"""The Monte-Carlo dropout report: plots of calibration and uncertainty, and the UCI table.

``build(dir)`` (re)builds ``dir/mc.html`` from ``dir/mc.json`` (written by ``droplab mc``); each
plot function takes the JSON's data and returns PNG bytes (matplotlib, Agg, imported here only).
"""

from __future__ import annotations

import json
from pathlib import Path

from droplab.report.html import (
    Section,
    esc,
    grid,
    image,
    paragraph,
    provenance_section,
    table,
    write_page,
)
from droplab.report.plots import _pyplot


def reliability_plot(reliability: dict) -> bytes:
    """Reliability diagram: accuracy against confidence per bin, one line per method, the
    diagonal being perfect calibration; bin counts underneath."""
    from droplab.report.html import figure_png

    plt = _pyplot()
    fig, (ax, axc) = plt.subplots(
        2, 1, figsize=(5.6, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for i, (label, r) in enumerate(reliability.items()):
        conf = [c for c, n in zip(r["confidence"], r["count"]) if n]
        acc = [a for a, n in zip(r["accuracy"], r["count"]) if n]
        ax.plot(conf, acc, "-o", ms=4, color=f"C{i}", label=label)
        edges = r["edges"]
        width = (edges[1] - edges[0]) / (len(reliability) + 1)
        axc.bar(
            [e + width * (i + 0.5) for e in edges[:-1]],
            r["count"],
            width=width,
            color=f"C{i}",
            align="edge",
        )
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (test set)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    axc.set_xlabel("confidence (top probability)")
    axc.set_ylabel("examples")
    axc.set_yscale("log")
    return figure_png(fig)


def metrics_vs_T_plot(rows: list[dict]) -> bytes:
    """NLL, ECE and accuracy of MC dropout against T, weight scaling as dashed lines."""
    from droplab.report.html import figure_png

    plt = _pyplot()
    ws = next(r for r in rows if r["T"] is None)
    mcr = sorted((r for r in rows if r["T"] is not None), key=lambda r: r["T"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, name in zip(axes, ("nll", "ece", "accuracy"), ("NLL", "ECE", "accuracy")):
        ax.plot([r["T"] for r in mcr], [r[key] for r in mcr], "-o", color="C1", label="MC dropout")
        ax.axhline(ws[key], ls="--", color="C0", label="weight scaling")
        ax.set_xscale("log")
        ax.set_xlabel("MC passes T")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return figure_png(fig)


def rotation_plot(points: list[dict]) -> bytes:
    """Accuracy and predictive entropy (and BALD) against the rotation angle."""
    from droplab.report.html import figure_png

    plt = _pyplot()
    a = [p["angle"] for p in points]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax1.plot(a, [p["accuracy_mc"] for p in points], "-o", color="C1", ms=4, label="MC dropout")
    ax1.plot(a, [p["accuracy_ws"] for p in points], "--s", color="C0", ms=4, label="weight scaling")
    ax1.set_ylabel("accuracy")
    ax2.plot(
        a, [p["entropy_mc"] for p in points], "-o", color="C1", ms=4, label="predictive entropy, MC"
    )
    ax2.plot(
        a,
        [p["entropy_ws"] for p in points],
        "--s",
        color="C0",
        ms=4,
        label="entropy, weight scaling",
    )
    ax2.plot(
        a,
        [p["mutual_info_mc"] for p in points],
        "-^",
        color="C2",
        ms=4,
        label="mutual information (BALD), MC",
    )
    ax2.set_ylabel("nats (mean over images)")
    for ax, title in ((ax1, "Accuracy against rotation"), (ax2, "Uncertainty against rotation")):
        ax.set_xlabel("rotation (degrees)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return figure_png(fig)


def _fmt(mean_se) -> str:
    return f"{mean_se[0]:.2f} ± {mean_se[1]:.2f}"


def fashion_sections(f: dict) -> list[Section]:
    """The Fashion-MNIST study's sections: calibration, rotated images, sampling speed."""
    return [_calibration_section(f), _rotation_section(f["rotation"]), _speed_section(f["speed"])]


def _calibration_section(f: dict) -> Section:
    metrics = Section("Fashion-MNIST: weight scaling vs MC dropout")
    cfg = f.get("config") or {}
    metrics.add(
        paragraph(
            f"MLP {cfg.get('hidden')} with dropout {cfg.get('dropout')}, {cfg.get('epochs')} epochs; "
            f"{f['test_examples']} test images. Weight scaling is the deterministic eval network; "
            "MC dropout averages the softmax of T passes with dropout on. ECE: 15 equal-width bins."
        )
    )
    rows = [
        [
            ("weight scaling" if r["T"] is None else "MC dropout"),
            "-" if r["T"] is None else r["T"],
            r["accuracy"],
            r["nll"],
            r["brier"],
            r["ece"],
        ]
        for r in f["metrics"]
    ]
    metrics.add(
        table(["method", "T", "accuracy", "NLL", "Brier", "ECE"], rows, table_id="mc-metrics")
    )
    metrics.add(
        grid(
            [
                image(metrics_vs_T_plot(f["metrics"]), "NLL, ECE and accuracy against T"),
                image(reliability_plot(f["reliability"]), "Reliability diagram"),
            ]
        )
    )
    u = f["uncertainty"]
    metrics.add(
        table(
            ["uncertainty score", "AUROC for telling errors"],
            [
                [f"predictive entropy, MC (T={u['T']})", u["auroc_error_entropy_mc"]],
                [f"mutual information (BALD), MC (T={u['T']})", u["auroc_error_bald_mc"]],
                ["entropy, weight scaling", u["auroc_error_entropy_ws"]],
                ["1 - top probability, weight scaling", u["auroc_error_maxprob_ws"]],
            ],
        )
    )
    return metrics


def _rotation_section(rot: dict) -> Section:
    rotation = Section("Rotated images")
    rotation.add(
        paragraph(
            f"The first {rot['images']} test images rotated by each angle (bilinear); MC dropout with "
            f"T={rot['samples']}. Whether the uncertainty grows as the images leave the training "
            "distribution is what the plot shows, for this model."
        )
    )
    rotation.add(image(rotation_plot(rot["points"]), "Accuracy and uncertainty against rotation"))
    rotation.add(
        table(
            ["angle", "accuracy MC", "accuracy WS", "entropy MC", "BALD MC", "entropy WS"],
            [
                [
                    p["angle"],
                    p["accuracy_mc"],
                    p["accuracy_ws"],
                    p["entropy_mc"],
                    p["mutual_info_mc"],
                    p["entropy_ws"],
                ]
                for p in rot["points"]
            ],
        )
    )
    return rotation


def _speed_section(rows: list[dict]) -> Section:
    speed = Section("Vectorized sampling vs a Python loop")
    speed.add(
        paragraph(
            "mc_predict repeats the batch T times in one forward; the baseline loops over T passes. "
            "CPU time, best of 5, same run, same model."
        )
    )
    speed.add(
        table(
            ["N", "T", "vectorized (CPU ms)", "loop (CPU ms)", "speed-up"],
            [
                [
                    s["N"],
                    s["T"],
                    f"{s['vectorized_s'] * 1e3:.1f}",
                    f"{s['loop_s'] * 1e3:.1f}",
                    f"{s['speedup']:.1f}x",
                ]
                for s in rows
            ],
        )
    )
    return speed


def uci_section(uci: dict) -> Section:
    from droplab.studies.uci import within

    sec = Section("UCI regression (Gal & Ghahramani 2016)")
    sec.add(
        paragraph(
            "One hidden layer of 50 ReLU units, dropout on input and hidden layer, (p, tau) chosen "
            "per split on an inner 80/20 split by MC log-likelihood, retrained on the full training "
            "part; test RMSE of the MC mean and test log-likelihood with T MC passes. Mean ± standard "
            "error over splits; published: the authors' grid-search re-run on the same splits. "
            "✓: within one published standard error, or better."
        )
    )
    rows = []
    for name, s in uci.items():
        pub = s.get("published")
        ok_r = ok_l = ""
        if pub:
            ok_r = " ✓" if within(s["rmse"], pub["rmse"], higher_is_better=False) else " ✗"
            ok_l = " ✓" if within(s["ll"], pub["ll"], higher_is_better=True) else " ✗"
        rows.append(
            [
                name,
                s["splits"],
                s["epochs"],
                _fmt(s["rmse"]) + ok_r,
                _fmt(pub["rmse"]) if pub else "-",
                _fmt(s["ll"]) + ok_l,
                _fmt(pub["ll"]) if pub else "-",
                f"{s['seconds']:.0f}",
            ]
        )
    sec.add(
        table(
            [
                "dataset",
                "splits",
                "epochs",
                "RMSE",
                "RMSE (published)",
                "test LL",
                "test LL (published)",
                "seconds",
            ],
            rows,
            table_id="uci",
        )
    )
    for name, s in uci.items():
        chosen = {}
        for r in s["per_split"]:
            key = (r["p"], r["tau"])
            chosen[key] = chosen.get(key, 0) + 1
        text = ", ".join(f"p={p:g}, tau={t:g}: {n}" for (p, t), n in sorted(chosen.items()))
        sec.add(f"<p>{esc(name)}: chosen (p, tau) over splits: {esc(text)}</p>")
    return sec


def _training_sections(f: dict, directory: Path) -> list[Section]:
    """The settings of the MLP the command trained (or loaded) and its training curves."""
    from droplab.report.run import config_table, plot_sections

    out = []
    if f.get("config"):
        out.append(Section("Settings of the model", config_table(f["config"])))
    if f.get("epochs"):
        out.append(plot_sections({"model": f["epochs"]}, directory))
    return out


def build(directory) -> Path:
    """(Re)build ``directory/mc.html`` from ``directory/mc.json``; returns its path."""
    d = Path(directory)
    data = json.loads((d / "mc.json").read_text())
    sections: list[Section] = []
    if "fashion_mnist" in data:
        sections += fashion_sections(data["fashion_mnist"])
    if data.get("uci"):
        sections.append(uci_section(data["uci"]))
    if not sections:
        sections.append(Section("Nothing yet", paragraph("mc.json holds no results.")))
    sections += _training_sections(data.get("fashion_mnist") or {}, d)
    sections.append(provenance_section(data.get("provenance")))
    return write_page(
        d / "mc.html",
        "droplab: Monte-Carlo dropout",
        sections,
        subtitle="Gal & Ghahramani (2016), Dropout as a Bayesian Approximation",
    )
