"""Faults a careful user's worst day brings (issue 20): damaged files droplab reads back, a
killed writer's leftovers, absurd sizes, a diverging run, signals. Each is refused with one line
naming the file or argument (exit 1, or 2 for bad arguments), or repaired (a cache is rebuilt);
never a traceback, never a silently different result."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from droplab import data as data_module
from droplab.__main__ import main
from droplab._io import (
    CorruptFileError,
    atomic_torch_save,
    atomic_write_verified,
    read_verified,
    remove_stale_temps,
)
from droplab.cli import train as train_cmd
from droplab.train import TrainConfig, _load_checkpoint, load_model, train

SMALL = ["--hidden", "32", "--dropout", "0.5", "--init", "torch", "--lr", "0.1",
         "--batch-size", "32", "--quiet"]  # fmt: skip


@pytest.fixture
def tiny_cli(monkeypatch, tiny_data):
    monkeypatch.setattr(train_cmd, "load_data", lambda: tiny_data)
    return tiny_data


@pytest.fixture
def run_dir(tmp_path, tiny_cli, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", *SMALL]) == 0
    capsys.readouterr()
    return out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ----------------------------------------------------------------------------------------------
# verified files: the digest line
# ----------------------------------------------------------------------------------------------


def test_a_verified_file_reads_back_and_any_flipped_byte_is_refused(tmp_path):
    path = tmp_path / "f"
    payload = bytes(range(256)) * 40
    atomic_write_verified(path, payload)
    assert read_verified(path, "a test file") == payload
    raw = path.read_bytes()
    for at in (0, 20, len(raw) // 2, len(raw) - 1):  # the magic, the digest, the payload
        damaged = bytearray(raw)
        damaged[at] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptFileError, match=str(path)):
            read_verified(path, "a test file")


def test_empty_and_foreign_files_are_refused_by_name(tmp_path):
    empty, foreign = tmp_path / "empty", tmp_path / "foreign"
    empty.write_bytes(b"")
    foreign.write_bytes(b"not droplab's")
    with pytest.raises(CorruptFileError, match=f"{empty} is empty"):
        read_verified(empty, "a checkpoint")
    with pytest.raises(CorruptFileError, match="no digest line"):
        read_verified(foreign, "a checkpoint")
    assert read_verified(foreign, "x", legacy=b"not") == b"not droplab's"


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------


def flip_middle_byte(path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_flipped_checkpoint_byte_is_refused_on_resume(run_dir, capsys):
    flip_middle_byte(run_dir / "checkpoint")
    argv = ["train", "--out", str(run_dir), "--epochs", "2", "--resume", *SMALL]
    assert main(argv) == 1
    err = one_line_error(capsys)
    assert f"{run_dir / 'checkpoint'} is damaged" in err
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"][-1]["epoch"] == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\x00garbage" * 50, "no digest line"),
        (b"PK\x03\x04 a damaged zip", "not a droplab training checkpoint that loads"),
    ],
)
def test_empty_or_garbage_checkpoints_are_one_line_errors(run_dir, capsys, content, message):
    (run_dir / "checkpoint").write_bytes(content)
    assert main(["train", "--out", str(run_dir), "--epochs", "2", "--resume", *SMALL]) == 1
    assert message in one_line_error(capsys)
    assert (
        main(["mc", "--checkpoint", str(run_dir / "checkpoint"), "--out", str(run_dir / "m")]) == 1
    )
    assert message in one_line_error(capsys)


def test_a_checkpoint_missing_a_key_is_named(run_dir, capsys):
    ckpt = _load_checkpoint(run_dir / "checkpoint")
    del ckpt["numpy_rng"]
    atomic_torch_save(run_dir / "checkpoint", ckpt)
    assert main(["train", "--out", str(run_dir), "--epochs", "2", "--resume", *SMALL]) == 1
    assert "incomplete checkpoint: no numpy_rng" in one_line_error(capsys)
    ckpt["numpy_rng"] = {}
    ckpt["engine"]["model"] = {"0.weight": torch.zeros(1)}
    atomic_torch_save(run_dir / "checkpoint", ckpt)
    with pytest.raises(CorruptFileError, match="does not hold a usable model"):
        load_model(run_dir)


def test_a_checkpoint_from_before_digests_still_loads(run_dir):
    ckpt = _load_checkpoint(run_dir / "checkpoint")
    buf = io.BytesIO()
    torch.save(ckpt, buf)  # what droplab wrote before verified files: a bare zip
    (run_dir / "checkpoint").write_bytes(buf.getvalue())
    model, config = load_model(run_dir)
    assert config.hidden == (32,)


def test_library_resume_needs_a_folder_and_says_when_it_starts_over(tmp_path, tiny_data):
    config = TrainConfig(hidden=(8,), dropout=(0.5,), epochs=1, subset=64)
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        train(config, resume=True, progress=False, data=tiny_data)
    lines = []
    train(config, out_dir=tmp_path / "r", resume=True, progress=False, data=tiny_data,
          log=lines.append)  # fmt: skip
    assert lines[0] == f"no checkpoint in {tmp_path / 'r'}: starting at epoch 1"


# ----------------------------------------------------------------------------------------------
# the decoded Fashion-MNIST cache
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """Four small IDX files with matching digests, and an empty user cache."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 60, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 10, dtype=np.uint8),
    }
    folder = tmp_path / "fm"
    folder.mkdir()
    sums = {}
    for key, name in data_module.FILES.items():
        a = arrays[key]
        raw = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        raw += a.tobytes()
        (folder / name).write_bytes(raw)
        sums[name] = data_module._idx_digest(a)
    monkeypatch.setattr(data_module, "digests", lambda: sums)
    monkeypatch.setattr(data_module, "SIZES", {"train": 60, "test": 10})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return folder, arrays


