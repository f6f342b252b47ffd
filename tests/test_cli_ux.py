"""The command line as a user meets it: results are never overwritten or faked, what was run is
recorded, one flag name for quiet, sweep keys spelled like flags, the data's location in help."""

from __future__ import annotations

import json

import pytest

from droplab.__main__ import main
from droplab.cli import train as train_cmd

SMALL = ["--hidden", "8", "--dropout", "0", "--epochs", "1", "--quiet"]


@pytest.fixture
def tiny_cli(monkeypatch, tiny_data):
    monkeypatch.setattr(train_cmd, "load_data", lambda: tiny_data)
    return tiny_data


def test_train_records_what_was_run(tiny_cli, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    prov = json.loads((out / "metrics.json").read_text())["provenance"]
    assert prov["command"] == f"droplab train {' '.join(SMALL)} --out {out}"
    assert prov["threads"] == 1  # the default of every command
    page = (out / "report.html").read_text()
    assert 'id="reproduce"' in page and "droplab train" in page


def test_train_refuses_an_out_holding_another_run(tiny_cli, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", *SMALL, "--out", out]) == 0
    assert main(["train", *SMALL, "--lr", "0.1", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"droplab train: error: {out} already holds a run with other settings; pass --force to "
        "overwrite it, --resume to continue it, or choose another --out"
    ]
    assert main(["train", *SMALL, "--lr", "0.1", "--out", out, "--force"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["lr"] == 0.1


def test_resume_without_checkpoint_exits_2(tiny_cli, tmp_path, capsys):
    assert main(["train", *SMALL, "--resume", "--out", str(tmp_path)]) == 2
    assert "holds no checkpoint to continue" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "mc"])
def test_quiet_is_one_flag_with_the_old_alias(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--quiet, --no-progress" in text


@pytest.mark.parametrize("command", ["train", "mc", "demo"])
def test_data_commands_say_where_the_data_comes_from(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "$DROPLAB_DATA" in capsys.readouterr().out


def test_sweep_grid_keys_may_be_spelled_like_flags():
    from droplab.studies.sweep.plan import _split_assignment

    assert _split_assignment("--grid", "batch-size=32,64") == ("batch_size", "32,64")


def test_mc_keeps_its_model_and_reports_settings_curves_provenance(
    tiny_data, tmp_path, monkeypatch
):
    pytest.importorskip("matplotlib")
    from droplab import data as data_module

    monkeypatch.setattr(data_module, "load_fashion_mnist", lambda root=None: tiny_data)
    out = tmp_path / "mc"
    argv = ["mc", "--out", str(out), "--hidden", "16", "--dropout", "0.5", "--epochs", "2",
            "--subset", "128", "--samples", "1,2", "--angles", "0,90", "--rotation-images", "8",
            "--rotation-samples", "2", "--speed-sizes", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "mc.json").read_text())
    assert saved["provenance"]["command"].startswith("droplab mc --out ")
    assert saved["fashion_mnist"]["config"]["subset"] == 128
    assert [e["epoch"] for e in saved["fashion_mnist"]["epochs"]] == [1, 2]
    assert (out / "model" / "checkpoint").exists()  # droplab mc --checkpoint OUT/model reuses it
    page = (out / "mc.html").read_text()
    assert "Settings of the model" in page and 'id="reproduce"' in page and "Curves" in page
    assert "rises" not in page and "falls" not in page


@pytest.mark.parametrize(
    "text, expected",
    [("0.5", (0.5, 0.5)), ("0.2,0.5", (0.2, 0.5)), ("0.2:0.5", (0.2, 0.5))],
)
def test_per_layer_dropout_is_spelled_as_in_a_sweep(text, expected):
    import argparse

    from droplab.cli.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--dropout", text])).dropout == expected
