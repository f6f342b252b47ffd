"""The provenance block every result carries, and the one thread-count rule of the commands."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
import sys

import pytest

from droplab import _threads, provenance
from droplab._version import __version__


def test_block_has_every_field_with_real_values(monkeypatch):
    monkeypatch.setattr(provenance, "_command", None)
    prov = provenance.provenance(threads=3)
    assert tuple(prov) == provenance.FIELDS
    assert prov["droplab"] == __version__
    assert prov["torch"] == importlib.metadata.version("torch")
    assert prov["numpy"] == importlib.metadata.version("numpy")
    assert prov["python"] == platform.python_version()
    assert prov["threads"] == 3
    date = datetime.datetime.strptime(prov["date"], "%Y-%m-%dT%H:%M:%SZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - date).total_seconds()) < 60
    assert prov["command"].startswith("python ")


def test_recorded_command_is_shell_quoted(monkeypatch):
    monkeypatch.setattr(provenance, "_command", None)
    provenance.record_command(["droplab", "train", "--out", "my runs/a"])
    assert provenance.provenance()["command"] == "droplab train --out 'my runs/a'"
    assert provenance.provenance(command="x")["command"] == "x"


def test_lines_end_with_the_reproduce_command():
    prov = {**dict.fromkeys(provenance.FIELDS), "command": "droplab demo", "droplab": "1"}
    lines = provenance.provenance_lines(prov)
    assert lines[-1] == "reproduce: droplab demo"
    assert "droplab: 1" in lines and "threads: not recorded" in lines
    assert any(line.startswith("numba: not installed") for line in lines)


def test_git_commit_of_a_checkout_or_none():
    commit = provenance._git_commit()
    assert commit is None or len(commit.removesuffix("+dirty")) == 12


def test_provenance_imports_no_torch():
    code = "import sys, droplab.provenance as p; p.provenance(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_default_threads_is_one_and_requests_are_kept():
    assert _threads.resolve_threads(None) == _threads.DEFAULT_THREADS == 1
    assert _threads.resolve_threads(4) == 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", "max+1"])
def test_bad_thread_counts_are_refused(bad):
    bad = _threads.max_threads() + 1 if bad == "max+1" else bad
    with pytest.raises(ValueError, match=r"threads must be None or an integer in \[1, \d+\] "):
        _threads.resolve_threads(bad)
