"""`droplab sweep` for the person running it: the plan leaves no trace, the end shows the best
settings, the results come out as CSV, the db says what was run, keys may be spelled like flags."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from droplab.__main__ import main
from droplab.studies.sweep.store import Store
from test_sweep import FAKE, fake_log  # noqa: F401  (the fixture)


def run_sweep(out: Path, log: Path, *extra: str) -> int:
    return main(
        ["sweep", "--out", str(out), "--workers", "2", "--trainer", FAKE, "--set", f"log={log}",
         "--grid", "dropout=0,0.5", "--grid", "batch-size=32,64", "--seeds", "2", *extra]
    )  # fmt: skip


def test_dry_run_leaves_the_folder_untouched(tmp_path, fake_log, capsys):  # noqa: F811
    out = tmp_path / "s"
    assert run_sweep(out, fake_log, "--dry-run") == 0
    assert not out.exists()
    assert "8 trials (dropout x2, batch_size x2, 2 seed(s)); 0 done" in capsys.readouterr().out


def test_the_end_shows_best_settings_and_writes_csv_and_provenance(tmp_path, fake_log, capsys):  # noqa: F811
    pytest.importorskip("matplotlib")
    out = tmp_path / "s"
    assert run_sweep(out, fake_log) == 0
    text = capsys.readouterr().out
    assert "best settings (top 4 by mean test accuracy)" in text and " ± " in text
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    assert set(rows[0]) >= {"dropout", "batch_size", "seed", "test_acc", "gap"}
    with Store(out / "sweep.db", readonly=True) as store:
        prov = store.meta("provenance")
    assert prov["command"].startswith("droplab sweep --out ") and prov["threads"] >= 1
    assert 'id="reproduce"' in (out / "report.html").read_text()
    json.dumps(prov)
