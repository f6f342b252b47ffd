"""Atomic file output: write to a temporary file in the same folder, then ``os.replace``.

A reader never sees a half-written file, and an interrupted write leaves the old file intact.
Files droplab later trusts (checkpoints) are written *verified*: a first line
``droplab-sha256:<hex digest of the rest>`` and the payload, in one atomic write, so the digest
can never be out of step with the bytes; ``read_verified`` refuses a file whose bytes changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: remove_stale_temps knows a leftover of a killed writer
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX
    )
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 & ~umask)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


TEMP_SUFFIX = ".tmp"


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writers killed mid-write (kill -9, power loss) left in
    ``folder``: ``.NAME.PID.XXXX.tmp`` whose process ``PID`` is gone. Returns what it removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        parts = tmp.name.split(".")  # ['', NAME..., PID, XXXX, 'tmp']
        if len(parts) < 5 or not parts[-3].isdigit() or _alive(int(parts[-3])):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


VERIFIED_MAGIC = b"droplab-sha256:"


class CorruptFileError(ValueError):
    """A file droplab wrote and reads back is damaged or is not what it should be."""


def atomic_write_verified(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically behind a first line holding its SHA-256 (``read_verified``)."""
    digest = hashlib.sha256(data).hexdigest().encode("ascii")
    return atomic_write_bytes(path, VERIFIED_MAGIC + digest + b"\n" + data)


def read_verified(path: str | os.PathLike, what: str, *, legacy: bytes | None = None) -> bytes:
    """The payload of a file written by ``atomic_write_verified``, its digest checked.

    Args:
        what: what the file is, for the message (``"a training checkpoint"``).
        legacy: the first bytes of the same kind of file from before droplab verified it
            (``b"PK"``, a zip): such a file is returned whole, unverified.

    Raises:
        CorruptFileError: naming the file: empty, not verified, or its bytes changed.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise CorruptFileError(f"{path} is empty: not {what} (an interrupted copy?)")
    if not raw.startswith(VERIFIED_MAGIC):
        if legacy is not None and raw.startswith(legacy):
            return raw
        raise CorruptFileError(f"{path} is not {what} written by droplab (no digest line)")
    header, _, payload = raw.partition(b"\n")
    recorded = header[len(VERIFIED_MAGIC) :].decode("ascii", "replace")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != recorded:
        raise CorruptFileError(
            f"{path} is damaged: the SHA-256 of its bytes is {actual[:16]}..., the digest "
            f"written with it {recorded[:16]}...; not used (it is {what})"
        )
    return payload


def atomic_torch_save(path: str | os.PathLike, obj) -> Path:
    """``torch.save`` to ``path`` atomically and verified (``torch_load_verified`` reads it)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_verified(path, buf.getvalue())


def torch_load_verified(path: str | os.PathLike, what: str):
    """``torch.load`` (``weights_only``) of a file ``atomic_torch_save`` wrote, digest checked.

    A zip written by ``torch.save`` alone (droplab before verified files) is read unverified.
    Anything that does not load is a ``CorruptFileError`` naming the file, never a pickle or
    zip traceback.
    """
    import io

    import torch

    payload = read_verified(path, what, legacy=b"PK")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle, EOF errors of a damaged or foreign file
        raise CorruptFileError(
            f"{path} is not {what} that loads ({type(e).__name__}: {str(e)[:120]})"
        ) from None


def merge_json(path: str | os.PathLike, new: dict) -> Path:
    """Add ``new``'s sections to the JSON object in ``path`` (a missing or unreadable file is an
    empty object; ``uci`` sections merge by dataset name), atomically."""
    path = Path(path)
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
    for key, value in new.items():
        if key == "uci" and isinstance(data.get("uci"), dict):
            data["uci"].update(value)
        else:
            data[key] = value
    return atomic_write_json(path, data)
