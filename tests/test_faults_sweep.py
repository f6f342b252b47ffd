"""Sweeps on a bad day (issue 20, items 4 and 5): two drivers on one folder, a driver killed with
SIGKILL, a worker killed or stopped, a trial that hangs, a dry run, a full disk, a damaged
``sweep.db``, a Ray address where nothing listens, and the private Ray's network exposure.

Every case either completes what it can or ends in bounded time with one line naming the file
or address (exit 1), and loses nothing already recorded. The trainer is the instant fake of
``sweep_fakes``; its ``sleep`` key makes trials last, and it logs ``seed dropout pid`` when a
trial starts, which is how these tests find the worker running a trial.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from droplab.__main__ import main
from droplab.studies.sweep.store import Store
from test_sweep import FAKE, HERE, _assert_gone, _descendants, _driver, _wait_done, statuses


@pytest.fixture
def fake_log(tmp_path, monkeypatch):
    """As in test_sweep: workers import ``sweep_fakes``; trials log to this file."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "trainings.log"


def grid(sleep: float) -> tuple[str, ...]:
    """20 trials of ``sleep`` seconds each."""
    return ("--grid", "dropout=0,0.1,...,0.9", "--set", f"sleep={sleep}", "--seeds", "2")


def sweep_args(out: Path, *extra: str) -> list[str]:
    """What ``_driver`` runs too (the same ``log`` key: the same trials)."""
    return ["--out", str(out), "--workers", "2", "--no-report", "--trainer", FAKE,
            "--set", f"log={out.parent / 'trainings.log'}", *extra]  # fmt: skip


def sweep_in_process(out: Path, *extra: str) -> int:
    return main(["sweep", *sweep_args(out, *extra)])


