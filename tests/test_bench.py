"""`droplab bench`: runs end to end on a small subset, and rejects bad arguments with exit 2."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("numba")

from droplab.__main__ import main  # noqa: E402


@pytest.mark.slow
def test_bench_quick_subset(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--quick",
            "--no-compile",
            "--no-e2e",
            "--sizes",
            "64K",
            "--repeat",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert {r["direction"] for r in data["results"]} == {
        "forward",
        "forward in-place",
        "backward",
        "forward+backward",
    }
    assert {r["size"] for r in data["overhead_us"]} == {"1K", "4K", "64K"}
    assert all(v > 0 for r in data["overhead_us"] for v in r["us_per_call"].values())
    assert data["saved_bytes_per_element"]["fast"] == 0
    assert "machine" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_overhead_only(tmp_path, capsys):
    out = tmp_path / "overhead.json"
    assert main(["bench", "--overhead", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "results" not in data and len(data["overhead_us"]) == 6
    text = capsys.readouterr().out
    assert "per-call overhead" in text and "threads" in text


@pytest.mark.parametrize("argv", [["--sizes", "3M"], ["--dtypes", "int8"], ["--p", "1.5"]])
def test_bench_bad_arguments_exit_2(argv):
    try:
        code = main(["bench", "--no-compile", "--no-e2e", *argv])
    except SystemExit as exc:  # argparse rejects it
        code = exc.code
    assert code == 2
