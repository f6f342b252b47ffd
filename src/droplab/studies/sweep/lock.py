"""One driver per sweep folder: an exclusive ``flock`` on ``DIR/sweep.lock``, held for the
driver's life.

The operating system releases the lock when the process ends, however it ends (``kill -9``
included), so a dead driver never blocks the next one; the lock file itself stays (deleting it
would race with a driver opening it) and holds the pid, host and start time of the driver that
holds or last held it, for the message a second driver gets. ``flock`` is advisory and local: it
does not protect a folder on a network file system shared by two machines.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from droplab.errors import DroplabError

LOCK_NAME = "sweep.lock"


class SweepLocked(DroplabError):
    """Another driver holds the sweep folder."""


class FolderLock:
    """``with FolderLock(directory):`` runs the body as the folder's only driver, or raises
    :class:`SweepLocked` (naming the folder and the other driver) at once, without waiting."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise SweepLocked(
                f"{self.directory} is in use by another droplab sweep ({holder}); wait for it "
                "to finish or stop it, then run the same command to resume"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return text or "its pid is not written yet"