def started(log: Path) -> list[tuple[str, int]]:
    """``(seed dropout, pid)`` of every trial started so far, in order."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [(" ".join(line.split()[:2]), int(line.split()[2])) for line in lines]


def wait_started(log: Path, n: int, proc=None, timeout: float = 60.0) -> list[tuple[str, int]]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None:
            assert proc.poll() is None, proc.stdout.read()
        found = started(log)
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} trials started after {timeout} s")


def one_line_error(err: str, *names: str) -> str:
    line = err.strip()
    assert "\n" not in line and "Traceback" not in err, err
    assert line.startswith("droplab ") and ": error: " in line, err
    for name in names:
        assert name in line, (name, line)
    return line


# -- two drivers, and a driver killed with SIGKILL ---------------------------------------------


def test_a_second_driver_is_refused_and_a_killed_drivers_lock_does_not_block(
    tmp_path, fake_log, capsys
):
    out = tmp_path / "s"
    first = _driver(out, *grid(0.5), env=dict(os.environ))
    _wait_done(out / "sweep.db", 2, first)
    assert sweep_in_process(out, *grid(0.5)) == 1
    line = one_line_error(capsys.readouterr().err, str(out), f"pid {first.pid} on ")
    assert "in use by another droplab sweep" in line
    assert first.poll() is None  # the first one is still running, unharmed
    first.send_signal(signal.SIGKILL)  # kill -9: the OS releases the lock
    first.wait(timeout=10)
    first.stdout.close()
    assert sweep_in_process(out, *grid(0.5)) == 0
    assert statuses(out) == {"pending": 0, "running": 0, "done": 20, "failed": 0}
    trials = [seed_dropout for seed_dropout, _ in started(fake_log)]
    assert len(trials) <= 20 + 2  # only the trials in flight at the kill ran twice


# -- workers killed, stopped, hanging ----------------------------------------------------------


def test_a_killed_worker_fails_only_its_own_trial(tmp_path, fake_log):
    out = tmp_path / "s"
    proc = _driver(
        out, "--grid", "dropout=0,0.1,...,0.5", "--set", "sleep=1.5", env=dict(os.environ)
    )
    (victim, pid), (other, other_pid) = wait_started(fake_log, 2, proc)[:2]
    assert pid != other_pid
    os.kill(pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, output  # a failed trial makes the exit status 1
    with Store(out / "sweep.db") as store:
        failed, done = store.trials("failed"), store.trials("done")
    assert len(failed) == 1 and len(done) == 5, output
    assert "worker process died while running it" in failed[0].error
    assert "SIGKILL" in failed[0].error
    assert failed[0].config["dropout"] == float(victim.split()[1])
    # the healthy worker's trial, in flight at the same time, finished
    assert any(t.pid == other_pid for t in done)


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_a_stopped_worker_does_not_keep_the_driver_from_ending(tmp_path, fake_log, sig, status):
    out = tmp_path / "s"
    proc = _driver(out, *grid(5), env=dict(os.environ))
    (_, pid), (_, other) = wait_started(fake_log, 2, proc)[:2]
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.time()
        proc.send_signal(sig)
        try:
            output, _ = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:  # a user presses Ctrl-C again
            proc.send_signal(sig)
            output, _ = proc.communicate(timeout=15)
        assert proc.returncode == status, output
        assert time.time() - t0 < 15
        _assert_gone({pid, other})  # SIGKILL ends a stopped process too
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    counts = statuses(out)
    assert counts["running"] == 0 and counts["pending"] == 20 - counts["done"], counts


def test_a_hanging_trial_is_stopped_by_the_time_limit(tmp_path, fake_log, capsys):
    out = tmp_path / "s"
    t0 = time.time()
    rc = sweep_in_process(
        out, "--grid", "dropout=0,0.5", "--grid", "sleep=0,600", "--trial-timeout", "2"
    )
    assert rc == 1
    assert time.time() - t0 < 40
    with Store(out / "sweep.db") as store:
        failed, done = store.trials("failed"), store.trials("done")
    assert {t.config["sleep"] for t in failed} == {600} and len(failed) == 2
    assert {t.config["sleep"] for t in done} == {0} and len(done) == 2
    assert all("timed out: stopped after 2 s" in t.error for t in failed)
    assert "timed out" in capsys.readouterr().out


def test_the_time_limit_comes_from_a_sweep_file_too(tmp_path):
    from droplab.studies.sweep.plan import build_spec

    path = tmp_path / "sweep.toml"
    path.write_text("trial_timeout = 90\n[grid]\ndropout = [0.0, 0.5]\n")
    assert build_spec(path).trial_timeout == 90.0
    assert build_spec(path, trial_timeout=5).trial_timeout == 5  # the flag wins
    path.write_text("trial_timeout = -1\n")
    with pytest.raises(ValueError, match="trial_timeout must be a number of seconds > 0"):
        build_spec(path)


# -- the dry run -------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_dry_run_leaves_no_trace(tmp_path, fake_log):
    out = tmp_path / "s"
    assert sweep_in_process(out, "--grid", "dropout=0,0.5", "--dry-run") == 0
    assert not out.exists()  # not even created
    assert sweep_in_process(out, "--grid", "dropout=0,0.5") == 0
    before = snapshot(out)
    # a wider grid, new fixed values and retries would all write, if it were not a dry run
    assert sweep_in_process(
        out, "--grid", "dropout=0,0.5,0.9", "--grid", "lr=0.1,0.2", "--retry-failed", "--dry-run"
    ) == 0  # fmt: skip
    assert snapshot(out) == before


# -- hidden as a grid key ----------------------------------------------------------------------


def test_hidden_is_a_grid_key_one_width_for_every_layer_or_one_per_layer(tmp_path, capsys):
    pytest.importorskip("droplab.train")
    from droplab.cli.sweep import plan_trials
    from droplab.studies.sweep.plan import build_spec

    argv = ["sweep", "--out", str(tmp_path / "s"), "--grid", "hidden=64,128", "--dry-run"]
    assert main(argv) == 0
    assert "2 trials (hidden x2, 1 seed(s))" in capsys.readouterr().out
    assert not (tmp_path / "s").exists()
    trials = plan_trials(build_spec(grid=["hidden=64,128,32:16"], fixed=["dropout=0.5"]))
    layers = [(c["hidden"], c["dropout"]) for _, c in trials]
    assert layers == [([64, 64], [0.5, 0.5]), ([128, 128], [0.5, 0.5]), ([32, 16], [0.5, 0.5])]
    # three widths against the default's two rates: one line saying what to set
    assert main(["sweep", "--out", str(tmp_path / "s"), "--grid", "hidden=8:8:8", "--dry-run"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "invalid trial (hidden=8): dropout must have one rate" in line
    assert "set dropout too (--set dropout=0.5: one rate for every layer)" in line


# -- the report's images -----------------------------------------------------------------------


def test_a_failed_rewrite_of_a_report_image_keeps_the_old_one(
    tmp_path, fake_log, capsys, monkeypatch
):
    pytest.importorskip("matplotlib")
    from droplab.report.sweep import PLOTS

    out = tmp_path / "s"
    assert sweep_in_process(out, "--grid", "dropout=0,0.5") == 0
    assert main(["report", str(out)]) == 0
    image = out / PLOTS["acc"]
    before = image.read_bytes()
    assert before.startswith(b"\x89PNG")

    fsync = os.fsync

    def disk_full_for_the_image(fd):  # the write of the image fails before its rename
        if f".{image.name}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_for_the_image)
    capsys.readouterr()
    assert main(["report", str(out)]) == 1
    one_line_error(
        capsys.readouterr().err, str(image), "No space left on device", "old file is kept"
    )
    assert image.read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


# -- a full disk, a damaged database -----------------------------------------------------------


def test_a_full_disk_stops_the_sweep_in_one_line_and_loses_nothing(tmp_path, fake_log):
    out = tmp_path / "s"
    args = sweep_args(out, "--grid", "dropout=0,0.05,...,0.95", "--seeds", "2", "--set", "epochs=5")

    def file_size_limit():  # a disk that fills up at 150 kB (SIGXFSZ ignored: writes fail)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    cmd = [sys.executable, "-B", "-m", "droplab", "sweep", *args]
    full = subprocess.run(cmd, preexec_fn=file_size_limit, capture_output=True, text=True)
    assert full.returncode == 1, full.stdout + full.stderr
    one_line_error(full.stderr, str(out / "sweep.db"), "full disk")
    with Store(out / "sweep.db") as store:
        assert store.check() == "ok"
        kept = {t.id: t.epochs for t in store.trials("done")}
    assert 0 < len(kept) < 40
    assert main(["sweep", *args]) == 0  # space freed: the same command resumes
    with Store(out / "sweep.db") as store:
        done = {t.id: t for t in store.trials("done")}
    assert len(done) == 40
    assert all(
        done[tid].epochs == epochs and done[tid].attempts == 1 for tid, epochs in kept.items()
    )


def damaged(good: bytes) -> dict[str, bytes]:
    def flipped(start: int, n: int) -> bytes:
        return good[:start] + bytes(b ^ 0xFF for b in good[start : start + n]) + good[start + n :]

    page = 4096  # SQLite's default page size; a leaf's rows sit at its end
    return {
        "truncated": good[: len(good) // 2],
        "flipped file header": flipped(16, 84),
        "flipped page header": flipped(len(good) - page, 16),
        "flipped rows": flipped(len(good) - 512, 512),
        "not a database": b"these are not the bytes of a database\n" * 100,
    }


def test_a_damaged_database_is_named_in_one_line_and_left_as_it_is(tmp_path, fake_log, capsys):
    good_dir = tmp_path / "good"
    assert sweep_in_process(good_dir, "--grid", "dropout=0,0.1,...,0.9", "--seeds", "3") == 0
    good = (good_dir / "sweep.db").read_bytes()
    assert not (good_dir / "sweep.db-wal").exists()  # all of it is in sweep.db
    for i, (kind, data) in enumerate(damaged(good).items()):
        out = tmp_path / f"damaged{i}"
        out.mkdir()
        (out / "sweep.db").write_bytes(data)
        capsys.readouterr()
        assert main(["report", str(out)]) == 1, kind
        one_line_error(capsys.readouterr().err, str(out / "sweep.db"), "damaged")
        assert sweep_in_process(out, "--grid", "dropout=0,0.1,...,0.9", "--seeds", "3") == 1, kind
        one_line_error(capsys.readouterr().err, str(out / "sweep.db"), "damaged")
        assert (out / "sweep.db").read_bytes() == data, kind  # nothing written over it
        assert not (out / "report.html").exists()


# -- Ray ---------------------------------------------------------------------------------------


def test_a_ray_address_where_nothing_listens_fails_at_once(tmp_path, capsys):
    pytest.importorskip("ray")
    t0 = time.time()
    rc = sweep_in_process(tmp_path / "s", "--executor", "ray", "--address", "127.0.0.1:1")
    assert rc == 1
    assert time.time() - t0 < 30
    line = one_line_error(capsys.readouterr().err, "--address 127.0.0.1:1")
    assert "no Ray cluster answers there" in line


@pytest.mark.slow  # a Ray cluster takes 10-20 s to start
def test_the_private_ray_is_its_own_and_listens_on_loopback_only(tmp_path, fake_log, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from droplab.studies.sweep.executors import RayExecutor

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # must not redirect the private Ray
    handler = signal.getsignal(signal.SIGTERM)
    executor = RayExecutor(FAKE, workers=1, threads=1, address=None)
    try:
        assert signal.getsignal(signal.SIGTERM) is handler  # Ray's own is not left behind
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        executor.submit("t", {"dropout": 0.5, "seed": 0, "log": str(fake_log)})
        finished = []
        deadline = time.time() + 60
        while not finished and time.time() < deadline:
            finished = executor.wait(timeout=1)
        [(tid, result)] = finished
        assert tid == "t" and "epochs" in result, result
        listening = listening_sockets({os.getpid(), *_descendants(os.getpid())})
        assert listening, "found none of Ray's servers"
        exposed = {a for a in listening if not is_loopback(a)}
        assert not exposed, f"the private Ray listens beyond the loopback address: {exposed}"
        temp_dir = executor._temp_dir
        assert temp_dir and Path(temp_dir).is_dir()
    finally:
        executor.close()
    assert not ray.is_initialized() and not Path(temp_dir).exists()


def listening_sockets(pids: set[int]) -> set[str]:
    """``ip:port`` of the TCP sockets in LISTEN state held by ``pids`` (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # gone, or not ours to read
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(_address(fields[1]))
    return found


def _address(hex_address: str) -> str:
    import ipaddress

    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp* print each 32-bit word in host (little-endian) byte order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{ipaddress.ip_address(raw)}:{int(port, 16)}"


def is_loopback(address: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
