"""The HTML reports of a run and of the demo: self-contained, and checked in headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from droplab.report.run import build_demo_report, build_run_report, write_demo_index
from droplab.train import TrainConfig, write_metrics

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_epochs(n: int, *, test_acc: float = 0.8) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_acc": 0.7 + 0.02 * e,
            "test_loss": 0.9 / e + 0.01,
            "test_acc": test_acc + 0.01 * e,
            "lr": 0.5 * 0.5 ** (e - 1),
            "seconds": 1.25 * e,
        }  # fmt: skip
        for e in range(1, n + 1)
    ]


@pytest.fixture
def run_dir(tmp_path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    write_metrics(out, TrainConfig(scheduler="exponential"), fake_epochs(4))
    return out


@pytest.fixture
def demo_dir(tmp_path) -> Path:
    out = tmp_path / "demo"
    config = TrainConfig(epochs=3)
    (out / "dropout").mkdir(parents=True)
    (out / "no-dropout").mkdir()
    write_metrics(out / "dropout", config, fake_epochs(3, test_acc=0.82))
    write_metrics(out / "no-dropout", config.replace(dropout=(0, 0)), fake_epochs(3, test_acc=0.79))
    arms = [{"name": "dropout", "label": "dropout 0.2, 0.5", "dir": "dropout"},
            {"name": "no-dropout", "label": "no dropout", "dir": "no-dropout"}]  # fmt: skip
    write_demo_index(out, arms, 12.0)
    return out


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def table_rows(page: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [
        [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def check_rows(rows: list[list[str]], epochs: list[dict]) -> None:
    """A report table's rows equal the epochs of metrics.json (to the digits shown)."""
    assert len(rows) == len(epochs)
    for row, e in zip(rows, epochs):
        epoch, tl, ta, vl, va, lr, sec = row
        assert int(epoch) == e["epoch"]
        for shown, key in (
            (tl, "train_loss"),
            (ta, "train_acc"),
            (vl, "test_loss"),
            (va, "test_acc"),
        ):
            assert float(shown) == pytest.approx(e[key], abs=5e-5), key
        assert float(lr) == pytest.approx(e["lr"], rel=1e-3)
        assert abs(float(sec) - e["seconds"]) <= 0.05 + 1e-9  # shown to 0.1 s


def test_run_report_is_self_contained(run_dir):
    path = build_run_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    pngs = embedded_pngs(page)
    assert len(pngs) == 3 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert (run_dir / "loss.png").read_bytes() == pngs[0]
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    check_rows(table_rows(page, "epochs"), epochs)
    assert "0.8400" in page  # the final test accuracy in the summary


def test_demo_report_summary_and_tables(demo_dir):
    page = build_demo_report(demo_dir).read_text()
    summary = table_rows(page, "summary")
    assert [r[0] for r in summary] == ["dropout 0.2, 0.5", "no dropout"]
    assert float(summary[0][2]) == pytest.approx(0.85) and float(summary[1][2]) == pytest.approx(
        0.82
    )
    assert float(summary[0][3]) == pytest.approx(0.76 - 0.85)  # the gap, train - test
    for arm in ("dropout", "no-dropout"):
        epochs = json.loads((demo_dir / arm / "metrics.json").read_text())["epochs"]
        check_rows(table_rows(page, f"epochs-{arm}"), epochs)
    # a folder without checkpoints or activations (an older demo): the curves, and a note each
    assert len(embedded_pngs(page)) == 2
    for png in ("loss.png", "accuracy.png"):
        assert (demo_dir / png).exists()
    assert "No first-layer weights: a run folder holds no checkpoint." in page
    assert "No activation histogram" in page
    assert "lowest in epoch" not in page  # the fake test loss falls to the end
    assert "still falling when training stopped" in page


def test_report_without_matplotlib_still_has_the_tables(run_dir, monkeypatch):
    from droplab.report import plots

    def missing(runs):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(plots, "loss_plot", missing)
    page = build_run_report(run_dir).read_text()
    assert "No plots: matplotlib is missing" in page and 'id="epochs"' in page


