"""`droplab train`, `droplab demo` and `droplab report`: outputs, exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import sigint_default
from droplab import data as data_module
from droplab.__main__ import main
from droplab.cli import train as train_cmd

SMALL = [
    "--hidden",
    "32",
    "--dropout",
    "0.5",
    "--init",
    "torch",
    "--lr",
    "0.1",
    "--batch-size",
    "32",
]


@pytest.fixture
def tiny_cli(monkeypatch, tiny_data):
    """`droplab train` and `droplab demo` load the tiny synthetic data instead of Fashion-MNIST."""
    monkeypatch.setattr(train_cmd, "load_data", lambda: tiny_data)
    return tiny_data


def droplab(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "droplab", *args], capture_output=True, text=True, **kwargs
    )


# ----------------------------------------------------------------------------------------------
# bad input: exit 2 (arguments) or 1 (environment), one line, no traceback
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["train", "--dropout", "1.5"],
            "argument --dropout: must be a number in [0.0, 1.0], got 1.5",
        ),
        (["train", "--epochs", "-1"], "argument --epochs: must be an integer in [1, inf], got -1"),
        (["train", "--lr", "abc"], "argument --lr: expected a number, got 'abc'"),
        (["train", "--lr", "0"], "argument --lr: must be a number in (0.0, inf], got 0"),
        (["train", "--engine", "jax"], "argument --engine: invalid choice: 'jax'"),
        (
            ["train", "--hidden", "8,8,8", "--dropout", "0.1,0.5"],
            "--dropout must have one rate per hidden layer",
        ),
        (["demo", "--epochs", "0"], "argument --epochs: must be an integer in [1, inf], got 0"),
        (["trian"], "unknown command 'trian'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, expected):
    p = droplab(*argv)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert expected in p.stderr
    assert p.stdout == ""


def test_unwritable_out_exits_1(tmp_path, tiny_cli, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["train", "--out", str(blocker / "run"), *SMALL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write to --out {blocker / 'run'}" in err


def test_missing_data_exits_1_and_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data_module, "SYSTEM_DIRS", ())
    monkeypatch.setattr(data_module, "MIRRORS", ("http://127.0.0.1:9/",))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DROPLAB_DATA", raising=False)
    assert main(["train", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Fashion-MNIST not found" in err


# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------


def test_train_writes_metrics_checkpoint_and_report(tmp_path, tiny_cli, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "2", "--quiet", *SMALL]) == 0
    stdout = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in stdout
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["hidden"] == [32] and saved["config"]["dropout"] == [0.5]
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]
    assert {p.name for p in out.iterdir()} >= {
        "metrics.json", "metrics.csv", "checkpoint", "report.html", "loss.png", "accuracy.png",
    }  # fmt: skip

    # --resume with more epochs continues from the checkpoint
    assert main(["train", "--out", str(out), "--epochs", "3", "--resume", *SMALL]) == 0
    stdout = capsys.readouterr().out
    assert "resuming from" in stdout and "epoch 3, loss" in stdout and "epoch 1, loss" not in stdout
    saved = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2, 3]

    # resuming with other settings is refused in one line
    assert main(["train", "--out", str(out), "--resume", *SMALL[:-2], "--batch-size", "64"]) == 1
    assert "cannot resume" in capsys.readouterr().err


def test_every_flag_reaches_the_config(tmp_path, tiny_cli):
    out = tmp_path / "run"
    argv = [
        "train", "--out", str(out), "--quiet", "--engine", "scratch", "--hidden", "16,8",
        "--dropout", "0.1,0.3", "--mode", "classic", "--init", "torch", "--epochs", "1",
        "--lr", "0.01", "--batch-size", "64", "--optimizer", "adam", "--betas", "0.8,0.99",
        "--eps", "1e-6", "--weight-decay", "0.001", "--scheduler", "multistep",
        "--milestones", "2,4", "--gamma", "0.3", "--subset", "100", "--seed", "7", "--threads", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    c = json.loads((out / "metrics.json").read_text())["config"]
    assert c == {
        **c, "engine": "scratch", "hidden": [16, 8], "dropout": [0.1, 0.3], "mode": "classic",
        "init": "torch", "epochs": 1, "lr": 0.01, "batch_size": 64, "optimizer": "adam",
        "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.001, "scheduler": "multistep",
        "milestones": [2, 4], "gamma": 0.3, "subset": 100, "seed": 7, "threads": 1,
    }  # fmt: skip


CHILD = """
import sys
sys.path.insert(0, {tests!r})
from conftest import make_tiny
from conftest import sigint_default

from droplab.cli import train as train_cmd
from droplab.__main__ import main
train_cmd.load_data = lambda: make_tiny(2048, 64)
sys.exit(main(["train", "--out", {out!r}, "--epochs", "100000", "--hidden", "256,256",
               "--batch-size", "16", "--threads", "1"]))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery is POSIX-only")
@pytest.mark.parametrize(
    "sig, exit_code, word",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_ctrl_c_or_sigterm_exit_and_leave_consistent_files(tmp_path, sig, exit_code, word):
    """SIGTERM (a scheduler, ``kill``) takes Ctrl-C's path: the last epoch kept, 128 + 15."""
    out = tmp_path / "run"
    code = textwrap.dedent(CHILD).format(tests=str(Path(__file__).parent), out=str(out))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=sigint_default)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.json").exists() and time.monotonic() < deadline:
            assert child.poll() is None, child.communicate()
            time.sleep(0.05)
        assert (out / "metrics.json").exists(), "no epoch finished in 120 s"
        child.send_signal(sig)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == exit_code, stderr
    assert f"droplab train: {word}" in stderr and "Traceback" not in stderr
    assert "--resume" in stdout
    saved = json.loads((out / "metrics.json").read_text())
    from droplab.train import _load_checkpoint

    ckpt = _load_checkpoint(out / "checkpoint")
    assert ckpt["epochs"] == saved["epochs"] and len(saved["epochs"]) >= 1
    assert not list(out.glob(".*.tmp"))


