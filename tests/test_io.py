"""droplab._io: atomic writes never leave a partial file and give files the usual mode."""

from __future__ import annotations

import os

import pytest

from droplab import _io


def test_atomic_write_replaces_and_uses_the_umask_mode(tmp_path):
    path = tmp_path / "sub" / "a.json"
    _io.atomic_write_json(path, {"x": 1})
    _io.atomic_write_json(path, {"x": 2})
    assert path.read_text() == '{\n  "x": 2\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    _io.atomic_write_text(path, "old")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