def cached_file(tmp_path):
    (path,) = (tmp_path / "cache" / "droplab" / "fashion-mnist" / "decoded").glob("*.npz")
    return path


def load(folder):
    return data_module._load_arrays(data_module._locate(folder)[0])


def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path, fake_fashion):
    folder, arrays = fake_fashion
    load(folder)
    cache = cached_file(tmp_path)
    for damage in (
        lambda b: b[: len(b) // 2],
        lambda b: b"",
        lambda b: b[:100] + b"\xff" + b[101:],
    ):
        cache.write_bytes(damage(cache.read_bytes()))
        with pytest.warns(RuntimeWarning, match=f"cache {cache} was damaged"):
            got = load(folder)
        assert all(np.array_equal(got[k], arrays[k]) for k in arrays)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # rebuilt: the next load is clean
            load(folder)


def test_a_valid_cache_with_altered_labels_is_not_trusted(tmp_path, fake_fashion):
    folder, arrays = fake_fashion
    load(folder)
    cache = cached_file(tmp_path)
    forged = {k: v.copy() for k, v in arrays.items()}
    forged["test_labels"][:] = 3
    buf = io.BytesIO()
    np.savez(buf, **forged)
    cache.write_bytes(buf.getvalue())
    with pytest.warns(RuntimeWarning, match="test_labels do not match"):
        got = load(folder)
    assert np.array_equal(got["test_labels"], arrays["test_labels"])


# ----------------------------------------------------------------------------------------------
# leftovers, sizes, divergence
# ----------------------------------------------------------------------------------------------


def test_a_killed_writers_temp_file_is_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".checkpoint.{dead}.abc123.tmp"
    live = tmp_path / f".metrics.json.{os.getpid()}.def456.tmp"
    other = tmp_path / ".hidden.tmp"
    for f in (stale, live, other):
        f.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert live.exists() and other.exists() and not stale.exists()


def test_train_removes_the_leftovers_of_a_killed_run(run_dir, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = run_dir / f".checkpoint.{dead}.zz.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "--out", str(run_dir), "--epochs", "2", "--resume", *SMALL]) == 0
    assert not stale.exists()


@pytest.mark.parametrize(
    "argv, exit_code, message",
    [
        (["--threads", "100000"], 2, "argument --threads: must be an integer in [1, "),
        (["--hidden", "1000000000000,8", "--dropout", "0.5"], 1, "out of memory (Unable to"),
        (["--lr", "1e30"], 1, "training diverged in epoch 1: train loss nan"),
    ],
)
def test_absurd_settings_are_one_line_errors(tmp_path, tiny_cli, capsys, argv, exit_code, message):
    base = ["train", "--out", str(tmp_path / "r"), "--epochs", "1", "--quiet", "--batch-size", "32"]
    with pytest.raises(SystemExit) if exit_code == 2 else _no_raise() as raised:
        code = main([*base, *argv])
    code = raised.value.code if exit_code == 2 else code
    assert code == exit_code
    assert message in one_line_error(capsys)


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_threads_beyond_the_machine_are_refused_by_the_library():
    from droplab._threads import max_threads

    with pytest.raises(
        ValueError, match=rf"threads must be None or an integer in \[1, {max_threads()}\]"
    ):
        TrainConfig(threads=max_threads() + 1)


def test_a_folder_missing_some_files_names_them(tmp_path, monkeypatch):
    folder = tmp_path / "fm"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    monkeypatch.setattr(data_module, "SYSTEM_DIRS", ())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DROPLAB_DATA", raising=False)
    with pytest.raises(data_module.DataError) as raised:
        data_module.load_fashion_mnist(folder, download=False)
    assert (
        f"{folder} lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
        in str(raised.value)
    )
