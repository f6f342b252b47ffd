"""What was run, where and with what: the block every result file and report carries.

``provenance(threads=...)`` returns a JSON-safe dict: the command line that reproduces the result,
the versions of droplab, torch, NumPy, numba and Python, the thread count actually used, the
host, the UTC date and the git commit of droplab's source tree (when it is a git checkout).
It sits at the bottom of the package: it imports no torch (versions come from the installed
distributions' metadata) and nothing of droplab but the version.

The CLI calls ``record_command(argv)`` once, so a result written by ``droplab train ...`` says
``droplab train ...`` rather than the Python entry point; code calling the library directly gets
``python script.py ...`` from ``sys.argv``.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from droplab._version import __version__

#: the keys of a provenance block, in the order reports show them
FIELDS = (
    "command",
    "droplab",
    "torch",
    "numpy",
    "numba",
    "python",
    "threads",
    "host",
    "date",
    "git",
)

_command: list[str] | None = None


def record_command(argv: Sequence[str]) -> None:
    """Remember the command line (``["droplab", "train", ...]``) for ``provenance``."""
    global _command
    _command = [str(a) for a in argv]


def command_line() -> str:
    """The recorded command line, shell-quoted; else ``python`` and ``sys.argv``."""
    argv = _command if _command is not None else ["python", *sys.argv]
    return shlex.join(argv)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the checkout droplab runs from (``+dirty`` with local changes), or None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None  # an installed wheel: its version says what it is
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance(*, threads: int | None = None, command: str | None = None) -> dict:
    """The provenance block of a result written now.

    Args:
        threads: the torch thread count the result was computed with (``None``: not recorded).
        command: the command that reproduces the result. Default: ``command_line()``

    Returns a dict with the keys of ``FIELDS``; a package that is not installed is ``None``.
    """
    return {
        "command": command if command is not None else command_line(),
        "droplab": __version__,
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "python": platform.python_version(),
        "threads": threads,
        "host": socket.gethostname(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": _git_commit(),
    }


def describe_value(key: str, value) -> str:
    """How a report shows one field (``numba: not installed (backend="auto" uses torch)``)."""
    if value is None:
        if key == "numba":
            return 'not installed (backend="auto" uses PyTorch\'s ops: pip install droplab[fast])'
        return "not recorded" if key == "threads" else "-"
    return str(value)


def provenance_lines(prov: dict) -> list[str]:
    """``key: value`` lines, the command last (the console footer of a command)."""
    lines = [f"{k}: {describe_value(k, prov.get(k))}" for k in FIELDS if k != "command"]
    return [*lines, f"reproduce: {prov.get('command', '-')}"]