# ----------------------------------------------------------------------------------------------
# headless Chromium: the page as a browser shows it
# ----------------------------------------------------------------------------------------------

# Added at the top of a copy of the report: records errors (script errors, failed resources,
# console.error), and after the load event writes what it found into a <pre> that --dump-dom
# prints: every image's decoded width, and every table's cells.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => __errors.push(String(e.message || (e.target && e.target.src)
  || "error")), true);
const __consoleError = console.error;
console.error = (...a) => { __errors.push(a.join(" ")); __consoleError(...a); };
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({alt: i.alt, complete: i.complete,
    width: i.naturalWidth, height: i.naturalHeight,
    caption: (i.closest("figure")?.querySelector("figcaption")?.textContent) || ""}));
  const tables = {};
  for (const t of document.querySelectorAll("table[id]"))
    tables[t.id] = [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent));
  const pre = document.createElement("pre");
  pre.id = "__probe";
  pre.textContent = JSON.stringify({errors: __errors, images, tables});
  document.body.appendChild(pre);
});
</script>"""


def open_in_chromium(report: Path, tmp_path: Path) -> dict:
    probe = tmp_path / f"probe-{report.parent.name}.html"
    page = report.read_text()
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--no-first-run", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    found = re.search(r'<pre id="__probe">(.*?)</pre>', p.stdout, re.S)
    assert found, f"the probe did not run; stderr: {p.stderr[-2000:]}"
    console = [line for line in p.stderr.splitlines() if "CONSOLE" in line]
    return {**json.loads(html.unescape(found.group(1))), "console": console}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_run_report_in_headless_chromium(run_dir, tmp_path):
    seen = open_in_chromium(build_run_report(run_dir), tmp_path)
    assert seen["errors"] == [] and seen["console"] == []
    assert len(seen["images"]) == 3
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in seen["images"])
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    check_rows(seen["tables"]["epochs"], epochs)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_demo_report_in_headless_chromium(demo_dir, tmp_path):
    seen = open_in_chromium(build_demo_report(demo_dir), tmp_path)
    assert seen["errors"] == [] and seen["console"] == []
    assert len(seen["images"]) == 2
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"])
    for arm in ("dropout", "no-dropout"):
        epochs = json.loads((demo_dir / arm / "metrics.json").read_text())["epochs"]
        check_rows(seen["tables"][f"epochs-{arm}"], epochs)
    assert [r[0] for r in seen["tables"]["summary"]] == ["dropout 0.2, 0.5", "no dropout"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_probe_catches_a_broken_image(run_dir, tmp_path):
    """The browser check is not vacuous: a corrupt PNG shows up as width 0 and an error."""
    report = build_run_report(run_dir)
    page = report.read_text()
    first = re.search(r"data:image/png;base64,([^\"]+)", page).group(1)
    broken = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    report.write_text(page.replace(first, broken, 1))
    seen = open_in_chromium(report, tmp_path)
    assert [i["width"] for i in seen["images"]][0] == 0
    assert seen["errors"]


def test_demo_loss_caption_marks_an_overfitting_point_only_where_there_is_one(demo_dir):
    # the fixture's test losses fall every epoch: no turn, so no overfitting point is claimed
    page = build_demo_report(demo_dir).read_text()
    assert "no overfitting point is drawn" in page and "before it turned up" not in page
    # without dropout, the test loss turns up by far more than 10% after epoch 1
    epochs = fake_epochs(3, test_acc=0.79)
    for e, loss in zip(epochs, (0.5, 0.7, 0.9)):
        e["test_loss"] = loss
    config = TrainConfig(epochs=3, dropout=(0, 0))
    write_metrics(demo_dir / "no-dropout", config, epochs)
    page = build_demo_report(demo_dir).read_text()
    assert "lowest test loss (epoch 1) before it turned up" in page
    assert "no overfitting point is drawn" not in page
