"""Fashion-MNIST: an IDX reader, and a loader that finds, downloads, verifies and caches the data.

``load_fashion_mnist`` looks for the four IDX files (``.gz`` or decompressed) in, in order:

1. ``root`` (the argument),
2. ``$DROPLAB_DATA``,
3. the user cache, ``$XDG_CACHE_HOME/droplab/fashion-mnist`` (default ``~/.cache/droplab/...``),
4. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package),

and otherwise downloads them from the official mirrors into the user cache. Every file's
**decompressed** bytes are checked against the SHA-256 digests shipped with droplab (distributors
recompress the ``.gz``, so the ``.gz`` digests differ between copies); a file that does not match
is refused, naming it. The decoded arrays are cached (``.npz`` next to the downloads), keyed by the
source files' paths, sizes and modification times, so a second load takes well under a second;
every load checks each cached array against the same shipped digests (a damaged or altered cache
is rebuilt, with a ``RuntimeWarning`` naming it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from droplab._io import atomic_write_bytes

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# The official mirrors, tried in order (Xiao et al. 2017, github.com/zalandoresearch/fashion-mnist).
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

SYSTEM_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)

# expected number of examples per split (tests shrink these for synthetic files)
SIZES = {"train": 60000, "test": 10000}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CACHE_VERSION = 1


class DataError(RuntimeError):
    """The data could not be found, read or trusted; the message says what to do."""


class ChecksumError(DataError):
    """A file's decompressed bytes do not match the digest droplab ships."""


