"""droplab sweep: grid parsing, the result store, resume, failures, a killed driver, the report.

Most tests inject the fake trainer of ``sweep_fakes`` (``--trainer sweep_fakes:fake_train``, the
option kept for tests), which counts its calls in a log file; one test trains for real.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sigint_default
from droplab.__main__ import main
from droplab.cli import sweep as sweep_cli
from droplab.errors import UsageError
from droplab.studies.sweep import plan as sweep
from droplab.studies.sweep.store import Store, trial_id

HERE = Path(__file__).resolve().parent
FAKE = "sweep_fakes:fake_train"


@pytest.fixture
def fake_log(tmp_path, monkeypatch):
    """The file the fake trainer logs its calls to (``sweep_cmd`` passes it as ``--set log=``)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "trainings.log"


def trainings(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def sweep_cmd(out, *extra, trainer=FAKE):
    args = ["sweep", "--out", str(out), "--workers", "2", "--no-report", *extra]
    if trainer:
        args += ["--trainer", trainer, "--set", f"log={Path(out).parent / 'trainings.log'}"]
    return main(args)


def statuses(out) -> dict[str, int]:
    with Store(Path(out) / "sweep.db") as store:
        return store.counts()


# -- grid parsing ------------------------------------------------------------------------------


def test_values_progression_and_per_layer():
    assert sweep.parse_values("dropout", "0,0.1,...,0.5") == [0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert sweep.parse_values("subset", "1000,2000,...,4000") == [1000, 2000, 3000, 4000]
    assert sweep.parse_values("dropout", "0.2:0.5,0.5") == [(0.2, 0.5), 0.5]
    assert sweep.parse_values("scheduler", "none,step") == ["none", "step"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "dropout"], "--grid expects KEY=VALUE"),
        (["--grid", "dropout=0,,0.5"], "empty value"),
        (["--grid", "dropout=0,0.1,..."], "'...' needs two values before it and one after"),
        (["--grid", "dropout=0,0.3,...,0.5"], "is not reached"),
        (["--grid", "dropout=0.5,0.5"], "repeated values"),
        (["--grid", "dropout=0,0.5", "--set", "dropout=0.1"], "both swept"),
        (["--grid", "seed=1,2"], "--seeds"),
        (["--set", "epochs"], "--set expects KEY=VALUE"),
    ],
)
def test_grid_errors_exit_2_in_one_line(tmp_path, capsys, argv, message):
    assert sweep_cmd(tmp_path / "s", *argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("droplab sweep: error:")


def test_bad_seeds_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep_cmd(tmp_path / "s", "--seeds", "0")
    assert exc.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_toml_file_and_flags_merge(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text("seeds = 2\n[grid]\ndropout = [0.0, 0.5, [0.2, 0.5]]\n[fixed]\nepochs = 3\n")
    args = _parse(["--file", str(path), "--grid", "subset=100,200", "--set", "lr=0.1"])
    spec = sweep.build_spec(args.file, args.grid, args.set, args.seeds)
    assert spec.grid == {"dropout": [0.0, 0.5, (0.2, 0.5)], "subset": [100, 200]}
    assert spec.fixed == {"epochs": 3, "lr": 0.1}
    assert spec.seeds == [0, 1]
    assert len(sweep.plan(spec)) == 12


def test_bad_toml_exits_2(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text("[grid\n")
    assert sweep_cmd(tmp_path / "s", "--file", str(path)) == 2
    assert "not valid TOML" in capsys.readouterr().err


def _parse(argv):
    import argparse

    parser = argparse.ArgumentParser()
    sweep_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_trial_identity_is_the_config():
    spec = sweep.SweepSpec(grid={"dropout": [0.0, 0.5]}, fixed={"epochs": 2}, seeds=[0, 1])
    trials = sweep.plan(spec)
    assert len(trials) == 4 and len({t for t, _ in trials}) == 4
    assert [c["seed"] for _, c in trials] == [0, 0, 1, 1]  # seeds outermost
    assert all(tid == trial_id(c) for tid, c in trials)
    again = sweep.plan(
        sweep.SweepSpec(grid={"dropout": [0.0, 0.5, 0.9]}, fixed={"epochs": 2}, seeds=[0, 1])
    )
    assert {t for t, _ in trials} < {t for t, _ in again}


def test_train_config_completes_and_validates():
    train = pytest.importorskip("droplab.train")
    spec = sweep.SweepSpec(grid={"dropout": [0.0, 0.3]}, fixed={"threads": 4})
    (_, a), (_, b) = sweep.plan(spec, train.TrainConfig)
    assert a["dropout"] == [0.0, 0.0] and b["dropout"] == [0.3, 0.3]  # one rate, every layer
    assert "threads" not in a  # how a trial runs is not what it is
    assert set(a) == set(train.TrainConfig().to_dict()) - {"threads"}
    with pytest.raises(UsageError, match="dropuot"):
        sweep.plan(sweep.SweepSpec(grid={"dropuot": [0.1]}), train.TrainConfig)
    with pytest.raises(UsageError, match="dropout"):
        sweep.plan(sweep.SweepSpec(grid={"dropout": [1.5]}), train.TrainConfig)


# -- running -----------------------------------------------------------------------------------


def test_resume_skips_finished_trials(tmp_path, fake_log):
    out = tmp_path / "s"
    assert sweep_cmd(out, "--grid", "dropout=0,0.5", "--seeds", "3") == 0
    assert trainings(fake_log) == 6
    assert sweep_cmd(out, "--grid", "dropout=0,0.5", "--seeds", "3") == 0
    assert trainings(fake_log) == 6  # nothing ran again
    assert sweep_cmd(out, "--grid", "dropout=0,0.5,0.9", "--seeds", "3") == 0
    assert trainings(fake_log) == 9  # only the new grid value
    assert statuses(out)["done"] == 9
    with Store(out / "sweep.db") as store:
        rows = store.trials()
    assert all(r.attempts == 1 and r.epochs and r.host and r.pid for r in rows)


def test_failing_trial_is_recorded_and_the_rest_complete(tmp_path, fake_log, capsys):
    out = tmp_path / "s"
    args = ("--grid", "dropout=0,0.5,0.9", "--grid", "fail=0,1")
    assert sweep_cmd(out, *args) == 1  # failures make the exit status 1
    assert statuses(out) == {"pending": 0, "running": 0, "done": 3, "failed": 3}
    with Store(out / "sweep.db") as store:
        failed = store.trials("failed")
    assert all("ValueError: boom at dropout=" in t.error for t in failed)
    assert "FAILED" in capsys.readouterr().out
    # a rerun leaves failures alone unless asked
    assert sweep_cmd(out, *args) == 1
    assert trainings(fake_log) == 6
    assert sweep_cmd(out, *args, "--retry-failed") == 1
    assert trainings(fake_log) == 9
    with Store(out / "sweep.db") as store:
        assert all(t.attempts == 2 for t in store.trials("failed"))


def test_a_dead_worker_fails_its_trial_and_the_pool_recovers(tmp_path, fake_log):
    out = tmp_path / "s"
    assert (
        sweep_cmd(out, "--grid", "dropout=0,0.1,...,0.5", "--grid", "die=0,1", "--workers", "1")
        == 1
    )
    counts = statuses(out)
    assert counts["done"] == 6 and counts["failed"] == 6
    with Store(out / "sweep.db") as store:
        assert all("worker process died" in t.error for t in store.trials("failed"))


def _driver(out, *extra, env):
    cmd = [
        sys.executable,
        "-m",
        "droplab",
        "sweep",
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-report",
        "--trainer",
        FAKE,
        "--set",
        f"log={out.parent / 'trainings.log'}",
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=sigint_default,
    )


def _wait_done(db: Path, n: int, proc, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if db.exists():
            with sqlite3.connect(db, timeout=10) as conn:
                try:
                    done = conn.execute("SELECT count(*) FROM trials WHERE status='done'")
                    if done.fetchone()[0] >= n:
                        return
                except sqlite3.OperationalError:  # the table is not there yet
                    pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} trials done after {timeout} s")


GRID = ("--grid", "dropout=0,0.1,...,0.9", "--set", "sleep=0.2", "--seeds", "2")


def test_killed_driver_leaves_a_consistent_db_that_a_rerun_completes(tmp_path, fake_log):
    out = tmp_path / "s"
    env = dict(os.environ)
    proc = _driver(out, *GRID, env=env)
    _wait_done(out / "sweep.db", 4, proc)
    helpers = _descendants(proc.pid)  # the forkserver and the pool's workers
    assert len(helpers) >= 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    _assert_gone(helpers)  # they end with the driver
    with Store(out / "sweep.db") as store:
        assert store.check() == "ok"
        before = store.counts()
    assert before["done"] >= 4 and before["done"] < 20
    assert before["running"] <= 2  # at most the trials in flight
    assert sweep_cmd(out, *GRID) == 0
    assert statuses(out) == {"pending": 0, "running": 0, "done": 20, "failed": 0}
    # nothing finished twice: only the trials in flight at the kill ran again
    assert trainings(fake_log) <= 20 + 2


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _assert_gone(pids: set[int], timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = {
            p
            for p in pids
            if Path(f"/proc/{p}").exists()
            and Path(f"/proc/{p}/stat").read_text().split(") ", 1)[1][0] != "Z"
        }
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes of the killed driver still running: {sorted(left)}")


def test_interrupt_puts_in_flight_trials_back_to_pending(tmp_path, fake_log):
    out = tmp_path / "s"
    proc = _driver(out, *GRID, env=dict(os.environ))
    _wait_done(out / "sweep.db", 2, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    counts = statuses(out)
    assert counts["running"] == 0 and counts["failed"] == 0 and counts["pending"] > 0
    assert sweep_cmd(out, *GRID) == 0
    assert statuses(out)["done"] == 20


# -- the report --------------------------------------------------------------------------------


def test_report_plots_table_and_heatmap(tmp_path, fake_log):
    pytest.importorskip("matplotlib")
    from droplab.report.sweep import PLOTS, best_settings, build

    out = tmp_path / "s"
    rc = main(
        [
            "sweep",
            "--out",
            str(out),
            "--workers",
            "2",
            "--trainer",
            FAKE,
            "--set",
            f"log={fake_log}",
            "--grid",
            "dropout=0,0.25,0.5,0.75",
            "--grid",
            "weight_decay=0,0.1",
            "--grid",
            "subset=1000,60000",
            "--seeds",
            "2",
        ]
    )
    assert rc == 0
    html = (out / "report.html").read_text()
    for name in PLOTS.values():
        assert (out / name).stat().st_size > 1000
        assert name in html
    assert 'id="best"' in html and html.count("data:image/png;base64,") == 3
    with Store(out / "sweep.db") as store:
        done = store.trials("done")
    best = best_settings(done, ["dropout", "weight_decay", "subset"])
    assert best[0]["setting"]["weight_decay"] == 0 and best[0]["seeds"] == 2
    assert build(out) == out / "report.html"  # rebuilding works on its own


# -- a real training ---------------------------------------------------------------------------


@pytest.mark.slow
def test_real_trials_are_deterministic_across_worker_counts(tmp_path):
    pytest.importorskip("droplab.train")
    try:
        from droplab.data import load_fashion_mnist

        load_fashion_mnist(download=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no Fashion-MNIST: {e}")
    grid = (
        "--grid",
        "dropout=0,0.5",
        "--set",
        "subset=256",
        "--set",
        "epochs=1",
        "--set",
        "hidden=32:32",
        "--threads",
        "1",
    )
    assert sweep_cmd(tmp_path / "a", *grid, "--workers", "2", trainer=None) == 0
    assert sweep_cmd(tmp_path / "b", *grid, "--workers", "1", trainer=None) == 0
    results = []
    for name in "ab":
        with Store(tmp_path / name / "sweep.db") as store:
            results.append(
                {
                    t.id: [{k: v for k, v in e.items() if k != "seconds"} for e in t.epochs]
                    for t in store.trials("done")
                }
            )
    assert len(results[0]) == 2 and results[0] == results[1]
    epoch = next(iter(results[0].values()))[-1]
    assert 0.0 < epoch["test_acc"] <= 1.0 and "train_acc_eval" in epoch
