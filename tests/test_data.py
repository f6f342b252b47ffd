"""droplab.data: the IDX reader, the search order, digest refusal, downloads and the cache."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import re
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from droplab import data

SYSTEM = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No system copy, an empty user cache, no $DROPLAB_DATA, no network."""
    monkeypatch.setattr(data, "SYSTEM_DIRS", ())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DROPLAB_DATA", raising=False)
    monkeypatch.setattr(data, "MIRRORS", ("http://127.0.0.1:9/",))  # discard port: refused
    return tmp_path


@pytest.fixture
def synthetic(isolated, monkeypatch):
    """Four small, valid IDX files (6 train, 4 test) whose digests droplab 'ships'."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(6, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(4, dtype=np.uint8)[::-1].copy(),
    }
    raw = {data.FILES[k]: idx_bytes(v) for k, v in arrays.items()}
    monkeypatch.setattr(data, "SIZES", {"train": 6, "test": 4})
    monkeypatch.setattr(
        data, "digests", lambda: {n: hashlib.sha256(b).hexdigest() for n, b in raw.items()}
    )
    return arrays, raw


def write_files(folder: Path, raw: dict[str, bytes], *, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, b in raw.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(b))
        else:
            (folder / name).write_bytes(b)
    return folder


# ---- the IDX reader ----------------------------------------------------------------------------


def test_parse_idx_roundtrip():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(arr)), arr)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x00\x00", "not an IDX file (only 2 bytes)"),
        (
            b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"x",
            "not an IDX file (magic number 01000801",
        ),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"x", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated IDX header (3 dimensions"),
        (b"\x00\x00\x08\x00", "truncated IDX header (0 dimensions"),
        (
            b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc",
            "IDX header announces shape (5,) (5 bytes of data) but the file holds 3 bytes",
        ),
    ],
)
def test_parse_idx_rejects_malformed(blob, message):
    with pytest.raises(data.IDXError, match=re.escape(f"bad.idx: {message}")):
        data.parse_idx(blob, "bad.idx")


def test_read_idx_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8)))[:-6])
    with pytest.raises(data.DataError, match=re.escape(f"{path}: corrupt gzip file")):
        data.read_idx(path)


# ---- search order, verification, cache ----------------------------------------------------------


def test_loads_from_root_gz_and_plain(synthetic, tmp_path):
    arrays, raw = synthetic
    for gz in (True, False):
        root = write_files(tmp_path / f"root{gz}", raw, gz=gz)
        train, test = data.load_fashion_mnist(root, download=False)
        assert train.images.shape == (6, 784) and train.images.dtype == torch.float32
        assert test.labels.dtype == torch.int64 and len(test) == 4
        expected = torch.from_numpy(arrays["train_images"].reshape(6, -1)).float() / 255
        assert torch.equal(train.images, expected)
        assert test.labels.tolist() == [3, 2, 1, 0]


def test_unflattened_shape(synthetic, tmp_path):
    root = write_files(tmp_path / "root", synthetic[1])
    train, _ = data.load_fashion_mnist(root, flatten=False)
    assert train.images.shape == (6, 1, 28, 28)


def test_search_order(synthetic, tmp_path, monkeypatch):
    env = write_files(tmp_path / "env", synthetic[1])
    monkeypatch.setenv("DROPLAB_DATA", str(env))
    dirs = data.search_dirs(tmp_path / "root")
    assert dirs[0] == tmp_path / "root" and dirs[2] == env and dirs[4] == data.cache_dir()
    paths, _ = data._locate(None)
    assert all(p.parent == env for p in paths.values())
    # a root with all four files wins over the environment
    root = write_files(tmp_path / "root", synthetic[1])
    paths, _ = data._locate(root)
    assert all(p.parent == root for p in paths.values())


def test_corrupt_copy_is_refused_and_named(synthetic, tmp_path):
    _, raw = synthetic
    bad = dict(raw)
    name = data.FILES["test_images"]
    blob = bytearray(raw[name])
    blob[100] ^= 0xFF
    bad[name] = bytes(blob)
    root = write_files(tmp_path / "root", bad)
    expected = data.digests()[name]
    actual = hashlib.sha256(bytes(blob)).hexdigest()
    msg = f"{root / (name + '.gz')}: SHA-256 of the decompressed {name} is {actual}, expected {expected}"
    with pytest.raises(data.ChecksumError, match=re.escape(msg)):
        data.load_fashion_mnist(root, download=False)
    # and it is never cached: fixing nothing and loading again refuses again
    with pytest.raises(data.ChecksumError):
        data.load_fashion_mnist(root, download=False)


def test_decoded_cache_is_used_and_invalidated(synthetic, tmp_path, monkeypatch):
    root = write_files(tmp_path / "root", synthetic[1])
    first, _ = data.load_fashion_mnist(root)
    assert list((data.cache_dir() / "decoded").glob("*.npz"))

    def boom(path):
        raise AssertionError(f"re-read {path} despite the cache")

    monkeypatch.setattr(data, "_read_bytes", boom)
    second, _ = data.load_fashion_mnist(root)
    assert torch.equal(first.images, second.images)
    # touching a source file changes the key: the file is read (and verified) again
    f = root / (data.FILES["train_labels"] + ".gz")
    f.write_bytes(f.read_bytes())
    with pytest.raises(AssertionError, match="despite the cache"):
        data.load_fashion_mnist(root)


def test_absent_and_offline_lists_every_place(isolated):
    with pytest.raises(data.DataError) as info:
        data.load_fashion_mnist(isolated / "nowhere", download=False)
    msg = str(info.value)
    for place in data.search_dirs(isolated / "nowhere"):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "$DROPLAB_DATA" in msg
    with pytest.raises(data.DataError, match="the download failed"):
        data.load_fashion_mnist(isolated / "nowhere", download=True)
    assert not any(p.is_file() for p in data.cache_dir().rglob("*")), (
        "no partial files in the cache"
    )


# ---- downloads ---------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    mode = "good"  # "good" | "truncated" | "wrong"

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        if self.mode == "wrong":
            body = gzip.compress(b"not fashion-mnist")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.mode == "truncated" else body)

    def log_message(self, *args):
        pass


def serve(files: dict[str, bytes], mode: str):
    handler = type("H", (_Handler,), {"files": files, "mode": mode})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.mark.parametrize("bad_mode", ["truncated", "wrong"])
def test_download_falls_back_to_next_mirror_and_is_atomic(synthetic, monkeypatch, bad_mode):
    arrays, raw = synthetic
    gz = {f"{n}.gz": gzip.compress(b) for n, b in raw.items()}
    bad, bad_url = serve(gz, bad_mode)
    good, good_url = serve(gz, "good")
    try:
        monkeypatch.setattr(data, "MIRRORS", (bad_url, good_url))
        train, test = data.load_fashion_mnist()
    finally:
        bad.shutdown()
        good.shutdown()
    assert train.labels.tolist() == list(range(6))
    files = sorted(p.name for p in data.cache_dir().iterdir() if p.is_file())
    assert files == sorted(gz), "only complete, verified downloads are in the cache"


def test_broken_download_leaves_no_partial_file(synthetic, monkeypatch):
    _, raw = synthetic
    gz = {f"{n}.gz": gzip.compress(b) for n, b in raw.items()}
    bad, url = serve(gz, "truncated")
    try:
        monkeypatch.setattr(data, "MIRRORS", (url,))
        with pytest.raises(data.DataError, match="incomplete download"):
            data.load_fashion_mnist()
    finally:
        bad.shutdown()
    assert not any(p.is_file() for p in data.cache_dir().rglob("*"))


# ---- the real data -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion():
    try:
        return data.load_fashion_mnist(download=False)
    except data.DataError as e:
        pytest.skip(f"Fashion-MNIST is not installed here: {e}")


def test_real_data_contract(fashion):
    train, test = fashion
    assert train.images.shape == (60000, 784) and test.images.shape == (10000, 784)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.min() == 0 and train.images.max() == 1
    # Fashion-MNIST is balanced: 6,000 / 1,000 examples per class
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert len(data.CLASSES) == 10 and data.CLASSES[9] == "Ankle boot"
    # the first test image is an ankle boot in the official file
    assert test.labels[0].item() == 9
