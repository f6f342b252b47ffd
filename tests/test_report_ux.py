"""What a person sees in the reports: legible labels, neutral titles, numbers as people write
them, only the settings that apply, honest comparisons, the provenance block, a grid layout."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from droplab.report import html as report_html
from droplab.report.html import number
from droplab.report.run import build_run_report
from droplab.train import TrainConfig, write_metrics

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def epochs(n: int) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_acc": 0.7 + 0.02 * e,
            "test_loss": 0.9 / e,
            "test_acc": 0.8 + 0.01 * e,
            "lr": 0.5,
            "seconds": 1.25 * e,
        }  # fmt: skip
        for e in range(1, n + 1)
    ]


def make_run(tmp_path, config: TrainConfig):
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    write_metrics(out, config, epochs(3))
    return build_run_report(out).read_text()


@pytest.mark.parametrize(
    "value, shown",
    [(45.0, "45"), (50.2, "50.2"), (0.9, "0.9"), (0.999, "0.999"), (0.84713, "0.8471"),
     (1e-5, "1e-05"), (0.0, "0"), (-0.25, "-0.25"), (3, "3")],
)  # fmt: skip
def test_numbers_as_people_write_them(value, shown):
    assert number(value) == shown


def test_heatmap_labels_are_legible_on_every_colour():
    matplotlib = pytest.importorskip("matplotlib")
    from droplab.report.sweep import contrast, label_color

    cmap = matplotlib.colormaps["viridis"]
    for i in range(256):
        background = cmap(i / 255)
        text = (0.0, 0.0, 0.0) if label_color(background) == "black" else (1.0, 1.0, 1.0)
        assert contrast(background, text) >= 4.5, (i, background)  # WCAG AA, small text
    assert label_color(cmap(1.0)) == "black" and label_color(cmap(0.0)) == "white"


def test_mc_plot_titles_describe_not_conclude(monkeypatch):
    pytest.importorskip("matplotlib")
    from droplab.report import mc

    titles = []

    def capture(fig, **_):
        titles.extend(ax.get_title() for ax in fig.axes)
        return b""

    monkeypatch.setattr(report_html, "figure_png", capture)
    points = [{"angle": a, "accuracy_mc": 0.9 - a / 400, "accuracy_ws": 0.9 - a / 390,
               "entropy_mc": 0.2, "entropy_ws": 0.2, "mutual_info_mc": 0.1} for a in (0, 90)]  # fmt: skip
    mc.rotation_plot(points)
    assert titles == ["Accuracy against rotation", "Uncertainty against rotation"]
    for word in ("rises", "falls", "improves", "better", "worse"):
        assert not any(word in t.lower() for t in titles)


def test_settings_table_lists_only_knobs_that_apply(tmp_path):
    from tests.test_report import table_rows

    page = make_run(tmp_path, TrainConfig())
    settings = dict(table_rows(page, "config"))
    assert "momentum" not in settings and "betas" not in settings and "gamma" not in settings
    assert settings["lr"] == "0.5" and settings["dropout"] == "0.2, 0.5"
    page = make_run(tmp_path, TrainConfig(optimizer="adam", lr=0.001, scheduler="step"))
    settings = dict(table_rows(page, "config"))
    assert settings["betas"] == "0.9, 0.999" and settings["step_size"] == "2"
    assert "momentum" not in settings and "milestones" not in settings


def test_subset_run_is_not_compared_with_full_data_numbers(tmp_path):
    assert "0.862-0.864" in make_run(tmp_path, TrainConfig())
    page = make_run(tmp_path, TrainConfig(subset=1000))
    assert "0.862-0.864" not in page and "No published numbers" in page and "subset" in page


def test_run_report_ends_with_provenance_and_the_command(tmp_path):
    page = make_run(tmp_path, TrainConfig())
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["provenance"]
    assert page.rindex('id="provenance"') > page.rindex('id="config"')
    assert f"<code>{saved['command']}</code>" in page.replace("&#x27;", "'")
    assert f"<td>{saved['torch']}</td>" in page


PROBE = """<script>
window.addEventListener("load", () => {
  const r = [...document.images].map(i => { const b = i.getBoundingClientRect();
    return {top: Math.round(b.top), left: Math.round(b.left), width: Math.round(b.width)}; });
  const pre = document.createElement("pre"); pre.id = "__probe";
  pre.textContent = JSON.stringify(r); document.body.appendChild(pre); });
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_plots_share_rows_on_a_wide_page(tmp_path):
    import html
    import re

    pytest.importorskip("matplotlib")
    page = make_run(tmp_path, TrainConfig())
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    cmd = [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1600,1200",
        "--virtual-time-budget=10000", f"--screenshot={tmp_path / 'shot.png'}", "--dump-dom",
        probe.as_uri(),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    rects = json.loads(
        html.unescape(re.search(r'<pre id="__probe">(.*?)</pre>', p.stdout, re.S).group(1))
    )
    assert len(rects) == 3
    assert rects[0]["top"] == rects[1]["top"] and rects[1]["left"] > rects[0]["left"]
