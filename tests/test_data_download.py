"""Verified downloads against a local HTTP server on 127.0.0.1, and extract-once archives."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
import zipfile

import numpy as np
import pytest

from cnnkit.config import DataConfig
from cnnkit.data.download import download, extract, mirrored
from cnnkit.data.named import Remote, load_idx_dataset
from cnnkit.errors import DataError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture()
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1 (random port); yields (base_url, folder)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    finally:
        httpd.shutdown()
        httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_renames(server, tmp_path):
    base, www = server
    payload = bytes(range(256)) * 5000
    (www / "f.bin").write_bytes(payload)
    dest = download(f"{base}/f.bin", tmp_path / "out" / "f.bin", sha256=sha(payload),
                    md5=hashlib.md5(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]  # no temp file left


def test_checksum_mismatch_is_dataerror_and_nothing_kept(server, tmp_path):
    base, www = server
    (www / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(DataError, match="SHA256 mismatch"):
        download(f"{base}/f.bin", dest, sha256="0" * 64)
    assert not dest.exists() and not dest.parent.exists()  # nothing kept, not even the new folder
    with pytest.raises(DataError, match="MD5 mismatch"):
        download(f"{base}/f.bin", dest, md5="0" * 32)


def test_http_error_and_no_server_are_dataerrors(server, tmp_path):
    base, _ = server
    with pytest.raises(DataError, match="download of .*missing.bin failed"):
        download(f"{base}/missing.bin", tmp_path / "x")
    with pytest.raises(DataError, match="failed"):
        download("http://127.0.0.1:9/nothing-listens-here", tmp_path / "y", timeout=2)


def test_mirror_replaces_base_url(monkeypatch):
    url = "https://example.org/a/b/train-images-idx3-ubyte.gz"
    assert mirrored(url) == url or mirrored(url).endswith("/train-images-idx3-ubyte.gz")
    assert mirrored(url, "http://127.0.0.1:8000/m/") == "http://127.0.0.1:8000/m/train-images-idx3-ubyte.gz"
    monkeypatch.setenv("CNNKIT_DATASET_MIRROR", "http://127.0.0.1:1")
    assert mirrored(url) == "http://127.0.0.1:1/train-images-idx3-ubyte.gz"


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def test_named_idx_dataset_downloads_through_mirror(server, tmp_path):
    base, www = server
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 255, (40, 6, 6))),
        "train-labels-idx1-ubyte.gz": idx_bytes(np.arange(40) % 4),
        "t10k-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 255, (8, 6, 6))),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(np.arange(8) % 4),
    }
    for name, data in files.items():
        (www / name).write_bytes(data)
    remotes = {name: Remote(f"https://official.invalid/{name}", sha(data)) for name, data in files.items()}
    cfg = DataConfig(source="tiny", data_dir=str(tmp_path / "datasets"), val_split=0.2)
    s = load_idx_dataset("tiny", remotes, ("tiny",), ("a", "b", "c", "d"), cfg, mirror=base)
    assert (len(s.train), len(s.val), len(s.test)) == (32, 8, 8)
    assert s.train.images.shape[1:] == (6, 6, 1)
    assert sorted(p.name for p in (tmp_path / "datasets" / "tiny").iterdir()) == sorted(files)
    # second time: found locally, no server needed
    (www / "train-images-idx3-ubyte.gz").unlink()
    assert len(load_idx_dataset("tiny", remotes, ("tiny",), ("a", "b", "c", "d"), cfg).test) == 8


def test_named_dataset_wrong_checksum_fails_cleanly(server, tmp_path):
    base, www = server
    (www / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    remotes = {"train-images-idx3-ubyte.gz": Remote("https://official.invalid/train-images-idx3-ubyte.gz", "0" * 64)}
    cfg = DataConfig(source="tiny", data_dir=str(tmp_path / "datasets"))
    with pytest.raises(DataError, match="not found locally .* mismatch"):
        load_idx_dataset("tiny", remotes, ("tiny",), ("a",), cfg, mirror=base)
    assert not (tmp_path / "datasets" / "tiny" / "train-images-idx3-ubyte.gz").exists()


def test_extract_once_atomic_and_safe(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/x.txt", "hi")
    out = extract(archive, tmp_path / "cache")
    assert (out / "top" / "x.txt").read_text() == "hi"
    assert extract(archive, tmp_path / "cache") == out
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp folders left

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "no")
    with pytest.raises(DataError, match="unsafe path"):
        extract(evil, tmp_path / "cache")
    assert not (tmp_path / "cache" / "escape.txt").exists()

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError):
        extract(bad, tmp_path / "cache")
    assert all(not p.name.startswith(".") for p in (tmp_path / "cache" / "extracted").iterdir())


def test_zip_dataset_downloaded_extracted_and_loaded(server, tmp_path, monkeypatch):
    import io

    from PIL import Image

    from cnnkit.data import load_data

    base, www = server
    with zipfile.ZipFile(www / "cats_and_dogs_filtered.zip", "w") as zf:
        for split, n in (("train", 3), ("validation", 1)):
            for cls in ("cats", "dogs"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.new("RGB", (9, 7), (i * 40, 0, 0)).save(buf, "JPEG")
                    zf.writestr(f"cats_and_dogs_filtered/{split}/{cls}/{cls[:-1]}.{i}.jpg", buf.getvalue())
    monkeypatch.setenv("CNNKIT_DATASET_MIRROR", base)
    cfg = DataConfig(source="cats-vs-dogs", data_dir=str(tmp_path / "ds"), cache_dir=str(tmp_path / "c"))
    s = load_data(cfg)
    assert (len(s.train), len(s.val)) == (6, 2) and s.train.images.shape[1:] == (7, 9, 3)
    assert (tmp_path / "ds" / "cats_and_dogs_filtered.zip").is_file()
    # the official horses archives have published SHA-256s: a look-alike from the mirror is refused
    (www / "horse-or-human.zip").write_bytes((www / "cats_and_dogs_filtered.zip").read_bytes())
    with pytest.raises(DataError, match="SHA256 mismatch"):
        load_data(DataConfig(source="horses-vs-humans", data_dir=str(tmp_path / "ds"), cache_dir=str(tmp_path / "c")))
    assert not (tmp_path / "ds" / "horse-or-human.zip").exists()


def test_truncated_zip_is_called_truncated_not_foreign(tmp_path):
    # a half-copied download still starts like a zip; "not a zip or tar archive" sent people looking elsewhere
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(20):
            zf.writestr(f"pets/cats/{i}.jpg", bytes(range(256)) * 40)
    archive.write_bytes(archive.read_bytes()[:3000])
    with pytest.raises(DataError, match=r"pets.zip: truncated or damaged zip archive"):
        extract(archive, tmp_path / "cache")


def test_failed_download_leaves_no_empty_folders(tmp_path):
    # a mistyped --data-dir must not leave <typo>/mnist/ behind when the download fails
    dest = tmp_path / "typo" / "mnist" / "train-images-idx3-ubyte.gz"
    with pytest.raises(DataError, match="failed"):
        download("http://127.0.0.1:9/nothing-listens-here", dest, timeout=2)
    assert list(tmp_path.iterdir()) == []


def test_extracting_a_tar_gz_checks_its_checksum(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in ("pets/cats/1.txt", "pets/dogs/2.txt"):
            info = tarfile.TarInfo(name)
            info.size = 5
            tf.addfile(info, io.BytesIO(b"hello"))
    assert (extract(archive, tmp_path / "cache") / "pets" / "cats" / "1.txt").read_bytes() == b"hello"
    blob = bytearray(archive.read_bytes())
    blob[-8] ^= 0xFF  # gzip's CRC32 trailer
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"bad.tar.gz: damaged archive"):
        extract(bad, tmp_path / "cache")
    assert not any(p.name.startswith(".bad") for p in (tmp_path / "cache").rglob("*"))  # no half-extracted folder
