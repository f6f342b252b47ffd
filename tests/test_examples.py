"""The example scripts: one per tour section, each runnable as `python examples/NN_name.py`,
each exposing `run() -> list[Check]`."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from droplab.tour.sections import SECTIONS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))


def test_one_script_per_section():
    assert [int(p.name[:2]) for p in SCRIPTS] == [s.number for s in SECTIONS]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script_runs_and_passes(script, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", [str(script), "--plots", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert exc.value.code == 0, out
    assert "PASS: all" in out and "FAIL" not in out


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script_exposes_run(script):
    namespace = runpy.run_path(str(script))  # imported, not run: nothing happens yet
    checks = namespace["run"]()
    assert checks and all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_a_script_runs_in_its_own_process():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "03_d2l_dropout.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: all" in proc.stdout