class IDXError(DataError):
    """A file is not a well-formed IDX file."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset: ``images`` float32 in [0, 1], ``labels`` int64."""

    images: object  # torch.Tensor (N, 784) or (N, 1, 28, 28)
    labels: object  # torch.Tensor (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def digests() -> dict[str, str]:
    """The SHA-256 of each decompressed file, as shipped with droplab."""
    text = resources.files("droplab").joinpath("fashion-mnist.sha256").read_text()
    out = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split()
            out[name] = digest
    return out


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode an IDX file (LeCun's MNIST format) from its decompressed bytes.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension as
    a big-endian uint32; the payload must have exactly the size the header announces.

    Raises:
        IDXError: naming the file, on a bad magic number, type code, dimension or size.
    """
    if len(data) < 4:
        raise IDXError(f"{name}: not an IDX file (only {len(data)} bytes)")
    zero1, zero2, code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0:
        raise IDXError(
            f"{name}: not an IDX file (magic number {data[:4].hex()}, expected 0000xxyy)"
        )
    if code not in _IDX_DTYPES:
        raise IDXError(f"{name}: unknown IDX type code 0x{code:02x}")
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise IDXError(f"{name}: truncated IDX header ({ndim} dimensions, {len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = memoryview(data)[4 + 4 * ndim :]
    if len(payload) != expected:
        raise IDXError(
            f"{name}: IDX header announces shape {dims} ({expected} bytes of data) "
            f"but the file holds {len(payload)} bytes"
        )
    # a writable copy: torch.from_numpy on a read-only buffer is undefined behaviour on write
    return np.frombuffer(payload, dtype=dtype).reshape(dims).copy()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, ``.gz``-compressed or not (see ``parse_idx``)."""
    return parse_idx(_read_bytes(Path(path)), str(path))


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip file ({e}); delete it and load again") from None
    return raw


def cache_dir() -> Path:
    """The user cache for Fashion-MNIST: ``$XDG_CACHE_HOME/droplab/fashion-mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "droplab" / "fashion-mnist"


def search_dirs(root=None) -> list[Path]:
    """The folders searched, in order (see the module docstring)."""
    dirs = []
    if root is not None:
        dirs.append(Path(root))
    if os.environ.get("DROPLAB_DATA"):
        dirs.append(Path(os.environ["DROPLAB_DATA"]))
    dirs.append(cache_dir())
    dirs.extend(SYSTEM_DIRS)
    out = []
    for d in dirs:
        # accept both the folder holding the files and its parent
        for cand in (d, d / "fashion-mnist"):
            if cand not in out:
                out.append(cand)
    return out


def _find_file(folder: Path, name: str) -> Path | None:
    for cand in (folder / name, folder / f"{name}.gz"):
        if cand.is_file():
            return cand
    return None


def _locate(root) -> tuple[dict[str, Path] | None, list[Path]]:
    searched = search_dirs(root)
    for folder in searched:
        found = {key: _find_file(folder, name) for key, name in FILES.items()}
        if all(found.values()):
            return found, searched
    return None, searched


def _partial(searched: list[Path]) -> str:
    """``; FOLDER has X but lacks Y, Z`` for each searched folder holding only some files."""
    notes = []
    for folder in searched:
        have = [name for name in FILES.values() if _find_file(folder, name)]
        if have:
            lacks = [name for name in FILES.values() if name not in have]
            notes.append(f"{folder} lacks {', '.join(lacks)} (.gz or not)")
    return "".join(f"; {n}" for n in notes)


def _verify(name: str, path: Path, data: bytes, expected: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{path}: SHA-256 of the decompressed {name} is {actual}, expected {expected}; "
            "the file is corrupt or not Fashion-MNIST and was not used (delete it to re-download)"
        )


def _download(folder: Path, mirrors=None, *, timeout: float = 30.0) -> dict[str, Path]:
    """Download the four files into ``folder``, atomically and verified; try each mirror."""
    mirrors = MIRRORS if mirrors is None else mirrors
    folder.mkdir(parents=True, exist_ok=True)
    expected = digests()
    out = {}
    for key, name in FILES.items():
        target = folder / f"{name}.gz"
        if target.is_file():
            out[key] = target
            continue
        errors = []
        for mirror in mirrors:
            try:
                raw = _fetch(mirror + name + ".gz", timeout=timeout)
                _verify(name, target, gzip.decompress(raw), expected[name])
            except (OSError, EOFError, zlib.error, ChecksumError) as e:
                errors.append(f"{mirror}: {e}")
                continue
            atomic_write_bytes(target, raw)
            out[key] = target
            break
        else:
            raise DataError(f"could not download {name}.gz: " + "; ".join(errors))
    return out


def _fetch(url: str, *, timeout: float) -> bytes:
    """GET ``url`` into memory with a progress bar; any failure is an ``OSError``."""
    import urllib.request

    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        buf = io.BytesIO()
        with Progress(
            *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), transient=True
        ) as bar:
            task = bar.add_task(url.rsplit("/", 1)[-1], total=total)
            while chunk := resp.read(1 << 16):
                buf.write(chunk)
                bar.advance(task, len(chunk))
    data = buf.getvalue()
    if total is not None and len(data) != total:
        raise OSError(f"incomplete download of {url}: {len(data)} of {total} bytes")
    return data


def _cache_key(paths: dict[str, Path]) -> str:
    parts = [str(_CACHE_VERSION)]
    for key in sorted(paths):
        st = paths[key].stat()
        parts.append(f"{paths[key].resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _idx_digest(array: np.ndarray) -> str:
    """The SHA-256 of the IDX file that decodes to ``array`` (uint8 Fashion-MNIST arrays)."""
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
    h = hashlib.sha256(header)
    h.update(np.ascontiguousarray(array, dtype=np.uint8).data)
    return h.hexdigest()


def _read_cache(decoded: Path, expected: dict[str, str]) -> dict[str, np.ndarray]:
    """The decoded arrays, each checked against the shipped digest of the IDX file it came from
    (so a damaged or altered cache cannot pass); ``ValueError`` saying what is wrong."""
    try:
        with np.load(decoded, allow_pickle=False) as z:
            arrays = {key: z[key] for key in FILES}
    except Exception as e:  # an empty, truncated or foreign file: zipfile, pickle, key errors
        raise ValueError(f"unreadable ({type(e).__name__}: {e})") from None
    for key, name in FILES.items():
        a = arrays[key]
        if a.dtype != np.uint8 or _idx_digest(a) != expected[name]:
            raise ValueError(f"its {key} do not match the SHA-256 of {name}")
    return arrays


def _load_arrays(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    decoded = cache_dir() / "decoded" / f"{_cache_key(paths)}.npz"
    expected = digests()
    if decoded.is_file():
        try:
            return _read_cache(decoded, expected)
        except ValueError as e:  # rebuilt below, and overwritten
            warnings.warn(
                f"the decoded Fashion-MNIST cache {decoded} was damaged ({e}); "
                "rebuilt it from the IDX files",
                RuntimeWarning,
                stacklevel=3,
            )
    arrays = {}
    for key, name in FILES.items():
        data = _read_bytes(paths[key])
        _verify(name, paths[key], data, expected[name])
        arrays[key] = parse_idx(data, str(paths[key]))
    _check_shapes(arrays)
    try:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(decoded, buf.getvalue())
    except OSError:
        pass  # a read-only cache only costs speed
    return arrays


def _check_shapes(arrays: dict[str, np.ndarray]) -> None:
    for split, n in SIZES.items():
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape != (n, 28, 28) or labels.shape != (n,):
            raise DataError(
                f"Fashion-MNIST {split} split has images {images.shape} and labels "
                f"{labels.shape}, expected ({n}, 28, 28) and ({n},)"
            )


def load_fashion_mnist(root=None, *, download: bool = True, flatten: bool = True):
    """Load Fashion-MNIST as ``(train, test)`` splits of float32 images and int64 labels.

    Args:
        root: a folder holding the four IDX files (``.gz`` or not); searched first.
        download: download from the official mirrors into the user cache when the files are
            found nowhere. Default: True
        flatten: images of shape ``(N, 784)`` (default) or ``(N, 1, 28, 28)``.

    Returns:
        ``(train, test)``: ``Split`` objects with ``.images`` (float32 in [0, 1]) and
        ``.labels`` (int64 in 0..9, see ``CLASSES``); 60,000 and 10,000 examples.

    Raises:
        ChecksumError: a file's decompressed SHA-256 does not match (the file is named).
        DataError: no copy anywhere and no download possible (every place searched is listed).

    Examples::

        >>> train, test = load_fashion_mnist()  # doctest: +SKIP
        >>> train.images.shape, test.labels.dtype  # doctest: +SKIP
        (torch.Size([60000, 784]), torch.int64)
    """
    import torch

    paths, searched = _locate(root)
    if paths is None:
        if not download:
            raise DataError(_missing_message(searched, tried_download=False))
        try:
            paths = _download(cache_dir())
        except (DataError, OSError) as e:
            raise DataError(_missing_message(searched, tried_download=True, error=e)) from None
    arrays = _load_arrays(paths)
    shape = (-1, 784) if flatten else (-1, 1, 28, 28)

    def split(name: str) -> Split:
        # divide (not multiply by 1/255) so values equal torchvision's ToTensor bit for bit
        images = torch.from_numpy(arrays[f"{name}_images"]).reshape(shape).float().div_(255.0)
        labels = torch.from_numpy(arrays[f"{name}_labels"]).long()
        return Split(images, labels)

    return split("train"), split("test")


def _missing_message(searched: list[Path], *, tried_download: bool, error=None) -> str:
    where = ", ".join(str(p) for p in searched)
    how = (
        "get it with `apt-get install dataset-fashion-mnist` (Debian), or download the four "
        "*-ubyte.gz files from " + " or ".join(MIRRORS) + " into a folder and set $DROPLAB_DATA"
    )
    tail = f"; the download failed ({error})" if tried_download else "; download=False"
    return f"Fashion-MNIST not found (searched {where}){_partial(searched)}{tail}; {how}"
