"""Getting dataset files: verified downloads and extract-once archives.

Downloads use only the standard library (``urllib``): the response is streamed into a temporary
file next to the destination, its checksum is verified, and only then is it renamed into place,
so a cut connection or a tampered mirror never leaves a file that looks complete.

Base URLs can be redirected to a mirror (``CNNKIT_DATASET_MIRROR`` or the ``mirror`` argument):
the file name of the official URL is appended to the mirror's base URL.  The tests use this to
serve files from a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from cnnkit.data.unpack import DATA_LIMITS, unpack, verify_compressed_tail  # noqa: F401 - re-exported for named.py
from cnnkit.errors import DataError, DiskFullError
from cnnkit.io import atomic_path, free_bytes, is_disk_full

log = logging.getLogger("cnnkit.data")

MIRROR_ENV = "CNNKIT_DATASET_MIRROR"
DATA_DIR_ENV = "CNNKIT_DATA_DIR"
_CHUNK = 1 << 20


def data_root(data_dir: str | None = None) -> Path:
    """Where named datasets are looked for and downloaded to."""
    if data_dir:
        return Path(data_dir).expanduser()
    return Path(os.environ.get(DATA_DIR_ENV) or "~/.cache/cnnkit/datasets").expanduser()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def mirrored(url: str, mirror: str | None = None) -> str:
    """``url`` itself, or the same file name under the mirror base URL."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + PurePosixPath(urllib.request.urlparse(url).path).name


def download(url: str, dest: str | Path, sha256: str | None = None, md5: str | None = None,
             timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest``; verify SHA-256 (or MD5 where only that is published); atomic.

    Raises :class:`DataError` for network failures and checksum mismatches; ``dest`` is then
    left as it was (absent, or the previous file), and folders created for it are removed again.
    """
    dest = Path(dest)
    created = _missing_dirs(dest.parent)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {dest.parent} to download {url}: {exc.strerror or exc}") from None
    try:
        return _download(url, dest, sha256, md5, timeout)
    except (DataError, DiskFullError):
        _remove_empty(created)  # a failed download (a mistyped data_dir, no network) leaves no new folders
        raise


def _missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; stop at the first that is not empty
        try:
            folder.rmdir()
        except OSError:
            return


def _download(url: str, dest: Path, sha256: str | None, md5: str | None, timeout: float) -> Path:
    log.warning("downloading %s -> %s", url, dest)
    digests = {name: hashlib.new(name) for name, want in (("sha256", sha256), ("md5", md5)) if want}
    try:
        with atomic_path(dest) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        for h in digests.values():
                            h.update(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if is_disk_full(exc):
                    raise  # atomic_path says so in one line, naming dest
                reason = getattr(exc, "reason", None) or exc
                raise DataError(f"download of {url} failed: {reason}") from None
            for name, want in (("sha256", sha256), ("md5", md5)):
                if want and digests[name].hexdigest() != want.lower():
                    raise DataError(
                        f"download of {url}: {name.upper()} mismatch (expected {want}, got "
                        f"{digests[name].hexdigest()}); the file was not kept - the mirror may be "
                        f"wrong or the transfer corrupted"
                    )
    except OSError as exc:  # the atomic rename/fsync itself
        raise DataError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest


def _starts_like_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def extracted_dir(archive: str | Path, cache_dir: str | Path) -> Path:
    """Where ``archive`` is (or will be) extracted: keyed on its path, size and mtime."""
    archive = Path(archive)
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}\t{st.st_size}\t{st.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = archive.name
    for suffix in (".zip", ".tar.gz", ".tgz", ".tar"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return Path(cache_dir) / "extracted" / f"{stem}-{key}"


def extract(archive: str | Path, cache_dir: str | Path) -> Path:
    """Extract a .zip / .tar(.gz) once into the cache and return the folder.

    Extraction goes to a temporary folder that is renamed into place when complete, so a
    half-extracted archive is never used; a later call finds the folder and returns at once.
    It is :func:`cnnkit.data.unpack.unpack` with the data archives' caps (``DATA_LIMITS``): a
    small archive that would unpack to gigabytes is refused, and nothing of it stays in the cache.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"{archive}: no such archive")
    target = extracted_dir(archive, cache_dir)
    if target.is_dir():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise DataError(f"cannot create a folder to extract {archive} in {target.parent}: "
                        f"{exc.strerror or exc} (set cache_dir to a writable folder)") from None
    log.warning("extracting %s -> %s (once)", archive, target)
    try:
        if zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive):
            os.rmdir(tmp)  # unpack makes the folder itself (and removes it again on any failure)
            unpack(archive, tmp, str(archive), DATA_LIMITS)
        elif _starts_like_zip(archive):
            raise DataError(f"{archive}: truncated or damaged zip archive (its table of contents, at the end "
                            f"of the file, is missing); download or copy it again")
        else:
            raise DataError(f"{archive}: not a zip or tar archive")
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race with another process: a real failure
                raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{archive}: damaged archive ({exc})") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(target, _unpacked_size(archive), free_bytes(target.parent),
                                ", or set cache_dir to a folder on a disk with room") from None
        raise DataError(f"extracting {archive} failed: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _unpacked_size(archive: Path) -> int | None:
    """Bytes the archive's files take once extracted (from its table of contents), or None."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return sum(i.file_size for i in zf.infolist())
        with tarfile.open(archive) as tf:
            return sum(m.size for m in tf.getmembers() if m.isfile())
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error):
        return None