# ----------------------------------------------------------------------------------------------
# demo and report
# ----------------------------------------------------------------------------------------------


def test_demo_quick_prints_tables_summary_and_report(tmp_path, tiny_cli, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--epochs", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "dropout 0.2 (input), 0.5, 0.5, 0.5" in stdout and "no dropout" in stdout
    assert "epoch 2, loss" in stdout and "summary" in stdout and "Final test accuracy" in stdout
    assert f"report: {out / 'report.html'}" in stdout.replace("\n", "")
    assert stdout.rstrip().splitlines()[-1] == (
        f"reproduce: droplab demo --quick --out {out} --epochs 2"
    )
    index = json.loads((out / "demo.json").read_text())
    assert [a["dir"] for a in index["arms"]] == ["dropout", "no-dropout"]
    assert index["recipe"] == "overfit" and index["provenance"]["command"]
    a, b = (json.loads((out / d / "metrics.json").read_text()) for d in ("dropout", "no-dropout"))
    assert a["config"]["dropout"] == [0.5] * 3 and a["config"]["input_dropout"] == 0.2
    assert b["config"]["dropout"] == [0.0] * 3 and b["config"]["input_dropout"] == 0.0
    same = {"dropout", "input_dropout"}
    assert {k: v for k, v in a["config"].items() if k not in same} == {
        k: v for k, v in b["config"].items() if k not in same
    }
    assert a["config"]["subset"] == 500 and len(a["epochs"]) == 2
    for arm in index["arms"]:  # the last hidden layer on the first 1,000 (here 256) test images
        stats = arm["activations"]
        assert stats["layer"] == 3 and stats["units"] == 512 and stats["images"] == 256
        assert sum(stats["counts"]) == 256 * 512 and len(stats["unit_means"]) == 512
    for png in ("loss.png", "accuracy.png", "weights.png", "activations.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")


def test_demo_tutorial_recipe_is_the_tutorials_experiment(tmp_path, tiny_cli, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--recipe", "tutorial", "--quick", "--out", str(out)]) == 0
    assert "dropout 0.2, 0.5" in capsys.readouterr().out
    a = json.loads((out / "dropout" / "metrics.json").read_text())["config"]
    assert (a["hidden"], a["dropout"], a["optimizer"], a["lr"], a["batch_size"]) == (
        [256, 256], [0.2, 0.5], "sgd", 0.5, 256
    )  # fmt: skip
    assert a["input_dropout"] == 0.0 and a["subset"] == 2000 and a["epochs"] == 1


def test_demo_refuses_an_out_holding_another_demo(tmp_path, tiny_cli, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--epochs", "1"]) == 0
    assert main(["demo", "--quick", "--out", str(out), "--epochs", "1"]) == 0  # the same again
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out), "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert f"{out} already holds a run with other settings; pass --force" in err
    assert main(["demo", "--quick", "--out", str(out), "--seed", "3", "--force"]) == 0


def test_report_rebuilds_and_dispatches(tmp_path, tiny_cli, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", "--quiet", *SMALL]) == 0
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").exists()

    calls = []
    for kind, marker in (("sweep", "sweep.db"), ("mc", "mc.json")):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / marker).write_text("")
        fake = type(sys)(f"droplab.report.{kind}")
        fake.build = lambda d, kind=kind: calls.append(kind) or Path(d) / "report.html"
        monkeypatch.setitem(sys.modules, f"droplab.report.{kind}", fake)
        assert main(["report", str(folder)]) == 0
    assert calls == ["sweep", "mc"]

    capsys.readouterr()
    assert main(["report", str(tmp_path / "empty-nothing")]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "holds nothing to report on" in capsys.readouterr().err


def _edges(r):
    """Values at and just beyond each end of a field's range."""
    step = 1 if r.kind is int else 1e-9
    ends = [e for e in (r.lo, r.hi) if e is not None]
    return [v for e in ends for v in (e - step, e, e + step)]


def test_the_cli_accepts_exactly_what_the_config_accepts():
    import argparse
    import dataclasses

    from droplab.train import TrainConfig

    parser = argparse.ArgumentParser(exit_on_error=False)
    train_cmd.add_config_arguments(parser)
    base = TrainConfig(hidden=(8,), dropout=(0.5,)).to_dict()  # one-item lists fit
    checked = 0
    for f in dataclasses.fields(TrainConfig):
        r = f.metadata.get("range")
        if r is None:
            continue
        for v in _edges(r):
            items = f.metadata["items"]
            value = v if items is None else (v,) * max(items, 1)
            try:
                TrainConfig.from_dict({**base, f.name: value, "nesterov": False})
                config_ok = True
            except ValueError:
                config_ok = False
            text = ",".join(map(repr, value)) if items is not None else repr(v)
            try:
                parser.parse_args([f"--{f.name.replace('_', '-')}", text])
                cli_ok = True
            except argparse.ArgumentError:
                cli_ok = False
            assert cli_ok == config_ok, f"--{f.name} {text}: CLI {cli_ok}, config {config_ok}"
            checked += 1
    assert checked >= 30
